//! The policy of a cluster, assembled from its bundles: each unpacked into its own directory
//! under a private work directory and the whole checked as one policy by the compiler
//! ([`check`]); a bundle whose files have errors is replaced by its last good version, so the
//! other teams' policy goes on ([`assemble`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aptc_compiler::db::Settings;
use aptc_compiler::diagnostics::Diagnostic;
use aptc_compiler::host::Analysis;
use aptc_compiler::semantics::index::file_summary;
use aptc_core::ir::Program;
use tempfile::TempDir;
use thiserror::Error;

use crate::bundle;
use crate::crd::kube_name;

/// Why a set of bundles could not be checked at all (the work directory, not the policy).
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("the work directory {path}: {source}")]
    Work {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Archives by `.apt` namespace.
pub type Archives = BTreeMap<String, String>;

/// A set of bundles, checked.
pub struct Checked {
    /// The lowered policy, when it checks clean.
    pub program: Option<Program>,
    /// The errors, one line each (`BUNDLE/PATH:LINE:COLUMN: CODE: message`), by the namespace
    /// whose bundle holds the file (the namespace `""` for errors in no bundle's file).
    pub problems: BTreeMap<String, Vec<String>>,
    /// Where the bundles are unpacked: the program's local charts and manifests are read from
    /// here, so it lives as long as the program is used.
    pub dir: TempDir,
}

/// Unpacks `archives` under `work` and checks them as one policy. A bundle that cannot be
/// unpacked, or holds a `.apt` file of another namespace, has that as its problem and is left out.
pub fn check(archives: &Archives, work: &Path) -> Result<Checked, PolicyError> {
    std::fs::create_dir_all(work).map_err(|source| PolicyError::Work { path: work.to_path_buf(), source })?;
    let dir = tempfile::Builder::new()
        .prefix("policy-")
        .tempdir_in(work)
        .map_err(|source| PolicyError::Work { path: work.to_path_buf(), source })?;
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (namespace, archive) in archives {
        let Some(name) = kube_name(namespace) else {
            problems
                .entry(namespace.clone())
                .or_default()
                .push(format!("namespace `{namespace}` has no Kubernetes name"));
            continue;
        };
        let into = dir.path().join(&name);
        if let Err(error) = bundle::unpack(archive, &into) {
            problems.entry(namespace.clone()).or_default().push(error.to_string());
            let _ = std::fs::remove_dir_all(&into);
            continue;
        }
        owners.insert(name, namespace.clone());
    }
    if owners.is_empty() {
        return Ok(Checked { program: None, problems, dir });
    }
    let mut analysis = match Analysis::open(&[dir.path().to_path_buf()], Settings::default()) {
        Ok(analysis) => analysis,
        Err(error) => {
            problems.entry(String::new()).or_default().push(error.to_string());
            return Ok(Checked { program: None, problems, dir });
        }
    };
    let shown = |path: &Path| path.strip_prefix(dir.path()).unwrap_or(path).display().to_string();
    let owner = |path: &Path| {
        let first = path.strip_prefix(dir.path()).ok()?.components().next()?;
        owners.get(first.as_os_str().to_str()?).cloned()
    };
    // A bundle carries its own namespace's files only.
    let mut foreign = false;
    {
        let db = analysis.db();
        for &file in analysis.workspace().files(db).iter() {
            let path = file.path(db);
            let (Some(bundle), Some(declared)) = (owner(path), file_summary(db, file).namespace.clone()) else {
                continue;
            };
            if declared != bundle.as_str() {
                foreign = true;
                problems.entry(bundle).or_default().push(format!(
                    "{}: the file declares namespace `{declared}`: a bundle holds its own namespace's files only",
                    shown(path)
                ));
            }
        }
    }
    let result = analysis.check();
    for diagnostic in result.diagnostics.iter().filter(|d| d.is_error()) {
        let file = analysis.sources().get(diagnostic.primary.file);
        let namespace = owner(&file.path).unwrap_or_default();
        problems.entry(namespace).or_default().push(line(&analysis, diagnostic, &shown(&file.path)));
    }
    let program = if problems.is_empty() && !foreign { analysis.lower().ok() } else { None };
    Ok(Checked { program, problems, dir })
}

/// A diagnostic on one line: `PATH:LINE:COLUMN: CODE: message`.
fn line(analysis: &Analysis, diagnostic: &Diagnostic, path: &str) -> String {
    let file = analysis.sources().get(diagnostic.primary.file);
    let (line, column) = file.line_col(diagnostic.primary.span.start);
    format!("{path}:{line}:{column}: {}: {}", diagnostic.code.as_str(), diagnostic.message)
}

/// How one namespace's bundle stands in an assembled policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Its current version is in use.
    InUse,
    /// Its current version has these problems; its last good version is used (`true`), or none
    /// is (there is none, or it no longer fits the others).
    Invalid { problems: Vec<String>, last_good_used: bool },
}

/// The policy assembled from the bundles' current versions, falling back to the last good
/// version of each bundle whose files have errors (and leaving a bundle out when even that fails),
/// until the whole checks clean.
pub struct Assembled {
    pub checked: Checked,
    /// The versions in use, by namespace: the next last-good versions.
    pub used: Archives,
    pub standing: BTreeMap<String, Standing>,
}

