//! `aptc check` and the runtime compute roles alike: the checker's view of the grants, users,
//! teams and owners (`Analysis::access_program`, lowered even from a policy with errors) gives
//! every declared user the same role on every namespace as the program a deploy runs
//! (`Analysis::lower`), both through `aptc_core::access::Access::role`.

mod common;

use std::path::{Path, PathBuf};

use aptc_compiler::host::Analysis;
use aptc_core::access::Access;
use aptc_core::ir::SYSTEM_NAMESPACE;

/// The examples and every case directory or file of `tests/cases/*`.
fn policies() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    for group in ["parse", "diagnostics", "format", "clean", "resolve"] {
        all.extend(common::cases(group));
    }
    all.sort();
    all
}

#[test]
fn static_roles_agree_with_the_runtime_for_every_user_and_namespace() {
    let mut compared_with_grants = 0;
    for path in policies() {
        let (sources, settings) = common::load_case(&path);
        let mut analysis = Analysis::of_sources(sources, settings);
        let checked = analysis.access_program();
        // The runtime only ever sees a policy that lowers clean.
        let Ok(lowered) = analysis.lower() else { continue };
        let (static_access, runtime_access) = (Access::new(&checked), Access::new(&lowered));
        assert_eq!(static_access.enabled(), runtime_access.enabled(), "{}", path.display());
        let namespaces: Vec<&str> =
            lowered.namespaces.keys().map(String::as_str).chain([SYSTEM_NAMESPACE, "undeclared"]).collect();
        for name in lowered.users.keys() {
            let (Some(checked_user), Some(runtime_user)) = (static_access.user(name), runtime_access.user(name)) else {
                panic!("{}: user {name} is missing from the checker's program", path.display())
            };
            for namespace in &namespaces {
                assert_eq!(
                    static_access.role(&checked_user, namespace),
                    runtime_access.role(&runtime_user, namespace),
                    "{}: user {name} on namespace {namespace}",
                    path.display()
                );
            }
        }
        for team in lowered.teams.keys() {
            let (Some(checked_team), Some(runtime_team)) = (static_access.team(team), runtime_access.team(team)) else {
                panic!("{}: team {team} is missing from the checker's program", path.display())
            };
            for namespace in &namespaces {
                assert_eq!(
                    static_access.role(&checked_team, namespace),
                    runtime_access.role(&runtime_team, namespace),
                    "{}: team {team} on namespace {namespace}",
                    path.display()
                );
            }
        }
        if !lowered.grants.is_empty() {
            compared_with_grants += 1;
        }
    }
    assert!(compared_with_grants >= 8, "only {compared_with_grants} policies with grants were compared");
}
