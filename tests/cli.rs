//! The real `aptc` binary, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn aptc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(args)
        .current_dir(root())
        .env_remove("APTC_LOG")
        .output()
        .expect("running aptc")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh scratch directory under the target dir (removed at the start of each run).
fn scratch(name: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = root().join("target/cli-tests").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const THREE_ERRORS: &str = r#"namespace system

service web {
    componet frontend chart "nginx" {
        version "1.0"
    }
}

contract web {
    context prod when labels.env = "prod" {
        use web
    }
}

claim alice {
    team demo_team
    contract web
    labels { replicas = }
}

team demo_team
label env: "dev" | "prod" = "dev"
label replicas: int = 1
"#;

#[test]
fn check_examples_is_clean() {
    let out = aptc(&["check", "--color", "never", "examples/"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("no problems"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("checked "), "{text}");
}

#[test]
fn three_independent_syntax_errors_give_three_diagnostics() {
    let dir = scratch("three");
    let file = dir.join("broken.apt");
    std::fs::write(&file, THREE_ERRORS).unwrap();
    let out = aptc(&["check", "--color", "never", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert_eq!(text.matches("[APT0004] Error").count(), 3, "{text}");
    assert_eq!(text.matches("Help:").count(), 3, "{text}");
    assert!(text.contains("broken.apt:4:5"), "{text}");
    assert!(text.contains("did you mean `component`?"), "{text}");
    assert!(text.contains("checked 1 file: 3 errors"), "{text}");
}

#[test]
fn json_output_has_codes_spans_and_help() {
    let dir = scratch("json");
    let file = dir.join("broken.apt");
    std::fs::write(&file, THREE_ERRORS).unwrap();
    let out = aptc(&["check", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["code"], "APT0004");
    assert_eq!(items[0]["severity"], "error");
    assert_eq!(items[0]["range"]["start"]["line"], 4);
    assert_eq!(items[0]["range"]["start"]["column"], 5);
    assert_eq!(items[0]["range"]["end"]["column"], 13);
    assert!(items[0]["help"].as_str().unwrap().contains("component"));
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/sarif-schema-2.1.0.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the SARIF schema compiles");
    let dir = scratch("sarif");
    std::fs::write(dir.join("broken.apt"), THREE_ERRORS).unwrap();
    std::fs::write(dir.join("warn.apt"), "namespace d\n\nservice s {\n    component c chart \"x\"\n}\n").unwrap();
    for target in [dir.to_str().unwrap(), "examples/"] {
        let out = aptc(&["check", "--format", "sarif", target]);
        let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&sarif).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "invalid SARIF for {target}: {errors:#?}");
    }
    let out = aptc(&["check", "--format", "sarif", dir.to_str().unwrap()]);
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(results.iter().any(|r| r["level"] == "warning" && r["ruleId"] == "APT0150"));
}

#[test]
fn deny_warnings_turns_warnings_into_failure() {
    let dir = scratch("warn");
    let file = dir.join("warn.apt");
    std::fs::write(&file, "namespace d\n\nservice s {\n    component c chart \"x\"\n}\n").unwrap();
    let path = file.to_str().unwrap();
    assert_eq!(aptc(&["check", path]).status.code(), Some(0));
    assert_eq!(aptc(&["check", "--deny-warnings", path]).status.code(), Some(1));
}

#[test]
fn fmt_check_passes_on_examples() {
    let out = aptc(&["fmt", "--check", "examples/", "stdlib/"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn fmt_makes_a_messy_file_canonical_once() {
    let dir = scratch("fmt");
    let file = dir.join("messy.apt");
    std::fs::copy(root().join("tests/cases/format/messy.apt"), &file).unwrap();
    let path = file.to_str().unwrap();

    let check = aptc(&["fmt", "--check", path]);
    assert_eq!(check.status.code(), Some(1));
    assert!(stdout(&check).contains("would reformat"), "{}", stdout(&check));

    assert!(aptc(&["fmt", path]).status.success());
    let first = std::fs::read_to_string(&file).unwrap();
    assert!(first.contains("// shared cache"), "comments are kept");
    assert!(first.contains("service web {\n    component frontend chart \"nginx\" {\n"), "{first}");

    assert!(aptc(&["fmt", path]).status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first, "a second run changes nothing");
    assert!(aptc(&["fmt", "--check", path]).status.success());
}

#[test]
fn fmt_refuses_files_with_syntax_errors() {
    let dir = scratch("fmt-broken");
    let file = dir.join("broken.apt");
    std::fs::write(&file, THREE_ERRORS).unwrap();
    let out = aptc(&["fmt", "--color", "never", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), THREE_ERRORS, "the file is left alone");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let out = aptc(&["check", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = aptc(&["check", "does/not/exist"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does/not/exist: no such file or directory"));
    let out = aptc(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_and_help() {
    let out = aptc(&["--version"]);
    assert!(stdout(&out).starts_with(&format!("aptc {}", env!("CARGO_PKG_VERSION"))));
    let out = aptc(&["check", "--help"]);
    let help = stdout(&out);
    assert!(help.contains("Examples:") && help.contains("--deny-warnings") && help.contains("--format"), "{help}");
}

#[test]
fn binary_does_not_panic_on_hostile_input() {
    let dir = scratch("hostile");
    let inputs =
        ["\"${\"${\"${", "service {{{{{{{{", "}}}}", "namespace", "\u{feff}namespace x", "/*/*/*", "label x: [[[["];
    for (i, input) in inputs.iter().enumerate() {
        std::fs::write(dir.join(format!("h{i}.apt")), input).unwrap();
    }
    let out = aptc(&["check", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let out = aptc(&["fmt", "--check", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_resolves_names_and_types_across_files() {
    let dir = scratch("semantic");
    std::fs::write(dir.join("system.apt"), "namespace system\n\nlabel env: \"dev\" | \"prod\" = \"dev\"\n").unwrap();
    std::fs::write(
        dir.join("web.apt"),
        "namespace web\n\nimport system\n\nservice site {\n    component app chart \"./chart\"\n}\n\ncontract site {\n    context prod when labels.evn == \"prod\" {\n        use site\n    }\n    context dev when labels.env == \"qa\" {\n        use sitee\n    }\n}\n",
    )
    .unwrap();
    let out = aptc(&["check", "--color", "never", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("[APT0301] Error: no label `evn` is visible here"), "{text}");
    assert!(text.contains("did you mean `env`?"), "{text}");
    assert!(text.contains("[APT0303] Error: \"qa\" is not a value"), "{text}");
    assert!(text.contains("[APT0201] Error: no service named `sitee`"), "{text}");
    assert!(text.contains("did you mean `site`?"), "{text}");
}

#[test]
fn check_as_a_user_lists_what_they_may_not_change() {
    let out = aptc(&["check", "--color", "never", "--as", "ada@example.com", "examples/quickstart"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("[APT0502] Error: user `ada@example.com` may not define or change cluster `local`"),
        "{text}"
    );
    assert!(!text.contains("service `hello`"), "ada's team owns the hello namespace: {text}");

    let admin = aptc(&["check", "--as", "max@example.com", "examples/quickstart"]);
    assert!(admin.status.success(), "{}", stdout(&admin));

    let unknown = aptc(&["check", "--color", "never", "--as", "nobody@example.com", "examples/quickstart"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stdout(&unknown).contains("[APT0503]"), "{}", stdout(&unknown));
}

#[test]
fn test_runs_every_example_policy() {
    let out = aptc(&["test", "--color", "never", "examples/"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // examples/ is three complete policies: each runs on its own.
    for policy in ["examples/quickstart", "examples/guestbook", "examples/twitter-analytics"] {
        assert!(text.contains(&format!(" tests in {policy}\n")), "{policy}: {text}");
    }
    assert!(text.contains("test social.carol_is_rejected ... ok"), "{text}");
    let summary = text.lines().last().unwrap();
    let (passed, failed) = summary.split_once(" passed, ").expect(summary);
    assert!(passed.parse::<usize>().unwrap() >= 10, "{summary}");
    assert_eq!(failed, "0 failed", "{text}");
    assert!(!text.contains("FAILED"), "{text}");
}

#[test]
fn test_reports_what_a_failing_test_expected_and_got() {
    let dir = scratch("test-fails");
    std::fs::write(
        dir.join("policy.apt"),
        r#"namespace system

label env: "dev" | "prod" = "dev"

team web_team

user "alice@example.com" {
    team web_team
}

cluster east {}

rule everything_east {
    place on east
}

service web {
    component app chart "./charts/app" {
        values { replicas = 1 }
    }
}

contract web {
    context everyone {
        use web
    }
}

claim alice_dev {
    user "alice@example.com"
    contract web
}

/// Holds.
test resolves {
    expect claim alice_dev resolved
}

/// Does not: alice's instance has one replica, and her claim is not rejected.
test wrong {
    expect instance web.app for alice_dev {
        values { replicas = 3 }
    }
    expect claim alice_dev rejected
}
"#,
    )
    .unwrap();
    let out = aptc(&["test", "--color", "never", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("test system.resolves ... ok\n"), "{text}");
    assert!(text.contains("test system.wrong ... FAILED"), "{text}");
    assert!(text.contains("values.replicas: expected 3, got 1"), "{text}");
    assert!(text.contains("expected claim `system.alice_dev` to be rejected, but it resolved"), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 1 failed"), "{text}");

    // A policy with errors runs no test, and fails.
    std::fs::write(dir.join("broken.apt"), "namespace system\n\ntest broken {\n    expect claim nobody resolved\n}\n")
        .unwrap();
    let out = aptc(&["test", "--color", "never", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(errors.contains("[APT0201]") && errors.contains("its tests did not run"), "{errors}");
    assert_eq!(stdout(&out).lines().last(), Some("0 passed, 0 failed"));
}

/// Copies a directory tree (a policy) for a test to change.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn plan_shows_what_each_claim_gets_and_why_not() {
    let out = aptc(&["plan", "examples/twitter-analytics"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("cluster us_east, namespace analytics"), "{text}");
    assert!(text.contains("social.alice_dev             resolved → social.twitter_stats / dev"), "{text}");
    assert!(text.contains("social.carol_dev             REJECTED: rejected by rule `system.no_mobile_dev`"), "{text}");
    assert!(text.contains("4 claims: 3 resolved, 1 rejected, 0 failed"), "{text}");

    let json = aptc(&["plan", "--format", "json", "examples/twitter-analytics"]);
    let state: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(state["claims"]["social.carol_dev"]["status"], "rejected");
    assert!(state["instances"].as_object().unwrap().len() > 10);
    let yaml = aptc(&["plan", "--format", "yaml", "examples/quickstart"]);
    assert!(yaml.status.success() && stdout(&yaml).contains("instances:"), "{}", stdout(&yaml));
}

#[test]
fn explain_names_the_rule_and_its_line() {
    let out = aptc(&["explain", "carol_dev", "examples/twitter-analytics"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("rule system.no_mobile_dev fired"), "{text}");
    assert!(text.contains("examples/twitter-analytics/system/rules.apt:"), "{text}");
    assert!(text.contains("→ REJECTED"), "{text}");
    let unknown = aptc(&["explain", "nobody", "examples/twitter-analytics"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn diff_lists_exactly_the_instances_a_change_affects() {
    let dir = scratch("diff");
    copy_tree(&root().join("examples/twitter-analytics"), &dir);
    let file = dir.join("social/twitter_stats.apt");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("set labels.batch_seconds = 300"));
    std::fs::write(&file, text.replace("set labels.batch_seconds = 300", "set labels.batch_seconds = 600")).unwrap();
    let out = aptc(&["diff", "examples/twitter-analytics", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let shown = stdout(&out);
    assert!(shown.contains("values.spark.batchDuration: 300 → 600"), "{shown}");
    assert!(shown.contains("0 added, 0 removed, 1 changed; 0 claims change"), "{shown}");
    let same = aptc(&["diff", "--exit-code", "examples/quickstart", "examples/quickstart"]);
    assert_eq!(same.status.code(), Some(0), "{}", stdout(&same));
    let changed = aptc(&["diff", "--exit-code", "examples/twitter-analytics", dir.to_str().unwrap()]);
    assert_eq!(changed.status.code(), Some(1));
}

#[test]
fn build_writes_ir_that_plan_reads_and_refuses_other_versions() {
    let dir = scratch("build");
    let ir = dir.join("policy.aptir");
    let out = aptc(&["build", "examples/guestbook", "-o", ir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let from_ir = aptc(&["plan", ir.to_str().unwrap()]);
    let from_sources = aptc(&["plan", "examples/guestbook"]);
    assert_eq!(stdout(&from_ir), stdout(&from_sources));
    let text = std::fs::read_to_string(&ir).unwrap();
    let version = aptc_compiler::ir::IR_VERSION;
    std::fs::write(&ir, text.replacen(&format!("\"version\": {version}"), "\"version\": 999", 1)).unwrap();
    let old = aptc(&["plan", ir.to_str().unwrap()]);
    assert_eq!(old.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&old.stderr).contains("rebuild it with `aptc build`"), "{:?}", old);
}

#[test]
fn graph_prints_dot() {
    let out = aptc(&["graph", "examples/guestbook"]);
    assert!(out.status.success());
    let dot = stdout(&out);
    assert!(dot.starts_with("digraph aptc {") && dot.contains("->"), "{dot}");
}
