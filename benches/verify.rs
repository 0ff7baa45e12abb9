//! `aptc verify` benchmark (docs/performance.md): every assertion of the examples, 20
//! assertions over a generated policy of 1,000 contracts, and 20 over a policy whose label classes
//! are far past the enumeration budget (decided by the SAT-guided paths, docs/verification.md §3);
//! `aptc diff --all-claims` past the budget (§6); the engine lints (§7) on the examples, on the
//! 1,000-contract policy and past their budget, and `aptc check` as a whole on those.
//!
//! `cargo bench --bench verify`. Loading and lowering happen outside the measurement; what is
//! measured is `core::verify::verify(&program)` (the label classes, and every possible claim
//! resolved and checked), `core::verify::compare(&old, &new)`, `core::verify::lints(&program)`,
//! and for `check` a fresh analysis of the texts checked (parsing, checking and lints).

mod synth;

use std::fmt::Write;
use std::path::PathBuf;

use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;
use aptc_core::verify::{BUDGET, Impact, LintKind, Verdict, compare, lints, verify};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn example(name: &str) -> Program {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    let mut analysis = Analysis::open(&[root], Default::default()).expect("the example loads");
    analysis.lower().expect("the example checks clean")
}

/// The `.apt` files under `dir`, as texts (for a fresh analysis per iteration).
fn texts(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(texts(&path));
        } else if path.extension().is_some_and(|e| e == "apt") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).expect("a policy file")));
        }
    }
    out.sort();
    out
}

#[divan::bench(args = ["guestbook", "twitter-analytics"], sample_count = 10)]
fn example_assertions(bencher: Bencher, name: &str) {
    let program = example(name);
    assert!(!program.assertions.is_empty());
    bencher.bench(|| black_box(verify(black_box(&program))));
}

/// 100 namespaces of 10 contracts, 20 users, and 20 assertions about production claims of one
/// team each, on one contract each. The contracts are of namespaces that use no other (every
/// fourth): a contract that reaches three more namespaces reads each one's `replicas`, `debug` and
/// `tier`, some 10^7 classes, past the budget (the SAT-guided paths of docs/verification.md §3
/// take those; [`past_budget`] measures them), so this one measures enumeration.
fn large() -> Program {
    Analysis::of_texts(large_texts()).lower().expect("the synthetic policy checks clean")
}

