//! `aptc verify` benchmark (docs/performance.md): every assertion of the examples, and 20
//! assertions over a generated policy of 1,000 contracts.
//!
//! `cargo bench --bench verify`. Loading and lowering happen outside the measurement; what is
//! measured is `core::verify::verify(&program)`: the label classes, and every possible claim
//! resolved and checked.

mod synth;

use std::fmt::Write;
use std::path::PathBuf;

use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;
use aptc_core::verify::{Verdict, verify};
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
/// `tier`, some 10^7 classes, past the budget, and is `unknown` (docs/verification.md §3).
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
