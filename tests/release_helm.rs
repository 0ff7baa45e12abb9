//! Helm releases with the real Helm and the real `aptc` as its post-renderer: `helm template` with
//! aptc's post-renderer stamps every object of a chart (hooks too), a stamping failure says why,
//! and an upgrade against a cluster that cannot be reached fails at once, naming it.
//!
//! Helm comes from `tools/install-helm.sh`; without it the Helm tests say `SKIPPED` and check
//! nothing, except under CI (`CI` set), where they fail (as in tests/cli.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aptc_runtime::connection::Connection;
use aptc_runtime::helm::Helm;
use aptc_runtime::manifest::{ANNOTATION_KEY, LABEL_INSTANCE, LABEL_NAMESPACE, LABEL_REVISION, parse_stream};
use aptc_runtime::plan::Unit;
use aptc_runtime::release::Releases;
use aptc_runtime::retry::Backoff;

mod common;

/// A fresh scratch directory for a release test.
fn scratch(name: &str) -> PathBuf {
    common::scratch("release-tests", name)
}

/// Releases with the real Helm and this build's aptc, or `None` after saying why the test checks
/// nothing.
fn releases(test: &str) -> Option<(Helm, Releases)> {
    let explicit = std::env::var_os("APTC_HELM").map(PathBuf::from);
    match Helm::locate(explicit.as_deref()) {
        Ok(helm) => {
            let releases = Releases::new(helm.clone(), PathBuf::from(env!("CARGO_BIN_EXE_aptc"))).unwrap();
            Some((helm, releases))
        }
        Err(error) if std::env::var_os("CI").is_some() => panic!("{test}: CI installs helm first, yet: {error}"),
        Err(error) => {
            eprintln!("SKIPPED {test}: {error}");
            None
        }
    }
}

/// A chart made by `helm create` (a service account, a service, a deployment and a test hook).
fn created_chart(helm: &Helm, dir: &Path) -> PathBuf {
    let made = Command::new(&helm.path).arg("create").arg("demo").current_dir(dir).output().unwrap();
    assert!(made.status.success(), "{made:?}");
    dir.join("demo")
}

/// A chart unit of `chart_dir` (from JSON: fields added to `Unit` later keep their defaults).
fn unit(chart_dir: &Path) -> Unit {
    serde_json::from_value(serde_json::json!({
        "key": "local/default/team.web/dev/web",
        "name": "web-0123456789",
        "id": "0123456789",
        "source": {
            "type": "chart",
            "chart": "./demo",
            "repo": null,
            "version": null,
            "base_dir": chart_dir.parent().unwrap().display().to_string(),
        },
        "cluster": "system.local",
        "k8s_namespace": "apps",
        "namespace": "team",
        "service": "team.web",
        "contract": "team.web",
        "context": "dev",
        "component": "web",
        "claims": ["team.c"],
        "values": {},
        "discovery": {},
        "depends_on": [],
        "content": null,
    }))
    .unwrap()
}

#[test]
fn helm_template_with_the_post_renderer_stamps_every_object() {
    let Some((helm, releases)) = releases("helm_template_with_the_post_renderer_stamps_every_object") else { return };
    let dir = scratch("template");
    let unit = unit(&created_chart(&helm, &dir));
    let text = releases.template(&unit, 12, &serde_json::json!({ "replicaCount": 3 })).unwrap();
    let documents = parse_stream(&text).unwrap();
    let kinds: Vec<&str> = documents.iter().map(|d| d.value["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Service", "Deployment", "Pod"], "{text}");
    for document in &documents {
        let metadata = &document.value["metadata"];
        assert_eq!(metadata["labels"][LABEL_INSTANCE], "0123456789", "{text}");
        assert_eq!(metadata["labels"][LABEL_REVISION], "12", "{text}");
        assert_eq!(metadata["labels"][LABEL_NAMESPACE], "team", "{text}");
        assert_eq!(metadata["annotations"][ANNOTATION_KEY], "local/default/team.web/dev/web", "{text}");
        assert_eq!(metadata["labels"]["app.kubernetes.io/instance"], "web-0123456789", "the chart's labels stay");
    }
    assert_eq!(documents[2].value["spec"]["replicas"], 3, "the values reached helm");
    assert!(
        documents[2].value["spec"]["template"]["metadata"]["labels"].get(LABEL_REVISION).is_none(),
        "pod templates are not stamped"
    );
    assert_eq!(documents[3].value["metadata"]["annotations"]["helm.sh/hook"], "test", "hooks are stamped too");
}

