//! `aptc diff --all-claims` as data: every directory under `tests/cases/all_claims/` holds a
//! policy before (`old/`) and after (`new/`) a change; the comparison over every possible claim
//! (`core::verify::compare`) is snapshotted, and each kind's example claim, resolved again by
//! both versions, must differ as the kind says. Adding a case is adding a directory.

mod common;

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Trial};

use aptc_core::ir::Program;
use aptc_core::resolve::{Alone, Status};
use aptc_core::verify::{Aspect, Comparison, Impact, PATH_BUDGET, compare, compare_within};

fn cases() -> Vec<PathBuf> {
    let dir = common::root().join("tests/cases/all_claims");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.retain(|p| p.is_dir());
    cases.sort();
    cases
}

/// What a claim's aspect reads as in one version: status (with reason), or where its instances are.
fn aspect_of(program: &Program, claim: &aptc_core::ir::Claim, aspect: Aspect) -> String {
    let state = Alone::new(program).resolve(claim, false);
    let outcome = &state.claims[&claim.id()];
    match aspect {
        Aspect::Outcome => format!("{:?} {:?}", outcome.status, outcome.reason),
        Aspect::Placement => {
            assert_eq!(outcome.status, Status::Resolved);
            let mut at: Vec<String> =
                state.instances.values().map(|i| format!("{}/{}", i.cluster, i.k8s_namespace)).collect();
            at.sort();
            at.dedup();
            at.join(",")
        }
        // Sharing depends on the policy's claims: the instance keys say it.
        Aspect::Sharing => state.instances.keys().cloned().collect::<Vec<_>>().join(","),
    }
}

/// Each kind's example, resolved again by both versions, differs in the kind's aspect.
fn examples_change(name: &str, old: &Program, new: &Program, comparison: &Comparison) {
    if let Impact::Changed { kinds } = &comparison.verdict {
        for kind in kinds {
            assert_ne!(
                aspect_of(old, &kind.example, kind.aspect),
                aspect_of(new, &kind.example, kind.aspect),
                "{name}: the example of {kind:#?} does not change"
            );
        }
    }
}

fn case(path: &Path) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let old = common::lower_path(&path.join("old"));
    let new = common::lower_path(&path.join("new"));
    let comparison = compare(&old, &new);
    examples_change(&name, &old, &new, &comparison);
    // Comparing a version with itself proves that nothing changes, or cannot tell.
    assert!(!matches!(compare(&new, &new).verdict, Impact::Changed { .. }), "{name}: a version differs from itself");
    insta::assert_snapshot!(format!("all_claims__{name}"), serde_json::to_string_pretty(&comparison).unwrap());
}

/// Past the enumeration budget the SAT-guided paths decide (docs/verification.md §6): the same
/// kinds as enumeration, each with an example that changes so; past the path budget, `unknown`.
fn past_the_budget_paths_find_what_enumeration_finds() {
    for name in ["01_equivalent_rewrite", "02_boundary_moves", "03_context_changes", "04_new_rule_rejects"] {
        let path = common::root().join("tests/cases/all_claims").join(name);
        let (old, new) = (common::lower_path(&path.join("old")), common::lower_path(&path.join("new")));
        let enumerated = compare(&old, &new);
        let by_paths = compare_within(&old, &new, 0, PATH_BUDGET);
        assert!(by_paths.solver.is_some(), "{name}: not by paths");
        let kinds = |c: &Comparison| match &c.verdict {
            Impact::Unchanged => Vec::new(),
            Impact::Changed { kinds } => {
                kinds.iter().map(|k| (k.aspect, k.contract.clone(), k.before.clone(), k.after.clone())).collect()
            }
            Impact::Unknown { reason } => panic!("{name}: unknown: {reason}"),
        };
        let (mut a, mut b) = (kinds(&enumerated), kinds(&by_paths));
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: paths and enumeration disagree");
        examples_change(name, &old, &new, &by_paths);
    }
    let path = common::root().join("tests/cases/all_claims/02_boundary_moves");
    let (old, new) = (common::lower_path(&path.join("old")), common::lower_path(&path.join("new")));
    let Impact::Unknown { reason } = compare_within(&old, &new, 0, 1).verdict else { panic!("not unknown") };
    assert!(reason.contains("take more than 1 paths"), "{reason}");
}

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = cases()
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            Trial::test(name, move || {
                case(&path);
                Ok(())
            })
        })
        .collect();
    trials.push(Trial::test("past_the_budget_paths_find_what_enumeration_finds", || {
        past_the_budget_paths_find_what_enumeration_finds();
        Ok(())
    }));
    libtest_mimic::run(&args, trials).exit();
}
