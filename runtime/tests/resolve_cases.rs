//! Resolver cases as data: every directory (or `.apt` file) under `tests/cases/resolve/` is a
//! policy; its desired state is snapshotted as a readable summary (instances with values and
//! claims; every claim's outcome and decision chain). Adding a case is adding a directory.

mod common;

use std::path::{Path, PathBuf};

use aptc_runtime::resolve::{DesiredState, resolve};

/// The cases, sorted.
fn cases() -> Vec<PathBuf> {
    let dir = common::root().join("tests/cases/resolve");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "apt"))
        .collect();
    cases.sort();
    cases
}

/// Lowers and resolves a policy (files named relative to the repository root).
pub fn resolve_path(path: &Path) -> DesiredState {
    resolve(&common::lower_path(path))
}

/// The snapshot text: compact, stable and reviewable.
fn summary(state: &DesiredState) -> String {
    let mut out = String::from("## instances\n");
    for instance in state.instances.values() {
        let claims: Vec<String> = instance.claims.iter().map(|c| format!("{}@{}", c.claim, c.depth)).collect();
        out.push_str(&format!("{}\n  name: {}\n  claims: {}\n", instance.key, instance.name, claims.join(", ")));
        if instance.values.as_object().is_some_and(|v| !v.is_empty()) {
            out.push_str(&format!("  values: {}\n", instance.values));
        }
        if instance.discovery.as_object().is_some_and(|v| !v.is_empty()) {
            out.push_str(&format!("  discovery: {}\n", instance.discovery));
        }
        if !instance.edges.is_empty() {
            out.push_str(&format!("  edges: {}\n", instance.edges.join(", ")));
        }
    }
    out.push_str("## claims\n");
    for claim in state.claims.values() {
        out.push_str(&format!("{}: {:?}", claim.claim, claim.status));
        if let Some(reason) = &claim.reason {
            out.push_str(&format!(" — {reason}"));
        }
        if let Some(origin) = &claim.reason_origin {
            out.push_str(&format!(" @ {origin}"));
        }
        out.push('\n');
        for note in &claim.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        for decision in &claim.decisions {
            out.push_str(&format!("  {}\n", serde_json::to_string(decision).unwrap()));
        }
    }
    out
}

#[test]
fn resolver_cases_snapshot_their_desired_state() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} resolver cases", cases.len());
    for case in cases {
        let state = resolve_path(&case);
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("resolve__{name}"), summary(&state));
    }
}

#[test]
fn examples_resolve_deterministically() {
    for example in ["examples/quickstart", "examples/guestbook", "examples/twitter-analytics"] {
        let path = common::root().join(example);
        let first = serde_json::to_string(&resolve_path(&path)).unwrap();
        for _ in 0..3 {
            assert_eq!(serde_json::to_string(&resolve_path(&path)).unwrap(), first, "{example} resolves differently");
        }
        insta::assert_snapshot!(
            format!("example__{}", example.trim_start_matches("examples/")),
            summary(&resolve_path(&path))
        );
    }
}

#[test]
fn the_number_of_threads_does_not_change_the_result() {
    let program = common::lower_path(&common::root().join("tests/cases/resolve/12_shared_conflict"));
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| serde_json::to_string(&resolve(&program)).unwrap())
    };
    let one = on(1);
    assert_eq!(on(2), one);
    assert_eq!(on(4), one);
}