#[test]
fn a_stamping_failure_says_why() {
    let Some((helm, releases)) = releases("a_stamping_failure_says_why") else { return };
    let dir = scratch("stamping");
    let chart = created_chart(&helm, &dir);
    std::fs::write(chart.join("templates/notes.yaml"), "just: data\n").unwrap();
    let error = releases.template(&unit(&chart), 1, &serde_json::json!({})).unwrap_err().to_string();
    assert!(error.contains("helm template of release web-0123456789 failed"), "{error}");
    assert!(error.contains("stamping aptc's labels failed: a document has no `kind`"), "{error}");
}

#[test]
fn an_upgrade_against_an_unreachable_cluster_fails_quickly_naming_it() {
    let Some((helm, releases)) = releases("an_upgrade_against_an_unreachable_cluster_fails_quickly_naming_it") else {
        return;
    };
    let dir = scratch("unreachable");
    let chart = created_chart(&helm, &dir);
    let kubeconfig = dir.join("kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: https://127.0.0.1:1\n\
contexts:\n- name: dead\n  context:\n    cluster: dead\n    user: u\ncurrent-context: dead\n\
users:\n- name: u\n  user:\n    token: x\n",
    )
    .unwrap();
    let releases = releases.with_backoff(Backoff::immediate(2)).with_timeout(Duration::from_secs(5));
    let connection = Connection {
        cluster: "system.dead".into(),
        kubeconfig: Some(kubeconfig.clone()),
        context: Some("dead".into()),
        origin: None,
    };
    let started = Instant::now();
    let error = releases.upgrade(&connection, &unit(&chart), 1, &serde_json::json!({})).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let expected = format!(
        "helm upgrade of release web-0123456789 (namespace apps) on system.dead (context dead in {}) failed: ",
        kubeconfig.display()
    );
    assert!(error.starts_with(&expected), "{error}");
    assert!(error.contains("connection refused"), "{error}");
    let status = releases.status(&connection, &unit(&chart)).unwrap_err().to_string();
    assert!(status.contains("helm status of release web-0123456789") && status.contains("system.dead"), "{status}");
}

#[test]
fn post_render_reads_stdin_and_writes_the_stamped_stream() {
    let dir = scratch("post-render");
    let error_file = dir.join("error");
    let run = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aptc"))
            .args(["__post-render", "--instance=abc", "--key=k/x", "--revision=2", "--namespace=team"])
            .arg(format!("--error-file={}", error_file.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let done = run("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n");
    assert!(done.status.success(), "{done:?}");
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(out.contains("aptc.dev/instance: abc") && out.contains("aptc.dev/key: k/x"), "{out}");
    assert!(!error_file.exists());
    let failed = run("- not an object\n");
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(std::fs::read_to_string(&error_file).unwrap().contains("not a Kubernetes object"));
}

/// The end-to-end suite's own Helm calls use flags the pinned Helm has (it once failed at its
/// first line against a real cluster because of `--all`, which Helm 4 dropped).
#[test]
fn the_end_to_end_suites_helm_flags_exist_in_the_pinned_helm() {
    let Ok(helm) = Helm::locate(None) else {
        eprintln!("SKIPPED: no helm (tools/install-helm.sh installs the pinned one)");
        return;
    };
    let out =
        std::process::Command::new(&helm.path).args(common::HELM_LIST_EVERY_RELEASE).arg("--help").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
