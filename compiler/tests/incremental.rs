//! The database is incremental: an edit re-runs only the queries that depend on what changed.
//! Counted with salsa's own events (`WillExecute` is emitted each time a query body runs).

use std::sync::{Arc, Mutex};

use aptc_compiler::check::load_workspace;
use aptc_compiler::db::{Database, Settings};
use aptc_compiler::source::SourceMap;
use salsa::Database as _;

const PLATFORM: &str = r#"namespace platform

label size: "small" | "large" = "small"

service kafka {
    component broker chart "oci://charts.example.com/kafka" {
        version "1.0.0"
        values { replicas = 1 }
    }
}

contract kafka {
    context small when labels.size == "small" {
        use kafka
    }
    context large {
        use kafka
    }
}
"#;

const ANALYTICS: &str = r#"namespace analytics

service pipeline {
    component queue uses platform.kafka
}

contract pipeline {
    context all {
        use pipeline
    }
}
"#;

/// A database that logs every query body it runs, and the log.
fn logged_database() -> (Database, Arc<Mutex<Vec<salsa::DatabaseKeyIndex>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let db = Database::with_event_hook(move |event| {
        if let salsa::EventKind::WillExecute { database_key } = event.kind {
            sink.lock().unwrap().push(database_key);
        }
    });
    (db, log)
}

/// Runs the checker and returns how many times each query body ran, by query name.
fn executions(
    db: &Database,
    log: &Mutex<Vec<salsa::DatabaseKeyIndex>>,
    ws: aptc_compiler::db::Workspace,
) -> (Vec<String>, usize) {
    log.lock().unwrap().clear();
    let diagnostics = aptc_compiler::check::diagnostics(db, ws);
    (ran(db, log), diagnostics.iter().filter(|d| d.is_error()).count())
}

/// The names of the query bodies the log holds, in order.
fn ran(db: &Database, log: &Mutex<Vec<salsa::DatabaseKeyIndex>>) -> Vec<String> {
    log.lock().unwrap().iter().map(|key| format!("{}(", db.ingredient_debug_name(key.ingredient_index()))).collect()
}

fn count(ran: &[String], query: &str) -> usize {
    ran.iter().filter(|name| name.starts_with(&format!("{query}("))).count()
}

#[test]
fn editing_a_body_reruns_only_that_files_queries() {
    let (mut db, log) = logged_database();
    let mut sources = SourceMap::new();
    sources.add("platform.apt", PLATFORM);
    sources.add("analytics.apt", ANALYTICS);
    let ws = load_workspace(&mut db, &sources, Settings::default());
    let platform = ws.files(&db)[0];

    let (ran, errors) = executions(&db, &log, ws);
    assert_eq!(errors, 0);
    assert_eq!(count(&ran, "check_file"), 3, "both files and the prelude, first time: {ran:?}");

    // A change inside a component's values: only the platform file is parsed and checked again.
    db.set_text(platform, PLATFORM.replace("replicas = 1", "replicas = 3").into());
    let (ran, errors) = executions(&db, &log, ws);
    assert_eq!(errors, 0);
    assert_eq!(count(&ran, "parse_file"), 1, "{ran:?}");
    assert_eq!(count(&ran, "file_summary"), 1, "{ran:?}");
    assert_eq!(count(&ran, "check_file"), 1, "the other files' checks are reused: {ran:?}");
    assert_eq!(count(&ran, "check_charts"), 1, "{ran:?}");
    assert_eq!(count(&ran, "workspace_index"), 0, "the outline did not change: {ran:?}");

    // Renaming the contract changes what other files see: their checks run again and fail.
    db.set_text(platform, PLATFORM.replace("contract kafka", "contract queue").into());
    let (ran, errors) = executions(&db, &log, ws);
    assert_eq!(count(&ran, "workspace_index"), 1, "{ran:?}");
    assert!(count(&ran, "check_file") >= 2, "{ran:?}");
    assert_eq!(errors, 1, "analytics now uses a contract that is gone");
}

