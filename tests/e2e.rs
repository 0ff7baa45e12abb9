//! End to end against a real Kubernetes cluster: the real `aptc` binary, the real `helm`, a live
//! API server. Runs only when `APTC_E2E=1` and `KUBECONFIG` names a cluster (kind, minikube, k3d
//! or any other; its current context is used); otherwise every test here says it is skipped.
//!
//! Each test copies an example into a scratch directory, points its clusters at the current
//! context and its namespaces at `aptc-e2e-*`, and cleans up by deploying the policy without its
//! claims (which also proves pruning).
//!
//! ```sh
//! APTC_E2E=1 KUBECONFIG=~/.kube/config cargo test --test e2e
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube::api::{Api, DeleteParams, DynamicObject};
use kube::discovery::ApiResource;

mod common;

use common::{HELM_LIST_EVERY_RELEASE, copy_tree, root, wait_for};

/// The end-to-end scenarios, in order (they share one cluster, so they run one at a time).
const SCENARIOS: &[(&str, fn())] = &[
    (
        "quickstart: create, upgrade, drift repaired by watch, rollback, prune",
        quickstart_creates_upgrades_repairs_rolls_back_and_prunes_releases,
    ),
    ("guestbook: dependencies first, prune", guestbook_deploys_dependencies_first_and_prunes),
    ("manifests: server-side apply and prune", manifests_are_server_side_applied_and_pruned),
    ("controller: installed, claims as two users, impersonation refused, failover", controller_in_the_cluster),
];

/// Runs every scenario when `APTC_E2E=1` and `KUBECONFIG` names a kubeconfig file; otherwise
/// says that the suite is skipped and why (a custom harness, so the message always shows).
fn main() {
    if std::env::var("APTC_E2E").as_deref() != Ok("1") {
        println!(
            "e2e: SKIPPED, no cluster given: set APTC_E2E=1 and KUBECONFIG to a live cluster's kubeconfig to run it"
        );
        return;
    }
    match std::env::var_os("KUBECONFIG").map(PathBuf::from) {
        Some(path) if path.is_file() => println!("e2e: against {} (its current context)", path.display()),
        _ => {
            eprintln!("e2e: APTC_E2E=1 needs KUBECONFIG naming the kubeconfig file of a live cluster");
            std::process::exit(1);
        }
    }
    for (name, scenario) in SCENARIOS {
        println!("e2e: {name} ...");
        scenario();
        println!("e2e: {name}: ok");
    }
}

/// A scratch copy of `example` whose clusters use the current context and whose Kubernetes
/// namespaces are `aptc-e2e-<test>`.
fn policy(example: &str, test: &str) -> PathBuf {
    let dir = root().join("target/e2e").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    copy_tree(&root().join("examples").join(example), &dir.join("policy"));
    let system = dir.join("policy/system.apt");
    let text = std::fs::read_to_string(&system).unwrap();
    let rewritten: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("context ") && !l.trim_start().starts_with("kubeconfig "))
        .map(|l| match l.trim_start().strip_prefix("namespace \"") {
            Some(rest) => l.replace(&format!("namespace \"{rest}"), &format!("namespace \"aptc-e2e-{test}-{rest}")),
            None => l.to_string(),
        })
        .collect();
    std::fs::write(&system, rewritten.join("\n") + "\n").unwrap();
    dir
}

/// `aptc ARGS --target cluster --yes --state DIR/state.db --as USER`, which must succeed.
fn aptc(dir: &Path, user: &str, args: &[&str]) -> String {
    let state = dir.join("state.db");
    let out: Output = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(args)
        .args(["--target", "cluster", "--yes", "--as", user, "--state", state.to_str().unwrap()])
        .current_dir(root())
        .output()
        .expect("running aptc");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "aptc {args:?} failed:\n{shown}\n{}", String::from_utf8_lossy(&out.stderr));
    shown
}

