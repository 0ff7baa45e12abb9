//! Incremental resolution (issue #11): after any edit of one claim, `resolve::Incremental` holds
//! the state a full resolution of the edited program gives, byte for byte, having resolved only
//! the edited claim and merged again only the claims connected to it by shared instances.

#[allow(dead_code)]
#[path = "../../benches/synth.rs"]
mod synth;

use std::collections::{BTreeMap, BTreeSet};

use aptc_compiler::host::Analysis;
use aptc_core::ir::{Claim, Program};
use aptc_core::resolve::{Chains, DeployedNames, Incremental, Options, Status, resolve_with};
use proptest::prelude::*;

/// A policy with shared stage instances, conflicts and rejections, in 12 namespaces.
fn program() -> Program {
    let config = synth::SynthConfig {
        namespaces: 12,
        services_per_namespace: 6,
        contracts_per_namespace: 6,
        rules_per_namespace: 4,
        claims_per_namespace: 0,
        total_claims: Some(240),
        clusters: 4,
        users: 60,
        seed: 5,
    };
    let files = synth::generate(&config).into_iter().map(|file| (file.path, file.text));
    let mut analysis = Analysis::of_texts(files);
    match analysis.lower() {
        Ok(program) => program,
        Err(errors) => panic!("{}", analysis.render(&errors, false)),
    }
}

fn full(program: &Program, keep_chains: bool) -> String {
    let chains = if keep_chains { Chains::All } else { Chains::None };
    let state = resolve_with(program, &Options { deployed: &DeployedNames::new(), chains });
    serde_json::to_string(&state).unwrap() + &decisions(&state)
}

/// The decision chains, which the plan format leaves out.
fn decisions(state: &aptc_core::resolve::DesiredState) -> String {
    state.claims.values().map(|c| serde_json::to_string(&c.decisions).unwrap()).collect()
}

fn order(claim: &Claim) -> (String, String) {
    (claim.namespace.clone(), claim.name.clone())
}

/// The instance keys a claim needs when it resolves on its own (none if it does not): what its
/// merge touches, computed through the public API only.
fn keys_alone(program: &Program, claim: &Claim) -> BTreeSet<String> {
    let alone = Program { claims: vec![claim.clone()], ..program.clone() };
    let state = resolve_with(&alone, &Options { deployed: &DeployedNames::new(), chains: Chains::None });
    if state.claims.values().all(|c| c.status == Status::Resolved) {
        state.instances.into_keys().collect()
    } else {
        BTreeSet::new()
    }
}

/// The claims connected to `start` (instance keys) through shared instances, by id in claim order.
fn connected(
    keys: &BTreeMap<(String, String), BTreeSet<String>>,
    start: BTreeSet<String>,
) -> BTreeSet<(String, String)> {
    let mut reached_keys = start;
    let mut reached = BTreeSet::new();
    loop {
        let before = reached.len();
        for (order, theirs) in keys {
            if !reached.contains(order) && !theirs.is_disjoint(&reached_keys) {
                reached.insert(order.clone());
                reached_keys.extend(theirs.iter().cloned());
            }
        }
        if reached.len() == before {
            return reached;
        }
    }
}

/// One edit: (kind, claim, other claim).
type Edit = (u8, usize, usize);

fn run_edits(edits: &[Edit], keep_chains: bool) {
    let mut program = program();
    program.claims.sort_by_key(order);
    let mut keys: BTreeMap<(String, String), BTreeSet<String>> =
        program.claims.iter().map(|claim| (order(claim), keys_alone(&program, claim))).collect();
    let mut incremental = Incremental::new(program.clone(), DeployedNames::new(), keep_chains);
    assert_eq!(
        serde_json::to_string(incremental.state()).unwrap() + &decisions(incremental.state()),
        full(&program, keep_chains)
    );
    for (step, &(kind, a, b)) in edits.iter().enumerate() {
        let n = program.claims.len();
        let (a, b) = (program.claims[a % n].clone(), program.claims[b % n].clone());
        // The edited claim as it becomes (None: removed).
        let edited: (String, String, Option<Claim>) = match kind % 5 {
            0 => (a.namespace.clone(), a.name.clone(), Some(Claim { labels: b.labels.clone(), ..a.clone() })),
            1 => (a.namespace.clone(), a.name.clone(), Some(Claim { contract: b.contract.clone(), ..a.clone() })),
            2 => (a.namespace.clone(), a.name.clone(), Some(Claim { consumer: b.consumer.clone(), ..a.clone() })),
            3 => (a.namespace.clone(), a.name.clone(), None),
            _ => {
                let name = format!("added{step}");
                (b.namespace.clone(), name.clone(), Some(Claim { name, labels: a.labels.clone(), ..b.clone() }))
            }
        };
        let (namespace, name, claim) = edited;
        let at = (namespace.clone(), name.clone());
        let mut start = keys.remove(&at).unwrap_or_default();
        program.claims.retain(|c| order(c) != at);
        let update = match claim {
            Some(claim) => {
                let new_keys = keys_alone(&program, &claim);
                start.extend(new_keys.iter().cloned());
                keys.insert(at.clone(), new_keys);
                program.claims.push(claim.clone());
                program.claims.sort_by_key(order);
                incremental.set_claim(claim)
            }
            None => incremental.remove_claim(&namespace, &name),
        };
        // Same bytes as resolving the edited program from scratch...
        let got = serde_json::to_string(incremental.state()).unwrap() + &decisions(incremental.state());
        assert!(
            got == full(&program, keep_chains),
            "step {step}: edit {kind} of {namespace}.{name} differs from a full resolution"
        );
        // ...having resolved only the edited claim and merged only those sharing with it.
        let present = program.claims.iter().any(|c| order(c) == at);
        assert_eq!(update.resolved, usize::from(present), "step {step}");
        let mut expected = connected(&keys, start);
        if present {
            expected.insert(at.clone());
        }
        let expected: Vec<String> = expected.into_iter().map(|(ns, name)| format!("{ns}.{name}")).collect();
        assert_eq!(update.merged, expected, "step {step}: claims merged again");
        assert!(update.merged.len() < program.claims.len() / 2, "step {step}: merged {} claims", update.merged.len());
    }
}

#[test]
fn the_policy_has_shared_instances_conflicts_and_failures() {
    // So the edits below exercise the merge: claims sharing instances, some of them conflicting.
    let program = program();
    let state = resolve_with(&program, &Options { deployed: &DeployedNames::new(), chains: Chains::None });
    assert!(state.instances.values().filter(|i| i.claims.len() > 1).count() > 10);
    assert!(state.claims.values().filter(|c| c.status == Status::Failed).count() > 5);
    assert!(state.claims.values().filter(|c| c.status == Status::Resolved).count() > 100);
}

#[test]
fn every_kind_of_edit_then_the_same_as_a_full_resolution() {
    let edits: Vec<Edit> = (0..20u8).map(|i| (i, 37 * i as usize + 3, 91 * i as usize + 11)).collect();
    run_edits(&edits, false);
}

#[test]
fn decision_chains_are_kept_through_edits() {
    run_edits(&[(0, 5, 17), (1, 40, 3), (3, 8, 0), (4, 12, 99), (2, 60, 7)], true);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn random_edits_give_the_full_resolution(edits in prop::collection::vec((0u8..5, any::<usize>(), any::<usize>()), 1..8)) {
        run_edits(&edits, false);
    }
}
