//! The render driver with the real Helm binary: examples/quickstart rendered into a directory, and
//! a chart that cannot be downloaded failing only its own instance (and its dependents).
//!
//! Helm comes from `tools/install-helm.sh` (CI runs it first); without it these tests say so and
//! pass without checking anything, except under CI (`CI` set), where a missing helm fails them.

#[path = "../../core/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use aptc_core::resolve::resolve;
use aptc_runtime::apply::{Outcome, Quiet, execute};
use aptc_runtime::driver::Driver;
use aptc_runtime::driver::INSTANCE_FILE;
use aptc_runtime::helm::Helm;
use aptc_runtime::manifest::{ANNOTATION_KEY, LABEL_INSTANCE, LABEL_NAMESPACE, LABEL_REVISION, parse_stream};
use aptc_runtime::plan::{Unit, plan, units};
use aptc_runtime::render::RenderDriver;
use aptc_runtime::source::Source;

/// Helm, or `None` after saying why the test checks nothing.
fn helm(test: &str) -> Option<Helm> {
    std::env::set_current_dir(common::root()).unwrap();
    match Helm::locate(std::env::var_os("APTC_HELM").as_deref().map(Path::new)) {
        Ok(helm) => Some(helm),
        Err(error) if std::env::var_os("CI").is_some() => panic!("{test}: CI installs helm first, yet: {error}"),
        Err(error) => {
            eprintln!("SKIPPED {test}: {error}");
            None
        }
    }
}

#[test]
fn quickstart_renders_with_real_helm_and_every_object_is_stamped() {
    let Some(helm) = helm("quickstart_renders_with_real_helm_and_every_object_is_stamped") else { return };
    let program = common::lower_path(Path::new("examples/quickstart"));
    let state = resolve(&program);
    let desired = units(&state, &aptc_runtime::secrets::Secrets::local());
    assert_eq!(desired.len(), 4, "ada's private greeter and the shared production one, each with its config");
    let out = tempfile::tempdir().unwrap();
    let driver = RenderDriver::new(out.path(), Ok(helm));
    let plan = plan(&BTreeMap::new(), &desired, None, &|_| false);
    let reports = execute(&plan, &driver, 1, 2, &Quiet, &aptc_runtime::cancel::Cancel::new());
    for (action, report) in plan.actions.iter().zip(&reports) {
        assert!(report.outcome.succeeded(), "{}: {:?}", action.unit.key, report.outcome);
    }
    for unit in desired.values().filter(|u| u.component == "config") {
        // The manifest template, rendered with the greeter's discovery and stamped.
        let dir = out.path().join("local").join(&unit.k8s_namespace).join(&unit.name);
        let documents =
            parse_stream(&std::fs::read_to_string(dir.join("manifests/01-greeter-config.yaml")).unwrap()).unwrap();
        let object = &documents[0].value;
        assert_eq!(object["metadata"]["name"], unit.name.as_str());
        assert_eq!(object["data"]["url"], unit.values["url"]);
        assert_eq!(object["metadata"]["labels"][LABEL_INSTANCE], unit.id.as_str());
    }
    for unit in desired.values().filter(|u| u.component == "web") {
        let dir = out.path().join("local").join(&unit.k8s_namespace).join(&unit.name);
        let text = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
        let documents = parse_stream(&text).unwrap();
        let kinds: Vec<&str> = documents.iter().map(|d| d.value["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Service", "Deployment"], "helm's order is kept");
        assert_eq!(documents[0].source.as_deref(), Some("hello/templates/service.yaml"));
        for document in &documents {
            let metadata = &document.value["metadata"];
            assert_eq!(metadata["name"], unit.name.as_str(), "the release is named after the instance");
            assert_eq!(metadata["labels"][LABEL_INSTANCE], unit.id.as_str());
            assert_eq!(metadata["labels"][LABEL_REVISION], "1");
            assert_eq!(metadata["labels"][LABEL_NAMESPACE], "hello");
            assert_eq!(metadata["annotations"][ANNOTATION_KEY], unit.key.as_str());
            assert_eq!(metadata["labels"]["app.kubernetes.io/managed-by"], "Helm", "the chart's own labels stay");
        }
        let replicas = &documents[1].value["spec"]["replicas"];
        assert_eq!(replicas, &unit.values["replicaCount"], "the instance's values reached the chart");
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(INSTANCE_FILE)).unwrap()).unwrap();
        assert_eq!(record["key"], unit.key.as_str());
        assert_eq!(record["claims"], serde_json::json!(unit.claims));
        assert_eq!(record["values"], unit.values);
        assert_eq!(record["discovery"], unit.discovery);
        assert!(driver.is_present(unit));
    }
}

