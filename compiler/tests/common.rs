//! Shared helpers for the case-driven tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use std::sync::mpsc;
use std::time::Duration;

use aptc_compiler::db::Settings;
use aptc_compiler::diagnostics::{json, render, sarif};
use aptc_compiler::host::check;
use aptc_compiler::source::{FileId, SourceMap};
use aptc_compiler::syntax::ast::SourceFile;
use aptc_compiler::syntax::format::format_source;
use aptc_compiler::syntax::parse;
use serde_json::Value;

/// The cases of `tests/cases/<dir>`, sorted: `.apt` files, and directories (a case of several
/// files, which may hold an `ARGS` file with `aptc check` options such as `--as USER`).
pub fn cases(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir() || path.extension().is_some_and(|ext| ext == "apt"))
        .collect();
    files.sort();
    files
}

/// The sources of a case (a file or a directory), named relative to the repository root as
/// `aptc check` run there would name them, and its settings.
pub fn load_case(path: &Path) -> (SourceMap, Settings) {
    // Files a case refers to (`users from`) are read relative to the file's path: run where
    // the names are valid. Every test that calls this wants the same directory.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap();
    std::env::set_current_dir(&root).unwrap();
    let path = path.canonicalize().unwrap();
    let files = aptc_compiler::workspace::find_apt_files(std::slice::from_ref(&path)).unwrap();
    let mut sources = SourceMap::new();
    for file in files {
        let name = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        sources.add(name, std::fs::read_to_string(&file).unwrap());
    }
    let mut settings = Settings::default();
    let args = std::fs::read_to_string(path.join("ARGS")).unwrap_or_default();
    let mut words = args.split_whitespace();
    while let Some(word) = words.next() {
        match word {
            "--as" => settings.acting_user = words.next().map(str::to_string),
            other => panic!("{}: unknown option {other} in ARGS", path.display()),
        }
    }
    (sources, settings)
}

/// Every `.apt` file of the examples and the standard library.
pub fn examples_and_stdlib() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    aptc_compiler::workspace::find_apt_files(&[root.join("examples"), root.join("stdlib")]).unwrap()
}

pub fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// The tree as compact JSON: spans become `"start..end"`, identifiers `"text@start..end"`.
pub fn compact_tree(file: &SourceFile) -> String {
    let mut value = serde_json::to_value(file).unwrap();
    compact(&mut value, true);
    serde_json::to_string_pretty(&value).unwrap()
}

/// The tree with every span removed, for comparing meaning.
pub fn tree_without_spans(file: &SourceFile) -> Value {
    let mut value = serde_json::to_value(file).unwrap();
    compact(&mut value, false);
    value
}

fn compact(value: &mut Value, keep_spans: bool) {
    match value {
        Value::Object(map) => {
            if map.len() == 2 && map.contains_key("start") && map.contains_key("end") {
                *value =
                    if keep_spans { Value::String(format!("{}..{}", map["start"], map["end"])) } else { Value::Null };
                return;
            }
            if map.len() == 2 && map.contains_key("text") && map.contains_key("span") && map["text"].is_string() {
                let span = &map["span"];
                *value = Value::String(if keep_spans {
                    format!("{}@{}..{}", map["text"].as_str().unwrap(), span["start"], span["end"])
                } else {
                    map["text"].as_str().unwrap().to_string()
                });
                return;
            }
            if !keep_spans {
                map.remove("span");
                // Doc comments belong to the comments, which the formatter keeps.
                map.remove("docs");
            }
            map.values_mut().for_each(|v| compact(v, keep_spans));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| compact(v, keep_spans)),
        _ => {}
    }
}

/// Runs everything a user can reach on one text; panics are the failure.
pub fn exercise(text: &str) {
    let mut sources = SourceMap::new();
    sources.add("prop.apt", text.to_string());
    let result = check(&mut sources);
    let _ = render::render(&sources, &result.diagnostics, true);
    let _ = json::to_json(&sources, &result.diagnostics);
    let _ = sarif::to_sarif(&sources, &result.diagnostics, "test");
    // What `plan` runs: the checks and lowering, file by file, which lowers a policy with errors
    // before it knows of them (and then drops the program).
    let _ = aptc_compiler::host::Analysis::of_texts([("prop.apt", text)]).lower();
    if let Ok(formatted) = format_source(FileId(0), text) {
        let again = format_source(FileId(0), &formatted).expect("formatted output must parse");
        assert_eq!(again, formatted, "not idempotent for {text:?}");
        let before = tree_without_spans(&parse(FileId(0), text).file);
        let after = tree_without_spans(&parse(FileId(0), &formatted).file);
        assert_eq!(before, after, "formatting changed the meaning of {text:?}");
    }
}

/// Runs `f` on its own thread (with the default 2 MiB stack of spawned threads, as test
/// threads have) and fails if it panics or is still running after `limit`. The limit is a
/// hang detector, not a measurement: set it far above the expected time, so a slow machine
/// never fails and a blow-up (exponential recovery, runaway recursion) always does.
pub fn within(limit: Duration, what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic)
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("still running after {limit:?}: {what}"),
    }
}

/// `text` shortened for a failure message.
pub fn excerpt(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}{} ({} bytes)", &text[..end], if end < text.len() { "…" } else { "" }, text.len())
}
