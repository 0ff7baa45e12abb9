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
