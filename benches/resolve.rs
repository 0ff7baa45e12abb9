//! Resolver benchmark: 10 to 10,000 claims over a ~200-service synthetic policy.
//!
//! `cargo bench --bench resolve`. Lowering happens once per size, outside the measurement;
//! what is measured is `resolve(&program)`: every claim to its instances, sharing and checks.

mod synth;

use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;
use aptc_core::resolve::resolve;
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

/// 34 namespaces of 6 services: 204 services, 204 contracts.
pub fn program(claims: usize) -> Program {
    let config = synth::SynthConfig {
        namespaces: 34,
        services_per_namespace: 6,
        contracts_per_namespace: 6,
        rules_per_namespace: 4,
        claims_per_namespace: 0,
        total_claims: Some(claims),
        clusters: 4,
        users: 500,
        seed: 11,
    };
    let files = synth::generate(&config).into_iter().map(|file| (file.path, file.text));
    Analysis::of_texts(files).lower().expect("the synthetic policy checks clean")
}

#[divan::bench(args = [10, 100, 1_000, 10_000], sample_count = 10)]
fn resolve_claims(bencher: Bencher, claims: usize) {
    let program = program(claims);
    bencher.counter(ItemsCount::new(claims)).bench(|| black_box(resolve(black_box(&program))));
}

/// A diamond chain (issue #11): each level uses the next twice, so one claim reaches the last
/// level by 2^(depth - 1) paths; each distinct sub-resolution is computed once per claim.
pub fn diamond(depth: usize, claims: usize) -> Program {
    let files = synth::diamond(depth, claims).into_iter().map(|file| (file.path, file.text));
    Analysis::of_texts(files).lower().expect("the diamond chain checks clean")
}

#[divan::bench(args = [10, 20, 50], sample_count = 10)]
fn resolve_diamond(bencher: Bencher, depth: usize) {
    let program = diamond(depth, 1);
    bencher.bench(|| black_box(resolve(black_box(&program))));
}

/// Incremental resolution (issue #11): in a resolved policy held in memory, one claim's labels
/// change (to another claim's, then back, alternately); the edited claim is resolved again, the
/// claims after it whose merge may read what changed judged again, and the instances whose
/// merging claims changed rebuilt. Building the resolved policy is outside the measurement.
#[divan::bench(args = [10_000, 100_000], sample_count = 20, sample_size = 1)]
fn incremental_one_claim(bencher: Bencher, claims: usize) {
    use aptc_core::resolve::{DeployedNames, Incremental};
    let mut program = program(claims);
    program.claims.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let edited = program.claims[claims / 2].clone();
    let other = program.claims.iter().rev().find(|c| c.labels != edited.labels).expect("claims differ").clone();
    let versions = [aptc_core::ir::Claim { labels: other.labels.clone(), ..edited.clone() }, edited.clone()];
    let mut incremental = Incremental::new(program, DeployedNames::new(), false);
    let update = incremental.set_claim(versions[0].clone());
    eprintln!(
        "{claims} claims: an edit of {} merges {} claims again and rebuilds {} instances",
        edited.name,
        update.merged.len(),
        update.instances.len()
    );
    let mut turn = 0;
    bencher.bench_local(|| {
        turn += 1;
        black_box(incremental.set_claim(versions[turn % 2].clone()))
    });
}
