//! `aptc push` and `aptc controller` run as the real binary against the API-server double of
//! `aptc-kube-fake`, served over HTTP on loopback through a kubeconfig (as in `cluster.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aptc_kube_fake::{FakeApi, write_kubeconfig};
use serde_json::Value;

const BUNDLES: &str = "/apis/aptc.dev/v1alpha1/policybundles";

/// A fake API server on loopback and a kubeconfig in `dir` reaching it; with `crds`, the
/// controller's CRDs applied to it (as `aptc controller manifests | kubectl apply` would).
fn served(dir: &Path, crds: bool) -> (FakeApi, PathBuf) {
    let fake = FakeApi::new();
    let url = fake.serve().expect("serving the fake API server");
    let kubeconfig = dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, &url, "fake").unwrap();
    if crds {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let client = fake.client();
            let api: kube::Api<
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            > = kube::Api::all(client);
            for crd in aptc_controller::manifests::crds() {
                let name = crd["metadata"]["name"].as_str().unwrap().to_string();
                let params = kube::api::PatchParams::apply("test").force();
                api.patch(&name, &params, &kube::api::Patch::Apply(&crd)).await.unwrap();
            }
        });
    }
    fake.clear_requests();
    (fake, kubeconfig)
}

fn aptc(dir: &Path, kubeconfig: &Path, args: &[&str]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .current_dir(dir)
        .env_remove("APTC_LOG")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("running aptc");
    let shown = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output, shown)
}

fn quickstart(dir: &Path) -> PathBuf {
    let policy = dir.join("policy");
    common::copy_tree(&common::root().join("examples/quickstart"), &policy);
    policy
}

