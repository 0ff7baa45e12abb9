//! The real `aptc` binary deploying to a Kubernetes API with `--target cluster`: no real cluster
//! can run here, so the API-server double of `aptc-kube-fake` is served over HTTP on loopback and
//! reached through a kubeconfig (`$KUBECONFIG`), exactly as a cluster is. What aptc did is read
//! back from the requests the fake recorded and the objects it holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aptc_kube_fake::{FakeApi, write_kubeconfig};
use serde_json::Value;

mod common;

use common::{Reaper, wait_for};

/// The value of the secret the policy reads; it must reach the cluster and never be shown.
const SECRET: &str = "cluster-secret-7d2e";
const NAMESPACE: &str = "/api/v1/namespaces/apps";
const CONFIG_MAPS: &str = "/api/v1/namespaces/apps/configmaps/";

const SYSTEM: &str = r#"namespace system

user "ada@example.com"

cluster fake {
    context "fake"
    namespace "apps"
}

rule everywhere {
    place on fake
}
"#;

const APP: &str = r#"namespace app

service site {
    component config manifests "k8s/*.yaml" {
        values {
            greeting = "hello"
            token = secret_env("APTC_TEST_CLUSTER_SECRET")
        }
    }
}

contract site {
    context all {
        use site
    }
}
"#;

const CLAIM: &str = r#"
claim ada_site {
    user "ada@example.com"
    contract site
}
"#;

/// A scratch directory with the policy in `policy/`: one manifests instance of two ConfigMap
/// templates, `greeting` and `token` (the secret).
fn policy(name: &str) -> PathBuf {
    let dir = common::scratch("cluster-tests", name);
    let policy = dir.join("policy");
    std::fs::create_dir_all(policy.join("k8s")).unwrap();
    std::fs::write(policy.join("system.apt"), SYSTEM).unwrap();
    std::fs::write(policy.join("app.apt"), format!("{APP}{CLAIM}")).unwrap();
    let template = |key: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${{instance.name}}-{key}\ndata:\n  {key}: \"${{values.{key}}}\"\n"
        )
    };
    std::fs::write(policy.join("k8s/greeting.yaml"), template("greeting")).unwrap();
    std::fs::write(policy.join("k8s/token.yaml"), template("token")).unwrap();
    dir
}

/// A fake API server served on loopback, and a kubeconfig in `dir` whose context `fake` reaches it.
fn served(dir: &Path) -> (FakeApi, PathBuf) {
    let fake = FakeApi::new();
    let kubeconfig = dir.join("kubeconfig");
    fake.serve_to(&kubeconfig, "fake").expect("serving the fake API server");
    (fake, kubeconfig)
}

/// `aptc ARGS` in `dir` with `$KUBECONFIG` = `kubeconfig` and the secret in the environment;
/// the output (stdout and stderr) must never show the secret.
fn aptc(dir: &Path, kubeconfig: &Path, args: &[&str]) -> (Output, String) {
    let output = command(dir, kubeconfig).args(args).output().expect("running aptc");
    let shown = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!shown.contains(SECRET), "the secret was shown by aptc {args:?}: {shown}");
    (output, shown)
}

fn command(dir: &Path, kubeconfig: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aptc"));
    command
        .current_dir(dir)
        .env_remove("APTC_LOG")
        .env_remove("APTC_TARGET")
        .env_remove("APTC_STATE")
        .env_remove("APTC_USER")
        .env("KUBECONFIG", kubeconfig)
        .env("APTC_TEST_CLUSTER_SECRET", SECRET);
    command
}

/// `aptc deploy --yes --target cluster` of the policy in `dir`, as its user, with its own state.
fn deploy(dir: &Path, kubeconfig: &Path, extra: &[&str]) -> (Output, String) {
    let (state, policy) = (dir.join("state.db"), dir.join("policy"));
    let mut args = vec!["deploy", "--yes", "--target", "cluster", "--as", "ada@example.com"];
    args.extend(["--state", state.to_str().unwrap(), policy.to_str().unwrap()]);
    args.extend(extra);
    aptc(dir, kubeconfig, &args)
}

/// The path of the ConfigMap of the policy's instance whose name ends in `-suffix`.
fn config_map(fake: &FakeApi, suffix: &str) -> Option<String> {
    let ending = format!("-{suffix}");
    fake.paths().into_iter().find(|p| p.starts_with(CONFIG_MAPS) && p.ends_with(&ending))
}

/// The ConfigMaps held in namespace `apps`, by name (sorted).
fn config_maps(fake: &FakeApi) -> Vec<String> {
    fake.paths().iter().filter_map(|p| p.strip_prefix(CONFIG_MAPS)).map(String::from).collect()
}

/// The name of the ConfigMap at `path`.
fn name(path: &str) -> String {
    path.strip_prefix(CONFIG_MAPS).expect("a ConfigMap in apps").to_string()
}

