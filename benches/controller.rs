//! Controller benchmark: `aptc controller run` (the real binary, as `cargo bench` builds it: the
//! `bench` profile, optimized) against the API-server double of `aptc-kube-fake` served over HTTP,
//! as control cluster and target cluster at once, with 10,000 Claims.
//!
//! `cargo bench --bench controller` (`-- --claims N` for another count). The policy: one team's
//! contract whose instances are allocated per `labels.group` (100 groups, so 100 manifests
//! instances, one ConfigMap each), 10,000 Claims of 100 users in Kubernetes namespace `web`.
//! Measured, each from the write that causes it to the last status the double holds showing it:
//!
//! - `first`: the controller started with every Claim already filed, until all are `Ready`;
//! - `policy change`: a new bundle adding a rule that rejects groups 0–39 (4,000 claims, 40
//!   instances deleted), until every affected claim is `Rejected` (budget: 30 s);
//! - `one claim`: one claim moved to another group, until its status shows the new generation
//!   and instance (budget: 1 s);
//! - the controller's peak resident memory (`VmHWM`, budget: 256 MiB).
//!
//! Figures go to docs/performance.md ("The controller at 10,000 claims"). Timings are what one
//! run saw on the machine it ran on; the bench asserts nothing about them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aptc_kube_fake::FakeApi;
use serde_json::{Value, json};

const SYSTEM: &str = "namespace system\n\ncluster fake {\n    context \"fake\"\n    namespace \"apps\"\n}\n\nrule everywhere {\n    place on fake\n}\n";
const WEB: &str = "namespace web\n\nlabel group: int = 0\n\nservice site {\n    component config manifests \"k8s/*.yaml\" {\n        values { group = labels.group }\n    }\n}\n\ncontract site {\n    context all {\n        allocate per labels.group\n        use site\n    }\n}\n";
const FREEZE: &str = "\nrule freeze when labels.group < 40 {\n    reject \"frozen for the migration\"\n}\n";
const TEMPLATE: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${instance.name}\ndata:\n  group: \"${values.group}\"\n";
const GROUPS: usize = 100;
/// The claims' users (declared in `system`).
const USERS: usize = 100;
const CLAIMS_PATH: &str = "/apis/aptc.dev/v1alpha1/namespaces/web/claims";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let claims =
        args.iter().position(|a| a == "--claims").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(10_000usize);
    let dir = std::env::temp_dir().join(format!("aptc-bench-controller-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let result = run(&dir, claims);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(why) = result {
        eprintln!("controller bench: {why}");
        std::process::exit(1);
    }
}

/// The controller process, killed if the bench ends early.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(dir: &Path, claims: usize) -> Result<(), String> {
    let fake = FakeApi::new();
    let kubeconfig = dir.join("kubeconfig");
    fake.serve_to(&kubeconfig, "fake").map_err(|e| e.to_string())?;
    for crd in aptc_controller::manifests::crds() {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let api: kube::Api<
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            > = kube::Api::all(fake.client());
            let params = kube::api::PatchParams::apply("bench").force();
            api.patch(&name, &params, &kube::api::Patch::Apply(&crd)).await.map(|_| ()).map_err(|e| e.to_string())
        })?;
    }
    for namespace in ["web", "apps", "aptc-system"] {
        fake.insert_namespace(namespace);
    }
    let policy = dir.join("policy");
    write_policy(&policy, WEB)?;
    push(&fake, &policy)?;
    for i in 0..claims {
        fake.insert(&format!("{CLAIMS_PATH}/c{i}"), claim(i, i % GROUPS));
    }
    println!("controller bench: {claims} claims, {GROUPS} instances");

    let started = Instant::now();
    let mut controller = start(dir, &kubeconfig)?;
    let all = (0..claims).collect::<Vec<_>>();
    wait(&fake, &mut controller, Duration::from_secs(600), &all, |_, s| s["state"] == "Ready")?;
    report("first: every claim Ready", started.elapsed(), None);
    let first_peak = peak_rss(controller.0.id()).unwrap_or_default();
    println!("{:<48} {:>10.1} MiB", "  peak RSS so far", first_peak as f64 / 1024.0);

    let frozen: Vec<usize> = (0..claims).filter(|i| i % GROUPS < 40).collect();
    write_policy(&policy, &format!("{WEB}{FREEZE}"))?;
    let changed = Instant::now();
    push(&fake, &policy)?;
    wait(&fake, &mut controller, Duration::from_secs(300), &frozen, |_, s| s["state"] == "Rejected")?;
    report(&format!("policy change: {} statuses Rejected", frozen.len()), changed.elapsed(), Some(30.0));

    let one = (0..claims).find(|i| i % GROUPS == 50).ok_or("too few claims")?;
    let before = status(&fake, one)["instances"].clone();
    let changed = Instant::now();
    fake.insert(&format!("{CLAIMS_PATH}/c{one}"), claim(one, 60));
    wait(&fake, &mut controller, Duration::from_secs(60), &[one], |_, s| {
        s["observedGeneration"] == 2 && s["state"] == "Ready" && s["instances"] != before
    })?;
    report("one claim change: its status", changed.elapsed(), Some(1.0));

    let peak = peak_rss(controller.0.id()).ok_or("the controller's VmHWM cannot be read")?;
    println!("{:<48} {:>10.1} MiB   (budget 256 MiB)", "controller peak RSS", peak as f64 / 1024.0);
    // Where a step's time went (the engine's and the deploy's debug lines), the last few steps.
    let log = std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default();
    let steps: Vec<&str> =
        log.lines().filter(|l| l.contains(" step ") || l.contains(" applied ") || l.contains(" planned ")).collect();
    for line in &steps[steps.len().saturating_sub(9)..] {
        let fields =
            [" step ", " applied ", " planned "].iter().find_map(|m| line.split_once(m).map(|(_, f)| (m.trim(), f)));
        match fields {
            Some((what, fields)) => println!("  {what}: {fields}"),
            None => println!("  {line}"),
        }
    }
    Ok(())
}