#[test]
fn push_applies_one_bundle_per_namespace_and_nothing_when_unchanged() {
    let dir = common::scratch("controller-tests", "push");
    let (fake, kubeconfig) = served(&dir, true);
    let policy = quickstart(&dir);
    let (output, shown) = aptc(&dir, &kubeconfig, &["push", policy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("policybundle/hello (namespace hello) created"), "{shown}");
    assert!(shown.contains("policybundle/system (namespace system) created"), "{shown}");
    assert!(shown.contains("2 bundles pushed, 0 not"), "{shown}");

    // Server-side apply, as aptc-push; the archive holds the namespace's files as they are on disk.
    let patches: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 2);
    assert!(patches.iter().all(|r| r.content_type == "application/apply-patch+yaml"));
    assert!(patches.iter().all(|r| r.params().contains(&"fieldManager=aptc-push")));
    let hello: Value = fake.object(&format!("{BUNDLES}/hello")).expect("the hello bundle");
    assert_eq!(hello["spec"]["namespace"], "hello");
    let unpacked = dir.join("unpacked");
    let files = aptc_controller::bundle::unpack(hello["spec"]["archive"].as_str().unwrap(), &unpacked).unwrap();
    assert!(files.contains(&"hello.apt".to_string()), "{files:?}");
    for file in &files {
        assert_eq!(std::fs::read(unpacked.join(file)).unwrap(), std::fs::read(policy.join(file)).unwrap(), "{file}");
    }

    // Unchanged: read, not applied again.
    fake.clear_requests();
    let (output, shown) = aptc(&dir, &kubeconfig, &["push", policy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("policybundle/hello (namespace hello) unchanged"), "{shown}");
    assert!(fake.paths_of("PATCH").is_empty(), "{:?}", fake.paths_of("PATCH"));

    // A change to one namespace's file updates that bundle only.
    let text = std::fs::read_to_string(policy.join("hello.apt")).unwrap();
    std::fs::write(policy.join("hello.apt"), format!("{text}\n// changed\n")).unwrap();
    let (_, shown) = aptc(&dir, &kubeconfig, &["push", policy.to_str().unwrap()]);
    assert!(shown.contains("policybundle/hello (namespace hello) updated"), "{shown}");
    assert!(shown.contains("policybundle/system (namespace system) unchanged"), "{shown}");
}

#[test]
fn a_refused_bundle_fails_only_itself() {
    let dir = common::scratch("controller-tests", "refused");
    let (fake, kubeconfig) = served(&dir, true);
    let policy = quickstart(&dir);
    fake.fail_next("PATCH", "policybundles/hello", 1, 403);
    let (output, shown) = aptc(&dir, &kubeconfig, &["push", policy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("policybundle/hello (namespace hello) not pushed: refused: forbidden: injected failure"),
        "{shown}"
    );
    assert!(shown.contains("policybundle/system (namespace system) created"), "{shown}");
    assert!(fake.object(&format!("{BUNDLES}/system")).is_some());
}

#[test]
fn push_without_the_controller_installed_says_to_install_it() {
    let dir = common::scratch("controller-tests", "not-installed");
    let (_fake, kubeconfig) = served(&dir, false);
    let policy = quickstart(&dir);
    let (output, shown) = aptc(&dir, &kubeconfig, &["push", policy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("install the controller first (`aptc controller manifests | kubectl apply -f -`)"),
        "{shown}"
    );
}

#[test]
fn a_policy_with_errors_is_not_pushed() {
    let dir = common::scratch("controller-tests", "invalid");
    let (fake, kubeconfig) = served(&dir, true);
    let policy = quickstart(&dir);
    std::fs::write(policy.join("broken.apt"), "namespace hello\ncontract broken { context x { use nothing } }\n")
        .unwrap();
    fake.clear_requests();
    let (output, shown) = aptc(&dir, &kubeconfig, &["push", policy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("broken.apt"), "the errors are shown: {shown}");
    assert!(shown.contains("nothing was pushed"), "{shown}");
    assert!(fake.requests().is_empty(), "no request was sent");
}

#[test]
fn push_with_an_unreachable_cluster_is_an_error() {
    let dir = common::scratch("controller-tests", "unreachable");
    let policy = quickstart(&dir);
    let kubeconfig = dir.join("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    write_kubeconfig(&kubeconfig, &format!("http://127.0.0.1:{port}"), "fake").unwrap();
    let (output, shown) = aptc(&dir, &kubeconfig, &["push", policy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{shown}");
    assert!(shown.contains("error: the cluster does not answer"), "{shown}");
}

/// The objects of a YAML stream, sorted, without `except` kinds.
fn objects(yaml: &str, except: &[&str]) -> Vec<Value> {
    let mut objects: Vec<Value> = aptc_runtime::manifest::parse_stream(yaml)
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .filter(|v| !except.contains(&v["kind"].as_str().unwrap_or_default()))
        .collect();
    objects.sort_by_key(|v| v.to_string());
    objects
}

/// The Helm chart under `deploy/` passes `helm lint` and renders exactly the objects
/// `aptc controller manifests` prints (but the Namespace, which `helm install --create-namespace`
/// makes), CRDs included; its `crds/` files are the generated CRDs.
#[test]
fn the_helm_chart_renders_what_controller_manifests_prints() {
    let explicit = std::env::var_os("APTC_HELM").map(PathBuf::from);
    let helm = match aptc_runtime::helm::Helm::locate(explicit.as_deref()) {
        Ok(helm) => helm,
        Err(error) if std::env::var_os("CI").is_some() => panic!("CI installs helm first, yet: {error}"),
        Err(error) => {
            eprintln!("SKIPPED the_helm_chart_renders_what_controller_manifests_prints: {error}");
            return;
        }
    };
    let chart = common::root().join("deploy/aptc-controller");
    let lint = Command::new(&helm.path).arg("lint").arg(&chart).arg("--strict").output().unwrap();
    assert!(
        lint.status.success(),
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    for (namespace, image, replicas) in
        [("aptc-system", "aptc:0.1.0", "2"), ("platform", "registry.example.com/aptc:1 #x", "3")]
    {
        let rendered = Command::new(&helm.path)
            .args(["template", "aptc"])
            .arg(&chart)
            .args(["--namespace", namespace, "--include-crds", "--set-string", &format!("image={image}")])
            .args(["--set", &format!("replicas={replicas}")])
            .output()
            .unwrap();
        assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
        let printed = Command::new(env!("CARGO_BIN_EXE_aptc"))
            .args(["controller", "manifests", "--namespace", namespace, "--image", image, "--replicas", replicas])
            .output()
            .unwrap();
        assert!(printed.status.success());
        assert_eq!(
            objects(&String::from_utf8(rendered.stdout).unwrap(), &[]),
            objects(&String::from_utf8(printed.stdout).unwrap(), &["Namespace"]),
            "namespace {namespace}"
        );
    }
    for crd in aptc_controller::manifests::crds() {
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        let file = std::fs::read_to_string(chart.join(format!("crds/{name}.yaml"))).unwrap();
        assert_eq!(objects(&file, &[]), vec![crd], "deploy/aptc-controller/crds/{name}.yaml is the generated CRD");
    }
}

/// A GET on loopback with a plain HTTP/1.1 request: the status line and the body.
fn get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `aptc controller run` against the double: it serves its probes and metrics, and SIGTERM stops
/// it cleanly (exit 130, as for every command a signal stops).
#[cfg(unix)]
#[test]
fn controller_run_serves_probes_and_stops_on_sigterm() {
    let dir = common::scratch("controller-tests", "run");
    let (_fake, kubeconfig) = served(&dir, true);
    let (probe, webhook) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["controller", "run", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--work-dir", dir.join("work").to_str().unwrap()])
        .args(["--probe-addr", &format!("127.0.0.1:{probe}"), "--webhook-addr", &format!("127.0.0.1:{webhook}")])
        .env_remove("APTC_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reaper = common::Reaper(child);
    assert!(common::wait_for(30, || get(probe, "/healthz").is_some_and(|(status, _)| status.ends_with("200 OK"))));
    let (status, metrics) = get(probe, "/metrics").unwrap();
    assert!(status.ends_with("200 OK"), "{status}");
    assert!(metrics.contains("# TYPE aptc_reconciles counter"), "{metrics}");
    assert!(metrics.contains("aptc_apply_failures_total 0"), "{metrics}");
    let pid = reaper.0.id() as i32;
    // SAFETY: signalling the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(common::wait_for(30, || reaper.0.try_wait().unwrap().is_some()), "it stopped");
    assert_eq!(reaper.0.try_wait().unwrap().and_then(|status| status.code()), Some(130));
}