/// `helm list` of every release as (name, namespace, status).
fn releases() -> Vec<(String, String, String)> {
    let helm = aptc_runtime::helm::Helm::locate(std::env::var_os("APTC_HELM").map(PathBuf::from).as_deref()).unwrap();
    let out = Command::new(&helm.path).args(HELM_LIST_EVERY_RELEASE).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (field("name"), field("namespace"), field("status"))
        })
        .collect()
}

fn deployments(namespace: &str) -> (tokio::runtime::Runtime, Api<DynamicObject>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = runtime.block_on(kube::Client::try_default()).expect("a client for KUBECONFIG");
    let resource = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
    (runtime, Api::namespaced_with(client, namespace, &resource))
}

/// Removes every claim from the policy's files, so a deploy prunes all it made.
fn without_claims(dir: &Path) {
    for entry in std::fs::read_dir(dir.join("policy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "apt") && !path.ends_with("tests.apt") {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut kept = Vec::new();
            let mut skipping = false;
            for line in text.lines() {
                if line.starts_with("claim ") {
                    skipping = true;
                }
                if !skipping {
                    kept.push(line);
                }
                if skipping && line == "}" {
                    skipping = false;
                }
            }
            std::fs::write(&path, kept.join("\n") + "\n").unwrap();
        } else if path.ends_with("tests.apt") {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

fn quickstart_creates_upgrades_repairs_rolls_back_and_prunes_releases() {
    let test = "quickstart";
    let dir = policy("quickstart", test);
    let policy = dir.join("policy");
    let path = policy.to_str().unwrap();
    let namespace = format!("aptc-e2e-{test}-hello");
    let ours = || releases().into_iter().filter(|r| r.1 == namespace).collect::<Vec<_>>();

    let first = aptc(&dir, "ada@example.com", &["deploy", path]);
    assert!(first.contains("revision 1: 4 created"), "{first}");
    assert_eq!(ours().len(), 2, "two chart instances are two releases: {:?}", releases());
    assert!(ours().iter().all(|r| r.2 == "deployed"));
    let again = aptc(&dir, "ada@example.com", &["deploy", path]);
    assert!(again.contains("no changes"), "{again}");

    // Upgrade: more replicas for production.
    let hello = policy.join("hello.apt");
    let text = std::fs::read_to_string(&hello).unwrap();
    std::fs::write(&hello, text.replace("set labels.replicas = 2", "set labels.replicas = 3")).unwrap();
    let upgrade = aptc(&dir, "max@example.com", &["deploy", path]);
    assert!(upgrade.contains("2 to update") && upgrade.contains("revision 3: 0 created, 2 updated"), "{upgrade}");

    // Drift: a Deployment deleted by hand is reported and repaired by `watch --fix`.
    let (runtime, api) = deployments(&namespace);
    let list = runtime.block_on(api.list(&Default::default())).unwrap();
    let victim = list.items.first().and_then(|d| d.metadata.name.clone()).expect("the charts make a Deployment");
    runtime.block_on(api.delete(&victim, &DeleteParams::default())).unwrap();
    let log = dir.join("watch.log");
    let mut watch = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["watch", "--interval", "2", "--fix", "--yes", "--target", "cluster", "--as", "max@example.com"])
        .args(["--state", dir.join("state.db").to_str().unwrap(), path])
        .current_dir(root())
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let repaired = wait_for(180, || runtime.block_on(api.get_opt(&victim)).ok().flatten().is_some());
    let _ = Command::new("kill").arg("-TERM").arg(watch.id().to_string()).status();
    let _ = watch.wait();
    let shown = std::fs::read_to_string(&log).unwrap();
    assert!(repaired, "the deleted Deployment {victim} came back:\n{shown}");
    assert!(shown.contains("drift"), "{shown}");

    // Rollback to revision 1 (2 replicas again) is a new revision.
    let rollback = aptc(&dir, "max@example.com", &["rollback", "1"]);
    assert!(rollback.contains("2 updated"), "{rollback}");

    // Without claims, everything is pruned.
    without_claims(&dir);
    let pruned = aptc(&dir, "max@example.com", &["deploy", path]);
    assert!(pruned.contains("4 deleted"), "{pruned}");
    assert!(ours().is_empty(), "{:?}", releases());
}

fn guestbook_deploys_dependencies_first_and_prunes() {
    let test = "guestbook";
    let dir = policy("guestbook", test);
    let path = dir.join("policy");
    let path = path.to_str().unwrap();
    let before = releases();
    let first = aptc(&dir, "olivia@example.com", &["deploy", path]);
    assert!(first.contains("revision 1:") && !first.contains("failed"), "{first}");
    let ours = || releases().into_iter().filter(|r| !before.contains(r)).collect::<Vec<_>>();
    assert!(ours().len() >= 4 && ours().iter().all(|r| r.2 == "deployed"), "{:?}", releases());
    without_claims(&dir);
    let pruned = aptc(&dir, "olivia@example.com", &["deploy", path]);
    assert!(pruned.contains("deleted") && !pruned.contains("failed"), "{pruned}");
    assert!(ours().is_empty(), "{:?}", releases());
}

fn manifests_are_server_side_applied_and_pruned() {
    let test = "manifests";
    let dir = root().join("target/e2e").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    let policy = dir.join("policy");
    std::fs::create_dir_all(policy.join("k8s")).unwrap();
    let namespace = "aptc-e2e-manifests";
    std::fs::write(
        policy.join("system.apt"),
        format!("namespace system\n\nuser \"e2e@example.com\"\n\ncluster here {{\n    namespace \"{namespace}\"\n}}\n\nrule all {{\n    place on here\n}}\n"),
    )
    .unwrap();
    std::fs::write(
        policy.join("app.apt"),
        "namespace app\n\nservice app {\n    component config manifests \"k8s/*.yaml\" {\n        values { greeting = \"hi\" }\n    }\n}\n\n\
contract app {\n    context all {\n        use app\n    }\n}\n\nclaim one {\n    user \"e2e@example.com\"\n    contract app\n}\n",
    )
    .unwrap();
    let map = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-${{instance.id}}\ndata:\n  greeting: \"${{values.greeting}}\"\n"
        )
    };
    std::fs::write(policy.join("k8s/a.yaml"), map("a")).unwrap();
    std::fs::write(policy.join("k8s/b.yaml"), map("b")).unwrap();
    let path = policy.to_str().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = runtime.block_on(kube::Client::try_default()).unwrap();
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, namespace);
    let names = || -> Vec<String> {
        let list = runtime.block_on(maps.list(&Default::default())).unwrap();
        let mut names: Vec<String> = list.items.into_iter().filter_map(|m| m.metadata.name).collect();
        names.retain(|n| n.starts_with("a-") || n.starts_with("b-"));
        names.sort();
        names
    };

    let first = aptc(&dir, "e2e@example.com", &["deploy", path]);
    assert!(first.contains("revision 1: 1 created"), "{first}");
    assert_eq!(names().len(), 2, "{:?}", names());
    std::fs::remove_file(policy.join("k8s/b.yaml")).unwrap();
    let second = aptc(&dir, "e2e@example.com", &["deploy", path]);
    assert!(second.contains("1 pruned"), "{second}");
    assert!(names().iter().all(|n| n.starts_with("a-")) && names().len() == 1, "{:?}", names());
    std::fs::write(
        policy.join("app.apt"),
        std::fs::read_to_string(policy.join("app.apt")).unwrap().split("\nclaim ").next().unwrap(),
    )
    .unwrap();
    let last = aptc(&dir, "e2e@example.com", &["deploy", path]);
    assert!(last.contains("1 deleted"), "{last}");
    assert!(names().is_empty(), "{:?}", names());
}