fn report(what: &str, took: Duration, budget: Option<f64>) {
    let budget = budget.map(|b| format!("   (budget {b} s)")).unwrap_or_default();
    println!("{what:<48} {:>10.3} s{budget}", took.as_secs_f64());
}

fn write_policy(policy: &Path, web: &str) -> Result<(), String> {
    let users: String = (0..USERS).map(|u| format!("user \"u{u}\"\n")).collect();
    let system = format!("{SYSTEM}\n{users}");
    for (path, text) in [("system.apt", system.as_str()), ("web/web.apt", web), ("web/k8s/config.yaml", TEMPLATE)] {
        let path = policy.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(policy)).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Puts the policy's bundles where `aptc push` would (as a write the controller's watch sees).
fn push(fake: &FakeApi, policy: &Path) -> Result<(), String> {
    let bundles = aptc_controller::bundle::collect(&[policy.to_path_buf()]).map_err(|e| e.to_string())?;
    for bundle in bundles {
        let resource = bundle.resource().map_err(|e| e.to_string())?;
        let name = resource.metadata.name.clone().unwrap_or_default();
        let mut object = serde_json::to_value(&resource).map_err(|e| e.to_string())?;
        object["apiVersion"] = "aptc.dev/v1alpha1".into();
        object["kind"] = "PolicyBundle".into();
        let path = format!("/apis/aptc.dev/v1alpha1/policybundles/{name}");
        if let Some(status) = fake.object(&path).map(|o| o["status"].clone()) {
            object["status"] = status;
        }
        fake.insert(&path, object);
    }
    Ok(())
}

fn claim(i: usize, group: usize) -> Value {
    json!({
        "apiVersion": "aptc.dev/v1alpha1", "kind": "Claim",
        "metadata": { "name": format!("c{i}"), "namespace": "web" },
        "spec": { "user": format!("u{}", i % USERS), "contract": "site", "labels": { "group": group } }
    })
}

fn status(fake: &FakeApi, i: usize) -> Value {
    fake.object(&format!("{CLAIMS_PATH}/c{i}")).map(|c| c["status"].clone()).unwrap_or_default()
}

/// Polls every 20 ms until `done` holds for the status of each claim of `which`.
fn wait(
    fake: &FakeApi,
    controller: &mut Controller,
    limit: Duration,
    which: &[usize],
    done: impl Fn(usize, &Value) -> bool,
) -> Result<(), String> {
    let until = Instant::now() + limit;
    let mut left: Vec<usize> = which.to_vec();
    while !left.is_empty() {
        let mut failed = None;
        left.retain(|&i| {
            let status = status(fake, i);
            if status["state"] == "Failed" {
                failed = Some(status.clone());
            }
            !done(i, &status)
        });
        if let Some(status) = failed {
            return Err(format!("a claim failed: {status}"));
        }
        if left.is_empty() {
            break;
        }
        if let Ok(Some(exit)) = controller.0.try_wait() {
            return Err(format!("the controller ended: {exit}"));
        }
        if Instant::now() > until {
            return Err(format!(
                "{} claims not there after {limit:?}, e.g. c{}: {}",
                left.len(),
                left[0],
                status(fake, left[0])
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn start(dir: &Path, kubeconfig: &Path) -> Result<Controller, String> {
    let free = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.to_string());
    let child = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .env("KUBECONFIG", kubeconfig)
        .env("APTC_LOG", "warn,aptc_controller::engine=debug,aptc_runtime::deploy=debug,aptc_runtime::deployer=debug")
        .args(["controller", "run", "--kubeconfig"])
        .arg(kubeconfig)
        .arg("--work-dir")
        .arg(dir.join("work"))
        .args(["--namespace", "aptc-system", "--identity", "bench", "--lease-duration", "3"])
        .args(["--probe-addr", &free().map_err(|e| e.to_string())?])
        .args(["--webhook-addr", &free().map_err(|e| e.to_string())?])
        .args(["--ui-addr", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("controller.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("starting aptc: {e}"))?;
    Ok(Controller(child))
}

/// The peak resident set of a process, in KiB (`VmHWM` of `/proc/PID/status`; Linux).
fn peak_rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/status"))).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