/// The objects an inventory lists, as their names, in the order they were applied.
fn listed(inventory: &Value) -> Vec<String> {
    let objects: Vec<Value> = serde_json::from_str(inventory["data"]["objects"].as_str().unwrap()).unwrap();
    objects.iter().map(|o| o["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn deploy_applies_prunes_repairs_and_deletes_through_the_kubernetes_api() {
    let dir = policy("deploy");
    let (fake, kubeconfig) = served(&dir);

    let (plan, shown) = aptc(&dir, &kubeconfig, &["plan", dir.join("policy").to_str().unwrap()]);
    assert!(plan.status.success() && shown.contains("token=\"***\""), "{shown}");

    // The first deploy: the namespace, both objects and the inventory, by server-side apply.
    let (first, shown) = deploy(&dir, &kubeconfig, &[]);
    assert!(first.status.success(), "{shown}");
    let described = format!("applied to Kubernetes: system.fake (context fake in {})", kubeconfig.display());
    assert!(shown.contains(&described), "{shown}");
    assert!(shown.contains("revision 1: 1 created, 0 updated, 0 deleted"), "{shown}");
    let greeting = config_map(&fake, "greeting").expect("the greeting ConfigMap");
    let token = config_map(&fake, "token").expect("the token ConfigMap");
    let object = fake.object(&greeting).unwrap();
    let id = object["metadata"]["labels"]["aptc.dev/instance"].as_str().expect("aptc's instance label").to_string();
    let inventory = format!("{CONFIG_MAPS}aptc-inventory-{id}");
    // The namespace first, the objects in file order, then the inventory that lists them.
    assert_eq!(fake.paths_of("PATCH"), [NAMESPACE, &greeting, &token, &inventory]);
    let patches: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "PATCH").collect();
    for patch in &patches {
        assert_eq!(patch.content_type, "application/apply-patch+yaml", "{patch:?}");
        assert!(patch.params().contains(&"fieldManager=aptc") && patch.params().contains(&"force=true"), "{patch:?}");
    }
    let namespace = fake.object(NAMESPACE).expect("namespace apps was created");
    assert_eq!(namespace["metadata"]["labels"]["aptc.dev/managed"], "true");
    for path in [&greeting, &token] {
        let object = fake.object(path).unwrap();
        let (metadata, labels) = (&object["metadata"], &object["metadata"]["labels"]);
        assert_eq!(metadata["namespace"], "apps", "{object}");
        assert_eq!(
            (labels["aptc.dev/instance"].as_str(), labels["aptc.dev/revision"].as_str()),
            (Some(&*id), Some("1"))
        );
        assert_eq!(labels["aptc.dev/namespace"], "app", "{object}");
        assert!(metadata["annotations"]["aptc.dev/key"].as_str().unwrap().starts_with("fake/apps/"), "{object}");
        assert_eq!(metadata["managedFields"][0]["manager"], "aptc", "{object}");
    }
    assert_eq!(object["data"]["greeting"], "hello", "the template's values are interpolated");
    assert_eq!(fake.object(&token).unwrap()["data"]["token"], SECRET, "the cluster gets the secret itself");
    assert_eq!(listed(&fake.object(&inventory).expect("the inventory")), [name(&greeting), name(&token)]);

    let state = dir.join("state.db");
    let (history, shown) =
        aptc(&dir, &kubeconfig, &["history", "show", "1", "--format", "json", "--state", state.to_str().unwrap()]);
    assert!(history.status.success() && shown.contains("***"), "{shown}");

    // Nothing changed: nothing is sent.
    fake.clear_requests();
    let (again, shown) = deploy(&dir, &kubeconfig, &[]);
    assert!(again.status.success() && shown.contains("no changes"), "{shown}");
    assert!(fake.paths_of("PATCH").is_empty() && fake.paths_of("DELETE").is_empty(), "{:?}", fake.requests());

    // A template removed: exactly its object is pruned.
    std::fs::remove_file(dir.join("policy/k8s/greeting.yaml")).unwrap();
    fake.clear_requests();
    let (pruned, shown) = deploy(&dir, &kubeconfig, &[]);
    assert!(pruned.status.success() && shown.contains("1 object applied, 1 pruned"), "{shown}");
    assert_eq!(fake.paths_of("DELETE"), [&*greeting]);
    assert_eq!(config_maps(&fake), [name(&inventory), name(&token)]);
    assert_eq!(listed(&fake.object(&inventory).unwrap()), [name(&token)]);

    // Deleted by hand: a plain deploy trusts the last revision, `--refresh` looks and repairs.
    fake.remove(&token);
    let (trusting, shown) = deploy(&dir, &kubeconfig, &[]);
    assert!(trusting.status.success() && shown.contains("no changes"), "{shown}");
    assert!(fake.object(&token).is_none());
    let (refreshed, shown) = deploy(&dir, &kubeconfig, &["--refresh"]);
    assert!(refreshed.status.success(), "{shown}");
    let drift = format!("(drift: modified: ConfigMap/apps/{} removed)", name(&token));
    assert!(shown.contains(&drift) && shown.contains("revision 5: 0 created, 1 updated"), "{shown}");
    assert_eq!(fake.object(&token).expect("created again")["data"]["token"], SECRET);

    // The claim removed: both objects' instance goes, with everything it made. It is everything
    // deployed, so the deploy says so and refuses until told.
    std::fs::write(dir.join("policy/app.apt"), APP).unwrap();
    fake.clear_requests();
    let (refused, shown) = deploy(&dir, &kubeconfig, &[]);
    assert_eq!(refused.status.code(), Some(1), "{shown}");
    assert!(shown.contains("--allow-mass-delete"), "{shown}");
    assert!(fake.paths_of("DELETE").is_empty());
    let (removed, shown) = deploy(&dir, &kubeconfig, &["--allow-mass-delete"]);
    assert_eq!(fake.paths_of("DELETE"), [&*token, &*inventory]);
    assert!(removed.status.success() && shown.contains("0 created, 0 updated, 1 deleted"), "{shown}");
    assert!(config_maps(&fake).is_empty(), "{:?}", fake.paths());
    assert!(fake.object(NAMESPACE).is_some(), "the namespace aptc created is left");
}

#[test]
fn an_unreachable_cluster_stops_a_cluster_deploy_and_auto_renders_saying_why() {
    let dir = policy("unreachable");
    let closed = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let kubeconfig = dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, &format!("http://127.0.0.1:{port}"), "fake").unwrap();

    let (refused, shown) = deploy(&dir, &kubeconfig, &[]);
    assert_eq!(refused.status.code(), Some(2), "{shown}");
    assert!(!shown.contains('✓') && !shown.contains("revision 1:"), "stopped before any action: {shown}");
    assert!(shown.contains("cannot connect to system.fake") && shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    let state = dir.join("state.db");
    let (history, shown) = aptc(&dir, &kubeconfig, &["history", "--state", state.to_str().unwrap()]);
    assert!(history.status.success() && shown.contains("no revisions yet"), "nothing recorded: {shown}");

    let (policy, state) = (dir.join("policy"), dir.join("auto.db"));
    let args = ["deploy", "--yes", "--target", "auto", "--as", "ada@example.com", "--state", state.to_str().unwrap()];
    let (rendered, shown) = aptc(&dir, &kubeconfig, &[&args[..], &[policy.to_str().unwrap()]].concat());
    assert!(rendered.status.success(), "{shown}");
    assert!(shown.contains("the embedded default: cannot connect to system.fake"), "{shown}");
    assert!(shown.contains("--target cluster requires the clusters"), "{shown}");
    let instances = std::fs::read_dir(policy.join(".aptc/rendered/fake/apps")).unwrap().count();
    assert_eq!(instances, 1, "rendered into the default directory (under the policy root) instead");
}

/// What a spawned `aptc watch` wrote so far, standard output then standard error.
struct WatchLog {
    out: PathBuf,
    err: PathBuf,
}

impl WatchLog {
    fn read(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default() + &std::fs::read_to_string(&self.err).unwrap_or_default()
    }
}

/// `aptc watch --fix --yes --target cluster --interval 1` as ada on `dir`'s policy, logging to
/// files in `dir`.
#[cfg(unix)]
fn watch_fix(dir: &Path, kubeconfig: &Path) -> (Reaper, WatchLog) {
    let log = WatchLog { out: dir.join("watch.log"), err: dir.join("watch.err") };
    let state = dir.join("state.db");
    let watcher = Reaper::spawn(
        command(dir, kubeconfig)
            .args(["watch", "--fix", "--yes", "--target", "cluster", "--interval", "1", "--as", "ada@example.com"])
            .args(["--state", state.to_str().unwrap(), dir.join("policy").to_str().unwrap()]),
        &log.out,
        &log.err,
    );
    (watcher, log)
}

#[cfg(unix)]
#[test]
fn watch_fix_recreates_an_object_deleted_on_the_cluster_and_stops_on_sigterm() {
    let dir = policy("watch");
    let (fake, kubeconfig) = served(&dir);
    let (mut watcher, log) = watch_fix(&dir, &kubeconfig);
    let shown = || {
        let text = log.read();
        assert!(!text.contains(SECRET), "the secret was shown: {text}");
        text
    };
    // Recorded, fingerprints and all, before anything is touched.
    assert!(wait_for(15, || shown().contains("revision 1:")), "the first revision applies: {}", shown());
    let greeting = config_map(&fake, "greeting").expect("both objects are applied");

    fake.remove(&greeting);
    assert!(
        wait_for(15, || fake.object(&greeting).is_some() && shown().contains("revision 2:")),
        "the deleted object is applied again: {}",
        shown()
    );

    let status = watcher.terminate().unwrap_or_else(|| panic!("no stop on SIGTERM: {}", shown()));
    let text = shown();
    assert_eq!(status.code(), Some(130), "interrupted: {text}");
    assert!(text.contains("(drift: "), "the repair is planned as drift: {text}");
    assert!(text.contains("aptc watch stopped"), "{text}");
}

/// The policy of `policy()` with a chart instead: `policy/chart`, one ConfigMap of the values
/// `greeting` and `token` (the secret). `None` (the test checks nothing) without helm, except in
/// CI, where it fails.
fn chart_policy(name: &str) -> Option<PathBuf> {
    if let Err(error) = aptc_runtime::helm::Helm::locate(None) {
        assert!(std::env::var_os("CI").is_none(), "CI installs helm first, yet: {error}");
        eprintln!("SKIPPED {name}: {error}");
        return None;
    }
    let dir = policy(name);
    let policy = dir.join("policy");
    let app = APP.replace(r#"component config manifests "k8s/*.yaml""#, r#"component web chart "./chart""#);
    std::fs::write(policy.join("app.apt"), format!("{app}{CLAIM}")).unwrap();
    std::fs::create_dir_all(policy.join("chart/templates")).unwrap();
    std::fs::write(policy.join("chart/Chart.yaml"), "apiVersion: v2\nname: web\nversion: 0.1.0\n").unwrap();
    std::fs::write(
        policy.join("chart/templates/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n  token: {{ .Values.token | b64enc | quote }}\n",
    )
    .unwrap();
    Some(dir)
}

/// The helm processes running for the test in `dir` (their command line names its chart), by
/// process id.
#[cfg(target_os = "linux")]
fn helm_processes(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| {
            let line = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = line.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let is_helm = args.first().is_some_and(|a| a.ends_with("/helm") || a == "helm");
            (is_helm && args.iter().any(|a| a.contains(&dir))).then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// The files under `dir` (recursively) whose content contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => found.extend(files_containing(&path, needle)),
            Ok(kind) if kind.is_file() => {
                let content = std::fs::read(&path).unwrap_or_default();
                if content.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
            _ => {}
        }
    }
    found
}

/// A deploy killed with SIGKILL while Helm runs: Helm dies with it (no orphan goes on changing
/// the cluster), and no file anywhere holds the secret (Helm got its values on standard input);
/// the next run removes the private directory the killed one left.
#[cfg(target_os = "linux")]
#[test]
fn a_deploy_killed_with_sigkill_leaves_no_helm_and_no_secret_on_disk() {
    let Some(dir) = chart_policy("sigkill") else { return };
    let (fake, kubeconfig) = served(&dir);
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // Helm's apply of the chart's object is not answered: Helm runs, waiting.
    fake.hold("PATCH", "/configmaps/");
    let state = dir.join("state.db");
    let mut args = vec!["deploy", "--yes", "--target", "cluster", "--as", "ada@example.com"];
    args.extend(["--state", state.to_str().unwrap(), "policy"]);
    let mut deploy = Reaper::spawn(
        command(&dir, &kubeconfig).env("TMPDIR", &tmp).args(&args),
        &dir.join("deploy.log"),
        &dir.join("deploy.err"),
    );
    let log = || std::fs::read_to_string(dir.join("deploy.err")).unwrap_or_default();
    assert!(
        wait_for(60, || !helm_processes(&dir).is_empty()
            && fake.paths_of("PATCH").iter().any(|p| p.contains("/configmaps/"))),
        "helm runs: {}",
        log()
    );
    deploy.0.kill().unwrap();
    deploy.0.wait().unwrap();
    assert!(wait_for(10, || helm_processes(&dir).is_empty()), "helm outlived aptc: {:?}", helm_processes(&dir));
    fake.come_back();
    assert_eq!(files_containing(&dir, SECRET.as_bytes()), Vec::<PathBuf>::new(), "the secret is on disk");
    let private = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("aptc-"))
            .count()
    };
    assert_eq!(private(), 1, "the killed run's private directory (its plugin) is left");
    // The next run starts by removing it.
    args[1] = "--dry-run";
    let planned = command(&dir, &kubeconfig).env("TMPDIR", &tmp).args(&args).output().unwrap();
    let shown = String::from_utf8_lossy(&planned.stderr).into_owned() + &String::from_utf8_lossy(&planned.stdout);
    assert!(planned.status.code().is_some() && !shown.contains(SECRET), "{shown}");
    assert_eq!(private(), 0, "swept: {shown}");
}

/// `aptc deploy` of the chart policy in `dir` started in the background, with `env` set; its
/// output goes to `NAME.log` and `NAME.err`.
fn spawn_deploy(dir: &Path, kubeconfig: &Path, name: &str, env: &[(&str, &str)]) -> Reaper {
    let state = dir.join("state.db");
    let mut command = command(dir, kubeconfig);
    command.args(["deploy", "--yes", "--target", "cluster", "--as", "ada@example.com"]);
    command.args(["--state", state.to_str().unwrap(), "policy"]);
    command.envs(env.iter().copied());
    Reaper::spawn(&mut command, &dir.join(format!("{name}.log")), &dir.join(format!("{name}.err")))
}

/// The output of a background deploy so far.
fn output_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
        + &std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
}