fn large_texts() -> Vec<(String, String)> {
    let config = synth::SynthConfig {
        namespaces: 100,
        services_per_namespace: 10,
        contracts_per_namespace: 10,
        rules_per_namespace: 4,
        claims_per_namespace: 0,
        total_claims: Some(200),
        clusters: 4,
        users: 20,
        seed: 16,
    };
    let mut files: Vec<(String, String)> =
        synth::generate(&config).into_iter().map(|file| (file.path, file.text)).collect();
    let mut assertions = String::from("namespace ns0\n\nimport system\n");
    for i in 0..20 {
        let team = synth::TEAMS[i % synth::TEAMS.len()];
        let _ = write!(
            assertions,
            "\nassert prod_{i} {{\n    for users in team {team}\n    for contract ns{}.api{}\n    when labels.env == \"prod\"\n\n    expect never shares with others\n}}\n",
            i * 4,
            i % 10
        );
    }
    files.push(("ns0/assertions.apt".into(), assertions));
    files
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn generated_1000_contracts(bencher: Bencher) {
    let program = large();
    assert_eq!(program.contracts.len(), 1_000);
    let reports = verify(&program);
    assert!(reports.iter().all(|r| !matches!(r.verdict, Verdict::Unknown { .. })), "{reports:#?}");
    bencher.bench(|| black_box(verify(black_box(&program))));
}

/// 13 labels, 5 contracts, 2 users and 20 assertions. Each contract reads `env` (3 classes),
/// `tier` (5), `region` (3), `size` (6) and 7 of the 9 flags (4 classes each): 4,423,680
/// combinations of classes per consumer and contract, 8,847,360 per assertion, 44 times the
/// enumeration budget. Each contract chooses its context on `tier` or `region`, and each flag it
/// reads decides one component, so a claim's path through the resolver reads some labels and not
/// others: what the SAT-guided paths generalise over.
fn past_budget() -> Program {
    past_budget_with(10)
}

/// [`past_budget`] with the free tier's limit of replicas at `limit`.
fn past_budget_with(limit: usize) -> Program {
    let flags = 9;
    let mut text = String::from(
        "namespace system\n\nlabel env: \"dev\" | \"staging\" | \"prod\" = \"dev\"\nlabel tier: string = \"standard\"\nlabel region: string = \"eu\"\nlabel size: int = 1\n",
    );
    for f in 0..flags {
        let _ = writeln!(text, "label f{f}: string = \"off\"");
    }
    text.push_str(
        "\nuser \"ann@example.com\" {}\nuser \"bob@example.com\" {}\n\ncluster sandbox {}\ncluster production {}\n\n",
    );
    for c in 0..5 {
        let _ =
            writeln!(text, "service s{c} {{\n    component base chart \"nginx\" {{\n        version \"1.0\"\n    }}");
        // Contract c reads flags c .. c + 7 (mod 9): seven components each decided by one flag.
        for k in 0..7 {
            let f = (c + k) % flags;
            let _ = writeln!(
                text,
                "    component f{f} chart \"nginx\" {{\n        version \"1.0\"\n        when labels.f{f} == \"on\"\n    }}"
            );
        }
        text.push_str("}\n\n");
        let (first, second) = if c % 2 == 0 {
            ("gold when labels.tier == \"gold\"", "eu when labels.region == \"eu\"")
        } else {
            ("eu when labels.region == \"eu\"", "gold when labels.tier == \"gold\"")
        };
        let _ = writeln!(
            text,
            "contract c{c} {{\n    context {first} {{\n        use s{c}\n    }}\n    context {second} {{\n        use s{c}\n    }}\n    context main {{\n        use s{c}\n    }}\n}}\n"
        );
    }
    let _ = write!(
        text,
        "rule free_is_small when labels.tier == \"free\" and labels.size > {limit} {{\n    reject \"the free tier has at most {limit} replicas\"\n}}\n"
    );
    text.push_str(
        "rule prod_on_production when labels.env == \"prod\" {\n    place on production\n}\n\
         rule the_rest_on_sandbox when labels.env != \"prod\" {\n    place on sandbox\n}\n\n",
    );
    for c in 0..5 {
        let _ = write!(
            text,
            "assert prod_{c} {{\n    for contract c{c}\n    when labels.env == \"prod\"\n\n    expect placed on production\n}}\n\n\
             assert dev_{c} {{\n    for contract c{c}\n    when labels.env == \"dev\"\n\n    expect placed on sandbox\n}}\n\n\
             assert free_{c} {{\n    for contract c{c}\n    when labels.tier == \"free\" and labels.size > 10\n\n    expect rejected\n}}\n\n\
             assert resolves_{c} {{\n    for contract c{c}\n\n    expect resolved\n}}\n\n"
        );
    }
    Analysis::of_texts([("system.apt".to_string(), text)]).lower().expect("the generated policy checks clean")
}

/// 20 assertions far past the enumeration budget (which made each `unknown` before the solver):
/// 15 proved, the 5 `expect resolved` violated by a free claim of 11 replicas.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn past_the_budget_20_assertions(bencher: Bencher) {
    let program = past_budget();
    assert_eq!(program.assertions.len(), 20);
    let reports = verify(&program);
    for report in &reports {
        let run = report.solver.as_ref().expect("past the budget, the solver decides");
        assert!(run.classes > BUDGET, "{report:#?}");
        let violated = matches!(report.verdict, Verdict::Violated { .. });
        assert_eq!(violated, report.assertion.starts_with("system.resolves_"), "{report:#?}");
        assert!(!matches!(report.verdict, Verdict::Unknown { .. }), "{report:#?}");
    }
    let paths: usize = reports.iter().map(|r| r.claims).sum();
    let classes: usize = reports.iter().filter_map(|r| r.solver.as_ref()).map(|s| s.classes).sum();
    eprintln!("past the budget: {classes} classes of claims over 20 assertions, {paths} paths resolved");
    bencher.bench(|| black_box(verify(black_box(&program))));
}