/// What is on disk at a local chart's path is an input of the database: looking again
/// (`refresh_charts`, as the language server does when files change on disk) after the chart was
/// created clears the error, and re-runs the chart check of that file only, not the file's checks.
#[test]
fn a_created_chart_clears_its_error_and_reruns_only_the_chart_check() {
    let dir = tempfile::tempdir().unwrap();
    let (mut db, log) = logged_database();
    let mut sources = SourceMap::new();
    sources.add(dir.path().join("platform.apt"), PLATFORM.replace("oci://charts.example.com/kafka", "./charts/kafka"));
    sources.add(dir.path().join("analytics.apt"), ANALYTICS);
    let ws = load_workspace(&mut db, &sources, Settings::default());
    let codes = |db: &Database| -> Vec<&'static str> {
        aptc_compiler::check::diagnostics(db, ws).iter().filter(|d| d.is_error()).map(|d| d.code.as_str()).collect()
    };
    assert_eq!(codes(&db), ["APT0210"], "the chart does not exist yet");

    // Looking again with nothing changed on disk sets nothing: nothing runs again.
    aptc_compiler::check::refresh_charts(&mut db, ws);
    let (ran, _) = executions(&db, &log, ws);
    assert_eq!(count(&ran, "check_charts"), 0, "{ran:?}");

    let chart = dir.path().join("charts/kafka");
    std::fs::create_dir_all(&chart).unwrap();
    aptc_compiler::check::refresh_charts(&mut db, ws);
    assert_eq!(codes(&db), ["APT0210"], "a directory without Chart.yaml is no chart");

    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: kafka\nversion: 0.1.0\n").unwrap();
    aptc_compiler::check::refresh_charts(&mut db, ws);
    let (ran, errors) = executions(&db, &log, ws);
    assert_eq!(errors, 0, "the chart exists now");
    assert_eq!(count(&ran, "check_charts"), 1, "the platform file's chart check: {ran:?}");
    assert_eq!(count(&ran, "check_file"), 0, "no file is checked again: {ran:?}");
    assert_eq!(count(&ran, "parse_file"), 0, "{ran:?}");
}

/// `check::lower_file_by_file` (how `aptc plan` checks and lowers) frees the syntax trees loading
/// parsed, then parses each file once more, checking and lowering it while its tree is alive and
/// freeing it before the next. The whole-policy checks read per-file facts, not trees, so no file
/// is parsed again, except a file with items roles come from (platform's `label`), whose part of
/// the access program is lowered from its tree, and the small prelude, whose outline the index
/// first asks for when lowering begins (loading outlines only the policy's own files).
#[test]
fn lowering_file_by_file_parses_each_file_once_more() {
    let (mut db, log) = logged_database();
    aptc_compiler::db::keep_trees(&mut db, 1);
    aptc_compiler::semantics::file::keep_checks(&mut db, 1);
    let mut sources = SourceMap::new();
    sources.add("platform.apt", PLATFORM);
    sources.add("analytics.apt", ANALYTICS);
    let ws = load_workspace(&mut db, &sources, Settings::default());
    log.lock().unwrap().clear();
    let program = aptc_compiler::check::lower_file_by_file(&mut db, ws).expect("the policy checks clean");
    let freeing = ran(&db, &log);
    assert_eq!(count(&freeing, "parse_file"), 3 + 2, "each file once, platform and the prelude twice: {freeing:?}");
    assert_eq!(count(&freeing, "check_file"), 3, "{freeing:?}");
    assert_eq!(count(&freeing, "file_summary"), 1, "the prelude's: {freeing:?}");
    assert_eq!(program.contracts.len(), 2);
    // Without freeing (a database that keeps every tree), checking parses only the prelude.
    let (mut kept, log) = logged_database();
    let ws = load_workspace(&mut kept, &sources, Settings::default());
    log.lock().unwrap().clear();
    aptc_compiler::check::lower(&kept, ws).expect("the policy checks clean");
    let keeping = ran(&kept, &log);
    assert_eq!(count(&keeping, "parse_file"), 1, "the prelude, which loading does not outline: {keeping:?}");
    // Lowering file by file in a database that keeps every tree (`plan` on a small policy) parses
    // no file again either.
    let (mut kept, log) = logged_database();
    aptc_compiler::db::keep_trees(&mut kept, 0);
    aptc_compiler::semantics::file::keep_checks(&mut kept, 1);
    let ws = load_workspace(&mut kept, &sources, Settings::default());
    log.lock().unwrap().clear();
    aptc_compiler::check::lower_file_by_file(&mut kept, ws).expect("the policy checks clean");
    let keeping = ran(&kept, &log);
    assert_eq!(count(&keeping, "parse_file"), 1, "the prelude: {keeping:?}");
}
