//! Tests as data: every file under `tests/cases/` is a case, every case a snapshot.
//! Adding a case is adding a file (then `INSTA_UPDATE=always cargo test` and review).

mod common;

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Trial};

use aptc_compiler::assertions;
use aptc_compiler::diagnostics::{Severity, codes, json, render};
use aptc_compiler::host::{Analysis, check, check_with};
use aptc_compiler::source::FileId;
use aptc_compiler::syntax::{format::format_source, parse};

/// A parse case snapshots its tree.
fn parse_case(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let parse = parse(FileId(0), &text);
    assert!(parse.diagnostics.is_empty(), "{}: {:#?}", path.display(), parse.diagnostics);
    insta::assert_snapshot!(format!("parse__{}", common::stem(path)), common::compact_tree(&parse.file));
}

/// A diagnostics case triggers its code and snapshots the human and JSON output. An assertion
/// case (`APT06xx`) is checked, then verified as `aptc verify` does.
fn diagnostics_case(path: &Path) {
    let name = format!("diagnostics/{}", path.file_name().unwrap().to_string_lossy());
    let (sources, settings) = common::load_case(path);
    let code = common::stem(path)[..7].to_string();
    let mut analysis = Analysis::of_sources(sources, settings);
    let mut diagnostics = analysis.check().diagnostics;
    if code.starts_with("APT06") {
        let program = analysis.lower().unwrap_or_else(|errors| panic!("{name} has errors: {errors:#?}"));
        let reports = aptc_core::verify::verify(&program);
        diagnostics.extend(assertions::diagnostics(
            &assertions::in_sources(analysis.sources()),
            &reports,
            Severity::Error,
        ));
    }
    let sources = analysis.into_sources();
    assert!(diagnostics.iter().any(|d| d.code.as_str() == code), "{name} should trigger {code}, got {diagnostics:#?}");
    let human = render::render(&sources, &diagnostics, false);
    insta::assert_snapshot!(format!("diagnostics__{}", common::stem(path)), human);
    let json = serde_json::to_string_pretty(&json::to_json(&sources, &diagnostics)).unwrap();
    insta::assert_snapshot!(format!("diagnostics_json__{}", common::stem(path)), json);
}

/// A clean case has no diagnostics.
fn clean_case(path: &Path) {
    let (mut sources, settings) = common::load_case(path);
    let result = check_with(&mut sources, settings);
    assert!(
        result.diagnostics.is_empty(),
        "{} should be clean:\n{}",
        path.display(),
        render::render(&sources, &result.diagnostics, false)
    );
}

fn every_code_has_a_case_and_documentation() {
    let cases: Vec<String> = common::cases("diagnostics").iter().map(|p| common::stem(p)[..7].to_string()).collect();
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/diagnostics.md")).unwrap();
    for code in codes::ALL {
        // A 4 GiB file is no test fixture; APT0010 is covered by reading the code path.
        if *code != codes::FILE_TOO_LARGE {
            assert!(
                cases.contains(&code.as_str().to_string()),
                "no case in tests/cases/diagnostics for {}",
                code.as_str()
            );
        }
        assert!(
            docs.contains(&format!("## {}", code.as_str())),
            "docs/diagnostics.md does not document {}",
            code.as_str()
        );
    }
}

/// A format case is formatted soundly and snapshots its canonical output.
fn format_case(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let formatted = format_source(FileId(0), &text).unwrap();
    assert_formatting_is_sound(&text, &formatted, &path.display().to_string());
    insta::assert_snapshot!(format!("format__{}", common::stem(path)), formatted);
}

fn examples_and_stdlib_are_clean_and_formatted() {
    let files = common::examples_and_stdlib();
    assert!(files.len() >= 4, "examples are missing: {files:?}");
    let mut sources = aptc_compiler::workspace::load(&files).unwrap();
    let result = check(&mut sources);
    assert!(result.diagnostics.is_empty(), "{}", render::render(&sources, &result.diagnostics, false));
    // Only the .apt files: checking added the prelude and the manifests they read.
    for (id, file) in sources.iter().take(files.len()) {
        let formatted = format_source(id, &file.text).unwrap();
        assert_eq!(formatted, *file.text, "{} is not formatted; run `aptc fmt`", file.path.display());
    }
}

