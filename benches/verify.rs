//! `aptc verify` benchmark (docs/performance.md): every assertion of the examples, 20
//! assertions over a generated policy of 1,000 contracts, and 20 over a policy whose label classes
//! are far past the enumeration budget (decided by the SAT-guided paths, docs/verification.md §3).
//!
//! `cargo bench --bench verify`. Loading and lowering happen outside the measurement; what is
//! measured is `core::verify::verify(&program)`: the label classes, and every possible claim
//! resolved and checked.

mod synth;

use std::fmt::Write;
use std::path::PathBuf;

use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;
use aptc_core::verify::{BUDGET, Verdict, verify};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn example(name: &str) -> Program {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    let mut analysis = Analysis::open(&[root], Default::default()).expect("the example loads");
    analysis.lower().expect("the example checks clean")
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
    Analysis::of_texts(files).lower().expect("the synthetic policy checks clean")
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
    text.push_str(
        "rule free_is_small when labels.tier == \"free\" and labels.size > 10 {\n    reject \"the free tier has at most 10 replicas\"\n}\n\
         rule prod_on_production when labels.env == \"prod\" {\n    place on production\n}\n\
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
