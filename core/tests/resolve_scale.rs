//! The resolver at scale (issue #11): a claim that reaches one contract by exponentially many
//! `uses` paths resolves each distinct sub-resolution once.

#[allow(dead_code)]
#[path = "../../benches/synth.rs"]
mod synth;

use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;
use aptc_core::resolve::{Status, resolve};

fn diamond(depth: usize, claims: usize) -> Program {
    let files = synth::diamond(depth, claims).into_iter().map(|file| (file.path, file.text));
    let mut analysis = Analysis::of_texts(files);
    match analysis.lower() {
        Ok(program) => program,
        Err(errors) => panic!("{}", analysis.render(&errors, false)),
    }
}

#[test]
fn a_diamond_chain_of_depth_50_resolves_with_its_instances() {
    let program = diamond(50, 2);
    let started = std::time::Instant::now();
    let state = resolve(&program);
    let took = started.elapsed();
    for claim in state.claims.values() {
        assert_eq!(claim.status, Status::Resolved, "{:?}", claim.reason);
    }
    assert_eq!(state.instances.len(), 2 * synth::diamond_instances(50));
    // 2^49 paths: only resolving each level once per claim finishes at all.
    assert!(took.as_secs() < 10, "took {took:?}");
    // Each instance is used by its own claim, once per depth it is reached at.
    for instance in state.instances.values() {
        assert_eq!(instance.claims.len(), 1, "{}", instance.key);
    }
}

#[test]
fn diamond_resolution_is_the_same_on_any_number_of_threads() {
    let program = diamond(12, 3);
    let many = serde_json::to_string(&resolve(&program)).unwrap();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| resolve(&program));
    assert_eq!(many, serde_json::to_string(&one).unwrap());
}
