//! `aptc push` and `aptc controller` run as the real binary against the API-server double of
//! `aptc-kube-fake`, served over HTTP on loopback through a kubeconfig (as in `cluster.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aptc_kube_fake::{FakeApi, write_kubeconfig};
use serde_json::Value;

const BUNDLES: &str = "/apis/aptc.dev/v1alpha1/policybundles";
const WEBHOOK_CONFIGURATION: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/aptc-policybundles";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/aptc-system/leases/aptc-controller-leader";

/// A fake API server on loopback and a kubeconfig in `dir` reaching it; with `crds`, the
/// controller's CRDs applied to it (as `aptc controller manifests | kubectl apply` would).
fn served(dir: &Path, crds: bool) -> (FakeApi, PathBuf) {
    let fake = FakeApi::new();
    let kubeconfig = dir.join("kubeconfig");
    fake.serve_to(&kubeconfig, "fake").expect("serving the fake API server");
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
    for (namespace, image, replicas, secrets) in [
        ("aptc-system", "aptc:0.1.0", "2", &[][..]),
        ("platform", "registry.example.com/aptc:1 #x", "3", &["prod-kubeconfig", "fleet"][..]),
    ] {
        let mut helm_template = Command::new(&helm.path);
        helm_template
            .args(["template", "aptc"])
            .arg(&chart)
            .args(["--namespace", namespace, "--include-crds", "--set-string", &format!("image={image}")])
            .args(["--set", &format!("replicas={replicas}")]);
        for (i, secret) in secrets.iter().enumerate() {
            helm_template.args(["--set-string", &format!("secrets[{i}]={secret}")]);
        }
        let rendered = helm_template.output().unwrap();
        assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
        let mut manifests = Command::new(env!("CARGO_BIN_EXE_aptc"));
        manifests.args(["controller", "manifests", "--namespace", namespace, "--image", image, "--replicas", replicas]);
        for secret in secrets {
            manifests.args(["--secret", secret]);
        }
        let printed = manifests.output().unwrap();
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
    write!(stream, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n").ok()?;
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
        .args(["--work-dir", dir.join("work").to_str().unwrap(), "--namespace", "default"])
        .args(["--ui-addr", "none"])
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

// The loop, end to end: `aptc controller run` (the real binary) watching the double over HTTP,
// applying to it as its target cluster too (the policy's cluster `fake` is the kubeconfig's
// context), statuses read back from the objects the double holds.

const LOOP_SYSTEM: &str = r#"namespace system

team web_team
team data_team

user "ada" { team web_team }
user "eve" { team data_team }

grant consumer on web when user.team == "web_team"
grant consumer on data

cluster fake {
    context "fake"
    namespace "apps"
}

rule everywhere {
    place on fake
}
"#;

const LOOP_WEB: &str = r#"namespace web owned_by web_team

label env: "dev" | "prod" = "dev"
label note: string = "none"

rule no_prod when labels.env == "prod" {
    reject "prod is not served from here"
}

service site {
    component config manifests "k8s/*.yaml" {
        values { env = labels.env, note = labels.note }
    }
}

contract site {
    context all {
        allocate per labels.note
        use site
    }
}
"#;

const LOOP_DATA: &str = r#"namespace data owned_by data_team

label size: int = 1

service store {
    component config manifests "k8s/*.yaml" {
        values { size = labels.size }
    }
}

contract store {
    context all {
        allocate per user.name
        use store
    }
}
"#;

const LOOP_WEB_TEMPLATE: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${instance.name}\ndata:\n  env: \"${values.env}\"\n  note: \"${values.note}\"\n";
const LOOP_DATA_TEMPLATE: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${instance.name}\ndata:\n  size: \"${values.size}\"\n";

/// A label value that would break any YAML spliced by hand.
const HOSTILE: &str = "a \"quoted\" value\nkind: Secret\n---\napiVersion: v1\n# not a comment: {[";

/// The API server double with the controller's CRDs and the namespaces of the tests, a policy of
/// three teams in `policy/`, and a client to file claims as a consumer would (server-side apply,
/// as `kubectl apply --server-side`).
struct Loop {
    dir: PathBuf,
    fake: FakeApi,
    kubeconfig: PathBuf,
    runtime: tokio::runtime::Runtime,
}

/// A running `aptc controller run`, with its probe port.
struct Running {
    reaper: common::Reaper,
    probe: u16,
    /// The dashboard's port.
    ui: u16,
    errors: PathBuf,
}

impl Loop {
    fn new(name: &str) -> Loop {
        let dir = common::scratch("controller-tests", name);
        let (fake, kubeconfig) = served(&dir, true);
        for namespace in ["web", "data", "shop", "aptc-system"] {
            fake.insert_namespace(namespace);
        }
        let policy = dir.join("policy");
        for (path, text) in [
            ("system.apt", LOOP_SYSTEM),
            ("web/web.apt", LOOP_WEB),
            ("web/k8s/config.yaml", LOOP_WEB_TEMPLATE),
            ("data/data.apt", LOOP_DATA),
            ("data/k8s/config.yaml", LOOP_DATA_TEMPLATE),
        ] {
            std::fs::create_dir_all(policy.join(path).parent().unwrap()).unwrap();
            std::fs::write(policy.join(path), text).unwrap();
        }
        // The webhook's configuration as installed (the controller writes its CA bundle).
        let install = aptc_controller::manifests::Install {
            namespace: "aptc-system".into(),
            image: "aptc:test".into(),
            replicas: 2,
            secrets: vec![],
        };
        let webhook = aptc_controller::manifests::manifests(&install)
            .into_iter()
            .find(|m| m.object["kind"] == "ValidatingWebhookConfiguration")
            .unwrap();
        fake.insert(WEBHOOK_CONFIGURATION, webhook.object);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cluster = Loop { dir, fake, kubeconfig, runtime };
        let (output, shown) = aptc(&cluster.dir, &cluster.kubeconfig, &["push", policy.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0), "{shown}");
        cluster
    }

    /// Starts a controller named `identity` keeping its state in `work-IDENTITY`.
    fn controller(&self, identity: &str) -> Running {
        let (probe, ui) = (free_port(), free_port());
        let errors = self.dir.join(format!("{identity}.log"));
        let reaper = common::Reaper::spawn(
            Command::new(env!("CARGO_BIN_EXE_aptc"))
                .current_dir(&self.dir)
                .env("KUBECONFIG", &self.kubeconfig)
                .env("APTC_LOG", "info")
                .args(["controller", "run", "--kubeconfig", self.kubeconfig.to_str().unwrap()])
                .args(["--work-dir", self.dir.join(format!("work-{identity}")).to_str().unwrap()])
                .args(["--identity", identity, "--namespace", "aptc-system", "--lease-duration", "3"])
                .args(["--probe-addr", &format!("127.0.0.1:{probe}")])
                .args(["--webhook-addr", &format!("127.0.0.1:{}", free_port())])
                .args(["--ui-addr", &format!("127.0.0.1:{ui}")]),
            &self.dir.join(format!("{identity}.out")),
            &errors,
        );
        Running { reaper, probe, ui, errors }
    }

    /// A client of the double (its background task on this test's runtime).
    fn client(&self) -> kube::Client {
        let _entered = self.runtime.enter();
        self.fake.client()
    }

    /// Files (or changes) a Claim as its user would.
    fn file(&self, namespace: &str, name: &str, user: &str, contract: &str, labels: Value) {
        let claim = serde_json::json!({
            "apiVersion": "aptc.dev/v1alpha1", "kind": "Claim",
            "metadata": { "name": name, "namespace": namespace },
            "spec": { "user": user, "contract": contract, "labels": labels }
        });
        let api: kube::Api<aptc_controller::crd::Claim> = kube::Api::namespaced(self.client(), namespace);
        let params = kube::api::PatchParams::apply("kubectl");
        self.runtime.block_on(api.patch(name, &params, &kube::api::Patch::Apply(&claim))).unwrap();
    }

    fn delete(&self, namespace: &str, name: &str) {
        let api: kube::Api<aptc_controller::crd::Claim> = kube::Api::namespaced(self.client(), namespace);
        self.runtime.block_on(api.delete(name, &Default::default())).unwrap();
    }

    /// Applies a bundle of `namespace` with these files as a team bypassing `aptc push` would.
    fn bundle(&self, namespace: &str, files: &[(&str, &str)]) {
        let files = files.iter().map(|(p, t)| (p.to_string(), t.as_bytes().to_vec())).collect();
        let bundle = aptc_controller::bundle::Bundle { namespace: namespace.into(), files }.resource().unwrap();
        let api: kube::Api<aptc_controller::crd::PolicyBundle> = kube::Api::all(self.client());
        let params = kube::api::PatchParams::apply("kubectl").force();
        let name = bundle.metadata.name.clone().unwrap();
        let mut body = serde_json::to_value(&bundle).unwrap();
        body["apiVersion"] = "aptc.dev/v1alpha1".into();
        body["kind"] = "PolicyBundle".into();
        self.runtime.block_on(api.patch(&name, &params, &kube::api::Patch::Apply(&body))).unwrap();
    }

    fn claim(&self, namespace: &str, name: &str) -> Option<Value> {
        self.fake.object(&format!("/apis/aptc.dev/v1alpha1/namespaces/{namespace}/claims/{name}"))
    }

    /// The claim's status once `done` holds for it (within 30 s), else a failure saying what it was.
    fn status_when(&self, running: &Running, namespace: &str, name: &str, done: impl Fn(&Value) -> bool) -> Value {
        let status = || self.claim(namespace, name).map(|c| c["status"].clone()).unwrap_or_default();
        assert!(
            common::wait_for(30, || done(&status())),
            "claim {namespace}/{name}: {:#}\n{}",
            status(),
            std::fs::read_to_string(&running.errors).unwrap_or_default()
        );
        status()
    }

    /// The claim's status once it is in `state` for its current generation.
    fn settled(&self, running: &Running, namespace: &str, name: &str, state: &str) -> Value {
        let generation = self.claim(namespace, name).unwrap()["metadata"]["generation"].clone();
        self.status_when(running, namespace, name, |s| s["state"] == state && s["observedGeneration"] == generation)
    }

    /// The events (events.k8s.io/v1) about an object of `kind` named `name` in `namespace`, once
    /// one with `reason` is among them (within 30 s).
    fn events_once(&self, namespace: &str, kind: &str, name: &str, reason: &str) -> Vec<Value> {
        let prefix = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events/");
        let events = || -> Vec<Value> {
            let paths = self.fake.paths().into_iter().filter(|p| p.starts_with(&prefix));
            paths
                .filter_map(|p| self.fake.object(&p))
                .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
                .collect()
        };
        assert!(common::wait_for(30, || events().iter().any(|e| e["reason"] == reason)), "{reason}: {:#?}", events());
        events()
    }

    fn config_map(&self, name: &str) -> Option<Value> {
        self.fake.object(&format!("/api/v1/namespaces/apps/configmaps/{name}"))
    }
}

/// The condition of `type_` in a status.
fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

/// The name of a ready claim's `config` instance (its ConfigMap's), checked to be, as all its
/// instances, on the fake cluster's `apps`.
fn instance(status: &Value) -> String {
    let instances = status["instances"].as_array().unwrap();
    assert!(instances.iter().all(|i| i["cluster"] == "system.fake" && i["namespace"] == "apps"), "{status:#}");
    let config = instances.iter().find(|i| i["component"] == "config").expect("the config instance");
    config["name"].as_str().unwrap().to_string()
}

#[test]
fn claims_added_changed_and_deleted_reach_their_statuses_and_objects() {
    let cluster = Loop::new("loop");
    let running = cluster.controller("one");
    cluster.file("web", "ada-dev", "ada", "site", serde_json::json!({ "note": HOSTILE }));
    cluster.file("web", "ada-plain", "ada", "site", serde_json::json!({ "note": "plain" }));
    cluster.file("data", "eve-store", "eve", "store", serde_json::json!({ "size": 3 }));

    let ready = cluster.settled(&running, "web", "ada-dev", "Ready");
    assert_eq!(condition(&ready, "Resolved")["status"], "True");
    assert_eq!(condition(&ready, "Ready")["reason"], "Applied");
    assert_eq!(condition(&ready, "Ready")["observedGeneration"], 1);
    let hostile = instance(&ready);
    let map = cluster.config_map(&hostile).expect("the instance's ConfigMap");
    assert_eq!(map["data"]["note"], HOSTILE, "the value is data, never YAML");
    assert_eq!(map["data"]["env"], "dev");
    let plain = instance(&cluster.settled(&running, "web", "ada-plain", "Ready"));
    assert_ne!(plain, hostile);
    let store = instance(&cluster.settled(&running, "data", "eve-store", "Ready"));
    assert_eq!(cluster.config_map(&store).unwrap()["data"]["size"], "3");

    // Each apply is told on the claims of its instance, by the controller.
    let applied = cluster.events_once("web", "Claim", "ada-dev", "Applied");
    let event = applied.iter().find(|e| e["reason"] == "Applied").unwrap();
    assert_eq!((&event["type"], &event["action"]), (&"Normal".into(), &"Apply".into()));
    assert_eq!(event["reportingController"], "aptc-controller");
    assert_eq!(event["reportingInstance"], "one");
    let note = event["note"].as_str().unwrap();
    assert!(note.starts_with("create site-config-") && note.ends_with(" on fake/apps"), "{note}");
    cluster.events_once("data", "Claim", "eve-store", "Applied");

    // Bad claims fail only themselves, each saying why.
    cluster.file("web", "ada-prod", "ada", "site", serde_json::json!({ "env": "prod" }));
    cluster.file("web", "ghost", "ghost", "site", serde_json::json!({}));
    cluster.file("web", "nothing", "ada", "nothing", serde_json::json!({}));
    cluster.file("data", "eve-web", "eve", "web.site", serde_json::json!({}));
    cluster.file("web", "bad-env", "ada", "site", serde_json::json!({ "env": "prod\"\n---\nkind: x" }));
    cluster.file("web", "bad-key", "ada", "site", serde_json::json!({ "no\"te\n---": "x" }));
    let rejected = cluster.settled(&running, "web", "ada-prod", "Rejected");
    let reason = condition(&rejected, "Rejected")["message"].as_str().unwrap().to_string();
    assert!(reason.contains("prod is not served from here") && reason.contains("(web/web/web.apt:6:6)"), "{reason}");
    assert_eq!(condition(&rejected, "Rejected")["reason"], "RejectedByRule");
    let message = |name: &str, namespace: &str| {
        let status = cluster.settled(&running, namespace, name, "Failed");
        condition(&status, "Failed")["message"].as_str().unwrap().to_string()
    };
    let ghost = message("ghost", "web");
    assert!(ghost.contains("ghost"), "{ghost}");
    assert!(message("nothing", "web").contains("there is no contract `nothing`"));
    let eve = message("eve-web", "data");
    assert!(eve.contains("consume") && eve.contains("web"), "{eve}");
    assert!(message("bad-env", "web").contains("is not of type"));
    assert!(message("bad-key", "web").contains("no such label"));
    for (namespace, name) in [("web", "ada-dev"), ("web", "ada-plain"), ("data", "eve-store")] {
        assert_eq!(cluster.claim(namespace, name).unwrap()["status"]["state"], "Ready", "{name}");
    }
    // A rejection and a failure are warnings on their claims, with the reason.
    let rejected = cluster.events_once("web", "Claim", "ada-prod", "Rejected");
    assert_eq!(rejected[0]["type"], "Warning");
    assert!(rejected[0]["note"].as_str().unwrap().contains("prod is not served from here"));
    let failed = cluster.events_once("data", "Claim", "eve-web", "Failed");
    assert!(failed[0]["note"].as_str().unwrap().contains("consume"), "{failed:#?}");

    // The metrics count claims by state; this replica leads.
    let (_, metrics) = get(running.probe, "/metrics").unwrap();
    for line in
        ["aptc_claims{state=\"Ready\"} 3", "aptc_claims{state=\"Failed\"} 5", "aptc_claims{state=\"Rejected\"} 1"]
    {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(metrics.contains("aptc_leader 1"), "{metrics}");

    // The dashboard serves the leader's policy, desired state and revisions.
    let (status, body) = get(running.ui, "/api/v1/policy").unwrap();
    assert!(status.ends_with("200 OK"), "{status} {body}");
    let summary: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["error"], Value::Null, "{summary:#}");
    let claims = &summary["claims"];
    assert_eq!(
        (&claims["total"], &claims["resolved"], &claims["rejected"], &claims["failed"]),
        (&6.into(), &3.into(), &1.into(), &2.into()),
        "{summary:#}"
    );
    assert!(summary["store"]["last_revision"].as_u64().is_some_and(|n| n >= 1), "{summary:#}");
    assert!(
        summary["files"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().ends_with("web/web/web.apt")),
        "{summary:#}"
    );
    let (_, graph) = get(running.ui, "/api/v1/graph").unwrap();
    let graph: Value = serde_json::from_str(&graph).unwrap();
    assert_eq!(graph["claims"].as_array().map(Vec::len), Some(6), "{graph:#}");
    let prod = graph["claims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["claim"] == "web.ada-prod" && c["origin"]["file"] == "kubernetes:web/ada-prod");
    assert!(prod.is_some(), "{graph:#}");

    // The API server forgets its history and ends every watch: the controller lists again and
    // goes on. A change of a claim reaches its object and its observedGeneration.
    cluster.fake.compact();
    cluster.fake.drop_watches();
    cluster.file("data", "eve-store", "eve", "store", serde_json::json!({ "size": 5 }));
    let changed = cluster.settled(&running, "data", "eve-store", "Ready");
    assert_eq!(changed["observedGeneration"], 2);
    assert_eq!(instance(&changed), store, "the same instance");
    assert!(common::wait_for(30, || cluster.config_map(&store).unwrap()["data"]["size"] == "5"));

    // A deleted claim's instance goes; the others stay.
    cluster.delete("web", "ada-plain");
    assert!(common::wait_for(30, || cluster.config_map(&plain).is_none()), "the instance of a deleted claim goes");
    assert!(cluster.config_map(&hostile).is_some() && cluster.config_map(&store).is_some());

    // An apply that fails is a warning on its claim, with the cluster's answer.
    cluster.fake.fail_next("PATCH", "/namespaces/apps/configmaps/", 1, 422);
    cluster.file("web", "ada-fails", "ada", "site", serde_json::json!({ "note": "fails" }));
    let failed = cluster.events_once("web", "Claim", "ada-fails", "ApplyFailed");
    let failed = failed.iter().find(|e| e["reason"] == "ApplyFailed").unwrap();
    assert_eq!(failed["type"], "Warning");
    assert!(failed["note"].as_str().unwrap().contains("injected failure"), "{failed:#}");
    drop(running);
}

#[test]
fn a_bundle_with_errors_keeps_its_last_good_version_and_others_go_on() {
    let cluster = Loop::new("bad-bundle");
    let running = cluster.controller("one");
    cluster.file("web", "ada-dev", "ada", "site", serde_json::json!({ "note": "dev" }));
    cluster.file("data", "eve-store", "eve", "store", serde_json::json!({ "size": 3 }));
    cluster.settled(&running, "web", "ada-dev", "Ready");
    cluster.settled(&running, "data", "eve-store", "Ready");
    let bundle = |name: &str| cluster.fake.object(&format!("{BUNDLES}/{name}")).unwrap();
    let good = bundle("web")["spec"]["digest"].clone();
    assert!(common::wait_for(30, || bundle("web")["status"]["state"] == "InUse"));

    // The web team's bundle breaks; a new team's bundle is broken from the start.
    cluster.bundle("web", &[("web/web.apt", "namespace web owned_by web_team\ncontract site {\n")]);
    cluster.bundle("shop", &[("shop/shop.apt", "namespace shop\ncontract x { context y { use nothing } }\n")]);
    let invalid = |name: &str| {
        let generation = bundle(name)["metadata"]["generation"].clone();
        assert!(
            common::wait_for(30, || {
                let status = &bundle(name)["status"];
                status["state"] == "Invalid" && status["observedGeneration"] == generation
            }),
            "{:#}",
            bundle(name)
        );
        bundle(name)["status"].clone()
    };
    let web = invalid("web");
    assert_eq!(web["usedDigest"], good, "the last good version is used");
    assert!(web["diagnostics"][0].as_str().unwrap().starts_with("web/web/web.apt:"), "{web:#}");
    let told = cluster.events_once("default", "PolicyBundle", "web", "InvalidBundle");
    let note = told[0]["note"].as_str().unwrap();
    assert!(note.starts_with("its last good version is used: web/web/web.apt:"), "{note}");
    assert_eq!(told[0]["type"], "Warning");
    let shop = invalid("shop");
    assert_eq!(shop["usedDigest"], Value::Null, "no good version to use");
    assert!(
        shop["diagnostics"].as_array().unwrap().iter().any(|d| d.as_str().unwrap().contains("nothing")),
        "{shop:#}"
    );

    // Every team's claims go on: web's against its last good version.
    cluster.file("web", "ada-new", "ada", "site", serde_json::json!({ "note": "new" }));
    cluster.file("data", "eve-more", "eve", "store", serde_json::json!({ "size": 3 }));
    cluster.file("shop", "ada-shop", "ada", "x", serde_json::json!({}));
    let new = cluster.settled(&running, "web", "ada-new", "Ready");
    assert_eq!(cluster.config_map(&instance(&new)).unwrap()["data"]["note"], "new");
    cluster.settled(&running, "data", "eve-more", "Ready");
    let shop_claim = cluster.settled(&running, "shop", "ada-shop", "Failed");
    assert!(condition(&shop_claim, "Failed")["message"].as_str().unwrap().contains("no namespace `shop`"));
    assert_eq!(cluster.claim("web", "ada-dev").unwrap()["status"]["state"], "Ready");

    // Fixed: in use again.
    let (output, shown) =
        aptc(&cluster.dir, &cluster.kubeconfig, &["push", cluster.dir.join("policy").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(common::wait_for(30, || bundle("web")["status"]["state"] == "InUse"), "{:#}", bundle("web"));
    drop(running);
}

/// A restarted controller goes on from its work directory: what it applied is not applied again,
/// and what changed while it was down (a claim filed, another deleted) is done.
#[cfg(unix)]
#[test]
fn a_restarted_controller_picks_up_where_it_left_off() {
    let cluster = Loop::new("restart");
    let mut running = cluster.controller("one");
    cluster.file("web", "ada-dev", "ada", "site", serde_json::json!({ "note": "dev" }));
    cluster.file("data", "eve-store", "eve", "store", serde_json::json!({ "size": 3 }));
    cluster.file("web", "ada-stays", "ada", "site", serde_json::json!({ "note": "stays" }));
    let dev = instance(&cluster.settled(&running, "web", "ada-dev", "Ready"));
    let store = instance(&cluster.settled(&running, "data", "eve-store", "Ready"));
    let stays = instance(&cluster.settled(&running, "web", "ada-stays", "Ready"));
    assert_eq!(running.reaper.terminate().and_then(|s| s.code()), Some(130));

    // While it is down: a claim filed, one deleted.
    cluster.file("web", "ada-late", "ada", "site", serde_json::json!({ "note": "late" }));
    cluster.delete("data", "eve-store");
    cluster.fake.clear_requests();
    let running = cluster.controller("one");
    let late = instance(&cluster.settled(&running, "web", "ada-late", "Ready"));
    assert!(cluster.config_map(&late).is_some());
    assert!(common::wait_for(30, || cluster.config_map(&store).is_none()), "the deleted claim's instance goes");
    let applied = cluster.fake.paths_of("PATCH");
    for name in [&dev, &stays] {
        assert!(cluster.config_map(name).is_some());
        assert!(
            !applied.iter().any(|p| p.ends_with(&format!("/configmaps/{name}"))),
            "{name} applied again: {applied:?}"
        );
    }
    for name in ["ada-dev", "ada-stays"] {
        assert_eq!(cluster.claim("web", name).unwrap()["status"]["state"], "Ready");
    }
    drop(running);
}

/// A metric's value as a replica serves it (`None` while it does not answer).
fn metric(running: &Running, name: &str) -> Option<f64> {
    let (_, text) = get(running.probe, "/metrics")?;
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Two replicas: one leads and alone applies; both serve the one webhook certificate; killed
/// (SIGKILL, no release of the Lease), the leader's Lease expires and the standby takes over,
/// and a claim filed meanwhile reaches its status.
#[cfg(unix)]
#[test]
fn two_replicas_one_applies_and_the_other_takes_over_when_it_is_killed() {
    let cluster = Loop::new("failover");
    let one = cluster.controller("one");
    let two = cluster.controller("two");
    let leads = |r: &Running| metric(r, "aptc_leader") == Some(1.0);
    let follows = |r: &Running| metric(r, "aptc_leader") == Some(0.0);
    assert!(common::wait_for(30, || (leads(&one) && follows(&two)) || (leads(&two) && follows(&one))));
    let (leader, standby, standby_name) = if leads(&one) { (one, two, "two") } else { (two, one, "one") };
    cluster.file("web", "ada-dev", "ada", "site", serde_json::json!({ "note": "dev" }));
    cluster.file("data", "eve-store", "eve", "store", serde_json::json!({ "size": 3 }));
    let dev = instance(&cluster.settled(&leader, "web", "ada-dev", "Ready"));
    let store = instance(&cluster.settled(&leader, "data", "eve-store", "Ready"));
    assert!(metric(&leader, "aptc_reconciles_total").unwrap() >= 1.0);
    assert_eq!(metric(&standby, "aptc_reconciles_total"), Some(0.0), "the standby applies nothing");
    assert!(follows(&standby));
    let (_, body) = get(standby.ui, "/api/v1/policy").unwrap();
    let summary: Value = serde_json::from_str(&body).unwrap();
    assert!(summary["error"].as_str().unwrap().contains("only the leader"), "{summary:#}");

    // One certificate, generated by one replica, kept in a Secret, its CA in the configuration.
    let secret = cluster.fake.object("/api/v1/namespaces/aptc-system/secrets/aptc-controller-webhook-tls").unwrap();
    let generated = [&leader, &standby]
        .iter()
        .filter(|r| std::fs::read_to_string(&r.errors).unwrap().contains("generated the webhook's certificate"))
        .count();
    assert_eq!(generated, 1, "one replica generates, the other reads it");
    let configuration = cluster.fake.object(WEBHOOK_CONFIGURATION).unwrap();
    assert_eq!(configuration["webhooks"][0]["clientConfig"]["caBundle"], secret["data"]["tls.crt"]);
    assert_eq!(configuration["webhooks"][0]["rules"][0]["resources"][0], "policybundles", "the rest is kept");

    // The leader is killed outright; a claim is filed while nobody leads.
    let mut leader = leader;
    // SAFETY: a signal to the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(leader.reaper.0.id() as i32, libc::SIGKILL) }, 0);
    leader.reaper.0.wait().unwrap();
    cluster.file("web", "ada-gap", "ada", "site", serde_json::json!({ "note": "gap" }));
    assert!(common::wait_for(30, || leads(&standby)), "the standby takes over");
    assert_eq!(cluster.fake.object(LEASE).unwrap()["spec"]["holderIdentity"], standby_name);
    let gap = instance(&cluster.settled(&standby, "web", "ada-gap", "Ready"));
    for name in [&dev, &store, &gap] {
        assert!(cluster.config_map(name).is_some(), "{name}");
    }
    assert_eq!(cluster.claim("web", "ada-dev").unwrap()["status"]["state"], "Ready");
    assert_eq!(cluster.claim("data", "eve-store").unwrap()["status"]["state"], "Ready");
}

/// `git` in a test's repository (no user or system configuration).
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("running git");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `git daemon` serving the repositories under `base` on loopback (`git://127.0.0.1:PORT/NAME`).
fn git_daemon(base: &Path) -> (common::Reaper, u16) {
    let daemon = Path::new("/usr/lib/git-core/git-daemon");
    assert!(
        daemon.exists(),
        "{} is missing: these tests need Debian's git package (it ships git-daemon)",
        daemon.display()
    );
    let port = free_port();
    let reaper = common::Reaper::spawn(
        Command::new(daemon)
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1", &format!("--port={port}")])
            .arg(format!("--base-path={}", base.display()))
            .arg(base),
        &base.join("git-daemon.out"),
        &base.join("git-daemon.err"),
    );
    assert!(
        common::wait_for(10, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "git daemon did not listen: {}",
        std::fs::read_to_string(base.join("git-daemon.err")).unwrap_or_default()
    );
    (reaper, port)
}

/// Bundles pushed as commits of a repository served on loopback: the controller fetches them and
/// claims resolve with the repository's policy; a bundle moved to a new commit is picked up;
/// uncommitted files are refused by `aptc push`; an unreachable URL, a missing commit and a branch
/// are reported in the bundle's status while its last good version stays in use.
#[test]
fn bundles_from_a_git_repository_served_on_loopback() {
    let cluster = Loop::new("git");
    let policy = cluster.dir.join("policy");
    git(&policy, &["init", "--quiet", "--initial-branch=main"]);
    git(&policy, &["add", "."]);
    git(&policy, &["commit", "--quiet", "-m", "the policy"]);
    let first = git(&policy, &["rev-parse", "HEAD"]);
    let (_daemon, port) = git_daemon(&cluster.dir);
    let url = format!("git://127.0.0.1:{port}/policy");
    let push = |extra: &[&str]| {
        let mut args = vec!["push", "--git-url", url.as_str()];
        args.extend_from_slice(extra);
        args.push(policy.to_str().unwrap());
        aptc(&cluster.dir, &cluster.kubeconfig, &args)
    };
    let bundle = |name: &str| cluster.fake.object(&format!("{BUNDLES}/{name}")).unwrap();
    let archived = bundle("web")["spec"]["digest"].clone();

    let (output, shown) = push(&[]);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains(&format!("policybundle/web (namespace web) updated (commit {})", &first[..12])), "{shown}");
    let web = bundle("web");
    assert_eq!(web["spec"]["git"], serde_json::json!({ "url": url, "revision": first }), "{web:#}");
    assert_eq!(web["spec"]["archive"], Value::Null, "the files are not in the object");
    assert_eq!(web["spec"]["digest"], archived, "the same files make the same archive");
    let (output, shown) = push(&[]);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("policybundle/web (namespace web) unchanged"), "{shown}");

    let running = cluster.controller("one");
    cluster.file("web", "ada-dev", "ada", "site", serde_json::json!({ "note": "dev" }));
    let ready = cluster.settled(&running, "web", "ada-dev", "Ready");
    let name = instance(&ready);
    assert_eq!(cluster.config_map(&name).unwrap()["data"]["env"], "dev");
    assert!(common::wait_for(30, || bundle("web")["status"]["state"] == "InUse"), "{:#}", bundle("web"));

    // A change not committed is not what the controller would fetch: refused.
    let template = policy.join("web/k8s/config.yaml");
    std::fs::write(&template, format!("{LOOP_WEB_TEMPLATE}  source: git\n")).unwrap();
    let (output, shown) = push(&[]);
    assert_ne!(output.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!("the files of namespace `web` differ from commit {first} (web/k8s/config.yaml)")),
        "{shown}"
    );
    let (output, shown) = push(&["--revision", "main"]);
    assert_ne!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("`main` is not a full commit id"), "{shown}");

    // Committed and pushed: the bundle names the new commit, and the controller applies it.
    git(&policy, &["commit", "--quiet", "-am", "source"]);
    let second = git(&policy, &["rev-parse", "HEAD"]);
    let (output, shown) = push(&[]);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert_eq!(bundle("web")["spec"]["git"]["revision"], second.as_str());
    assert!(
        common::wait_for(30, || cluster.config_map(&name).is_some_and(|m| m["data"]["source"] == "git")),
        "{:#}\n{}",
        cluster.config_map(&name).unwrap_or_default(),
        std::fs::read_to_string(&running.errors).unwrap_or_default()
    );
    let good = bundle("data")["spec"]["digest"].clone();
    assert!(common::wait_for(30, || bundle("data")["status"]["usedDigest"] == good));

    // Sources that cannot be had, written as a team bypassing `aptc push` would: each is told
    // in the bundle's status, and its last good version stays in use.
    let moved = |source: Value| {
        let mut body = bundle("data");
        body["spec"]["git"] = source;
        let body = serde_json::json!({
            "apiVersion": "aptc.dev/v1alpha1", "kind": "PolicyBundle",
            "metadata": { "name": "data" }, "spec": body["spec"]
        });
        let api: kube::Api<aptc_controller::crd::PolicyBundle> = kube::Api::all(cluster.client());
        let params = kube::api::PatchParams::apply("aptc-push").force();
        cluster.runtime.block_on(api.patch("data", &params, &kube::api::Patch::Apply(&body))).unwrap();
        let generation = bundle("data")["metadata"]["generation"].clone();
        assert!(
            common::wait_for(30, || {
                let status = &bundle("data")["status"];
                status["state"] == "Invalid" && status["observedGeneration"] == generation
            }),
            "{:#}",
            bundle("data")
        );
        let status = bundle("data")["status"].clone();
        assert_eq!(status["usedDigest"], good, "the last good version is used: {status:#}");
        status["diagnostics"][0].as_str().unwrap().to_string()
    };
    let nobody = format!("git://127.0.0.1:{}/policy", free_port());
    let said = moved(serde_json::json!({ "url": nobody, "revision": second }));
    assert!(said.starts_with(&format!("cannot fetch {nobody}: ")), "{said}");
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let said = moved(serde_json::json!({ "url": url, "revision": missing }));
    assert_eq!(said, format!("{url} has no commit {missing} (push it to the repository first)"));
    let said = moved(serde_json::json!({ "url": url, "revision": "main" }));
    assert!(said.starts_with("spec.git.revision `main` is not a full commit id"), "{said}");
    // The data team's claims go on meanwhile.
    cluster.file("data", "eve-store", "eve", "store", serde_json::json!({ "size": 3 }));
    cluster.settled(&running, "data", "eve-store", "Ready");

    // Pushed again: in use.
    let (output, shown) = push(&[]);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(common::wait_for(30, || bundle("data")["status"]["state"] == "InUse"), "{:#}", bundle("data"));
    drop(running);
}

/// The system bundle with the target cluster reached through a kubeconfig Secret of the
/// controller's namespace, and the data team's claims placed on a cluster whose Secret is missing.
const SECRET_SYSTEM: &str = r#"namespace system

team web_team
team data_team

user "ada" { team web_team }
user "eve" { team data_team }

grant consumer on web when user.team == "web_team"
grant consumer on data

cluster fake {
    kubeconfig secret "fake-kubeconfig"
    namespace "apps"
}

cluster broken {
    kubeconfig secret "broken-kubeconfig" key "config"
    namespace "apps"
}

rule web_here when user.team == "web_team" {
    place on fake
}

rule data_there when user.team == "data_team" {
    place on broken
}
"#;

#[test]
fn a_target_cluster_reached_through_a_kubeconfig_secret_and_a_missing_one_failing_only_its_claims() {
    let cluster = Loop::new("credentials");
    // The target cluster is another API server, known only to the Secret in aptc-system.
    let target = FakeApi::new();
    let target_kubeconfig = cluster.dir.join("target-kubeconfig");
    write_kubeconfig(&target_kubeconfig, &target.serve().unwrap(), "target").unwrap();
    let contents = std::fs::read(&target_kubeconfig).unwrap();
    std::fs::remove_file(&target_kubeconfig).unwrap();
    cluster.fake.insert(
        "/api/v1/namespaces/aptc-system/secrets/fake-kubeconfig",
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "fake-kubeconfig", "namespace": "aptc-system" },
            "data": { "kubeconfig": serde_json::to_value(k8s_openapi::ByteString(contents)).unwrap() }
        }),
    );
    cluster.bundle("system", &[("system.apt", SECRET_SYSTEM)]);
    let running = cluster.controller("one");
    cluster.file("web", "ada-dev", "ada", "site", serde_json::json!({ "note": "plain" }));
    cluster.file("data", "eve-store", "eve", "store", serde_json::json!({ "size": 3 }));

    let ready = cluster.settled(&running, "web", "ada-dev", "Ready");
    let name = instance(&ready);
    let path = format!("/api/v1/namespaces/apps/configmaps/{name}");
    assert!(target.object(&path).is_some(), "applied to the cluster the Secret reaches: {:?}", target.paths());
    assert!(cluster.config_map(&name).is_none(), "not to the control cluster");

    let failed = cluster.events_once("data", "Claim", "eve-store", "ApplyFailed");
    let note = failed.iter().find(|e| e["reason"] == "ApplyFailed").unwrap()["note"].as_str().unwrap().to_string();
    assert!(
        note.contains("cluster system.broken: there is no Secret `broken-kubeconfig` in namespace `aptc-system`"),
        "the failure names the Secret: {note}"
    );
    let status = cluster.claim("data", "eve-store").unwrap()["status"].clone();
    assert_ne!(status["state"], "Ready", "{status:#}");
    assert_eq!(condition(&status, "Ready")["status"], "False", "{status:#}");
    // The web team's instance stays applied while the data team's keeps failing.
    assert_eq!(cluster.settled(&running, "web", "ada-dev", "Ready")["state"], "Ready");
}
