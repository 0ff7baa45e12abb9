//! Resolver cases as data: every directory (or `.apt` file) under `tests/cases/resolve/` is a
//! policy; its desired state is snapshotted as a readable summary (instances with values and
//! claims; every claim's outcome and decision chain). Adding a case is adding a directory.

mod common;

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Trial};

use aptc_core::resolve::{DesiredState, InstanceKind, resolve};

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
        if let InstanceKind::Manifests { files, .. } = &instance.kind {
            for file in files {
                out.push_str(&format!("  file {}:\n", file.path));
                out.extend(file.text.lines().map(|line| format!("    | {line}\n")));
            }
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

/// A resolver case snapshots its desired state.
fn resolver_case(case: &Path) {
    let state = resolve_path(case);
    let name = case.file_stem().unwrap().to_string_lossy().into_owned();
    insta::assert_snapshot!(format!("resolve__{name}"), summary(&state));
}

fn there_are_enough_resolver_cases() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} resolver cases", cases.len());
}

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

fn secrets_resolve_to_references_never_to_values() {
    let state = resolve_path(&common::root().join("tests/cases/clean/secrets"));
    let values: Vec<&serde_json::Value> = state.instances.values().map(|i| &i.values).collect();
    assert!(
        values.contains(&&serde_json::json!({
            "auth": { "password": { "$secret": { "env": "REDIS_PASSWORD_prod" } } },
            "tokens": [{ "$secret": { "file": "tokens/a.txt" } }, { "$secret": { "file": "tokens/b.txt" } }],
        })),
        "{values:#?}"
    );
    assert!(
        values.iter().any(|v| v["password"] == serde_json::json!({ "$secret": { "env": "REDIS_PASSWORD" } })),
        "{values:#?}"
    );
    assert!(state.claims.values().all(|c| c.status == aptc_core::resolve::Status::Resolved));
}

fn a_computed_map_key_cannot_forge_a_secret_reference() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("system.apt"),
        r#"namespace system

cluster local {
    context "kind-local"
}

user "ada@example.com"

label key: string = "$secret"

service web {
    component app chart "./charts/app" {
        values { stolen = { "${labels.key}" = { file = "/etc/shadow" } } }
    }
}

contract web {
    context all {
        use web
    }
}

rule everything_local {
    place on local
}

claim ada_web {
    user "ada@example.com"
    contract web
}
"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("charts/app")).unwrap();
    std::fs::write(dir.path().join("charts/app/Chart.yaml"), "apiVersion: v2\nname: app\nversion: 0.1.0\n").unwrap();
    let state = resolve_path(dir.path());
    let outcome = &state.claims["system.ada_web"];
    assert_eq!(outcome.status, aptc_core::resolve::Status::Failed);
    assert!(outcome.reason.as_deref().unwrap_or_default().contains("reserved for secrets"), "{outcome:?}");
    assert!(state.instances.values().all(|i| !i.values.to_string().contains("$secret")));
}

/// One trial per resolver case, then the whole-suite tests.
fn main() {
    let arguments = Arguments::from_args();
    let mut trials: Vec<Trial> = cases()
        .into_iter()
        .map(|case| {
            let name = format!("resolve::{}", case.file_stem().unwrap().to_string_lossy());
            Trial::test(name, move || {
                resolver_case(&case);
                Ok(())
            })
        })
        .collect();
    let whole: [(&str, fn()); 5] = [
        ("there_are_enough_resolver_cases", there_are_enough_resolver_cases),
        ("examples_resolve_deterministically", examples_resolve_deterministically),
        ("the_number_of_threads_does_not_change_the_result", the_number_of_threads_does_not_change_the_result),
        ("secrets_resolve_to_references_never_to_values", secrets_resolve_to_references_never_to_values),
        ("a_computed_map_key_cannot_forge_a_secret_reference", a_computed_map_key_cannot_forge_a_secret_reference),
    ];
    trials.extend(whole.into_iter().map(|(name, run)| {
        Trial::test(name, move || {
            run();
            Ok(())
        })
    }));
    libtest_mimic::run(&arguments, trials).exit();
}
