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
    let url = fake.serve().expect("serving the fake API server");
    let kubeconfig = dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, &url, "fake").unwrap();
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

#[cfg(unix)]
#[test]
fn watch_fix_recreates_an_object_deleted_on_the_cluster_and_stops_on_sigterm() {
    let dir = policy("watch");
    let (fake, kubeconfig) = served(&dir);
    let (state, log) = (dir.join("state.db"), dir.join("watch.log"));
    let mut watcher = Reaper::spawn(
        command(&dir, &kubeconfig)
            .args(["watch", "--fix", "--yes", "--target", "cluster", "--interval", "1", "--as", "ada@example.com"])
            .args(["--state", state.to_str().unwrap(), dir.join("policy").to_str().unwrap()]),
        &log,
        &dir.join("watch.err"),
    );
    let shown = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("watch.err")).unwrap_or_default();
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
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("(drift: "), "the repair is planned as drift: {text}");
    assert!(text.contains("aptc watch stopped"), "{text}");
}