/// The `status` label of each Helm release Secret in the fake.
fn release_states(fake: &FakeApi) -> Vec<String> {
    fake.paths()
        .iter()
        .filter(|p| p.contains("/secrets/sh.helm.release.v1."))
        .filter_map(|p| fake.object(p)?["metadata"]["labels"]["status"].as_str().map(String::from))
        .collect()
}

/// A deploy killed while Helm installs, then while it upgrades, leaves the release locked
/// (`pending-install`, `pending-upgrade`); the next deploy unlocks it by itself (uninstalling a
/// release never deployed, rolling back to the last deployed revision), says so, records it,
/// and deploys.
#[cfg(target_os = "linux")]
#[test]
fn an_interrupted_deploy_leaves_nothing_for_a_human_to_unlock() {
    let Some(dir) = chart_policy("interrupted") else { return };
    let (fake, kubeconfig) = served(&dir);
    let interrupt = |name: &str| {
        fake.clear_requests();
        fake.hold("PATCH", "/configmaps/");
        let mut deploy = spawn_deploy(&dir, &kubeconfig, name, &[]);
        let started = wait_for(60, || fake.paths_of("PATCH").iter().any(|p| p.contains("/configmaps/")));
        assert!(started, "helm applies: {}", output_of(&dir, name));
        deploy.0.kill().unwrap();
        deploy.0.wait().unwrap();
        assert!(wait_for(10, || helm_processes(&dir).is_empty()), "helm outlived aptc");
        fake.come_back();
        fake.clear_requests();
    };

    interrupt("install");
    assert_eq!(release_states(&fake), ["pending-install"]);
    let (first, shown) = deploy(&dir, &kubeconfig, &[]);
    assert!(first.status.success(), "{shown}");
    assert!(
        shown.contains("an interrupted operation left it pending-install; uninstalled (it was never deployed)"),
        "{shown}"
    );
    assert!(shown.contains("deployed (helm revision 1)"), "{shown}");
    assert_eq!(release_states(&fake), ["deployed"]);

    let app = std::fs::read_to_string(dir.join("policy/app.apt")).unwrap();
    std::fs::write(dir.join("policy/app.apt"), app.replace("\"hello\"", "\"hi\"")).unwrap();
    interrupt("upgrade");
    assert!(release_states(&fake).contains(&"pending-upgrade".to_string()), "{:?}", release_states(&fake));
    let (second, shown) = deploy(&dir, &kubeconfig, &[]);
    assert!(second.status.success(), "{shown}");
    assert!(shown.contains("left it pending-upgrade; rolled back to helm revision 1"), "{shown}");
    let state = dir.join("state.db");
    let (history, recorded) =
        aptc(&dir, &kubeconfig, &["history", "show", "4", "--format", "json", "--state", state.to_str().unwrap()]);
    assert!(history.status.success() && recorded.contains("recovered release"), "the revision records it: {recorded}");
    let config = fake.paths().into_iter().find(|p| p.starts_with(CONFIG_MAPS)).expect("the chart's ConfigMap");
    assert_eq!(fake.object(&config).unwrap()["data"]["greeting"], "hi");
}