fn formatter_restores_every_example_from_a_mangled_copy() {
    // Strip all indentation and trailing space: the formatter must rebuild the file exactly.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for path in common::examples_and_stdlib() {
        let text = std::fs::read_to_string(&path).unwrap();
        let mangled: String = text.lines().map(|line| format!("{}\n", line.trim())).collect();
        let formatted = format_source(FileId(0), &mangled).unwrap();
        assert_eq!(formatted, text, "{}: fmt(mangled) differs from the canonical file", path.display());
        let name = path.strip_prefix(&root).unwrap().with_extension("").to_string_lossy().replace('/', "__");
        insta::assert_snapshot!(format!("format_example__{name}"), formatted);
    }
}

fn language_reference_examples_parse() {
    // Every ```apt block of docs/language.md is a whole file that parses without syntax errors.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/language.md")).unwrap();
    let blocks: Vec<&str> =
        doc.split("```apt\n").skip(1).map(|rest| rest.split("\n```").next().unwrap_or_default()).collect();
    assert!(blocks.len() >= 10, "docs/language.md has only {} ```apt examples", blocks.len());
    for block in blocks {
        let parse = parse(FileId(0), block);
        assert!(
            parse.diagnostics.is_empty(),
            "docs/language.md example does not parse:\n{block}\n{:#?}",
            parse.diagnostics
        );
    }
}

/// The formatter keeps the meaning and comments of a parse case.
fn parse_case_formats_soundly(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let formatted = format_source(FileId(0), &text).unwrap();
    assert_formatting_is_sound(&text, &formatted, &path.display().to_string());
}

/// fmt(fmt(x)) == fmt(x), parse(fmt(x)) == parse(x) modulo spans, and every comment survives.
fn assert_formatting_is_sound(original: &str, formatted: &str, name: &str) {
    let again = format_source(FileId(0), formatted).unwrap();
    assert_eq!(again, formatted, "{name}: formatting is not idempotent");
    let before = parse(FileId(0), original);
    let after = parse(FileId(0), formatted);
    assert_eq!(
        common::tree_without_spans(&before.file),
        common::tree_without_spans(&after.file),
        "{name}: formatting changed the meaning"
    );
    let comment_texts = |parse: &aptc_compiler::syntax::Parse, src: &str| -> Vec<String> {
        parse.comments.iter().map(|c| src[c.span.range()].trim_end().to_string()).collect()
    };
    assert_eq!(comment_texts(&before, original), comment_texts(&after, formatted), "{name}: comments changed");
}

/// One trial per case of each suite, then the whole-suite tests.
fn main() {
    let arguments = Arguments::from_args();
    // (trial name prefix, directory of tests/cases, what each case must pass)
    type Suite = (&'static str, &'static str, fn(&Path));
    let suites: [Suite; 5] = [
        ("parse", "parse", parse_case),
        ("parse_formats_soundly", "parse", parse_case_formats_soundly),
        ("diagnostics", "diagnostics", diagnostics_case),
        ("clean", "clean", clean_case),
        ("format", "format", format_case),
    ];
    let mut trials = Vec::new();
    for (kind, dir, run) in suites {
        for path in common::cases(dir) {
            let name = format!("{kind}::{}", common::stem(&path));
            trials.push(Trial::test(name, move || {
                run(&path);
                Ok(())
            }));
        }
    }
    let whole: [(&str, fn()); 5] = [
        ("clean_cases_are_enough", clean_cases_are_enough),
        ("every_code_has_a_case_and_documentation", every_code_has_a_case_and_documentation),
        ("examples_and_stdlib_are_clean_and_formatted", examples_and_stdlib_are_clean_and_formatted),
        ("formatter_restores_every_example_from_a_mangled_copy", formatter_restores_every_example_from_a_mangled_copy),
        ("language_reference_examples_parse", language_reference_examples_parse),
    ];
    trials.extend(whole.into_iter().map(|(name, run)| {
        Trial::test(name, move || {
            run();
            Ok(())
        })
    }));
    libtest_mimic::run(&arguments, trials).exit();
}

fn clean_cases_are_enough() {
    let cases: Vec<PathBuf> = common::cases("clean");
    assert!(cases.len() >= 5, "tests/cases/clean has only {} cases", cases.len());
}