/// Runs `kubectl ARGS` (with `input` on its standard input); its output, or its error text when
/// it fails and `ok` is false.
fn kubectl(args: &[&str], input: &str, ok: bool) -> String {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.success(), ok, "kubectl {args:?}:\n{text}");
    text
}

/// A Claim as YAML (through serde, never spliced).
fn claim_yaml(name: &str, user: &str, labels: serde_json::Value) -> String {
    let claim = serde_json::json!({
        "apiVersion": "aptc.dev/v1alpha1", "kind": "Claim",
        "metadata": { "name": name, "namespace": "aptc-e2e-claims" },
        "spec": { "user": user, "contract": "site", "labels": labels }
    });
    serde_json::to_string(&claim).unwrap()
}

/// `aptc controller` installed with the printed manifests (the image in `APTC_E2E_IMAGE`, which the
/// cluster must be able to pull: `docker build -t aptc:e2e . && kind load docker-image aptc:e2e`),
/// a policy pushed, claims filed with kubectl as two users (`--as`), a claim for another user
/// refused by the admission policy, statuses, and the leader pod deleted with a claim filed
/// meanwhile. The policy's cluster is the control cluster itself (`kubeconfig in_cluster`), its
/// service account bound to ConfigMaps in the apps namespace, so claims become `Ready`, their
/// objects appear, and the revisions the controller records are read from here with
/// `aptc history --state kube:///NAMESPACE`.
fn controller_in_the_cluster() {
    let Ok(image) = std::env::var("APTC_E2E_IMAGE") else {
        println!("e2e: controller: SKIPPED, set APTC_E2E_IMAGE to an aptc image the cluster can pull");
        return;
    };
    let namespace = "aptc-e2e-controller";
    let printed = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["controller", "manifests", "--namespace", namespace, "--image", &image])
        .output()
        .unwrap();
    assert!(printed.status.success());
    let manifests = String::from_utf8(printed.stdout).unwrap();
    kubectl(&["apply", "-f", "-"], &manifests, true);
    kubectl(&["-n", namespace, "rollout", "status", "deployment/aptc-controller", "--timeout=300s"], "", true);

    // A policy of two users; the claims' namespace and the right to file claims there.
    let dir = root().join("target/e2e/controller");
    let _ = std::fs::remove_dir_all(&dir);
    let policy = dir.join("policy");
    std::fs::create_dir_all(policy.join("k8s")).unwrap();
    std::fs::write(
        policy.join("system.apt"),
        "namespace system\n\nuser \"e2e-ada\"\nuser \"e2e-eve\"\n\ncluster here {\n    namespace \"aptc-e2e-apps\"\n    kubeconfig in_cluster\n}\n\nrule everywhere {\n    place on here\n}\n",
    )
    .unwrap();
    std::fs::write(
        policy.join("aptc_e2e_claims.apt"),
        "namespace aptc_e2e_claims\n\nlabel env: \"dev\" | \"prod\" = \"dev\"\n\nrule no_prod when labels.env == \"prod\" {\n    reject \"no prod in e2e\"\n}\n\nservice site {\n    component config manifests \"k8s/*.yaml\"\n}\n\ncontract site {\n    context all {\n        allocate per user.name\n        use site\n    }\n}\n",
    )
    .unwrap();
    std::fs::write(
        policy.join("k8s/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${instance.name}\ndata:\n  by: aptc\n",
    )
    .unwrap();
    let pushed = Command::new(env!("CARGO_BIN_EXE_aptc")).args(["push"]).arg(&policy).output().unwrap();
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let access = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": [
        { "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "aptc-e2e-claims" } },
        { "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "aptc-e2e-apps" } },
        // What the policy's objects need, for the controller's service account (docs/controller.md).
        { "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
          "metadata": { "name": "aptc-apply", "namespace": "aptc-e2e-apps" },
          "rules": [{ "apiGroups": [""], "resources": ["configmaps"],
                      "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] }] },
        { "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
          "metadata": { "name": "aptc-apply", "namespace": "aptc-e2e-apps" },
          "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "aptc-apply" },
          "subjects": [{ "kind": "ServiceAccount", "name": "aptc-controller", "namespace": namespace }] },
        { "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
          "metadata": { "name": "claims", "namespace": "aptc-e2e-claims" },
          "rules": [{ "apiGroups": ["aptc.dev"], "resources": ["claims"], "verbs": ["get", "create", "patch", "update"] }] },
        { "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
          "metadata": { "name": "claims", "namespace": "aptc-e2e-claims" },
          "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "claims" },
          "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "e2e-ada" },
                       { "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "e2e-eve" }] }
    ]});
    kubectl(&["apply", "-f", "-"], &access.to_string(), true);

    // Two users file their own claims; one files a claim in the other's name and is refused.
    kubectl(&["apply", "--as", "e2e-ada", "-f", "-"], &claim_yaml("ada", "e2e-ada", serde_json::json!({})), true);
    let prod = claim_yaml("eve-prod", "e2e-eve", serde_json::json!({ "env": "prod" }));
    kubectl(&["apply", "--as", "e2e-eve", "-f", "-"], &prod, true);
    let refused = kubectl(
        &["apply", "--as", "e2e-eve", "-f", "-"],
        &claim_yaml("posing", "e2e-ada", serde_json::json!({})),
        false,
    );
    assert!(refused.contains("spec.user must be the requesting user (e2e-eve), not e2e-ada"), "{refused}");

    let state = |name: &str| {
        kubectl(&["-n", "aptc-e2e-claims", "get", "claim", name, "-o", "jsonpath={.status.state}"], "", true)
    };
    // Applied objects in the apps namespace, as aptc labels them.
    let objects = || {
        let names =
            kubectl(&["-n", "aptc-e2e-apps", "get", "configmaps", "-l", "aptc.dev/instance", "-o", "name"], "", true);
        names.lines().filter(|l| l.starts_with("configmap/")).count()
    };
    assert!(wait_for(180, || state("ada") == "Ready"), "ada: {}", state("ada"));
    assert_eq!(objects(), 1, "ada's instance only (eve's prod claim is rejected)");
    assert!(wait_for(120, || state("eve-prod") == "Rejected"), "eve-prod: {}", state("eve-prod"));
    let why = kubectl(
        &[
            "-n",
            "aptc-e2e-claims",
            "get",
            "claim",
            "eve-prod",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Rejected\")].message}",
        ],
        "",
        true,
    );
    assert!(why.contains("no prod in e2e"), "{why}");

    // Failover: the leader's pod goes; a claim filed meanwhile still reaches its status.
    let holder = kubectl(
        &["-n", namespace, "get", "lease", "aptc-controller-leader", "-o", "jsonpath={.spec.holderIdentity}"],
        "",
        true,
    );
    kubectl(&["-n", namespace, "delete", "pod", holder.trim(), "--wait=false"], "", true);
    kubectl(&["apply", "--as", "e2e-eve", "-f", "-"], &claim_yaml("eve", "e2e-eve", serde_json::json!({})), true);
    assert!(wait_for(180, || state("eve") == "Ready"), "eve: {}", state("eve"));
    assert_eq!(objects(), 2, "one instance per user");
    let new_holder = kubectl(
        &["-n", namespace, "get", "lease", "aptc-controller-leader", "-o", "jsonpath={.spec.holderIdentity}"],
        "",
        true,
    );
    assert_ne!(new_holder.trim(), holder.trim(), "another replica leads");

    // One history, kept in the cluster by whichever replica led, read from here.
    let history = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["history", "--format", "json", "--state", &format!("kube:///{namespace}")])
        .output()
        .unwrap();
    assert!(history.status.success(), "{}", String::from_utf8_lossy(&history.stderr));
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains("\"aptc-controller\""), "revisions recorded by the controller: {history}");

    kubectl(&["delete", "namespace", "aptc-e2e-claims", "--wait=false"], "", true);
    kubectl(&["delete", "namespace", "aptc-e2e-apps", "--wait=false"], "", true);
    kubectl(&["delete", "-f", "-", "--wait=false"], &manifests, true);
}