/// The API server goes away while Helm (or aptc's own apply) waits on it: the watchdog stops
/// waiting once the cluster has not answered for `APTC_CLUSTER_LOST_AFTER` seconds, and the deploy
/// ends at once saying the cluster became unreachable (not after Helm's or the client's whole
/// timeout).
#[cfg(target_os = "linux")]
#[test]
fn a_deploy_that_loses_the_cluster_ends_saying_so() {
    let with_chart = chart_policy("lost");
    for dir in [Some(policy("lost-manifests")), with_chart].into_iter().flatten() {
        let (fake, kubeconfig) = served(&dir);
        fake.hold("PATCH", "/configmaps/");
        let mut deploy = spawn_deploy(&dir, &kubeconfig, "lost", &[("APTC_CLUSTER_LOST_AFTER", "3")]);
        let started = wait_for(60, || fake.paths_of("PATCH").iter().any(|p| p.contains("/configmaps/")));
        assert!(started, "applying: {}", output_of(&dir, "lost"));
        fake.go_away();
        let lost = std::time::Instant::now();
        assert!(wait_for(30, || deploy.0.try_wait().unwrap().is_some()), "still running: {}", output_of(&dir, "lost"));
        let elapsed = lost.elapsed();
        let status = deploy.0.wait().unwrap();
        let shown = output_of(&dir, "lost");
        assert!(elapsed < std::time::Duration::from_secs(20), "took {elapsed:?}: {shown}");
        assert_eq!(status.code(), Some(1), "{shown}");
        assert!(shown.contains("the cluster system.fake became unreachable"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(helm_processes(&dir).is_empty(), "helm was stopped");
        fake.come_back();
    }
}

/// A field of the chart's ConfigMap changed by hand is drift, and `deploy --refresh` takes it back
/// (Helm 4 upgrades server-side with `--force-conflicts`; the double refuses the conflict
/// otherwise, as an API server does); the same field owned by a controller is not drift: the
/// deploy reports the conflict naming the controller and leaves it, now and at the next check.
#[test]
fn upgrades_win_against_people_and_leave_controllers_their_fields() {
    let Some(dir) = chart_policy("owners") else { return };
    let (fake, kubeconfig) = served(&dir);
    let (first, shown) = deploy(&dir, &kubeconfig, &[]);
    assert!(first.status.success(), "{shown}");
    let config = fake.paths().into_iter().find(|p| p.starts_with(CONFIG_MAPS)).expect("the chart's ConfigMap");
    let greeting = |fake: &FakeApi| fake.object(&config).unwrap()["data"]["greeting"].clone();
    assert_eq!(greeting(&fake), "hello");

    fake.edit_as("kubectl-edit", &config, |o| o["data"]["greeting"] = "by hand".into());
    let (repaired, shown) = deploy(&dir, &kubeconfig, &["--refresh"]);
    assert!(repaired.status.success(), "{shown}");
    assert!(shown.contains("(drift: ") && shown.contains("1 updated"), "{shown}");
    assert_eq!(greeting(&fake), "hello", "the policy wins against a person");
    let managers = fake.managers(&config);
    assert!(
        managers.iter().any(|(m, fields)| m == "helm" && fields.contains(&".data.greeting".to_string())),
        "{managers:?}"
    );
    assert!(managers.iter().all(|(m, _)| m != "kubectl-edit"), "{managers:?}");

    fake.edit_as("config-operator", &config, |o| o["data"]["greeting"] = "by the operator".into());
    for _ in 0..2 {
        let (left, shown) = deploy(&dir, &kubeconfig, &["--refresh"]);
        assert!(left.status.success() && shown.contains("no changes"), "{shown}");
        assert!(
            shown.contains("conflict with \"config-operator\": .data.greeting of ConfigMap/apps/"),
            "reported, naming the controller: {shown}"
        );
        assert_eq!(greeting(&fake), "by the operator", "a controller's field is left to it");
    }
}

/// `watch --fix` repairing an object the API refuses to write (a failure that cannot succeed on
/// retry): the repair is tried again after 2, 4, 8… intervals, not at every interval, the watch
/// says so and never suggests running the same command again; once the refusal ends, the repair
/// goes through.
#[cfg(unix)]
#[test]
fn a_repair_that_keeps_failing_backs_off() {
    let dir = policy("backoff");
    let (fake, kubeconfig) = served(&dir);
    let (mut watcher, log) = watch_fix(&dir, &kubeconfig);
    let shown = || log.read();
    assert!(wait_for(15, || shown().contains("revision 1:")), "the first revision applies: {}", shown());
    let greeting = config_map(&fake, "greeting").expect("both objects are applied");
    fake.fail_next("PATCH", &greeting, 1000, 403);
    fake.clear_requests();
    fake.remove(&greeting);
    assert!(wait_for(15, || shown().contains("backing off")), "{}", shown());
    std::thread::sleep(std::time::Duration::from_secs(10));
    let attempts = fake.paths_of("PATCH").iter().filter(|p| **p == greeting).count();
    let text = shown();
    assert!((2..=4).contains(&attempts), "{attempts} repairs in about 11 intervals: {text}");
    assert!(text.contains("failed 2 time(s) in a row, in a way that trying again as it is does not fix"), "{text}");
    assert!(text.contains("tried again in 4 s"), "{text}");
    assert!(!text.contains("run the same command again"), "{text}");

    fake.stop_failing();
    assert!(wait_for(40, || fake.object(&greeting).is_some()), "repaired once the refusal ends: {}", shown());
    assert_eq!(watcher.terminate().and_then(|s| s.code()), Some(130), "stopped by a signal: {}", shown());
}

const CREDENTIALS_SYSTEM: &str = r#"namespace system

user "ada@example.com"

cluster prod {
    kubeconfig secret "prod-kubeconfig"
    namespace "apps"
}

cluster later {
    kubeconfig secret "later" key "config"
    namespace "apps"
}
"#;

const CREDENTIALS_APP: &str = r#"namespace app

label target: "prod" | "later" = "prod"

rule to_prod when labels.target == "prod" {
    place on system.prod
}

rule to_later when labels.target == "later" {
    place on system.later
}

service site {
    component config manifests "k8s/*.yaml" {
        values {
            greeting = "hello"
        }
    }
}

contract site {
    context all {
        allocate per labels.target
        use site
    }
}

claim on_prod {
    user "ada@example.com"
    contract site
}

claim on_later {
    user "ada@example.com"
    contract site
    labels { target = "later" }
}
"#;

/// The Secret `name` of namespace `default` holding `contents` under `key`, as a real API server
/// keeps it (Base64 in `data`).
fn kubeconfig_secret(name: &str, key: &str, contents: &[u8]) -> Value {
    let encoded = serde_json::to_value(k8s_openapi::ByteString(contents.to_vec())).unwrap();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": "default" },
        "data": { key: encoded },
    })
}