#[test]
fn a_chart_that_cannot_be_downloaded_fails_only_its_instance_and_dependents() {
    let Some(helm) = helm("a_chart_that_cannot_be_downloaded_fails_only_its_instance_and_dependents") else { return };
    let program = common::lower_path(Path::new("examples/quickstart"));
    let mut desired = units(&resolve(&program), &aptc_runtime::secrets::Secrets::local());
    let local = desired.values().find(|u| u.component == "web").unwrap().clone();
    // A remote chart from a repository that refuses connections (nothing listens on port 9 here),
    // and an instance that depends on it.
    let mut remote = local.clone();
    remote.key = format!("{}-remote", local.key);
    remote.name = "remote-chart-0000000000".into();
    remote.source = Source::Chart {
        chart: "nothing".into(),
        repo: Some("http://127.0.0.1:9/charts".into()),
        version: Some("1.0.0".into()),
        base_dir: String::new(),
    };
    remote.content = None;
    let mut dependent = local.clone();
    dependent.key = format!("{}-dependent", local.key);
    dependent.name = "dependent-0000000000".into();
    dependent.depends_on = vec![remote.key.clone()];
    desired.insert(remote.key.clone(), remote.clone());
    desired.insert(dependent.key.clone(), dependent.clone());
    let out = tempfile::tempdir().unwrap();
    let driver = RenderDriver::new(out.path(), Ok(helm));
    let plan = plan(&BTreeMap::new(), &desired, None, &|_| false);
    let reports = execute(&plan, &driver, 1, 4, &Quiet, &aptc_runtime::cancel::Cancel::new());
    let outcome = |key: &str| {
        let i = plan.actions.iter().position(|a| a.unit.key == key).unwrap();
        reports[i].outcome.clone()
    };
    match outcome(&remote.key) {
        Outcome::Failed { error, .. } => {
            assert!(error.contains("helm template failed"), "{error}");
            assert!(error.contains("127.0.0.1:9"), "helm's own error is shown: {error}");
        }
        other => panic!("the remote chart should fail: {other:?}"),
    }
    assert!(matches!(outcome(&dependent.key), Outcome::Skipped { reason } if reason.contains("which failed")));
    for unit in desired.values().filter(|u| u.key != remote.key && u.key != dependent.key) {
        assert!(outcome(&unit.key).succeeded(), "{}: {:?}", unit.key, outcome(&unit.key));
    }
    assert!(!out.path().join("local/hello/remote-chart-0000000000").exists());
}

/// A policy directory holding a local chart `name` of one template, and the first instance of
/// the quickstart example set to render it.
fn local_chart_unit(name: &str, template: &str) -> (tempfile::TempDir, Unit) {
    let policy = tempfile::tempdir().unwrap();
    let chart = policy.path().join("chart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\n")).unwrap();
    std::fs::write(chart.join("templates").join(format!("{name}.yaml")), template).unwrap();
    let program = common::lower_path(Path::new("examples/quickstart"));
    let mut unit = units(&resolve(&program), &aptc_runtime::secrets::Secrets::local()).into_values().next().unwrap();
    unit.source = Source::Chart {
        chart: "./chart".into(),
        repo: None,
        version: None,
        base_dir: policy.path().to_string_lossy().into_owned(),
    };
    (policy, unit)
}

