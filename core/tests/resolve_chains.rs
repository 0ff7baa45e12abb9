//! Decision chains on demand (issue #11): a resolution keeps the chains it is asked for, and the
//! desired state is otherwise the same, so `aptc plan` can keep none and `aptc explain`
//! recompute one.

#[path = "../../benches/synth.rs"]
mod synth;

use std::collections::BTreeSet;

use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;
use aptc_core::resolve::{Chains, DeployedNames, DesiredState, Options, resolve, resolve_with};

fn policy() -> Program {
    let mut config = synth::SynthConfig::for_lines(2_000, 7);
    config.total_claims = Some(300);
    let files = synth::generate(&config).into_iter().map(|file| (file.path, file.text));
    let mut analysis = Analysis::of_texts(files);
    match analysis.lower() {
        Ok(program) => program,
        Err(errors) => panic!("{}", analysis.render(&errors, false)),
    }
}

fn with(program: &Program, chains: Chains) -> DesiredState {
    resolve_with(program, &Options { deployed: &DeployedNames::new(), chains })
}

/// `state` with every decision chain dropped.
fn without_chains(mut state: DesiredState) -> DesiredState {
    for claim in state.claims.values_mut() {
        claim.decisions.clear();
    }
    state
}

#[test]
fn chains_kept_or_not_the_state_is_the_same() {
    let program = policy();
    let all = resolve(&program);
    assert!(all.claims.values().all(|c| !c.decisions.is_empty()), "every claim has a chain by default");

    let none = with(&program, Chains::None);
    assert!(none.claims.values().all(|c| c.decisions.is_empty()));
    assert_eq!(none, without_chains(all.clone()));
    // The same JSON too (the plan format has no chains).
    assert_eq!(serde_json::to_string(&none).unwrap(), serde_json::to_string(&all).unwrap());

    // Only the claims asked for keep theirs, exactly as a full resolution has them.
    let asked: BTreeSet<String> = all.claims.keys().step_by(37).cloned().collect();
    assert!(asked.len() > 2);
    let only = with(&program, Chains::Only(&asked));
    for (id, claim) in &only.claims {
        if asked.contains(id) {
            assert_eq!(claim.decisions, all.claims[id].decisions, "{id}");
        } else {
            assert!(claim.decisions.is_empty(), "{id}");
        }
    }
    assert_eq!(without_chains(only), without_chains(all));
}

#[test]
fn a_resolved_claim_carries_its_labels_at_the_claimed_contract() {
    let state = with(&policy(), Chains::None);
    let mut resolved = 0;
    for (id, claim) in &state.claims {
        let Some(root) = &claim.root else {
            assert!(claim.labels.is_none(), "{id}");
            continue;
        };
        resolved += 1;
        let labels = claim.labels.as_ref().expect("a resolved claim has labels");
        let used = state.instances[root].claims.iter().find(|u| u.claim == *id && u.depth == 0).unwrap();
        assert_eq!(used.labels, *labels, "{id}");
    }
    assert!(resolved > 0);
}