#[test]
fn clusters_whose_kubeconfig_is_a_secret_are_deployed_to_and_a_missing_secret_fails_only_its_instance() {
    let dir = common::scratch("cluster-tests", "credentials");
    let policy = dir.join("policy");
    std::fs::create_dir_all(policy.join("k8s")).unwrap();
    std::fs::write(policy.join("system.apt"), CREDENTIALS_SYSTEM).unwrap();
    std::fs::write(policy.join("app.apt"), CREDENTIALS_APP).unwrap();
    std::fs::write(
        policy.join("k8s/greeting.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${instance.name}-greeting\ndata:\n  greeting: \"${values.greeting}\"\n",
    )
    .unwrap();
    // The home: the ambient kubeconfig's current context (namespace `default`), where the
    // Secrets are; the target cluster is another API server, known only to the Secret.
    let (home, kubeconfig) = served(&dir);
    let target = FakeApi::new();
    let target_kubeconfig = dir.join("target-kubeconfig");
    write_kubeconfig(&target_kubeconfig, &target.serve().unwrap(), "target").unwrap();
    let contents = std::fs::read(&target_kubeconfig).unwrap();
    std::fs::remove_file(&target_kubeconfig).unwrap();
    home.insert(
        "/api/v1/namespaces/default/secrets/prod-kubeconfig",
        kubeconfig_secret("prod-kubeconfig", "kubeconfig", &contents),
    );

    let (first, shown) = deploy(&dir, &kubeconfig, &[]);
    assert_eq!(first.status.code(), Some(1), "the instance on `later` failed: {shown}");
    let home_described = format!("the current context of {}", kubeconfig.display());
    assert!(
        shown.contains(&format!(
            "system.prod (current context of the Secret prod-kubeconfig key kubeconfig in the namespace of {home_described})"
        )),
        "{shown}"
    );
    assert!(
        shown.contains("cluster system.later: there is no Secret `later` in namespace `default`")
            && shown.contains("kubectl -n default create secret generic later --from-file=config=PATH"),
        "the failure names the Secret and says what to do: {shown}"
    );
    let applied: Vec<String> = target.paths().into_iter().filter(|p| p.starts_with(CONFIG_MAPS)).collect();
    assert_eq!(applied.len(), 2, "the prod instance's ConfigMap and inventory, on the target cluster: {applied:?}");
    assert!(applied.iter().any(|p| p.ends_with("-greeting")), "{applied:?}");
    assert!(config_maps(&home).is_empty(), "nothing applied to the home cluster");
    assert!(home.paths_of("GET").iter().any(|p| p == "/api/v1/namespaces/default/secrets/later"), "asked for it");

    // Once the Secret exists (under the key the declaration names), the next deploy applies the
    // failed instance through it.
    home.insert("/api/v1/namespaces/default/secrets/later", kubeconfig_secret("later", "config", &contents));
    let (second, shown) = deploy(&dir, &kubeconfig, &[]);
    assert!(second.status.success(), "{shown}");
    assert!(shown.contains("1 created"), "{shown}");
    let greetings = target.paths().into_iter().filter(|p| p.starts_with(CONFIG_MAPS) && p.ends_with("-greeting"));
    assert_eq!(greetings.count(), 2, "both instances on the target cluster");
}

/// `secret_k8s` (docs/language.md §5.9): read from the home namespace (the current context's,
/// `default`) when the instance is applied, never shown, a rotated value an update, and a
/// missing Secret or key a failure naming the reference.
#[test]
fn a_secret_k8s_value_is_read_from_the_home_namespace_and_never_shown() {
    const VALUE: &str = "k8s-secret-51c9";
    const ROTATED: &str = "k8s-secret-rotated-0e27";
    let dir = policy("secret-k8s");
    let app = APP.replace(r#"secret_env("APTC_TEST_CLUSTER_SECRET")"#, r#"secret_k8s("app-auth", "token")"#);
    std::fs::write(dir.join("policy/app.apt"), format!("{app}{CLAIM}")).unwrap();
    let (fake, kubeconfig) = served(&dir);
    let never_shown = |shown: &str| {
        assert!(!shown.contains(VALUE) && !shown.contains(ROTATED), "a secret was shown: {shown}");
    };
    let policy_path = dir.join("policy");
    let (plan, shown) = aptc(&dir, &kubeconfig, &["plan", "--format", "json", policy_path.to_str().unwrap()]);
    assert!(plan.status.success() && shown.contains("\"token\": \"***\""), "{shown}");
    assert!(fake.paths_of("GET").iter().all(|p| !p.contains("/secrets/")), "`aptc plan` reads no Secret");

    let (missing, shown) = deploy(&dir, &kubeconfig, &[]);
    assert_eq!(missing.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(
            r#"secret secret_k8s("app-auth", "token"): there is no Secret `app-auth` in namespace `default`"#
        ) && shown.contains("kubectl -n default create secret generic app-auth --from-file=token=PATH"),
        "the failure names the reference and says what to do: {shown}"
    );
    assert!(config_map(&fake, "token").is_none(), "nothing with the secret was applied");

    fake.insert("/api/v1/namespaces/default/secrets/app-auth", kubeconfig_secret("app-auth", "other", b"x"));
    let (no_key, shown) = deploy(&dir, &kubeconfig, &[]);
    // A missing key is the policy's or the Secret's to fix, not a moment's: failed for good.
    assert!(
        no_key.status.code() == Some(1)
            && shown.contains("running again does not fix")
            && !shown.contains("run the same command again"),
        "exit 1, and no advice to retry: {shown}"
    );
    assert!(shown.contains("the Secret `default/app-auth` has no key `token` (its keys: other)"), "{shown}");

    fake.insert(
        "/api/v1/namespaces/default/secrets/app-auth",
        kubeconfig_secret("app-auth", "token", VALUE.as_bytes()),
    );
    let (first, shown) = deploy(&dir, &kubeconfig, &[]);
    never_shown(&shown);
    assert!(first.status.success(), "{shown}");
    let token = config_map(&fake, "token").expect("the token ConfigMap");
    assert_eq!(fake.object(&token).unwrap()["data"]["token"], VALUE, "the cluster gets the Secret's value");

    let state = dir.join("state.db");
    let (history, shown) =
        aptc(&dir, &kubeconfig, &["history", "show", "3", "--format", "json", "--state", state.to_str().unwrap()]);
    never_shown(&shown);
    assert!(history.status.success() && shown.contains("***"), "{shown}");
    let stored = std::fs::read(&state).unwrap();
    let needle = VALUE.as_bytes();
    assert!(!stored.windows(needle.len()).any(|w| w == needle), "the store holds no secret");

    let (again, shown) = deploy(&dir, &kubeconfig, &[]);
    assert!(again.status.success() && shown.contains("no changes"), "{shown}");
    fake.insert(
        "/api/v1/namespaces/default/secrets/app-auth",
        kubeconfig_secret("app-auth", "token", ROTATED.as_bytes()),
    );
    let (rotated, shown) = deploy(&dir, &kubeconfig, &[]);
    never_shown(&shown);
    assert!(rotated.status.success() && shown.contains("secrets changed"), "{shown}");
    assert_eq!(fake.object(&token).unwrap()["data"]["token"], ROTATED);
}

/// `aptc store check`/`repair --state kube://…` through the real binary: an object of the store
/// that cannot be read is found (exit 1), moved aside by the repair, and the store reads again.
#[test]
fn store_check_and_repair_take_a_kubernetes_store() {
    let dir = common::scratch("cluster-tests", "store-check");
    let (fake, kubeconfig) = served(&dir);
    fake.insert_namespace("aptc-state");
    let state = "kube://fake/aptc-state";
    let (empty, shown) = aptc(&dir, &kubeconfig, &["store", "check", "--state", state]);
    assert!(empty.status.success() && shown.contains("not damaged; 0 revisions (none yet)"), "{shown}");
    fake.insert(
        "/api/v1/namespaces/aptc-state/configmaps/aptc-revision-1",
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "aptc-revision-1", "namespace": "aptc-state",
                "labels": { "aptc.dev/store": "revision", "aptc.dev/revision": "1" } },
            "binaryData": { "revision.json.gz": "bm90IGd6aXA=" }
        }),
    );
    let (damaged, shown) = aptc(&dir, &kubeconfig, &["store", "check", "--state", state]);
    assert_eq!(damaged.status.code(), Some(1), "{shown}");
    assert!(shown.contains("is damaged:") && shown.contains("the record of revision 1 cannot be read"), "{shown}");
    assert!(shown.contains("there is no head object aptc-store"), "{shown}");
    let (repaired, shown) = aptc(&dir, &kubeconfig, &["store", "repair", "--state", state]);
    assert!(repaired.status.success(), "{shown}");
    assert!(
        shown.contains("moved aptc-revision-1, which cannot be read, aside as aptc-revision-1-damaged-"),
        "{shown}"
    );
    let (after, shown) = aptc(&dir, &kubeconfig, &["store", "check", "--state", state]);
    assert!(after.status.success() && shown.contains("not damaged; 0 revisions"), "{shown}");
}