/// Assembles the policy of `current` bundles, with `last_good` versions to fall back on.
pub fn assemble(current: &Archives, last_good: &Archives, work: &Path) -> Result<Assembled, PolicyError> {
    let mut used = current.clone();
    let mut standing: BTreeMap<String, Standing> = current.keys().map(|ns| (ns.clone(), Standing::InUse)).collect();
    loop {
        let checked = check(&used, work)?;
        if checked.program.is_some() || used.is_empty() {
            return Ok(Assembled { checked, used, standing });
        }
        let blamed: Vec<String> = checked.problems.keys().filter(|ns| used.contains_key(*ns)).cloned().collect();
        // Errors in no bundle's file, or nothing left to fall back from: the policy stays invalid.
        if blamed.is_empty() {
            return Ok(Assembled { checked, used, standing });
        }
        for namespace in blamed {
            let problems = checked.problems[&namespace].clone();
            let fallback = last_good.get(&namespace).filter(|good| used.get(&namespace) != Some(*good));
            let first = matches!(standing.get(&namespace), Some(Standing::InUse) | None);
            match fallback {
                Some(good) if first => {
                    used.insert(namespace.clone(), good.clone());
                    standing.insert(namespace, Standing::Invalid { problems, last_good_used: true });
                }
                _ => {
                    used.remove(&namespace);
                    let problems = match standing.remove(&namespace) {
                        Some(Standing::Invalid { problems: first, .. }) => first,
                        _ => problems,
                    };
                    standing.insert(namespace, Standing::Invalid { problems, last_good_used: false });
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bundle::Bundle;

    /// Archives of `(namespace, [(path, text)])`.
    pub(crate) fn archives(bundles: &[(&str, &[(&str, &str)])]) -> Archives {
        bundles
            .iter()
            .map(|(namespace, files)| {
                let files = files.iter().map(|(p, t)| (p.to_string(), t.as_bytes().to_vec())).collect();
                (namespace.to_string(), Bundle { namespace: namespace.to_string(), files }.pack().unwrap())
            })
            .collect()
    }

    pub(crate) const SYSTEM: &str = "namespace system\nteam web_team\nteam shop_team\nuser \"ada\" {\n    team web_team\n}\nuser \"eve\" {\n    team shop_team\n}\nuser \"max\" {\n    groups [\"admins\"]\n}\ncluster local {\n    context \"kind-kind\"\n}\nrule everywhere {\n    place on local\n}\ngrant domain_admin when \"admins\" in user.groups\ngrant consumer on web\n";
    pub(crate) const WEB: &str = "namespace web owned_by web_team\nservice site {\n    component page chart \"site\" {\n        repo \"https://charts.example.com\"\n        version \"1.0.0\"\n    }\n}\ncontract site {\n    context all {\n        use site\n    }\n}\n";

    #[test]
    fn bundles_check_as_one_policy() {
        let work = tempfile::tempdir().unwrap();
        let checked =
            check(&archives(&[("system", &[("system.apt", SYSTEM)]), ("web", &[("web.apt", WEB)])]), work.path())
                .unwrap();
        assert_eq!(checked.problems, BTreeMap::new());
        let program = checked.program.unwrap();
        assert!(program.contracts.contains_key("web.site"));
    }

    #[test]
    fn a_bundle_with_another_namespaces_file_is_a_problem_of_that_bundle() {
        let work = tempfile::tempdir().unwrap();
        let sneaky = "namespace system\ngrant domain_admin when user.name == \"eve\"\n";
        let checked = check(
            &archives(&[("system", &[("system.apt", SYSTEM)]), ("web", &[("web.apt", WEB), ("x.apt", sneaky)])]),
            work.path(),
        )
        .unwrap();
        assert!(checked.program.is_none());
        let web = &checked.problems["web"];
        assert!(web[0].contains("web/x.apt: the file declares namespace `system`"), "{web:?}");
    }

    #[test]
    fn a_bad_bundle_falls_back_to_its_last_good_version_and_the_others_go_on() {
        let work = tempfile::tempdir().unwrap();
        let good = archives(&[("system", &[("system.apt", SYSTEM)]), ("web", &[("web.apt", WEB)])]);
        let broken =
            archives(&[("web", &[("web.apt", "namespace web\ncontract site { context all { use nothing } }\n")])]);
        let mut current = good.clone();
        current.insert("web".into(), broken["web"].clone());
        let assembled = assemble(&current, &good, work.path()).unwrap();
        assert!(assembled.checked.program.is_some());
        assert_eq!(assembled.used, good);
        assert_eq!(assembled.standing["system"], Standing::InUse);
        let Standing::Invalid { problems, last_good_used: true } = &assembled.standing["web"] else {
            panic!("{:?}", assembled.standing["web"])
        };
        assert!(problems[0].starts_with("web/web.apt:2:"), "{problems:?}");
        // Without a last good version the bundle is left out; the others are still in use.
        let mut current = good.clone();
        current.extend(archives(&[(
            "shop",
            &[("shop.apt", "namespace shop\ncontract c { context x { use nothing } }\n")],
        )]));
        let assembled = assemble(&current, &good, work.path()).unwrap();
        assert!(assembled.checked.program.is_some());
        assert_eq!(assembled.used, good);
        assert!(matches!(assembled.standing["shop"], Standing::Invalid { last_good_used: false, .. }));
        assert_eq!(assembled.standing["web"], Standing::InUse);
    }
}