/// Renders `unit` alone with the real Helm: the output directory (removed when dropped) and the
/// unit's rendered directory in it.
fn render_alone(helm: Helm, unit: &Unit) -> (tempfile::TempDir, std::path::PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let driver = RenderDriver::new(out.path(), Ok(helm));
    let desired = BTreeMap::from([(unit.key.clone(), unit.clone())]);
    let plan = plan(&BTreeMap::new(), &desired, None, &|_| false);
    let reports = execute(&plan, &driver, 1, 1, &Quiet, &aptc_runtime::cancel::Cancel::new());
    assert!(reports[0].outcome.succeeded(), "{:?}", reports[0].outcome);
    let dir = out.path().join("local").join(&unit.k8s_namespace).join(&unit.name);
    (out, dir)
}

#[test]
fn a_rendered_chart_shows_secrets_as_stars_and_never_their_value() {
    let Some(helm) = helm("a_rendered_chart_shows_secrets_as_stars_and_never_their_value") else { return };
    let (policy, mut unit) = local_chart_unit(
        "secretive",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}\nstringData:\n  password: {{ .Values.auth.password | quote }}\n",
    );
    std::fs::write(policy.path().join("password.txt"), "s3cr3t-never-rendered\n").unwrap();
    unit.values = serde_json::json!({ "auth": { "password": { "$secret": { "file": "password.txt" } } } });
    let revealed = aptc_runtime::secrets::Secrets::local().reveal(&unit.values, policy.path()).unwrap();
    assert_eq!(revealed["auth"]["password"], "s3cr3t-never-rendered", "the secret is there to leak");
    let (_out, dir) = render_alone(helm, &unit);
    let manifest = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
    let documents = parse_stream(&manifest).unwrap();
    assert_eq!(documents[0].value["stringData"]["password"], "***", "{manifest}");
    let record = std::fs::read_to_string(dir.join(INSTANCE_FILE)).unwrap();
    assert!(record.contains("\"password\": \"***\""), "{record}");
    for file in [manifest, record] {
        assert!(!file.contains("s3cr3t"), "a secret was rendered: {file}");
    }
}

/// Values reach the chart exactly, whatever characters a consumer put in them: Helm reads its
/// values as YAML, which folds U+0085, U+2028 and U+2029 into line breaks and refuses DEL, the
/// other C1 controls and a byte-order mark; aptc escapes them ([`aptc_runtime::helm::values_input`]).
#[test]
fn hostile_values_reach_the_chart_exactly() {
    let Some(helm) = helm("hostile_values_reach_the_chart_exactly") else { return };
    let hostile = [
        "a\u{85}b",
        "line\u{2028}separator\u{2029}paragraph",
        "del\u{7f}c1\u{80}\u{9f}",
        "\u{feff}bom",
        "x\"\n  evil: \"pwned",
        "\n---\nkind: ClusterRoleBinding\n",
        "tab\tnul\u{0}esc\u{1b}[31m",
        "yes",
        "#not a comment & *anchor !!tag {a: [b]}",
        "ünïcødé ✓ 𝔘",
    ];
    let (_policy, mut unit) = local_chart_unit(
        "echo",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n{{- range $i, $v := .Values.list }}\n  k{{ $i }}: {{ $v | quote }}\n{{- end }}\n",
    );
    unit.values = serde_json::json!({ "list": hostile });
    let (_out, dir) = render_alone(helm, &unit);
    let documents = parse_stream(&std::fs::read_to_string(dir.join("manifest.yaml")).unwrap()).unwrap();
    assert_eq!(documents.len(), 1, "one object, whatever the values hold");
    let data = &documents[0].value["data"];
    for (i, value) in hostile.iter().enumerate() {
        assert_eq!(data[format!("k{i}")], *value, "value {i} reached the chart changed");
    }
    assert_eq!(data.as_object().unwrap().len(), hostile.len(), "no key was added: {data}");
}
