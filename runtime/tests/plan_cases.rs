//! Plans as data: each directory `tests/cases/plan/NAME/` is a test. Its `*.apt` files are the
//! policy to deploy; the last revision's policy is `previous/` (a whole policy), or the policy with
//! `previous.apt` in place of the file declaring the same namespace, or nothing (a first deploy).
//! Files are read as in `NAME/`, whose `charts/` holds the local charts they name (a `Chart.yaml`).
//! The plan (each action's kind, instance, reason and prerequisites; the unchanged instances) is
//! an insta snapshot in `tests/cases/plan/snapshots/NAME.snap`; update with `INSTA_UPDATE=always`
//! and review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aptc_core::ir::Program;
use aptc_core::resolve::resolve;
use aptc_runtime::plan::{ClaimEnds, Plan, Unit, plan, units};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases/plan");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases/plan exists")
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_dir() && path.file_name().is_some_and(|n| n != "snapshots"))
        .collect();
    cases.sort();
    let trials = cases
        .into_iter()
        .map(|dir| {
            let name = dir.file_name().expect("a case directory has a name").to_string_lossy().into_owned();
            let snapshots = root.join("snapshots");
            Trial::test(name.clone(), move || run(&name, &dir, &snapshots))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Plans the case in `dir` and compares the plan with its snapshot.
fn run(name: &str, dir: &Path, snapshots: &Path) -> Result<(), Failed> {
    let current = apt_files(dir)?;
    let previous = if dir.join("previous").is_dir() {
        Some(apt_files(&dir.join("previous"))?)
    } else if dir.join("previous.apt").is_file() {
        let text = read(&dir.join("previous.apt"))?;
        let namespace = namespace_of(&text).ok_or("previous.apt declares no namespace")?;
        let mut files = current.clone();
        let replaced = files.values_mut().find(|t| namespace_of(t) == Some(namespace)).ok_or_else(|| {
            format!("previous.apt declares namespace {namespace}, which no file of the policy declares")
        })?;
        *replaced = text;
        Some(files)
    } else {
        None
    };
    let applied: BTreeMap<String, Unit> = match &previous {
        Some(files) => units(&resolve(&compile(dir, files)?), &aptc_runtime::secrets::Secrets::local()),
        None => BTreeMap::new(),
    };
    let program = compile(dir, &current)?;
    let state = resolve(&program);
    let desired = units(&state, &aptc_runtime::secrets::Secrets::local());
    let shown = show(&plan(&applied, &desired, Some(&ClaimEnds::of(&program, &state)), &|_| true));
    let outcome = std::panic::catch_unwind(|| {
        insta::with_settings!({ snapshot_path => snapshots, prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name, shown);
        });
    });
    outcome.map_err(|_| Failed::from(format!("the plan of {name} differs from its snapshot (see above)")))
}

/// The `.apt` files directly in `dir` except `previous.apt`, by file name.
fn apt_files(dir: &Path) -> Result<BTreeMap<String, String>, Failed> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".apt") && name != "previous.apt" {
            files.insert(name, read(&path)?);
        }
    }
    Ok(files)
}

fn read(path: &Path) -> Result<String, Failed> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// The namespace a file declares (`namespace NAME …` on its first such line).
fn namespace_of(text: &str) -> Option<&str> {
    text.lines().find_map(|line| line.strip_prefix("namespace "))?.split_whitespace().next()
}

/// Lowers a policy whose files are read as if in `dir` (the case's directory, where the local
/// charts they name are: `previous/` was deployed from there too), failing with the rendered
/// errors when it does not check clean.
fn compile(dir: &Path, files: &BTreeMap<String, String>) -> Result<Program, Failed> {
    let mut analysis = aptc_compiler::host::Analysis::of_texts(files.iter().map(|(n, t)| (dir.join(n), t.as_str())));
    analysis.lower().map_err(|errors| analysis.render(&errors, false).into())
}

/// One line per action (`N. KIND KEY (REASON)`, and the actions it waits for), then one per
/// unchanged instance.
fn show(plan: &Plan) -> String {
    let mut out = String::new();
    for (n, action) in plan.actions.iter().enumerate() {
        out.push_str(&format!("{n}. {} {} ({})", action.op.verb(), action.unit.key, action.why));
        if !action.after.is_empty() {
            let after: Vec<String> = action.after.iter().map(usize::to_string).collect();
            out.push_str(&format!(" after {}", after.join(", ")));
        }
        out.push('\n');
    }
    for key in &plan.unchanged {
        out.push_str(&format!("unchanged {key}\n"));
    }
    out
}