/// `aptc diff --all-claims` past the enumeration budget (docs/verification.md §6): the policy of
/// [`past_budget`] against itself with the free tier's limit raised from 10 to 20 replicas, and
/// against itself (every path resolved by both versions, no difference: the proof).
#[divan::bench(args = ["limit_raised", "unchanged"], sample_count = 3, sample_size = 1)]
fn diff_all_claims_past_the_budget(bencher: Bencher, change: &str) {
    let old = past_budget();
    let new = if change == "unchanged" { past_budget() } else { past_budget_with(20) };
    let comparison = compare(&old, &new);
    let run = comparison.solver.clone().expect("past the budget, the paths decide");
    let kinds = match &comparison.verdict {
        Impact::Unchanged => 0,
        Impact::Changed { kinds } => kinds.len(),
        Impact::Unknown { reason } => panic!("unknown: {reason}"),
    };
    assert_eq!(kinds == 0, change == "unchanged", "{comparison:#?}");
    eprintln!("diff --all-claims ({change}): {} classes, {} paths, {kinds} kinds", run.classes, run.paths);
    bencher.bench(|| black_box(compare(black_box(&old), black_box(&new))));
}

/// The engine lints (docs/verification.md §7) of the examples, of the 1,000-contract policy, and
/// of the two diagnostics cases past the lints' enumeration budget.
#[divan::bench(
    args = ["guestbook", "twitter-analytics", "generated_1000_contracts", "APT0403_past_the_budget", "APT0405_past_the_budget"],
    sample_count = 10
)]
fn engine_lints(bencher: Bencher, name: &str) {
    let program = lint_program(name);
    let found = lints(&program);
    if name.ends_with("past_the_budget") {
        let kind = if name.starts_with("APT0403") { LintKind::UnreachableContext } else { LintKind::RuleNeverFires };
        assert!(found.iter().any(|l| l.kind == kind && l.proof.contains("paths")), "{found:#?}");
    }
    bencher.bench(|| black_box(lints(black_box(&program))));
}

/// `aptc check` without the files' reading: a fresh analysis of the texts, parsed, checked and
/// linted (the lints are part of the check of a policy without errors).
#[divan::bench(args = ["guestbook", "twitter-analytics", "generated_1000_contracts"], sample_count = 10, sample_size = 1)]
fn check(bencher: Bencher, name: &str) {
    let analysis = || match name {
        "generated_1000_contracts" => Analysis::of_texts(large_texts()),
        example => Analysis::open(
            &[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join(example)],
            Default::default(),
        )
        .expect("the example loads"),
    };
    bencher.with_inputs(analysis).bench_values(|mut analysis| black_box(analysis.check()));
}

fn lint_texts(name: &str) -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match name {
        "generated_1000_contracts" => large_texts(),
        "APT0403_past_the_budget" => {
            texts(&root.join("tests/cases/diagnostics/APT0403_unreachable_context_past_the_budget"))
        }
        "APT0405_past_the_budget" => {
            texts(&root.join("tests/cases/diagnostics/APT0405_rule_never_fires_past_the_budget"))
        }
        other => panic!("no such policy: {other}"),
    }
}

fn lint_program(name: &str) -> Program {
    match name {
        "guestbook" | "twitter-analytics" => example(name),
        _ => Analysis::of_texts(lint_texts(name)).lower().expect("the policy checks clean"),
    }
}
