//! The real `aptc` binary, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{Reaper, copy_tree, root, wait_for};

/// A fresh scratch directory for a CLI test.
fn scratch(name: &str) -> PathBuf {
    common::scratch("cli-tests", name)
}

fn aptc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(args)
        .current_dir(root())
        .env_remove("APTC_LOG")
        // Never a developer's cluster: deploys in these tests render.
        .env("APTC_TARGET", "render")
        .output()
        .expect("running aptc")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
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

/// `aptc` sets mimalloc's arena commit before mimalloc starts (src/main.rs), by the option's
/// number in mimalloc 3's enum; mimalloc's own report names each option, so a renumbered enum
/// fails here (its neighbours keep their defaults). A value from the environment still wins.
#[cfg(target_os = "linux")]
#[test]
fn the_allocator_commits_arenas_on_demand_unless_the_environment_says_otherwise() {
    let options = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_aptc"))
            .arg("--version")
            .env("MIMALLOC_VERBOSE", "1")
            .envs(env.iter().copied())
            .output()
            .expect("running aptc");
        assert!(out.status.success());
        let report = String::from_utf8_lossy(&out.stderr).into_owned();
        let value = |name: &str| {
            let line = report.lines().find(|line| line.starts_with(&format!("option '{name}': ")));
            line.and_then(|line| line.split_whitespace().last()).unwrap_or_default().to_string()
        };
        [value("deprecated_eager_commit"), value("arena_eager_commit"), value("purge_decommits")]
    };
    assert_eq!(options(&[]), ["1", "0", "1"]);
    assert_eq!(options(&[("MIMALLOC_ARENA_EAGER_COMMIT", "2")]), ["1", "2", "1"]);
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
    std::fs::create_dir_all(dir.join("chart")).unwrap();
    std::fs::write(dir.join("chart/Chart.yaml"), "apiVersion: v2\nname: site\nversion: 0.1.0\n").unwrap();
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
fn check_reports_a_local_chart_that_is_not_there_and_accepts_it_once_created() {
    let dir = scratch("local-chart");
    std::fs::write(
        dir.join("web.apt"),
        "namespace web\n\nservice site {\n    component app chart \"./charts/site\"\n}\n\ncontract site {\n    context all {\n        use site\n    }\n}\n",
    )
    .unwrap();
    let chart = dir.join("charts/site");
    let out = aptc(&["check", "--color", "never", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a missing chart is a finding: {}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("[APT0210] Error: local chart `./charts/site` does not exist"), "{text}");
    assert!(text.contains(&chart.display().to_string()), "names the resolved path: {text}");
    assert!(text.contains("Help: a local chart's path is relative to the directory of this .apt file"), "{text}");

    // A directory is not enough: Helm needs its Chart.yaml.
    std::fs::create_dir_all(&chart).unwrap();
    let out = aptc(&["check", "--color", "never", "--format", "json", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("\"APT0210\""), "{}", stdout(&out));
    assert!(stdout(&out).contains("has no `Chart.yaml`"), "{}", stdout(&out));

    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: site\nversion: 0.1.0\n").unwrap();
    let out = aptc(&["check", "--color", "never", dir.to_str().unwrap()]);
    assert!(!stdout(&out).contains("APT0210"), "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
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
    write_tested_policy(&dir.join("policy.apt"));
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
    let version = aptc_core::ir::IR_VERSION;
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

/// Whether `aptc deploy` will find helm here (`tools/install-helm.sh` installs it; CI runs that
/// first); a test that needs it says why it checks nothing when it is missing.
fn helm_found(test: &str) -> bool {
    let explicit = std::env::var_os("APTC_HELM").map(PathBuf::from);
    match aptc_runtime::helm::Helm::locate(explicit.as_deref()) {
        Ok(_) => true,
        Err(error) if std::env::var_os("CI").is_some() => panic!("{test}: CI installs helm first, yet: {error}"),
        Err(error) => {
            eprintln!("SKIPPED {test}: {error}");
            false
        }
    }
}

fn deploy_args<'a>(state: &'a Path, out: &'a Path) -> [&'a str; 4] {
    ["--state", state.to_str().unwrap(), "--out", out.to_str().unwrap()]
}

/// A deploy test's state store and render directory, in its scratch directory.
struct Target {
    state: PathBuf,
    out: PathBuf,
}

impl Target {
    fn in_dir(dir: &Path) -> Target {
        Target { state: dir.join("state.db"), out: dir.join("out") }
    }

    /// `--state STATE --out OUT`.
    fn args(&self) -> [&str; 4] {
        deploy_args(&self.state, &self.out)
    }

    /// `aptc ARGS --as USER` against this target.
    fn run_as(&self, user: &str, args: &[&str]) -> Output {
        aptc(&[args, &["--as", user], &self.args()[..]].concat())
    }
}

/// A scratch directory holding `policy/`, a manifests policy of one ConfigMap, and its target.
fn configmap_policy(name: &str) -> (PathBuf, PathBuf, Target) {
    let dir = scratch(name);
    let policy = dir.join("policy");
    manifests_policy(&policy, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n");
    let target = Target::in_dir(&dir);
    (dir, policy, target)
}

#[test]
fn deploy_renders_records_revisions_and_rolls_back() {
    if !helm_found("deploy_renders_records_revisions_and_rolls_back") {
        return;
    }
    let dir = scratch("deploy");
    let target = Target::in_dir(&dir);
    let (state, out) = (&target.state, &target.out);
    // As a user of the policy, which grants roles (docs/language.md §11.3).
    let run = |args: &[&str]| target.run_as("ada@example.com", args);

    let dry = run(&["deploy", "--dry-run", "examples/quickstart"]);
    assert!(dry.status.success(), "{dry:?}");
    assert!(stdout(&dry).contains("4 to create") && stdout(&dry).contains("dry run: nothing applied"), "{dry:?}");
    assert!(!state.exists() && !out.exists(), "a dry run writes nothing");

    let refused = run(&["deploy", "examples/quickstart"]);
    assert_eq!(refused.status.code(), Some(2), "no --yes and no terminal: {refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --yes"), "{refused:?}");

    let first = run(&["deploy", "--yes", "examples/quickstart"]);
    assert!(first.status.success(), "{first:?}");
    let shown = stdout(&first);
    assert!(shown.contains("+ create  hello-web-"), "{shown}");
    assert!(shown.contains("revision 1: 4 created, 0 updated, 0 deleted"), "{shown}");
    assert!(shown.lines().last().unwrap().starts_with("rendered to "), "--out means the render target: {shown}");
    let instances: Vec<PathBuf> =
        std::fs::read_dir(out.join("local/hello")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(instances.len(), 4, "{instances:?}");
    let charts: Vec<&PathBuf> = instances.iter().filter(|i| i.join("manifest.yaml").exists()).collect();
    assert_eq!(charts.len(), 2, "{instances:?}");
    for instance in charts {
        let manifest = std::fs::read_to_string(instance.join("manifest.yaml")).unwrap();
        assert!(manifest.contains("kind: Deployment") && manifest.contains("aptc.dev/instance:"), "{manifest}");
        assert!(manifest.contains("aptc.dev/revision: \"1\"") && manifest.contains("aptc.dev/key: local/hello/"));
        assert!(instance.join("instance.json").exists());
    }

    let again = run(&["deploy", "--yes", "examples/quickstart"]);
    assert!(again.status.success(), "{again:?}");
    assert!(stdout(&again).contains("no changes: 4 instances up to date since revision 1"), "{again:?}");
    assert!(stdout(&again).contains("revision 2: no changes"), "recorded all the same: {again:?}");

    // A change: production gets three replicas.
    let changed = dir.join("quickstart");
    copy_tree(&root().join("examples/quickstart"), &changed);
    let file = changed.join("hello.apt");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("set labels.replicas = 2", "set labels.replicas = 3")).unwrap();
    let second = run(&["deploy", "--yes", changed.to_str().unwrap()]);
    assert!(second.status.success(), "{second:?}");
    assert!(stdout(&second).contains("(values.replicaCount)"), "{second:?}");
    assert!(stdout(&second).contains("revision 3: 0 created, 2 updated, 0 deleted"), "{second:?}");

    let back = run(&["rollback", "1", "--yes"]);
    assert!(back.status.success(), "{back:?}");
    assert!(stdout(&back).contains("revision 4: 0 created, 2 updated, 0 deleted"), "{back:?}");

    let history = aptc(&["history", "--state", state.to_str().unwrap()]);
    let lines: Vec<String> = stdout(&history).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[1].contains("deploy examples/quickstart: no changes"), "{lines:?}");
    assert!(
        lines[0].trim_start().starts_with("1  ")
            && lines[0].contains(" ada@example.com ")
            && lines[0].contains("deploy examples/quickstart")
    );
    assert!(lines[3].contains("rollback to 1: 0 created, 2 updated"), "{lines:?}");
    let show = aptc(&["history", "show", "4", "--state", state.to_str().unwrap()]);
    assert!(show.status.success(), "{show:?}");
    assert!(stdout(&show).contains("cause   rollback to 1") && stdout(&show).contains("✓ updated"), "{show:?}");
    let json = aptc(&["history", "show", "1", "--format", "json", "--state", state.to_str().unwrap()]);
    let record: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(record["actions"].as_array().unwrap().len(), 4);
    assert!(record["desired_state"]["instances"].as_object().unwrap().len() >= 4);
}

const MANIFESTS_SYSTEM: &str = r#"namespace system

team web_team

user "ada@example.com" {
    team web_team
}

cluster local {
    context "kind-kind"
    namespace "demo"
}

rule everywhere {
    place on local
}

grant consumer on web
"#;

const MANIFESTS_PAGE: &str = r#"    component page manifests "k8s/page-*.yaml" {
        after config
    }
"#;

const MANIFESTS_WEB: &str = r#"namespace web owned_by web_team

service site {
    component config manifests "k8s/config.yaml"
    component page manifests "k8s/page-*.yaml" {
        after config
    }
    component other manifests "k8s/other.yaml"
}

contract site {
    context all {
        use site
    }
}

claim ada_site {
    user "ada@example.com"
    contract site
}
"#;

/// Makes `web.ada_site` fail by a fault of web's own policy (its context reads a label that
/// nothing sets), a change web's owner ada may make (docs/language.md §11.3).
fn make_ada_site_fail(policy: &Path) {
    let web = MANIFESTS_WEB.replace(
        "contract site {\n    context all {",
        "label region: string\n\ncontract site {\n    context all when labels.region == \"eu\" {",
    );
    std::fs::write(policy.join("web.apt"), web).unwrap();
}

/// A manifests-only policy (no helm needed): `config` is the manifest template `config`, and
/// `page` depends on it.
fn manifests_policy(dir: &Path, config: &str) {
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    std::fs::write(dir.join("system.apt"), MANIFESTS_SYSTEM).unwrap();
    std::fs::write(dir.join("web.apt"), MANIFESTS_WEB).unwrap();
    std::fs::write(dir.join("k8s/config.yaml"), config).unwrap();
    std::fs::write(dir.join("k8s/page-1.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: page\n").unwrap();
    std::fs::write(dir.join("k8s/other.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n").unwrap();
}

#[test]
fn a_failed_instance_skips_its_dependents_and_the_next_deploy_retries_them() {
    let (_, policy, target) = configmap_policy("deploy-retry");
    let out = &target.out;
    // As a user of the policy, which grants roles (docs/language.md §11.3).
    let run = |args: &[&str]| target.run_as("ada@example.com", args);

    // The config instance cannot be written: its directory holds something aptc did not make.
    let dry = stdout(&run(&["deploy", "--dry-run", policy.to_str().unwrap()]));
    let config =
        dry.split_whitespace().find(|w| w.starts_with("site-config-")).expect("the config instance").to_string();
    let blocked = out.join("local/demo").join(&config);
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("precious.txt"), "not aptc's").unwrap();

    let first = run(&["deploy", "--yes", policy.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(1), "{first:?}");
    let shown = stdout(&first);
    assert!(shown.contains("is not aptc's rendering of this instance"), "{shown}");
    assert!(shown.contains("- skipped create site-page-") && shown.contains("which failed"), "{shown}");
    assert!(shown.contains("revision 1: 1 created, 0 updated, 0 deleted, 1 failed, 1 skipped"), "{shown}");
    let other = std::fs::read_dir(out.join("local/demo")).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>();
    assert_eq!(other.len(), 2, "only the independent instance is rendered, beside the blocked one: {other:?}");

    std::fs::remove_dir_all(&blocked).unwrap();
    let retry = run(&["deploy", "--yes", policy.to_str().unwrap()]);
    assert!(retry.status.success(), "{retry:?}");
    let shown = stdout(&retry);
    assert!(shown.contains("2 to create, 0 to update, 0 to delete; 1 unchanged"), "{shown}");
    assert!(shown.contains("revision 2: 2 created, 0 updated, 0 deleted"), "{shown}");
    let page = std::fs::read_dir(out.join("local/demo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("site-page-"));
    let text = std::fs::read_to_string(page.unwrap().join("manifests/01-page-1.yaml")).unwrap();
    assert!(text.contains("aptc.dev/revision: \"2\"") && text.contains("aptc.dev/namespace: web"), "{text}");

    // The policy without the page: it is deleted.
    let web = std::fs::read_to_string(policy.join("web.apt")).unwrap();
    assert!(web.contains(MANIFESTS_PAGE));
    let without = web.replace(MANIFESTS_PAGE, "");
    std::fs::write(policy.join("web.apt"), without).unwrap();
    let removed = run(&["deploy", "--yes", policy.to_str().unwrap()]);
    assert!(stdout(&removed).contains("revision 3: 0 created, 0 updated, 1 deleted"), "{removed:?}");
    assert_eq!(std::fs::read_dir(out.join("local/demo")).unwrap().count(), 2);
}

#[test]
fn history_and_rollback_without_a_store() {
    let dir = scratch("history-empty");
    let state = dir.join("none.db");
    let history = aptc(&["history", "--state", state.to_str().unwrap()]);
    assert!(history.status.success() && stdout(&history).contains("no revisions yet"), "{history:?}");
    let show = aptc(&["history", "show", "1", "--state", state.to_str().unwrap()]);
    assert_eq!(show.status.code(), Some(2), "{show:?}");
    let rollback = aptc(&["rollback", "1", "--yes", "--state", state.to_str().unwrap()]);
    assert_eq!(rollback.status.code(), Some(2), "{rollback:?}");
    assert!(String::from_utf8_lossy(&rollback.stderr).contains("there are no revisions"), "{rollback:?}");
    assert!(!state.exists(), "reading the history creates no store");
}

const ACL_SYSTEM: &str = r#"namespace system

team platform_team
team web_team

user "pat@example.com" {
    team platform_team
}
user "wendy@example.com" {
    team web_team
}
user "root@example.com" {
    groups ["admins"]
}

cluster local {
    context "kind-kind"
    namespace "demo"
}

rule everywhere {
    place on local
}

grant domain_admin when "admins" in user.groups
grant consumer on platform
"#;

const ACL_PLATFORM: &str = r#"namespace platform owned_by platform_team

service cache {
    component server manifests "k8s/cache.yaml"
}

contract cache {
    context all {
        use cache
    }
}
"#;

const ACL_WEB: &str = r#"namespace web owned_by web_team

service site {
    component page manifests "k8s/page.yaml"
}

contract site {
    context all {
        use site
    }
}

claim wendy_site {
    user "wendy@example.com"
    contract site
}
"#;

#[test]
fn deploy_refuses_changes_the_user_may_not_make_with_the_old_roles() {
    let dir = scratch("deploy-acl");
    let policy = dir.join("policy");
    write_acl_policy(&policy);
    let target = Target::in_dir(&dir);
    let (state, out) = (&target.state, &target.out);
    let deploy = |user: &str| target.run_as(user, &["deploy", "--yes", policy.to_str().unwrap()]);
    let revisions = || stdout(&aptc(&["history", "--state", state.to_str().unwrap()])).lines().count();

    // Pat administers platform only: the web instance is not theirs. Nothing is written.
    let refused = deploy("pat@example.com");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let shown = stdout(&refused);
    assert!(shown.contains("refused: `pat@example.com` may not make every change"), "{shown}");
    assert!(shown.contains("may not create instance site-page-"), "{shown}");
    assert!(
        shown.contains("namespace `web` of contract web.site needs namespace_admin (their role there: none)"),
        "{shown}"
    );
    assert!(shown.contains("nothing applied, nothing recorded"), "{shown}");
    assert!(!state.exists() && !out.exists(), "a refused deploy writes nothing");

    // Someone who is not a user of a policy with grants may not deploy at all.
    let stranger = deploy("mallory");
    assert_eq!(stranger.status.code(), Some(1), "{stranger:?}");
    assert!(stdout(&stranger).contains("`mallory` is not a user of the policy"), "{stranger:?}");

    // Wendy owns web: allowed.
    let first = deploy("wendy@example.com");
    assert!(first.status.success(), "{first:?}");
    assert!(stdout(&first).contains("revision 1: 1 created"), "{first:?}");

    // Wendy claims platform's cache (a consumer may manage claims): allowed, due to the claim alone.
    let web =
        ACL_WEB.to_string() + "\nclaim wendy_cache {\n    user \"wendy@example.com\"\n    contract platform.cache\n}\n";
    std::fs::write(policy.join("web.apt"), &web).unwrap();
    let claimed = deploy("wendy@example.com");
    assert!(claimed.status.success(), "{claimed:?}");
    assert!(stdout(&claimed).contains("revision 2: 1 created"), "{claimed:?}");

    // Wendy changes platform's service and, in the same deploy, makes her team platform's owner:
    // the roles come from the last revision, so it is refused.
    std::fs::write(policy.join("k8s/cache.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cache2\n")
        .unwrap();
    std::fs::write(policy.join("platform.apt"), ACL_PLATFORM.replace("owned_by platform_team", "owned_by web_team"))
        .unwrap();
    let escalated = deploy("wendy@example.com");
    assert_eq!(escalated.status.code(), Some(1), "{escalated:?}");
    let shown = stdout(&escalated);
    assert!(shown.contains("may not update instance cache-server-"), "{shown}");
    assert!(shown.contains("needs namespace_admin (their role there: consumer)"), "{shown}");
    assert_eq!(revisions(), 2, "nothing recorded");

    // The platform's owner (by the old policy) may make it.
    let owner = deploy("pat@example.com");
    assert!(owner.status.success(), "{owner:?}");
    assert!(stdout(&owner).contains("revision 3: 0 created, 1 updated"), "{owner:?}");
}

/// Writes the ACL test policy into `policy` (system, platform and web namespaces, manifests).
fn write_acl_policy(policy: &Path) {
    std::fs::create_dir_all(policy.join("k8s")).unwrap();
    std::fs::write(policy.join("system.apt"), ACL_SYSTEM).unwrap();
    std::fs::write(policy.join("platform.apt"), ACL_PLATFORM).unwrap();
    std::fs::write(policy.join("web.apt"), ACL_WEB).unwrap();
    for name in ["cache", "page"] {
        std::fs::write(
            policy.join(format!("k8s/{name}.yaml")),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"),
        )
        .unwrap();
    }
}

#[test]
fn a_policy_change_that_moves_no_instance_is_still_authorised() {
    let dir = scratch("deploy-acl-policy");
    let (policy, base) = (dir.join("policy"), dir.join("base"));
    write_acl_policy(&policy);
    write_acl_policy(&base);
    let target = Target::in_dir(&dir);
    let state = &target.state;
    let deploy = |user: &str| target.run_as(user, &["deploy", "--yes", policy.to_str().unwrap()]);
    let revisions = || stdout(&aptc(&["history", "--state", state.to_str().unwrap()])).lines().count();
    assert!(deploy("wendy@example.com").status.success());
    assert_eq!(revisions(), 1);

    // Wendy owns web, not system: a user she adds to the admins moves no instance, yet is refused,
    // so the next deploy cannot take its roles from it.
    let escalation = "\nuser \"mallory@example.com\" {\n    groups [\"admins\"]\n}\n";
    std::fs::write(policy.join("system.apt"), ACL_SYSTEM.to_string() + escalation).unwrap();
    let refused = deploy("wendy@example.com");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let shown = stdout(&refused);
    assert!(shown.contains("may not add user `mallory@example.com`: namespace `system` needs domain_admin"), "{shown}");
    assert_eq!(revisions(), 1, "nothing recorded");
    let mallory = deploy("mallory@example.com");
    assert_eq!(mallory.status.code(), Some(1), "the refused user never became one: {mallory:?}");

    // A consumer may not grant herself a role either.
    let grant = "\ngrant domain_admin when user.name == \"wendy@example.com\"\n";
    std::fs::write(policy.join("system.apt"), ACL_SYSTEM.to_string() + grant).unwrap();
    let granted = deploy("wendy@example.com");
    assert_eq!(granted.status.code(), Some(1), "{granted:?}");
    assert!(stdout(&granted).contains("may not add grant `domain_admin on every namespace"), "{granted:?}");

    // `aptc diff --as` shows it next to what the change does (JSON checked against its schema).
    let diffed = aptc(&["diff", "--as", "wendy@example.com", base.to_str().unwrap(), policy.to_str().unwrap()]);
    assert_eq!(diffed.status.code(), Some(1), "{diffed:?}");
    assert!(stdout(&diffed).contains("✗ may not add grant `domain_admin on every namespace"), "{diffed:?}");
    let as_json = aptc(&[
        "diff",
        "--as",
        "wendy@example.com",
        "--format",
        "json",
        base.to_str().unwrap(),
        policy.to_str().unwrap(),
    ]);
    let value: serde_json::Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert_eq!(value["refused"][0]["change"]["kind"], "grant", "{value}");
    assert_eq!(value["refused"][0]["change"]["needs"], "domain_admin", "{value}");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/schema/diff.schema.json")).unwrap()).unwrap();
    assert!(jsonschema::is_valid(&schema, &value), "{value}");

    // The author's check for a pull request gives the same verdict before anything merges:
    // against a directory, a revision of the store, or a git revision.
    let check = |against: &[&str]| {
        aptc(&[&["check", "--as", "wendy@example.com"], against, &[policy.to_str().unwrap()]].concat())
    };
    for against in
        [vec!["--against", base.to_str().unwrap()], vec!["--against", "1", "--state", state.to_str().unwrap()]]
    {
        let checked = check(&against);
        assert_eq!(checked.status.code(), Some(1), "{against:?}: {checked:?}");
        let text = stdout(&checked);
        assert!(text.contains("[APT0502]") && text.contains("may not add grant"), "{against:?}: {text}");
        assert!(!text.contains("`web.site`"), "only changes are reported: {text}");
    }
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-C", dir.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(policy.join("system.apt"), ACL_SYSTEM).unwrap();
    git(&["add", "policy"]);
    git(&["commit", "-q", "-m", "base"]);
    let clean = check(&["--git", "HEAD"]);
    assert!(clean.status.success(), "no change, nothing refused: {clean:?}");
    std::fs::write(policy.join("system.apt"), ACL_SYSTEM.to_string() + grant).unwrap();
    let against_git = check(&["--git", "HEAD"]);
    assert_eq!(against_git.status.code(), Some(1), "{against_git:?}");
    assert!(stdout(&against_git).contains("may not add grant"), "{against_git:?}");
    // Her own namespace is hers to change.
    std::fs::write(policy.join("system.apt"), ACL_SYSTEM).unwrap();
    std::fs::write(policy.join("web.apt"), ACL_WEB.replace("context all", "context every")).unwrap();
    let own = check(&["--git", "HEAD"]);
    assert!(own.status.success(), "{own:?}");
    // `aptc diff --git` reads the same revision of a repository anywhere on disk.
    let diffed = aptc(&["diff", "--git", "HEAD", policy.to_str().unwrap()]);
    assert!(diffed.status.success(), "{diffed:?}");
    assert!(stdout(&diffed).contains("+ local/demo/web.site/every/page"), "{diffed:?}");
}

/// A scratch directory holding a copy of the quickstart example in `policy/`.
fn quickstart_copy(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let policy = dir.join("policy");
    copy_tree(&root().join("examples/quickstart"), &policy);
    (dir, policy)
}

/// `aptc watch --interval 1 --as ada@example.com ARGS` against `target`, run in `cwd`, its output
/// in `dir/watch.log` (returned) and `dir/watch.err`.
#[cfg(unix)]
fn spawn_watch(dir: &Path, cwd: &Path, target: &Target, args: &[&str]) -> (Reaper, PathBuf) {
    let log = dir.join("watch.log");
    let watcher = Reaper::spawn(
        Command::new(env!("CARGO_BIN_EXE_aptc"))
            .args(["watch", "--interval", "1", "--as", "ada@example.com"])
            .args(args)
            .args(target.args())
            .current_dir(cwd)
            .env_remove("APTC_LOG"),
        &log,
        &dir.join("watch.err"),
    );
    (watcher, log)
}

#[cfg(unix)]
#[test]
fn watch_fix_repairs_a_deleted_instance_and_stops_cleanly_on_sigterm() {
    if !helm_found("watch_fix_repairs_a_deleted_instance_and_stops_cleanly_on_sigterm") {
        return;
    }
    let (dir, policy) = quickstart_copy("watch");
    let target = Target::in_dir(&dir);
    let (state, out) = (&target.state, &target.out);
    let (mut watcher, log) = spawn_watch(&dir, root(), &target, &["--fix", "--yes", policy.to_str().unwrap()]);
    let shown = || std::fs::read_to_string(&log).unwrap_or_default();
    let hello = out.join("local/hello");
    // The instances' directories, without the hidden ones an apply stages its writes in.
    let instances = || -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&hello) else { return Vec::new() };
        let mut dirs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        dirs.retain(|d| !d.file_name().unwrap().to_string_lossy().starts_with('.'));
        dirs.sort();
        dirs
    };
    // The revision is recorded, not only the fourth directory there: deleting one while the apply
    // still writes races with the write.
    assert!(
        wait_for(15, || instances().len() == 4 && shown().contains("revision 1:")),
        "the first revision renders all four instances: {}",
        shown()
    );

    let victim = instances().remove(0);
    std::fs::remove_dir_all(&victim).unwrap();
    assert!(
        wait_for(15, || victim.join("instance.json").exists() && shown().contains("revision 2:")),
        "the deleted instance is rendered again: {}",
        shown()
    );

    let status = watcher.terminate().unwrap_or_else(|| panic!("aptc watch did not stop on SIGTERM: {}", shown()));
    let text = shown();
    assert_eq!(status.code(), Some(130), "interrupted: {text}");
    assert!(text.contains("drift: ") && text.contains("missing from the target"), "{text}");
    assert!(text.contains("(drift: missing from the target)"), "the repair is planned as such: {text}");
    assert!(text.contains("aptc watch stopped"), "{text}");

    let history = aptc(&["history", "--state", state.to_str().unwrap()]);
    assert!(history.status.success(), "{history:?}");
    // Its drift checks are kept in the store, the last one as watch's.
    let store = aptc_runtime::store::FileStore::open_read(state).unwrap().unwrap();
    use aptc_runtime::store::Store as _;
    let last = store.last_drift().unwrap().expect("watch keeps its drift checks");
    assert_eq!(last.cause, aptc_runtime::store::DriftCause::Reconcile);
    assert_eq!(last.user.as_deref(), Some("ada@example.com"));
}

/// Given no paths, `watch` follows the policy of the current directory's `aptc.toml`: a file
/// created after it started joins the policy.
#[cfg(unix)]
#[test]
fn watch_without_paths_sees_files_created_after_it_started() {
    if !helm_found("watch_without_paths_sees_files_created_after_it_started") {
        return;
    }
    let (dir, policy) = quickstart_copy("watch-root");
    let (mut watcher, log) = spawn_watch(&dir, &policy, &Target::in_dir(&dir), &[]);
    let shown = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(wait_for(15, || shown().contains("(3 policy files)")), "the policy's three files: {}", shown());
    std::fs::write(policy.join("more.apt"), "/// Created while aptc watches.\nnamespace hello\n").unwrap();
    assert!(
        wait_for(15, || shown().contains("policy changed:") && shown().contains("more.apt")),
        "the new file is seen: {}",
        shown()
    );
    let status = watcher.terminate().unwrap_or_else(|| panic!("aptc watch did not stop on SIGTERM: {}", shown()));
    assert_eq!(status.code(), Some(130), "{}", shown());
}

#[cfg(unix)]
#[test]
fn a_deploy_killed_midway_is_recorded_and_the_next_one_finishes_it() {
    use std::os::unix::fs::PermissionsExt;
    if !helm_found("a_deploy_killed_midway_is_recorded_and_the_next_one_finishes_it") {
        return;
    }
    let real = aptc_runtime::helm::Helm::locate(std::env::var_os("APTC_HELM").map(PathBuf::from).as_deref()).unwrap();
    let dir = scratch("deploy-killed");
    // The real helm, slowed down so that the kill lands while the second instance renders.
    let slow = dir.join("slow-helm");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\ncase \"$1\" in template) sleep 3;; esac\nexec '{}' \"$@\"\n", real.path.display()),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (state, out) = (dir.join("state.db"), dir.join("out"));
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        all.extend(
            ["--as", "ada@example.com", "--yes", "--parallel", "1", "--helm", slow.to_str().unwrap()].map(String::from),
        );
        all.extend(deploy_args(&state, &out).map(String::from));
        all
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(args(&["deploy", "examples/quickstart"]))
        .current_dir(root())
        .env_remove("APTC_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rendered = || {
        std::fs::read_dir(out.join("local")).map_or(0, |d| {
            d.flatten()
                .flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten())
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
    };
    // One at a time: a chart (3 s), then its manifests (at once), then the other two.
    assert!(wait_for(60, || rendered() >= 2), "the first two instances were never rendered");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    child.kill().unwrap(); // SIGKILL: no chance to clean up or record anything
    child.wait().unwrap();
    assert_eq!(rendered(), 2, "killed while the second chart instance rendered");

    let history = aptc(&["history", "--state", state.to_str().unwrap()]);
    assert!(stdout(&history).contains("not finished (aptc was killed or crashed"), "{history:?}");

    let again: Vec<String> = args(&["deploy", "examples/quickstart"]);
    let resumed = aptc(&again.iter().map(String::as_str).collect::<Vec<_>>());
    let shown = stdout(&resumed);
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(shown.contains("revision 1 (") && shown.contains("stopped before it finished"), "{shown}");
    assert!(shown.contains("recorded what it did: 2 created, 0 updated, 0 deleted, 2 failed"), "{shown}");
    assert!(shown.contains("2 to create, 0 to update, 0 to delete; 2 unchanged"), "{shown}");
    assert!(shown.contains("revision 2: 2 created"), "{shown}");
    assert_eq!(rendered(), 4);
    let leftovers: Vec<_> = std::fs::read_dir(out.join("local"))
        .unwrap()
        .flatten()
        .flat_map(|ns| std::fs::read_dir(ns.path()).unwrap().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "what the killed write left is cleaned up: {leftovers:?}");
    let last = aptc(&again.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(stdout(&last).contains("no changes: 4 instances up to date since revision 2"), "{last:?}");
    let history = aptc(&["history", "--state", state.to_str().unwrap()]);
    let lines = stdout(&history);
    assert!(lines.contains("2 created, 0 updated, 0 deleted, 2 failed") && !lines.contains("not finished"), "{lines}");
}

/// A policy whose chart gets a secret from the environment and one from a file.
fn secret_policy(dir: &Path, variable: &str) {
    std::fs::create_dir_all(dir.join("chart/templates")).unwrap();
    std::fs::write(dir.join("chart/Chart.yaml"), "apiVersion: v2\nname: vault\nversion: 0.1.0\n").unwrap();
    std::fs::write(
        dir.join("chart/templates/secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}\nstringData:\n  password: {{ .Values.password | quote }}\n  key: {{ .Values.tls.key | quote }}\n",
    )
    .unwrap();
    std::fs::write(dir.join("tls.key"), "file-secret-4f1c\n").unwrap();
    std::fs::write(
        dir.join("system.apt"),
        format!(
            r#"namespace system

cluster local {{
    context "kind-kind"
    namespace "vault"
}}

user "ada@example.com"

service vault {{
    component store chart "./chart" {{
        values {{
            password = secret_env("{variable}")
            tls = {{ key = secret_file("tls.key") }}
            replicas = 1
        }}
    }}
}}

contract vault {{
    context all {{
        use vault
    }}
}}

rule everything_local {{
    place on local
}}

claim ada_vault {{
    user "ada@example.com"
    contract vault
}}
"#
        ),
    )
    .unwrap();
}

#[test]
fn secrets_are_never_shown_by_plan_diff_deploy_or_history() {
    const SECRET: &str = "env-secret-93b7";
    let dir = scratch("secrets");
    let (old, new) = (dir.join("old"), dir.join("new"));
    secret_policy(&old, "APTC_TEST_SECRET");
    secret_policy(&new, "APTC_TEST_SECRET_ROTATED");
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_aptc"))
            .args(args)
            .current_dir(root())
            .env_remove("APTC_LOG")
            .env("APTC_TEST_SECRET", SECRET)
            .env("APTC_TEST_SECRET_ROTATED", SECRET)
            .output()
            .expect("running aptc");
        let shown = format!("{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
        assert!(!shown.contains(SECRET) && !shown.contains("file-secret-4f1c"), "a secret was shown: {shown}");
        (output, shown)
    };
    let policy = old.to_str().unwrap();
    let (tree, shown) = run(&["plan", policy]);
    assert!(tree.status.success(), "{shown}");
    assert!(shown.contains("password=\"***\"") && shown.contains("tls={\"key\":\"***\"}"), "{shown}");
    for format in ["json", "yaml"] {
        let (output, shown) = run(&["plan", "--format", format, policy]);
        assert!(output.status.success() && shown.contains("***") && !shown.contains("$secret"), "{shown}");
    }
    let (diff, shown) = run(&["diff", policy, new.to_str().unwrap()]);
    assert!(diff.status.success(), "{shown}");
    // Both sides are `***`: the diff says what changed instead of `"***" → "***"`.
    assert!(shown.contains("values.password: secret source changed"), "{shown}");

    if !helm_found("secrets_are_never_shown_by_plan_diff_deploy_or_history") {
        return;
    }
    let target = Target::in_dir(&dir);
    let (state, out) = (&target.state, &target.out);
    let (deploy, shown) = run(&[&["deploy", "--yes", "--as", "ada@example.com", policy], &target.args()[..]].concat());
    assert!(deploy.status.success(), "{shown}");
    let rendered = out.join("local/vault");
    for entry in std::fs::read_dir(&rendered).unwrap() {
        let instance = entry.unwrap().path();
        for file in ["manifest.yaml", "instance.json"] {
            let text = std::fs::read_to_string(instance.join(file)).unwrap();
            assert!(text.contains("***") && !text.contains(SECRET) && !text.contains("file-secret"), "{text}");
        }
    }
    let (history, shown) = run(&["history", "show", "1", "--format", "json", "--state", state.to_str().unwrap()]);
    assert!(history.status.success() && shown.contains("***"), "{shown}");
    // The same references with the same values: no changes; a rotated value is an update.
    let (again, shown) = run(&[&["deploy", "--yes", "--as", "ada@example.com", policy], &target.args()[..]].concat());
    assert!(again.status.success() && shown.contains("no changes"), "{shown}");
    let rotated = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args([&["deploy", "--dry-run", "--as", "ada@example.com", policy], &target.args()[..]].concat())
        .current_dir(root())
        .env_remove("APTC_LOG")
        .env("APTC_TEST_SECRET", "rotated-value")
        .output()
        .unwrap();
    assert!(stdout(&rotated).contains("secrets changed"), "{rotated:?}");
}

/// Logs that go to a file or a pipe carry no ANSI colour codes (`aptc watch … 2>log` wrote
/// `^[[33m WARN` before).
#[test]
fn logs_off_a_terminal_have_no_colour_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["plan", "examples/quickstart"])
        .current_dir(root())
        .env("APTC_LOG", "debug")
        .output()
        .expect("running aptc");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("DEBUG") || log.contains("INFO") || log.contains("WARN"), "no log line to check:\n{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

/// A policy with errors is a finding for every command that reads one (exit 1, as `aptc check`
/// and `aptc test` say it), not a usage error (2).
#[test]
fn every_command_exits_1_on_a_policy_with_errors() {
    let dir = scratch("exit-codes");
    std::fs::write(dir.join("bad.apt"), THREE_ERRORS).unwrap();
    let bad = dir.join("bad.apt");
    let bad = bad.to_str().unwrap();
    let out = dir.join("out.aptir");
    for args in [
        vec!["check", bad],
        vec!["plan", bad],
        vec!["explain", "x", bad],
        vec!["graph", bad],
        vec!["build", bad, "-o", out.to_str().unwrap()],
        vec!["diff", "examples/quickstart", bad],
    ] {
        let run = aptc(&args);
        assert_eq!(run.status.code(), Some(1), "aptc {args:?}: {run:?}");
        let shown = format!("{}{}", stdout(&run), String::from_utf8_lossy(&run.stderr));
        assert!(shown.contains("componet"), "aptc {args:?} shows the error: {run:?}");
    }
}

/// A shell completion script generated by aptc, loaded in a real bash, registers `aptc`; every
/// other shell gets a script; man pages come out as roff that `man` renders.
#[test]
fn completions_load_in_bash_and_man_pages_render() {
    let dir = scratch("completions");
    let bash = aptc(&["completions", "bash"]);
    assert!(bash.status.success(), "{bash:?}");
    let script = stdout(&bash);
    assert!(script.contains("explain") && script.contains("--deny-warnings"), "{script}");
    let file = dir.join("aptc.bash");
    std::fs::write(&file, &script).unwrap();
    let loaded = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &format!("source '{}' && complete -p aptc", file.display())])
        .output()
        .expect("running bash");
    assert!(loaded.status.success(), "{loaded:?}");
    assert!(stdout(&loaded).starts_with("complete ") && stdout(&loaded).trim_end().ends_with(" aptc"), "{loaded:?}");
    for shell in ["zsh", "fish", "powershell"] {
        let out = aptc(&["completions", shell]);
        assert!(out.status.success() && stdout(&out).contains("deny-warnings"), "{shell}: {out:?}");
    }

    let man_dir = dir.join("man");
    let out = aptc(&["man", "--out", man_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    for page in ["aptc.1", "aptc-check.1", "aptc-explain.1", "aptc-history-show.1", "aptc-completions.1"] {
        let roff = std::fs::read_to_string(man_dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(roff.lines().any(|line| line.starts_with(".TH ")), "{page} has no .TH header:\n{roff}");
    }
    assert!(!man_dir.join("aptc-__post-render.1").exists(), "a hidden command got a page");
    // `man -l` renders a page file; only where man is installed (Debian's is).
    let rendered = Command::new("man")
        .arg("-l")
        .arg(man_dir.join("aptc-check.1"))
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C")
        .output();
    if let Ok(rendered) = rendered {
        assert!(rendered.status.success(), "{rendered:?}");
        let page = stdout(&rendered);
        assert!(page.contains("NAME") && page.contains("aptc-check") && page.contains("deny-warnings"), "{page}");
    }
}

/// `--version` says which commit and which formats (IR, state store) this aptc was built with.
#[test]
fn version_names_the_commit_the_ir_and_the_store_schema() {
    let out = aptc(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_string(), |o| stdout(&o).trim().to_string());
    assert!(text.starts_with(&format!("aptc {} (commit {commit})\n", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains(&format!("IR version {}\n", aptc_core::ir::IR_VERSION)), "{text}");
    assert!(text.contains(&format!("store schema {}\n", aptc_runtime::store::SCHEMA)), "{text}");
    let short = aptc(&["-V"]);
    assert_eq!(stdout(&short).lines().count(), 1, "{short:?}");
}

/// Validates `json` against the schema `docs/schema/NAME`, failing with every error.
fn assert_valid(name: &str, json: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/schema").join(name)).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} does not compile: {e}"));
    let errors: Vec<String> = validator.iter_errors(json).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{json:#}");
}

fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {output:?}"))
}

#[test]
fn explain_json_has_the_outcome_and_the_decision_chain() {
    let out = aptc(&["explain", "--format", "json", "carol_dev", "examples/twitter-analytics"]);
    assert!(out.status.success(), "{out:?}");
    let explained = json_of(&out);
    assert_valid("explain.schema.json", &explained);
    assert_eq!(explained["format_version"], 1);
    assert!(explained["instance"].is_null());
    let claim = &explained["claims"][0];
    assert_eq!(claim["claim"], "social.carol_dev");
    assert_eq!(claim["status"], "rejected");
    let rule = claim["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["step"] == "rule" && d["fired"] == true)
        .expect("the rule that fired");
    assert_eq!(rule["rule"], "system.no_mobile_dev");
    assert!(rule["origin"]["file"].as_str().unwrap().ends_with("system/rules.apt"), "{rule}");

    // An instance: where it is, and the claims that need it.
    let plan = json_of(&aptc(&["plan", "--format", "json", "examples/twitter-analytics"]));
    let (key, _) = plan["instances"].as_object().unwrap().iter().next().unwrap();
    let out = aptc(&["explain", "--format", "json", key, "examples/twitter-analytics"]);
    assert!(out.status.success(), "{out:?}");
    let explained = json_of(&out);
    assert_valid("explain.schema.json", &explained);
    assert_eq!(explained["instance"]["key"], key.as_str());
    let needed_by = explained["instance"]["needed_by"].as_array().unwrap();
    assert_eq!(explained["claims"].as_array().unwrap().len(), needed_by.len(), "{explained:#}");
}

#[test]
fn plan_json_lists_each_claim_once_and_instances_name_claims_by_id() {
    for policy in ["examples/twitter-analytics", "examples/guestbook", "examples/quickstart"] {
        let out = aptc(&["plan", "--format", "json", policy]);
        assert!(out.status.success(), "{out:?}");
        let plan = json_of(&out);
        assert_valid("plan.schema.json", &plan);
        assert_eq!(plan["format_version"], aptc_core::resolve::FORMAT_VERSION);
        let claims = plan["claims"].as_object().unwrap();
        let sets = plan["label_sets"].as_array().unwrap();
        // Each claim once, with its labels there; no decision chain (`aptc explain` has them).
        for (id, claim) in claims {
            assert_eq!(claim["claim"], id.as_str());
            assert!(claim.get("decisions").is_none(), "{claim}");
            assert_eq!(claim["labels"].is_object(), claim["status"] == "resolved", "{claim}");
        }
        let mut uses = 0;
        for instance in plan["instances"].as_object().unwrap().values() {
            for used in instance["claims"].as_array().unwrap() {
                uses += 1;
                let claim = &claims[used["claim"].as_str().unwrap()];
                assert_eq!(claim["status"], "resolved", "{used}");
                match used.get("labels") {
                    // Only a label set other than the claim's is written, once in the table.
                    Some(index) => assert_ne!(sets[index.as_u64().unwrap() as usize], claim["labels"], "{used}"),
                    None => assert!(used.as_object().unwrap().len() == 2, "{used}"),
                }
                if used["depth"] == 0 {
                    assert!(used.get("labels").is_none(), "depth 0 has the claim's labels: {used}");
                }
            }
        }
        assert!(uses > 0, "{policy}: no instance names a claim");
        let text = stdout(&out);
        let distinct: std::collections::BTreeSet<String> = sets.iter().map(|s| s.to_string()).collect();
        assert_eq!(distinct.len(), sets.len(), "each label set once: {text}");
    }
    // twitter-analytics reaches contracts through `uses`, whose labels differ from the claim's.
    let plan = json_of(&aptc(&["plan", "--format", "json", "examples/twitter-analytics"]));
    assert!(!plan["label_sets"].as_array().unwrap().is_empty(), "{plan:#}");
    let yaml = aptc(&["plan", "--format", "yaml", "examples/twitter-analytics"]);
    assert!(stdout(&yaml).starts_with("format_version: 2\n"), "{}", stdout(&yaml));
}

#[test]
fn diff_json_lists_the_change_and_keeps_the_exit_code() {
    let dir = scratch("diff-json");
    copy_tree(&root().join("examples/twitter-analytics"), &dir);
    let file = dir.join("social/twitter_stats.apt");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("set labels.batch_seconds = 300", "set labels.batch_seconds = 600")).unwrap();
    let out = aptc(&["diff", "--format", "json", "--exit-code", "examples/twitter-analytics", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let change = json_of(&out);
    assert_valid("diff.schema.json", &change);
    assert_eq!(change["format_version"], 1);
    assert_eq!(change["added"].as_array().unwrap().len(), 0);
    let changed = change["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{change:#}");
    let field = &changed[0]["fields"][0];
    assert_eq!(field["field"], "values.spark.batchDuration");
    assert_eq!((field["before"].as_str(), field["after"].as_str()), (Some("300"), Some("600")));
    assert_eq!(field["secret_source_changed"], false);

    let same = aptc(&["diff", "--format", "json", "--exit-code", "examples/quickstart", "examples/quickstart"]);
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    assert_valid("diff.schema.json", &json_of(&same));

    // A secret read from another variable: both sides are `***`, and the output says so.
    let (old, new) = (dir.join("secret-old"), dir.join("secret-new"));
    secret_policy(&old, "APTC_TEST_SECRET");
    secret_policy(&new, "APTC_TEST_SECRET_ROTATED");
    let out = aptc(&["diff", "--format", "json", old.to_str().unwrap(), new.to_str().unwrap()]);
    let change = json_of(&out);
    assert_valid("diff.schema.json", &change);
    let fields = change["changed"][0]["fields"].as_array().unwrap();
    let password = fields.iter().find(|f| f["field"] == "values.password").expect("the password changed");
    assert_eq!(password["secret_source_changed"], true);
    assert_eq!(password["before"], "\"***\"");
}

/// Counts read as English: `1 claim`, `1 cluster namespace` (not `1 cluster namespaces`).
#[test]
fn plan_summary_counts_in_the_singular_and_the_plural() {
    let dir = scratch("plurals");
    secret_policy(&dir, "APTC_TEST_SECRET");
    let out = aptc(&["plan", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let summary = stdout(&out).lines().last().unwrap().to_string();
    assert!(summary.starts_with("1 claim: 1 resolved, 0 rejected, 0 failed;"), "{summary}");
    assert!(summary.ends_with(" in 1 cluster namespace"), "{summary}");
    let out = aptc(&["plan", "examples/twitter-analytics"]);
    let summary = stdout(&out).lines().last().unwrap().to_string();
    assert!(summary.starts_with("4 claims:") && summary.ends_with(" cluster namespaces"), "{summary}");
}

/// Issue #17: a claim that starts failing keeps what it had; removing it is a decision, and a plan
/// deleting more than half of what is deployed needs `--allow-mass-delete`.
#[test]
fn a_failing_claim_keeps_its_instances_and_a_mass_delete_is_refused() {
    let (_, policy, target) = configmap_policy("deploy-kept");
    let out = &target.out;
    let run = |args: &[&str]| target.run_as("ada@example.com", args);
    let deploy = || run(&["deploy", "--yes", policy.to_str().unwrap()]);
    assert!(deploy().status.success());
    let rendered = || std::fs::read_dir(out.join("local/demo")).unwrap().count();
    assert_eq!(rendered(), 3);

    // The claim's context reads a label nothing sets: a fault of the policy, not a decision.
    make_ada_site_fail(&policy);
    let failing = deploy();
    let shown = stdout(&failing);
    assert_eq!(failing.status.code(), Some(1), "{failing:?}");
    assert_eq!(shown.matches("= kept").count(), 3, "{shown}");
    assert!(shown.contains("(claim failed: web.ada_site: "), "{shown}");
    assert!(shown.contains("0 to delete; 0 unchanged, 3 kept"), "{shown}");
    assert_eq!(rendered(), 3, "nothing is deleted: {shown}");
    let plan = aptc(&["plan", policy.to_str().unwrap()]);
    assert_eq!(plan.status.code(), Some(1), "{plan:?}");

    // Removing the claim is a decision, but it deletes everything deployed: refused unless meant.
    std::fs::write(policy.join("web.apt"), MANIFESTS_WEB).unwrap();
    let web = std::fs::read_to_string(policy.join("web.apt")).unwrap();
    let claim = &web[web.find("claim ada_site").unwrap()..];
    std::fs::write(policy.join("web.apt"), web.replace(claim, "")).unwrap();
    let refused = deploy();
    let shown = stdout(&refused);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        shown.contains("deletes 3 of the 3 deployed instances") && shown.contains("--allow-mass-delete"),
        "{shown}"
    );
    assert!(shown.contains("claim web.ada_site removed"), "{shown}");
    assert_eq!(rendered(), 3);
    let allowed = run(&["deploy", "--yes", "--allow-mass-delete", policy.to_str().unwrap()]);
    assert!(allowed.status.success(), "{allowed:?}");
    let shown = stdout(&allowed);
    assert!(shown.contains("- delete") && shown.contains("(claim web.ada_site removed)"), "{shown}");
    assert!(shown.contains("0 created, 0 updated, 3 deleted"), "{shown}");
}

// ---- Machine-readable reports, progress off a terminal, exit codes (issues #18 and #10) ----

/// Writes [`TESTED_POLICY`] at `path`, with the chart it names beside it.
fn write_tested_policy(path: &Path) {
    std::fs::write(path, TESTED_POLICY).unwrap();
    let chart = path.parent().unwrap().join("charts/app");
    std::fs::create_dir_all(&chart).unwrap();
    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: app\nversion: 0.1.0\n").unwrap();
}

/// A policy with one test that holds and one whose two expectations do not (its chart is
/// `./charts/app`: [`write_tested_policy`]).
const TESTED_POLICY: &str = r#"namespace system

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

test resolves {
    expect claim alice_dev resolved
}

test wrong {
    expect instance web.app for alice_dev {
        values { replicas = 3 }
    }
    expect claim alice_dev rejected
}
"#;

/// Issue #18.2: `aptc test --format json` lists each test with each expectation, its outcome and
/// what resolution produced (valid against its schema); `--format junit` is JUnit XML with a
/// test case per test, a failure per expectation that does not hold, and a policy with errors as
/// an error.
#[test]
fn test_json_and_junit_report_each_test_with_what_it_got() {
    let dir = scratch("test-formats");
    std::fs::create_dir_all(dir.join("good")).unwrap();
    write_tested_policy(&dir.join("good/policy.apt"));
    let good = dir.join("good");
    let out = aptc(&["test", "--format", "json", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json = json_of(&out);
    assert_valid("test.schema.json", &json);
    assert_eq!(
        (json["passed"].as_u64(), json["failed"].as_u64(), json["broken"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    let tests = &json["policies"][0]["tests"];
    assert_eq!(tests[0]["test"], "system.resolves");
    assert_eq!(tests[0]["outcome"], "passed");
    let held = &tests[0]["expectations"][0];
    assert_eq!(held["outcome"], "passed");
    assert_eq!(held["expectation"], "expect claim system.alice_dev resolved");
    assert!(held["actual"].as_str().unwrap().starts_with("resolved (contract `system.web`"), "{held}");
    assert!(held["message"].is_null());
    let wrong = &tests[1];
    assert_eq!(wrong["outcome"], "failed");
    let [instance, rejected] = wrong["expectations"].as_array().unwrap().as_slice() else { panic!("{wrong}") };
    assert_eq!(instance["outcome"], "failed");
    assert!(instance["actual"].as_str().unwrap().contains("values.replicas 1"), "{instance}");
    assert!(instance["message"].as_str().unwrap().contains("values.replicas: expected 3, got 1"), "{instance}");
    assert!(rejected["actual"].as_str().unwrap().starts_with("resolved"), "{rejected}");
    assert_eq!(rejected["origin"]["line"], 42);

    // JUnit: a suite per policy; the broken one is an error, not a silent pass.
    std::fs::create_dir_all(dir.join("all/good")).unwrap();
    std::fs::create_dir_all(dir.join("all/broken")).unwrap();
    write_tested_policy(&dir.join("all/good/policy.apt"));
    std::fs::write(
        dir.join("all/broken/policy.apt"),
        "namespace system\n\ntest broken {\n    expect claim nobody resolved\n}\n",
    )
    .unwrap();
    let out = aptc(&["test", "--format", "junit", dir.join("all").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let xml = stdout(&out);
    let suites = junit_elements(&xml);
    let find = |name: &str, attr: &str, value: &str| {
        suites.iter().find(|(n, attrs)| n == name && attrs.iter().any(|(k, v)| k == attr && v == value)).cloned()
    };
    let attr = |element: &(String, Vec<(String, String)>), key: &str| {
        element.1.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let root_element = suites.first().expect("a root element");
    assert_eq!(root_element.0, "testsuites", "{xml}");
    assert_eq!(
        (attr(root_element, "tests"), attr(root_element, "failures"), attr(root_element, "errors")),
        ("3".into(), "1".into(), "1".into()),
        "{xml}"
    );
    let wrong = find("testcase", "name", "system.wrong").expect(&xml);
    assert_eq!(attr(&wrong, "line"), "38", "{xml}");
    let failures: Vec<_> = suites.iter().filter(|(n, _)| n == "failure").collect();
    assert_eq!(failures.len(), 2, "{xml}");
    assert!(attr(failures[0], "message").contains("values.replicas: expected 3, got 1"), "{xml}");
    assert!(find("testcase", "name", "system.resolves").is_some(), "{xml}");
    let error = suites.iter().find(|(n, _)| n == "error").expect(&xml);
    assert!(attr(error, "message").contains("its tests did not run"), "{xml}");
    assert!(xml.contains("got: resolved (contract `system.web`"), "{xml}");
    // The whole document, with the scratch directory (it names the process) made stable.
    insta::assert_snapshot!("test_junit", xml.replace(dir.to_str().unwrap(), "[DIR]"));
}

/// Every element of an XML document, in document order, with its attributes (unescaped); fails
/// on XML that does not parse.
fn junit_elements(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
    use quick_xml::XmlVersion;
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut elements = Vec::new();
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("not XML ({e}): {xml}")) {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().into_inner().to_string();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        (
                            a.key.into_inner().to_string(),
                            a.normalized_value(XmlVersion::Implicit1_0).unwrap().into_owned(),
                        )
                    })
                    .collect();
                elements.push((name, attrs));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    elements
}

/// Issue #18.2: `deploy --format json` (with and without `--dry-run`) and `rollback --format json`
/// print the plan's actions with their kinds and reasons and, once applied, each one's result and
/// timing, valid against docs/schema/deploy.schema.json; the lines for people go to stderr.
#[test]
fn deploy_and_rollback_json_list_the_actions_their_reasons_and_results() {
    if !helm_found("deploy_and_rollback_json_list_the_actions_their_reasons_and_results") {
        return;
    }
    let dir = scratch("deploy-json");
    let target = Target::in_dir(&dir);
    let state = &target.state;
    let run = |args: &[&str]| target.run_as("ada@example.com", &[args, &["--format", "json"]].concat());
    let kinds = |json: &serde_json::Value| -> Vec<String> {
        json["actions"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap().to_string()).collect()
    };

    let dry = run(&["deploy", "--dry-run", "examples/quickstart"]);
    assert!(dry.status.success(), "{dry:?}");
    let json = json_of(&dry);
    assert_valid("deploy.schema.json", &json);
    assert_eq!(
        (json["command"].as_str(), json["status"].as_str(), json["dry_run"].as_bool()),
        (Some("deploy"), Some("dry_run"), Some(true))
    );
    assert_eq!(kinds(&json), ["create"; 4]);
    for action in json["actions"].as_array().unwrap() {
        assert_eq!(action["reason"], "new", "{action}");
        assert!(action["result"].is_null(), "{action}");
        assert!(action["instance"]["name"].as_str().unwrap().starts_with("hello-"), "{action}");
    }
    assert!(json.get("instances").is_none() && json.get("claims").is_none(), "the plan, not the desired state");
    assert!(String::from_utf8_lossy(&dry.stderr).contains("4 to create"), "people's lines on stderr: {dry:?}");
    assert!(!state.exists(), "a dry run records nothing");

    let first = run(&["deploy", "--yes", "examples/quickstart"]);
    assert!(first.status.success(), "{first:?}");
    let json = json_of(&first);
    assert_valid("deploy.schema.json", &json);
    assert_eq!((json["status"].as_str(), json["revision"].as_u64()), (Some("applied"), Some(1)));
    assert!(json["duration_ms"].is_u64(), "{json}");
    for action in json["actions"].as_array().unwrap() {
        let result = &action["result"];
        assert_eq!(result["outcome"], "succeeded", "{action}");
        assert!(result["started_ms"].is_u64() && result["duration_ms"].is_u64(), "{action}");
    }
    assert!(String::from_utf8_lossy(&first.stderr).contains("revision 1: 4 created"), "{first:?}");

    // Production gets three replicas: one update, three unchanged.
    let changed = dir.join("quickstart");
    copy_tree(&root().join("examples/quickstart"), &changed);
    let file = changed.join("hello.apt");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("set labels.replicas = 2", "set labels.replicas = 3")).unwrap();
    let second = run(&["deploy", "--yes", changed.to_str().unwrap()]);
    assert!(second.status.success(), "{second:?}");
    let json = json_of(&second);
    assert_valid("deploy.schema.json", &json);
    assert_eq!(kinds(&json), ["update", "update", "unchanged", "unchanged"], "{json}");
    assert_eq!(json["actions"][0]["reason"], "values.replicaCount", "{json}");
    assert_eq!(json["actions"][0]["result"]["outcome"], "succeeded");
    assert!(json["actions"][2]["result"].is_null());

    // Rolling back to revision 1 plans the update back, and applies it.
    let dry = run(&["rollback", "1", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    let json = json_of(&dry);
    assert_valid("deploy.schema.json", &json);
    assert_eq!(
        (json["command"].as_str(), json["status"].as_str(), json["previous"].as_u64()),
        (Some("rollback"), Some("dry_run"), Some(2))
    );
    assert_eq!(kinds(&json), ["update", "update", "unchanged", "unchanged"], "{json}");
    assert!(String::from_utf8_lossy(&dry.stderr).contains("rolling back to revision 1"), "{dry:?}");
    let back = run(&["rollback", "1", "--yes"]);
    assert!(back.status.success(), "{back:?}");
    let json = json_of(&back);
    assert_valid("deploy.schema.json", &json);
    assert_eq!((json["status"].as_str(), json["revision"].as_u64()), (Some("applied"), Some(3)));
    assert_eq!(json["actions"][0]["result"]["outcome"], "succeeded", "{json}");
}

/// The real helm, slowed down by `seconds` for each `helm template`, as an executable script in
/// `dir`.
fn slow_helm(dir: &Path, seconds: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = aptc_runtime::helm::Helm::locate(std::env::var_os("APTC_HELM").map(PathBuf::from).as_deref()).unwrap();
    let slow = dir.join("slow-helm");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\ncase \"$1\" in template) sleep {seconds};; esac\nexec '{}' \"$@\"\n", real.path.display()),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    slow
}

/// Issue #18.3: off a terminal, each action's result line reaches stderr as the action ends (read
/// here while the deploy still runs), not all at the end; SIGINT then stops the deploy cleanly
/// with exit code 130, and the lines of what it did stay.
#[cfg(unix)]
#[test]
fn a_deploy_off_a_terminal_prints_each_action_as_it_ends_and_sigint_exits_130() {
    use std::io::BufRead;
    if !helm_found("a_deploy_off_a_terminal_prints_each_action_as_it_ends_and_sigint_exits_130") {
        return;
    }
    let dir = scratch("deploy-progress");
    let slow = slow_helm(&dir, 3);
    let (state, out) = (dir.join("state.db"), dir.join("out"));
    let child = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["deploy", "examples/quickstart", "--as", "ada@example.com", "--yes", "--parallel", "1"])
        .args(["--helm", slow.to_str().unwrap()])
        .args(deploy_args(&state, &out))
        .current_dir(root())
        .env_remove("APTC_LOG")
        .env("APTC_TARGET", "render")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaper(child);
    let stderr = child.0.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // One at a time: the first chart takes 3 s, its manifests follow at once, then the next chart.
    let mut seen = Vec::new();
    while seen.iter().filter(|l: &&String| l.contains("✓ created")).count() < 2 {
        let line = received
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no second result line ({e}); stderr so far: {seen:#?}"));
        seen.push(line);
    }
    assert!(child.0.try_wait().unwrap().is_none(), "the lines came while the deploy ran: {seen:#?}");
    assert!(seen[0].starts_with("  ✓ created hello-web-"), "{seen:#?}");
    assert!(seen[1].starts_with("  ✓ created hello-config-"), "{seen:#?}");

    let pid = i32::try_from(child.0.id()).unwrap();
    // SAFETY: a signal to the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    assert!(wait_for(30, || child.0.try_wait().unwrap().is_some()), "aptc deploy did not stop on SIGINT");
    let status = child.0.wait().unwrap();
    reader.join().unwrap();
    seen.extend(received.try_iter());
    let mut shown = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut shown).unwrap();
    assert_eq!(status.code(), Some(130), "{seen:#?}\n{shown}");
    assert!(seen.iter().any(|l| l.starts_with("interrupted: no new instance starts")), "{seen:#?}");
    assert!(shown.contains("interrupted: ") && shown.contains("not started"), "{shown}");
    assert!(shown.contains("  ✓ created hello-web-"), "stdout has the results in plan order too: {shown}");
}

/// Issue #10.5: exit codes mean the same for every command: a policy with errors is 1, a path
/// that does not exist is 2 (I/O), and every command's `--help` lists its codes.
#[test]
fn every_command_documents_and_keeps_its_exit_codes() {
    let dir = scratch("exit-codes-all");
    let bad = dir.join("bad.apt");
    std::fs::write(&bad, THREE_ERRORS).unwrap();
    let (bad, missing) = (bad.to_str().unwrap(), dir.join("no/such/path"));
    let missing = missing.to_str().unwrap();
    let (state, out, ir) = (dir.join("state.db"), dir.join("out"), dir.join("out.aptir"));
    let (state, out, ir) = (state.to_str().unwrap(), out.to_str().unwrap(), ir.to_str().unwrap());
    let with = |args: &[&str], path: &str| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push(path.to_string());
        all
    };
    let policy_commands: Vec<Vec<&str>> = vec![
        vec!["check"],
        vec!["fmt", "--check"],
        vec!["build", "-o", ir],
        vec!["plan"],
        vec!["explain", "alice"],
        vec!["diff", "examples/quickstart"],
        vec!["graph"],
        vec!["test"],
        vec!["test", "--format", "json"],
        vec!["deploy", "--dry-run", "--state", state, "--out", out],
    ];
    for args in &policy_commands {
        for (path, code, what) in [(bad, 1, "a policy with errors"), (missing, 2, "a path that does not exist")] {
            let argv = with(args, path);
            let run = aptc(&argv.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(run.status.code(), Some(code), "aptc {argv:?} on {what}: {run:?}");
        }
    }
    assert!(!std::path::Path::new(state).exists(), "nothing was recorded");
    let watch = aptc(&["watch", "--state", state, "--out", out, missing]);
    assert_eq!(watch.status.code(), Some(2), "watch of a path that does not exist ends at once: {watch:?}");
    assert!(String::from_utf8_lossy(&watch.stderr).contains("no/such/path: no such file or directory"), "{watch:?}");
    let rollback = aptc(&["rollback", "1", "--dry-run", "--state", missing]);
    assert_eq!(rollback.status.code(), Some(2), "{rollback:?}");

    let top = aptc(&["--help"]);
    let top = stdout(&top).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(top.contains("Exit codes") && top.contains("130 interrupted"), "{top}");
    for command in [
        "check",
        "fmt",
        "lsp",
        "build",
        "plan",
        "explain",
        "diff",
        "graph",
        "test",
        "deploy",
        "history",
        "rollback",
        "watch",
        "ui",
        "completions",
        "man",
    ] {
        let help = aptc(&[command, "--help"]);
        assert!(help.status.success(), "{help:?}");
        let text = stdout(&help);
        let codes = text.split("Exit codes: ").nth(1).unwrap_or_else(|| panic!("aptc {command} --help: {text}"));
        let codes = codes.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(codes.contains("2 usage"), "aptc {command} --help: {codes}");
    }
}

/// Issue #10.5: `aptc watch` stopped by SIGINT exits 130 (interrupted), as deploy does; a policy
/// with errors at start is reported and watched, not a reason to stop.
#[cfg(unix)]
#[test]
fn watch_exits_130_when_interrupted() {
    let dir = scratch("watch-sigint");
    let policy = dir.join("policy");
    std::fs::create_dir_all(&policy).unwrap();
    std::fs::write(policy.join("bad.apt"), THREE_ERRORS).unwrap();
    let (state, out, log) = (dir.join("state.db"), dir.join("out"), dir.join("watch.log"));
    let mut watcher = Reaper::spawn(
        Command::new(env!("CARGO_BIN_EXE_aptc"))
            .args(["watch", "--interval", "1", "--as", "ada@example.com"])
            .args(deploy_args(&state, &out))
            .arg(&policy)
            .current_dir(root())
            .env_remove("APTC_LOG")
            .env("APTC_TARGET", "render"),
        &log,
        &dir.join("watch.err"),
    );
    let shown = || std::fs::read_to_string(&log).unwrap_or_default();
    let errors = || std::fs::read_to_string(dir.join("watch.err")).unwrap_or_default();
    assert!(wait_for(20, || shown().contains("watching ")), "aptc watch did not start: {} {}", shown(), errors());
    assert!(wait_for(20, || errors().contains("componet")), "the policy's errors are shown: {}", errors());
    assert!(watcher.0.try_wait().unwrap().is_none(), "a policy with errors is watched until fixed");
    let pid = i32::try_from(watcher.0.id()).unwrap();
    // SAFETY: a signal to the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    assert!(wait_for(20, || watcher.0.try_wait().unwrap().is_some()), "aptc watch did not stop on SIGINT");
    let status = watcher.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{} {}", shown(), errors());
    assert!(shown().contains("aptc watch stopped"), "{}", shown());
}

/// Issue #18.2: the JSON report lists the instances a failed claim keeps, with the claim's
/// failure as the reason, and says the deploy failed (exit 1, as the text output).
#[test]
fn deploy_json_lists_what_a_failed_claim_keeps() {
    let (_, policy, target) = configmap_policy("deploy-json-kept");
    let run = |args: &[&str]| target.run_as("ada@example.com", &[args, &["--format", "json"]].concat());
    let first = run(&["deploy", "--yes", policy.to_str().unwrap()]);
    assert!(first.status.success(), "{first:?}");
    make_ada_site_fail(&policy);
    let failing = run(&["deploy", "--yes", policy.to_str().unwrap()]);
    assert_eq!(failing.status.code(), Some(1), "{failing:?}");
    let json = json_of(&failing);
    assert_valid("deploy.schema.json", &json);
    let actions = json["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3, "{json}");
    for action in actions {
        assert_eq!(action["kind"], "kept", "{action}");
        assert!(action["reason"].as_str().unwrap().starts_with("claim failed: web.ada_site: "), "{action}");
        assert!(action["result"].is_null(), "{action}");
    }
    assert_eq!(json["status"], "no_changes", "nothing to apply: {json}");
    let not_deployed = &json["not_deployed"][0];
    assert_eq!(
        (not_deployed["claim"].as_str(), not_deployed["status"].as_str()),
        (Some("web.ada_site"), Some("failed"))
    );
    assert!(String::from_utf8_lossy(&failing.stderr).contains("claim failed"), "{failing:?}");
}

// The revision store (issue #17: damage, concurrent readers, kept instances, the policy root) and
// strict inputs.

/// The real helm, found as `aptc deploy` finds it.
fn real_helm() -> PathBuf {
    aptc_runtime::helm::Helm::locate(std::env::var_os("APTC_HELM").map(PathBuf::from).as_deref()).unwrap().path
}

/// Both output streams, for messages that go to either.
fn both(output: &Output) -> String {
    format!("{}{}", stdout(output), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn a_damaged_store_never_panics_and_says_how_to_recover() {
    if !helm_found("a_damaged_store_never_panics_and_says_how_to_recover") {
        return;
    }
    let dir = scratch("damaged-store");
    let target = Target::in_dir(&dir);
    let state = &target.state;
    let run = |args: &[&str]| target.run_as("ada@example.com", args);
    let first = run(&["deploy", "--yes", "examples/quickstart"]);
    assert!(first.status.success(), "{first:?}");
    let pristine = std::fs::read(state).unwrap();
    assert!(pristine.len() > 3 * 4096, "{} bytes", pristine.len());

    let span = pristine.len() - 4096;
    let mut damaged = None;
    let mut refused = 0;
    for i in 0..48 {
        // Deterministic offsets spread over the file past its header page.
        let offset = 4096 + (i * 7919 + 13 * i * i) % span;
        let mut bytes = pristine.clone();
        bytes[offset] ^= 0x5A;
        std::fs::write(state, &bytes).unwrap();
        let history = ["history", "--state", state.to_str().unwrap()];
        for (args, output) in [
            (&history[..], aptc(&history)),
            (&["deploy", "--dry-run", "examples/quickstart"][..], run(&["deploy", "--dry-run", "examples/quickstart"])),
        ] {
            let text = both(&output);
            assert!(
                !matches!(output.status.code(), Some(101) | Some(134) | None),
                "{args:?} with byte {offset} changed crashed: {output:?}"
            );
            assert!(!text.contains("panicked"), "{args:?} with byte {offset} changed: {text}");
            if !output.status.success() {
                assert!(
                    text.contains("state.db is damaged") && text.contains("aptc store repair --state"),
                    "{args:?} with byte {offset} changed fails without saying how to recover: {text}"
                );
                refused += 1;
                damaged = Some(bytes.clone());
            }
        }
    }
    assert!(refused > 0, "some of the changed bytes are in pages the store uses");

    // The last damaged file: `store check` says so, `store repair` keeps what can be read.
    std::fs::write(state, damaged.unwrap()).unwrap();
    let store = |command: &str| aptc(&["store", command, "--state", state.to_str().unwrap()]);
    let check = store("check");
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert!(stdout(&check).contains("is damaged:") && stdout(&check).contains("aptc store repair"), "{check:?}");
    let repair = store("repair");
    assert!(repair.status.success(), "{repair:?}");
    assert!(stdout(&repair).contains("the damaged file is kept as "), "{repair:?}");
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("state.db.damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let again = store("check");
    assert!(again.status.success(), "{again:?}");
    let history = aptc(&["history", "--state", state.to_str().unwrap()]);
    assert!(history.status.success(), "{history:?}");

    // An empty file is never taken for a new store.
    std::fs::write(state, "").unwrap();
    let empty = run(&["deploy", "--yes", "examples/quickstart"]);
    assert_eq!(empty.status.code(), Some(2), "{empty:?}");
    assert!(both(&empty).contains("is empty, so it is not a revision store"), "{empty:?}");
    assert_eq!(std::fs::metadata(state).unwrap().len(), 0);
    assert_eq!(store("check").status.code(), Some(1));
}

#[cfg(unix)]
#[test]
fn history_works_while_a_deploy_runs_and_shows_the_unfinished_revision() {
    use std::os::unix::fs::PermissionsExt;
    if !helm_found("history_works_while_a_deploy_runs_and_shows_the_unfinished_revision") {
        return;
    }
    let dir = scratch("history-during-deploy");
    // The real helm, slowed down so that the deploy is still running when history is asked.
    let slow = dir.join("slow-helm");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\ncase \"$1\" in template) sleep 3;; esac\nexec '{}' \"$@\"\n", real_helm().display()),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (state, out) = (dir.join("state.db"), dir.join("out"));
    let mut deploy = Reaper::spawn(
        Command::new(env!("CARGO_BIN_EXE_aptc"))
            .args(["deploy", "examples/quickstart", "--yes", "--parallel", "1", "--as", "ada@example.com"])
            .args(["--helm", slow.to_str().unwrap()])
            .args(deploy_args(&state, &out))
            .current_dir(root())
            .env_remove("APTC_LOG"),
        &dir.join("deploy.log"),
        &dir.join("deploy.err"),
    );
    let rendered = || {
        std::fs::read_dir(out.join("local/hello"))
            .map_or(0, |d| d.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count())
    };
    assert!(wait_for(60, || rendered() >= 1), "the deploy never rendered its first instance");

    let history = aptc(&["history", "--state", state.to_str().unwrap()]);
    assert!(history.status.success(), "{history:?}");
    assert!(stdout(&history).contains("1  ") && stdout(&history).contains("not finished"), "{history:?}");
    let show = aptc(&["history", "show", "1", "--format", "json", "--state", state.to_str().unwrap()]);
    assert!(show.status.success(), "{show:?}");
    let record: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(record["finished"], false, "{record}");
    assert_eq!(record["number"], 1);
    let actions = record["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 4, "every planned action, as reported so far: {record}");
    assert!(actions.iter().any(|a| a["outcome"]["status"] == "succeeded"), "{record}");
    assert!(
        actions.iter().any(|a| a["outcome"]["reason"].as_str().is_some_and(|r| r.starts_with("not reported yet"))),
        "{record}"
    );
    assert!(record["desired_state"]["instances"].as_object().is_some_and(|i| i.len() >= 4), "{record}");
    let text = aptc(&["history", "show", "1", "--state", state.to_str().unwrap()]);
    assert!(stdout(&text).contains("status  not finished"), "{text:?}");
    assert!(deploy.0.try_wait().unwrap().is_none(), "the deploy was still running all along");

    assert!(wait_for(60, || deploy.0.try_wait().unwrap().is_some()), "the deploy never ended");
    assert!(deploy.0.wait().unwrap().success());
    let done = aptc(&["history", "show", "1", "--format", "json", "--state", state.to_str().unwrap()]);
    let record: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(record["finished"], true, "{record}");
}

#[test]
fn a_revision_records_the_instances_failed_claims_keep() {
    let (_, policy, target) = configmap_policy("revision-kept");
    let state = &target.state;
    let deploy = || target.run_as("ada@example.com", &["deploy", "--yes", policy.to_str().unwrap()]);
    assert!(deploy().status.success());
    // The claim fails (a fault of web's policy): its three instances are kept, and revision 2
    // says so.
    make_ada_site_fail(&policy);
    let failing = deploy();
    assert_eq!(failing.status.code(), Some(1), "{failing:?}");
    assert!(stdout(&failing).contains("revision 2"), "{failing:?}");

    let json = aptc(&["history", "show", "2", "--format", "json", "--state", state.to_str().unwrap()]);
    assert!(json.status.success(), "{json:?}");
    let record: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let kept = record["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 3, "{record}");
    for instance in kept {
        assert!(instance["why"].as_str().unwrap().starts_with("claim failed: web.ada_site: "), "{record}");
        assert!(instance["key"].as_str().unwrap().starts_with("local/demo/"), "{record}");
        assert_eq!(instance["place"], "local/demo");
        assert!(record["applied"].get(instance["key"].as_str().unwrap()).is_some(), "still applied: {record}");
    }
    let text = stdout(&aptc(&["history", "show", "2", "--state", state.to_str().unwrap()]));
    assert!(text.contains("kept    3 instances of failed claims"), "{text}");
    assert_eq!(text.matches("  = kept    site-").count(), 3, "{text}");
    let first: serde_json::Value = serde_json::from_slice(
        &aptc(&["history", "show", "1", "--format", "json", "--state", state.to_str().unwrap()]).stdout,
    )
    .unwrap();
    assert_eq!(first["kept"], serde_json::json!([]), "nothing kept when every claim resolves");
}

/// `aptc` run from `dir`, with no store or output named by the environment.
fn aptc_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(args)
        .current_dir(dir)
        .env_remove("APTC_LOG")
        .env_remove("APTC_STATE")
        .env("APTC_TARGET", "render")
        .output()
        .expect("running aptc")
}

#[test]
fn the_state_belongs_to_the_policy_not_to_the_current_directory() {
    if !helm_found("the_state_belongs_to_the_policy_not_to_the_current_directory") {
        return;
    }
    let dir = scratch("policy-root");
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (quickstart, guestbook) = (dir.join("policies/quickstart"), dir.join("policies/guestbook"));
    copy_tree(&root().join("examples/quickstart"), &quickstart);
    copy_tree(&root().join("examples/guestbook"), &guestbook);
    let (qs, gb) = (quickstart.to_str().unwrap(), guestbook.to_str().unwrap());

    // Both deployed from the same directory: each keeps its own state, beside it.
    let first = aptc_in(&a, &["deploy", "--yes", "--as", "ada@example.com", qs]);
    assert!(first.status.success(), "{first:?}");
    assert!(quickstart.join(".aptc/state.db").is_file() && quickstart.join(".aptc/rendered/local").is_dir());
    assert!(!a.join(".aptc").exists(), "nothing where aptc ran");
    let second = aptc_in(&a, &["deploy", "--yes", "--as", "olivia@example.com", gb]);
    assert!(second.status.success(), "{second:?}");
    let shown = stdout(&second);
    assert!(!shown.contains("- delete") && shown.contains("revision 1: "), "the quickstart is not deleted: {shown}");
    assert!(guestbook.join(".aptc/state.db").is_file());

    // From another directory, the same policy finds the same state; from inside it, history does.
    let again = aptc_in(&b, &["deploy", "--dry-run", "--as", "ada@example.com", qs]);
    assert!(stdout(&again).contains("no changes: 4 instances up to date since revision 1"), "{again:?}");
    let history = aptc_in(&quickstart, &["history"]);
    assert!(stdout(&history).contains("deploy ") && stdout(&history).lines().count() == 1, "{history:?}");

    // An aptc.toml marks the root: found from a subdirectory, and an empty one is valid.
    let mono = dir.join("mono");
    copy_tree(&root().join("examples/quickstart"), &mono.join("hello"));
    std::fs::remove_file(mono.join("hello/aptc.toml")).unwrap(); // the example's own: not a policy here
    std::fs::write(mono.join("aptc.toml"), "").unwrap();
    let marked = aptc_in(&a, &["deploy", "--yes", "--as", "ada@example.com", mono.join("hello").to_str().unwrap()]);
    assert!(marked.status.success(), "{marked:?}");
    assert!(mono.join(".aptc/state.db").is_file() && !mono.join("hello/.aptc").exists());
    let from_below = aptc_in(&mono.join("hello/charts"), &["history"]);
    assert_eq!(stdout(&from_below).lines().count(), 1, "{from_below:?}");

    // A policy tree moved with its state: the store says whose it is, and is refused unless given.
    let moved = dir.join("moved");
    copy_tree(&quickstart, &moved);
    copy_tree(&quickstart.join(".aptc"), &moved.join(".aptc"));
    let refused = aptc_in(&a, &["deploy", "--dry-run", "--as", "ada@example.com", moved.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains(&format!("belongs to the policy at {qs}")) && error.contains("--state"), "{error}");
    let state = moved.join(".aptc/state.db");
    let out = quickstart.join(".aptc/rendered");
    let told = aptc_in(
        &a,
        &[
            "deploy",
            "--dry-run",
            "--as",
            "ada@example.com",
            "--state",
            state.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            moved.to_str().unwrap(),
        ],
    );
    assert!(stdout(&told).contains("no changes: 4 instances up to date"), "{told:?}");
}

#[test]
fn check_says_when_there_is_no_policy_and_users_files_are_strict() {
    let dir = scratch("strict-inputs");
    // A directory without .apt files (only other files, and a hidden directory that holds one).
    let empty = dir.join("empty");
    std::fs::create_dir_all(empty.join(".hidden")).unwrap();
    std::fs::write(empty.join("README.md"), "not a policy").unwrap();
    std::fs::write(empty.join(".hidden/x.apt"), "namespace system\n").unwrap();
    let out = aptc(&["check", "--color", "never", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("no .apt files in ") && error.contains("there is no policy to check"), "{error}");
    assert!(!stdout(&out).contains("no problems"), "{out:?}");

    // Users files: a field of the wrong type says which and what it takes; `yes` is no bool; a
    // user needs a name.
    let policy = dir.join("policy");
    std::fs::create_dir_all(&policy).unwrap();
    std::fs::write(
        policy.join("system.apt"),
        "namespace system\n\nlabel on_call: bool = false\n\nusers from \"people.yaml\"\n\nrule r {\n    when user.labels.on_call\n    set labels.on_call = true\n}\n",
    )
    .unwrap();
    let check = |people: &str| {
        std::fs::write(policy.join("people.yaml"), people).unwrap();
        let out = aptc(&["check", "--color", "never", policy.to_str().unwrap()]);
        (out.status.code(), stdout(&out))
    };
    let (code, text) = check("- name: ada@example.com\n  groups: admins\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("invalid type: string \"admins\", expected `groups`: a list of group names"), "{text}");
    assert!(!text.contains("untagged enum") && !text.contains("expected sequence start"), "{text}");
    let (code, text) = check("- name: ada@example.com\n  team: [ops]\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("expected `team`: the name of a team, a string"), "{text}");
    let (code, text) = check("- name: ada@example.com\n  labels:\n    on_call: yes\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("gives label `on_call` a value that is not `bool`"), "{text}");
    let (code, text) = check("- name: \"\"\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("has an empty name"), "{text}");
    let (code, text) = check("- name: ada@example.com\n  team:\n  groups: [admins]\n  labels:\n    on_call: true\n");
    assert!(!text.contains("users file"), "{text}");
    assert_ne!(code, Some(2), "{text}");
}

/// Issue #10: claim text never reaches the terminal raw. A consumer's label holding escape
/// sequences (colour, a window title, a bell) is shown escaped wherever text output repeats it.
#[test]
fn claim_text_never_reaches_the_terminal_raw() {
    let dir = scratch("terminal-escapes");
    std::fs::copy(root().join("tests/fixtures/terminal_escapes.apt"), dir.join("system.apt")).unwrap();
    // The chart it names, `./c`.
    std::fs::create_dir_all(dir.join("c")).unwrap();
    std::fs::write(dir.join("c/Chart.yaml"), "apiVersion: v2\nname: c\nversion: 0.1.0\n").unwrap();
    let policy = dir.to_str().unwrap();
    for args in [vec!["plan", policy], vec!["explain", "system.c1", policy]] {
        let out = aptc(&args);
        let text = stdout(&out);
        assert!(
            !out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07),
            "{args:?} printed raw control bytes: {text:?}"
        );
        assert!(text.contains("bad note: \\u{1b}[31mred\\u{1b}]0;title\\u{7}"), "{args:?}: {text}");
    }
}

#[test]
fn given_no_paths_commands_take_the_files_of_the_aptc_toml() {
    let dir = scratch("aptc-toml-globs");
    std::fs::create_dir_all(dir.join("policy/web")).unwrap();
    std::fs::create_dir_all(dir.join("policy/drafts")).unwrap();
    std::fs::write(dir.join("policy/aptc.toml"), "exclude = [\"drafts\"]\n").unwrap();
    std::fs::write(
        dir.join("policy/web/app.apt"),
        "namespace app\n\nservice app {\n    component web chart \"./c\" {}\n}\n",
    )
    .unwrap();
    // The chart it names, `./c`.
    std::fs::create_dir_all(dir.join("policy/web/c")).unwrap();
    std::fs::write(dir.join("policy/web/c/Chart.yaml"), "apiVersion: v2\nname: c\nversion: 0.1.0\n").unwrap();
    std::fs::write(dir.join("policy/drafts/broken.apt"), "namespace broken\n\nservice {\n").unwrap();
    // From below the root: the whole policy, without the excluded draft.
    let checked = aptc_in(&dir.join("policy/web"), &["check"]);
    assert!(checked.status.success(), "{checked:?}");
    assert!(stdout(&checked).contains("checked 1 file"), "{checked:?}");
    // Paths given are taken as given.
    let given = aptc_in(&dir.join("policy"), &["check", "drafts"]);
    assert_eq!(given.status.code(), Some(1), "{given:?}");
    // A bad glob is an error of the file, exit 2.
    std::fs::write(dir.join("policy/aptc.toml"), "exclude = [\"../x\"]\n").unwrap();
    let bad = aptc_in(&dir.join("policy"), &["check"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("leaves the policy root"), "{bad:?}");
}

#[test]
fn verify_proves_the_assertions_of_every_example() {
    let out = aptc(&["verify", "--color", "never", "examples/"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("assert guestbook.developers_stay_private ... proved"), "{text}");
    assert!(text.contains("assert social.mobile_never_reaches_kafka ... proved"), "{text}");
    assert_eq!(text.lines().last(), Some("8 proved, 0 violated, 0 unknown"), "{text}");
}

/// The guestbook with one false assertion: production claims all share one guestbook.
fn guestbook_with_a_false_assertion(name: &str) -> PathBuf {
    let dir = scratch(name);
    copy_tree(&root().join("examples/guestbook"), &dir);
    let mut text = std::fs::read_to_string(dir.join("assertions.apt")).unwrap();
    text.push_str(
        "\nassert production_is_private {\n    when labels.env == \"prod\"\n\n    expect never shares with others\n}\n",
    );
    std::fs::write(dir.join("assertions.apt"), text).unwrap();
    dir
}

#[test]
fn verify_shows_a_counterexample_that_aptc_test_reproduces() {
    let dir = guestbook_with_a_false_assertion("verify-violated");
    let out = aptc(&["verify", "--color", "never", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    insta::assert_snapshot!("verify_violated", text.replace(dir.to_str().unwrap(), "[DIR]"));

    // The claim block, pasted into a test, resolves as the counterexample says: onto the shared
    // production instance.
    let start = text.find("      claim production_is_private_counterexample {").unwrap();
    let block: String =
        text[start..].lines().take_while(|l| !l.starts_with("    how")).map(|l| format!("{}\n", &l[6..])).collect();
    let test = format!(
        "namespace guestbook\n\ntest reproduces {{\n{block}\n    expect instance guestbook.frontend for production_is_private_counterexample {{\n        cluster production\n    }}\n    expect instances 6\n}}\n"
    );
    std::fs::write(dir.join("reproduce.apt"), test).unwrap();
    let out = aptc(&["test", "--color", "never", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("test guestbook.reproduces ... ok"), "{}", stdout(&out));

    let out = aptc(&["verify", "--format", "json", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/schema/verify.schema.json")).unwrap()).unwrap();
    assert!(jsonschema::is_valid(&schema, &json), "{json}");
    let last = &json["policies"][0]["assertions"][4];
    assert_eq!(last["verdict"], "violated");
    assert_eq!(last["counterexample"]["claim"]["consumer"]["user"], "gina@example.com");
    assert!(last["counterexample"]["claim_block"].as_str().unwrap().contains("labels { env = \"prod\" }"));
    assert_eq!(json["violated"], 1);
}

#[test]
fn verify_decides_past_the_enumeration_budget_and_aptc_test_reproduces_the_counterexample() {
    // 17,694,720 classes of possible claims: past the budget of 200,000, so the SAT-guided paths
    // (docs/verification.md §3) decide both assertions, where `aptc verify` used to say unknown.
    let dir = scratch("verify-past-budget");
    let case = root().join("tests/cases/diagnostics/APT0601_assertion_violated_past_the_budget/system.apt");
    std::fs::copy(case, dir.join("system.apt")).unwrap();
    let out = aptc(&["verify", "--color", "never", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("assert system.prod_on_production ... proved (17694720 classes of possible claims, in "),
        "{text}"
    );
    assert!(text.contains("assert system.always_resolves ... VIOLATED"), "{text}");
    assert_eq!(text.lines().last(), Some("1 proved, 1 violated, 0 unknown"), "{text}");

    // The counterexample, pasted into a test, is rejected as the verdict says.
    let start = text.find("      claim always_resolves_counterexample {").unwrap();
    let block: String =
        text[start..].lines().take_while(|l| !l.starts_with("    how")).map(|l| format!("{}\n", &l[6..])).collect();
    assert!(block.contains("labels { size = 11, tier = \"free\" }"), "{block}");
    let test = format!(
        "namespace system\n\ntest reproduces {{\n{block}\n    expect claim always_resolves_counterexample rejected matches \"at most 10 replicas\"\n}}\n"
    );
    std::fs::write(dir.join("reproduce.apt"), test).unwrap();
    let out = aptc(&["test", "--color", "never", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("test system.reproduces ... ok"), "{}", stdout(&out));

    // JSON: the solver's run is reported, and the output keeps to its schema.
    let out = aptc(&["verify", "--format", "json", dir.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/schema/verify.schema.json")).unwrap()).unwrap();
    assert!(jsonschema::is_valid(&schema, &json), "{json}");
    let proved = &json["policies"][0]["assertions"][0];
    assert_eq!(proved["verdict"], "proved");
    assert_eq!(proved["solver"]["classes"], 17_694_720);
    let paths = proved["solver"]["paths"].as_u64().unwrap();
    assert!(paths > 0 && paths < 200_000, "{proved}");
    assert_eq!(proved["claims"].as_u64(), Some(paths));
}

/// A policy whose one assertion the engine cannot decide.
const UNDECIDABLE: &str = r#"namespace system

label team: string = ""
team web
service app {
    component web chart "nginx" {
        version "1.0"
    }
}
contract app {
    context main {
        use app
    }
}
cluster main {}
rule web_only when lower(labels.team) == "web" {
    place on main
}

/// Undecidable by classes: `lower` maps infinitely many values onto "web".
assert always_placed {
    expect resolved
}
"#;

#[test]
fn verify_says_unknown_when_a_label_is_transformed_before_it_is_compared() {
    let dir = scratch("verify-unknown");
    std::fs::write(dir.join("policy.apt"), UNDECIDABLE).unwrap();
    let out = aptc(&["verify", "--color", "never", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("assert system.always_placed ... unknown"), "{text}");
    assert!(text.contains("label `system.team` is passed to a function whose result the policy compares"), "{text}");
    let out = aptc(&["verify", "--allow-unknown", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn verify_sarif_puts_each_violated_or_undecided_assertion_at_its_name() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/sarif-schema-2.1.0.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the SARIF schema compiles");
    let sarif = |args: &[&str]| {
        let out = aptc(args);
        let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&log).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "invalid SARIF for {args:?}: {errors:#?}");
        (out.status.code(), log["runs"][0]["results"].as_array().unwrap().clone())
    };

    // Proved everywhere: no result, exit 0.
    let (code, results) = sarif(&["verify", "--format", "sarif", "examples/"]);
    assert_eq!((code, results.len()), (Some(0), 0), "{results:#?}");

    // A violated assertion: an error at its name, the counterexample in the message, the broken
    // expectation as a related location.
    let dir = guestbook_with_a_false_assertion("verify-sarif");
    let (code, results) = sarif(&["verify", "--format", "sarif", dir.to_str().unwrap()]);
    assert_eq!((code, results.len()), (Some(1), 1), "{results:#?}");
    let result = &results[0];
    assert_eq!(result["ruleId"], "APT0601");
    assert_eq!(result["level"], "error");
    let text = std::fs::read_to_string(dir.join("assertions.apt")).unwrap();
    let line = text.lines().position(|l| l == "assert production_is_private {").unwrap() + 1;
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!((region["startLine"].as_u64(), region["startColumn"].as_u64()), (Some(line as u64), Some(8)));
    assert_eq!(region["endColumn"], 8 + "production_is_private".len());
    assert!(
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("assertions.apt")
    );
    let message = result["message"]["text"].as_str().unwrap();
    assert!(message.contains("`expect never shares with others` does not hold"), "{message}");
    assert!(message.contains("claim production_is_private_counterexample {"), "{message}");
    assert!(message.contains("labels { env = \"prod\" }"), "{message}");
    let related = &result["relatedLocations"][0]["physicalLocation"]["region"];
    assert_eq!(related["startLine"], line as u64 + 3);

    // Undecided: an error unless `--allow-unknown`, then a warning (exit codes as text).
    let dir = scratch("verify-sarif-unknown");
    std::fs::write(dir.join("policy.apt"), UNDECIDABLE).unwrap();
    let (code, results) = sarif(&["verify", "--format", "sarif", dir.to_str().unwrap()]);
    assert_eq!(
        (code, results[0]["ruleId"].as_str(), results[0]["level"].as_str()),
        (Some(1), Some("APT0602"), Some("error"))
    );
    assert!(results[0]["message"]["text"].as_str().unwrap().contains("label `system.team`"), "{results:#?}");
    let (code, results) = sarif(&["verify", "--format", "sarif", "--allow-unknown", dir.to_str().unwrap()]);
    assert_eq!((code, results[0]["level"].as_str()), (Some(0), Some("warning")));

    // A policy with errors: its errors are the results; exit 1.
    std::fs::write(dir.join("policy.apt"), THREE_ERRORS).unwrap();
    let (code, results) = sarif(&["verify", "--format", "sarif", dir.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(!results.is_empty() && results.iter().all(|r| r["level"] == "error"), "{results:#?}");

    // A built `.aptir` holds no sources to point into: a usage error.
    let ir = scratch("verify-sarif-ir").join("policy.aptir");
    let built = aptc(&["build", "examples/guestbook", "-o", ir.to_str().unwrap()]);
    assert!(built.status.success(), "{built:?}");
    let out = aptc(&["verify", "--format", "sarif", ir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not hold"), "{out:?}");
}

#[test]
fn diff_all_claims_finds_each_kind_of_changed_claim_with_an_example() {
    // One context of twitter-analytics changes: staging is allocated per user, not per team.
    let dir = scratch("diff-all-claims");
    copy_tree(&root().join("examples/twitter-analytics"), &dir);
    let file = dir.join("social/twitter_stats.apt");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("        allocate per user.team\n"));
    std::fs::write(&file, text.replace("        allocate per user.team\n", "        allocate per user.name\n"))
        .unwrap();
    let (old, new) = ("examples/twitter-analytics", dir.to_str().unwrap());

    let out = aptc(&["diff", "--all-claims", old, new]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let every = &text[text.find("every possible claim:").expect(&text)..];
    // Alice (web_dev, as Bob) no longer shares Bob's staging instance; Bob gets his own.
    assert!(every.contains("~ sharing of claims of social.twitter_stats"), "{every}");
    assert!(
        every.contains("before: `us_west/twitter-stage/social.twitter_stats/batch/web_dev` with user `bob@example.com`\n      after:  none"),
        "{every}"
    );
    assert!(every.contains("            user \"alice@example.com\"\n"), "{every}");
    assert!(every.contains("labels { env = \"stage\" }"), "{every}");
    assert!(every.ends_with("2 kinds of claims change (over 264 possible claims)\n"), "{every}");

    let out = aptc(&["diff", "--all-claims", "--exit-code", "--format", "json", old, new]);
    assert_eq!(out.status.code(), Some(1));
    let json = json_of(&out);
    assert_valid("diff.schema.json", &json);
    let all = &json["all_claims"];
    assert_eq!((all["verdict"].as_str(), all["claims"].as_u64()), (Some("changed"), Some(264)), "{all:#}");
    let kinds = all["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 2, "{all:#}");
    assert_eq!(kinds[0]["example"]["consumer"]["user"], "alice@example.com");
    assert!(kinds[0]["claim_block"].as_str().unwrap().starts_with("claim possible_claim {"));

    // Unchanged: a proof, exit 0 with --exit-code.
    let same = aptc(&["diff", "--all-claims", "--exit-code", old, old]);
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    assert!(
        stdout(&same)
            .contains("no possible claim changes outcome, placement or sharing (proved over 264 possible claims"),
        "{}",
        stdout(&same)
    );
    let quickstart = "examples/quickstart";
    let json = json_of(&aptc(&["diff", "--all-claims", "--format", "json", quickstart, quickstart]));
    assert_valid("diff.schema.json", &json);
    assert_eq!(json["all_claims"]["verdict"], "unchanged");

    // Undecidable: unknown with the reason, which `--exit-code` counts as an effect.
    let undecidable = scratch("diff-all-claims-unknown");
    std::fs::write(undecidable.join("policy.apt"), UNDECIDABLE).unwrap();
    let path = undecidable.to_str().unwrap();
    let out = aptc(&["diff", "--all-claims", path, path]);
    assert!(stdout(&out).contains("unknown: label `system.team` is passed to a function"), "{}", stdout(&out));
    assert_eq!(aptc(&["diff", "--all-claims", "--exit-code", path, path]).status.code(), Some(1));
    let json = json_of(&aptc(&["diff", "--all-claims", "--format", "json", path, path]));
    assert_valid("diff.schema.json", &json);
    assert_eq!(json["all_claims"]["verdict"], "unknown");
}

#[test]
fn diff_all_claims_past_the_budget_decides_by_paths() {
    // Over a million classes of claims (tests/cases/all_claims/06…, 07…): the SAT-guided paths
    // through both versions (docs/verification.md §6), no longer `unknown`.
    let changes = root().join("tests/cases/all_claims/06_past_the_budget_changes");
    let (old, new) = (changes.join("old"), changes.join("new"));
    let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());
    let out = aptc(&["diff", "--all-claims", "--exit-code", old, new]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let every = &text[text.find("every possible claim:").expect(&text)..];
    assert!(every.contains("~ outcome of claims of system.app (256 paths; by user `ann@example.com`)"), "{every}");
    assert!(every.contains("labels { size = 20, tier = \"free\" }"), "{every}");
    assert!(
        every.ends_with(
            "4 kinds of claims change (over 1658880 classes of claims, along 1218 paths through both versions)\n"
        ),
        "{every}"
    );
    let json = json_of(&aptc(&["diff", "--all-claims", "--format", "json", old, new]));
    assert_valid("diff.schema.json", &json);
    let all = &json["all_claims"];
    assert_eq!(all["verdict"], "changed", "{all:#}");
    assert_eq!((all["solver"]["classes"].as_u64(), all["solver"]["paths"].as_u64()), (Some(1_658_880), Some(1218)));

    let unchanged = root().join("tests/cases/all_claims/07_past_the_budget_unchanged");
    let (old, new) = (unchanged.join("old"), unchanged.join("new"));
    let out = aptc(&["diff", "--all-claims", "--exit-code", old.to_str().unwrap(), new.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("no possible claim changes outcome, placement or sharing (proved over 1290240 classes of claims, along 1026 paths through both versions"),
        "{}",
        stdout(&out)
    );
}

/// `--state kube://CONTEXT/NAMESPACE`: deploys, `history` and `rollback` keep and read their
/// revisions as ConfigMaps in a namespace of the cluster (the API-server double, over HTTP through
/// a kubeconfig), not in a file.
#[test]
fn history_and_rollback_work_on_a_store_in_the_cluster() {
    let dir = scratch("kube-state");
    let fake = aptc_kube_fake::FakeApi::new();
    fake.insert_namespace("team-state");
    let kubeconfig = dir.join("kubeconfig");
    fake.serve_to(&kubeconfig, "fake").expect("serving the fake API server");
    let policy = dir.join("policy");
    std::fs::create_dir_all(policy.join("k8s")).unwrap();
    let system = "namespace system\n\nteam web_team\nuser \"ada\" {\n    team web_team\n}\ncluster local {}\n\
                  rule everywhere {\n    place on local\n}\ngrant consumer on web\n";
    let web = "namespace web owned_by web_team\n\nservice config {\n    component map manifests \"k8s/*.yaml\"\n}\n\n\
               contract config {\n    context all {\n        use config\n    }\n}\n\n\
               claim a {\n    user \"ada\"\n    contract config\n}\n";
    let map = |value: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"${{instance.name}}\"\ndata:\n  k: {value}\n")
    };
    std::fs::write(policy.join("system.apt"), system).unwrap();
    std::fs::write(policy.join("web.apt"), web).unwrap();
    std::fs::write(policy.join("k8s/map.yaml"), map("one")).unwrap();
    let state = "kube://fake/team-state";
    let (out, policy_arg) = (dir.join("out"), policy.to_str().unwrap().to_string());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_aptc"))
            .args(args)
            .args(["--state", state])
            .current_dir(&dir)
            .env_remove("APTC_LOG")
            .env("KUBECONFIG", &kubeconfig)
            .env("APTC_USER", "ada")
            .output()
            .expect("running aptc")
    };
    let out_arg = out.to_str().unwrap();
    let first = run(&["deploy", "--yes", "--out", out_arg, &policy_arg]);
    assert!(first.status.success(), "{first:?}");
    assert!(stdout(&first).contains("revision 1: 1 created"), "{first:?}");
    std::fs::write(policy.join("k8s/map.yaml"), map("two")).unwrap();
    let second = run(&["deploy", "--yes", "--out", out_arg, &policy_arg]);
    assert!(stdout(&second).contains("revision 2: 0 created, 1 updated"), "{second:?}");
    assert!(!policy.join(".aptc/state.db").exists() && !dir.join(".aptc").exists(), "no state file");

    let back = run(&["rollback", "1", "--yes", "--out", out_arg]);
    assert!(back.status.success(), "{back:?}");
    assert!(stdout(&back).contains("revision 3: 0 created, 1 updated"), "{back:?}");

    let history = run(&["history"]);
    assert!(history.status.success(), "{history:?}");
    let lines: Vec<String> = stdout(&history).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].trim_start().starts_with("1  ") && lines[0].contains(" ada "), "{lines:?}");
    assert!(lines[2].contains("rollback to 1: 0 created, 1 updated"), "{lines:?}");
    let show = run(&["history", "show", "2"]);
    assert!(stdout(&show).starts_with("revision 2\n"), "{show:?}");
    let missing = run(&["history", "show", "9"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no revision 9 in kube://fake/team-state"),
        "{missing:?}"
    );
    fn texts(dir: &Path, into: &mut String) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                texts(&path, into);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                into.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut rendered = String::new();
    texts(&out, &mut rendered);
    assert!(rendered.contains("k: one") && !rendered.contains("k: two"), "rolled back to revision 1: {rendered}");
    for number in 1..=3 {
        let path = format!("/api/v1/namespaces/team-state/configmaps/aptc-revision-{number}");
        assert!(fake.object(&path).is_some(), "{path}");
    }

    let bad = aptc(&["history", "--state", "kube://fake"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("kube://CONTEXT/NAMESPACE"), "{bad:?}");
}

/// A deploy SIGKILLed mid-apply with its revisions in the cluster: `history` shows it unfinished,
/// and the next deploy takes over its lock at once (its process is gone from this machine),
/// records what it did and does the rest.
#[cfg(unix)]
#[test]
fn a_killed_deploy_with_its_store_in_the_cluster_is_recovered() {
    let dir = scratch("kube-state-killed");
    let fake = aptc_kube_fake::FakeApi::new();
    fake.insert_namespace("team-state");
    let kubeconfig = dir.join("kubeconfig");
    fake.serve_to(&kubeconfig, "fake").expect("serving the fake API server");
    let policy = dir.join("policy");
    std::fs::create_dir_all(policy.join("k8s")).unwrap();
    let system = "namespace system\n\nuser \"ada\" {}\ncluster local {}\nrule everywhere {\n    place on local\n}\n";
    let web = "namespace web\n\nservice config {\n    component map manifests \"k8s/*.yaml\"\n}\n\n\
               contract config {\n    context all {\n        use config\n    }\n}\n\n\
               claim a {\n    user \"ada\"\n    contract config\n}\n";
    std::fs::write(policy.join("system.apt"), system).unwrap();
    std::fs::write(policy.join("web.apt"), web).unwrap();
    std::fs::write(
        policy.join("k8s/map.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"${instance.name}\"\ndata:\n  k: v\n",
    )
    .unwrap();
    let command = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_aptc"));
        command
            .args(args)
            .args(["--state", "kube://fake/team-state"])
            .current_dir(&dir)
            .env_remove("APTC_LOG")
            .env("KUBECONFIG", &kubeconfig)
            .env("APTC_USER", "ada");
        command
    };
    let policy_arg = policy.to_str().unwrap();
    // The apply of the instance's objects never gets an answer: the deploy is stuck mid-action.
    fake.hold("PATCH", "/configmaps/");
    let child = command(&["deploy", "--yes", "--target", "cluster", policy_arg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reaper = Reaper(child);
    assert!(wait_for(30, || fake.requests().iter().any(|r| r.method == "PATCH")), "the apply started");
    // SAFETY: signalling the child this test started.
    assert_eq!(unsafe { libc::kill(reaper.0.id() as i32, libc::SIGKILL) }, 0);
    reaper.0.wait().unwrap();
    fake.come_back();

    let history = command(&["history"]).output().unwrap();
    assert!(stdout(&history).contains("not finished"), "{history:?}");
    let next = command(&["deploy", "--yes", "--target", "cluster", policy_arg]).output().unwrap();
    assert!(next.status.success(), "{next:?}");
    assert!(stdout(&next).contains("revision 2: 1 created"), "{next:?}");
    let history = command(&["history"]).output().unwrap();
    let lines: Vec<String> = stdout(&history).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("1 failed"), "the killed deploy, recorded: {lines:?}");
}
