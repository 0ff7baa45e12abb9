//! The applier against the fake API server ([`aptc_kube_fake`]): what goes over the wire, and what
//! the cluster holds afterwards.

use aptc_kube_fake::FakeApi;
use serde_json::{Value, json};

use super::{Applier, K8sError, LABEL_MANAGED};
use crate::connection::Connection;
use crate::manifest::{ANNOTATION_KEY, LABEL_INSTANCE, LABEL_REVISION, Stamp, stamp};
use crate::plan::Unit;
use crate::retry::Backoff;

const CM: &str = "/api/v1/namespaces/team-ns/configmaps";
const INVENTORY: &str = "/api/v1/namespaces/team-ns/configmaps/aptc-inventory-web-id";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/team-ns/deployments/web";

fn unit() -> Unit {
    let mut unit = crate::plan::tests::unit("web", &[]);
    unit.k8s_namespace = "team-ns".into();
    unit
}

fn applier(fake: &FakeApi) -> Applier {
    Applier::with_client("system.local", || fake.client(), Backoff::immediate(4)).unwrap()
}

fn stamped(revision: u64, objects: Vec<Value>) -> Vec<Value> {
    let how = Stamp { instance_id: "web-id".into(), instance_key: "web".into(), revision, namespace: "team".into() };
    objects
        .into_iter()
        .map(|mut object| {
            stamp(&mut object, &how).unwrap();
            object
        })
        .collect()
}

fn config_map(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "k": name } })
}

fn deployment(replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
        "spec": { "replicas": replicas, "template": { "spec": { "containers": [{ "name": "c", "image": "nginx" }] } } },
    })
}

/// The inventory's listed objects as `Kind ns/name`.
fn inventory_of(fake: &FakeApi) -> Vec<String> {
    let inventory = fake.object(INVENTORY).expect("an inventory");
    let listed: Vec<Value> = serde_json::from_str(inventory["data"]["objects"].as_str().unwrap()).unwrap();
    listed
        .iter()
        .map(|o| match o.get("namespace") {
            Some(ns) => {
                format!("{} {}/{}", o["kind"].as_str().unwrap(), ns.as_str().unwrap(), o["name"].as_str().unwrap())
            }
            None => format!("{} {}", o["kind"].as_str().unwrap(), o["name"].as_str().unwrap()),
        })
        .collect()
}

#[test]
fn objects_are_server_side_applied_as_aptc_into_a_namespace_created_for_them() {
    let fake = FakeApi::new();
    let summary = applier(&fake).apply(&unit(), 1, &stamped(1, vec![config_map("settings"), deployment(2)])).unwrap();
    assert_eq!((summary.applied, summary.pruned, summary.detail.as_str()), (2, 0, "2 objects applied"));

    let patches: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "PATCH").collect();
    let paths: Vec<&str> = patches.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/api/v1/namespaces/team-ns", &format!("{CM}/settings"), DEPLOYMENT, INVENTORY]);
    for patch in &patches {
        assert_eq!(patch.content_type, "application/apply-patch+yaml", "{patch:?}");
        assert!(patch.params().contains(&"fieldManager=aptc") && patch.params().contains(&"force=true"), "{patch:?}");
    }
    let namespace = patches[0].json();
    assert_eq!(
        (namespace["kind"].as_str(), namespace["metadata"]["labels"][LABEL_MANAGED].as_str()),
        (Some("Namespace"), Some("true"))
    );
    let sent = patches[1].json();
    assert_eq!(sent["metadata"]["namespace"], "team-ns");
    assert_eq!(sent["metadata"]["labels"][LABEL_INSTANCE], "web-id");
    assert_eq!(sent["data"]["k"], "settings");

    let inventory = fake.object(INVENTORY).unwrap();
    assert_eq!(inventory["metadata"]["labels"][LABEL_INSTANCE], "web-id");
    assert_eq!(inventory["metadata"]["annotations"][ANNOTATION_KEY], "web");
    assert_eq!(inventory["data"]["revision"], "1");
    let listed: Value = serde_json::from_str(inventory["data"]["objects"].as_str().unwrap()).unwrap();
    assert_eq!(
        listed,
        json!([
            { "apiVersion": "v1", "kind": "ConfigMap", "namespace": "team-ns", "name": "settings" },
            { "apiVersion": "apps/v1", "kind": "Deployment", "namespace": "team-ns", "name": "web" },
        ])
    );
}

#[test]
fn namespaces_and_crds_go_first_and_new_kinds_are_discovered_after_the_crds() {
    let fake = FakeApi::new();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.example.com", "namespace": "ignored" },
        "spec": { "group": "example.com", "scope": "Namespaced", "names": { "kind": "Widget", "plural": "widgets" },
                  "versions": [{ "name": "v1", "served": true, "storage": true }] },
    });
    let widget =
        json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w", "namespace": "extra" } });
    let namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "extra" } });
    let objects = stamped(1, vec![widget, deployment(1), crd, namespace]);
    let applier = applier(&fake);
    applier.apply(&unit(), 1, &objects).unwrap();
    assert_eq!(
        fake.paths_of("PATCH"),
        [
            "/api/v1/namespaces/extra",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
            "/apis/example.com/v1/namespaces/extra/widgets/w",
            "/api/v1/namespaces/team-ns",
            DEPLOYMENT,
            INVENTORY,
        ]
    );
    // The declared namespace is applied as declared (not labelled managed); the CRD is sent
    // without a namespace, being cluster-scoped.
    let requests = fake.requests();
    let first = requests.iter().find(|r| r.method == "PATCH").unwrap().json();
    assert!(first["metadata"]["labels"].get(LABEL_MANAGED).is_none());
    let crd_sent = requests.iter().find(|r| r.path.contains("customresourcedefinitions")).unwrap().json();
    assert!(crd_sent["metadata"].get("namespace").is_none());
    assert_eq!(inventory_of(&fake)[..2], ["Namespace extra", "CustomResourceDefinition widgets.example.com"]);

    // A new CRD in a group/version discovery has cached already: discovery is asked again.
    let gadgets = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "gadgets.example.com" },
        "spec": { "group": "example.com", "scope": "Cluster", "names": { "kind": "Gadget", "plural": "gadgets" },
                  "versions": [{ "name": "v1", "served": true, "storage": true }] },
    });
    let gadget = json!({ "apiVersion": "example.com/v1", "kind": "Gadget", "metadata": { "name": "g" } });
    let mut more = objects.clone();
    more.extend(stamped(2, vec![gadget, gadgets]));
    fake.clear_requests();
    applier.apply(&unit(), 2, &more).unwrap();
    assert!(fake.object("/apis/example.com/v1/gadgets/g").is_some());
    assert_eq!(fake.paths_of("GET").iter().filter(|p| *p == "/apis/example.com/v1").count(), 1);
}

#[test]
fn pruning_deletes_exactly_the_objects_that_left_the_unit() {
    let fake = FakeApi::new();
    let applier = applier(&fake);
    applier.apply(&unit(), 1, &stamped(1, vec![config_map("a"), config_map("b"), config_map("c")])).unwrap();
    fake.clear_requests();
    let summary = applier.apply(&unit(), 2, &stamped(2, vec![config_map("a"), config_map("c")])).unwrap();
    assert_eq!(summary.detail, "2 objects applied, 1 pruned");
    let deletes: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].path, format!("{CM}/b"));
    assert_eq!(deletes[0].json()["propagationPolicy"], "Background");
    assert!(fake.object(&format!("{CM}/a")).is_some() && fake.object(&format!("{CM}/c")).is_some());
    assert!(fake.object(&format!("{CM}/b")).is_none());
    assert_eq!(inventory_of(&fake), ["ConfigMap team-ns/a", "ConfigMap team-ns/c"]);
    assert_eq!(fake.object(INVENTORY).unwrap()["data"]["revision"], "2");

    // Deleted by hand already: fine, and not counted.
    applier.apply(&unit(), 3, &stamped(3, vec![config_map("a"), config_map("c")])).unwrap();
    fake.remove(&format!("{CM}/c"));
    assert_eq!(applier.apply(&unit(), 4, &stamped(4, vec![config_map("a")])).unwrap().detail, "1 object applied");
    assert_eq!(inventory_of(&fake), ["ConfigMap team-ns/a"]);
}

#[test]
fn deleting_removes_every_object_and_the_inventory() {
    let fake = FakeApi::new();
    let applier = applier(&fake);
    assert!(!applier.is_present(&unit()).unwrap());
    applier.apply(&unit(), 1, &stamped(1, vec![config_map("a"), deployment(1)])).unwrap();
    assert!(applier.is_present(&unit()).unwrap());
    fake.clear_requests();
    let summary = applier.delete(&unit()).unwrap();
    assert_eq!((summary.pruned, summary.detail.as_str()), (2, "2 objects deleted"));
    assert_eq!(fake.paths_of("DELETE"), [DEPLOYMENT, &format!("{CM}/a"), INVENTORY]);
    assert_eq!(fake.paths(), ["/api/v1/namespaces/default", "/api/v1/namespaces/team-ns"]);
    assert!(!applier.is_present(&unit()).unwrap());
    assert_eq!(applier.delete(&unit()).unwrap().detail, "0 objects deleted");
}

#[test]
fn unavailable_answers_are_retried_until_one_succeeds() {
    let fake = FakeApi::new();
    fake.fail_next("PATCH", "/configmaps/settings", 2, 503);
    fake.fail_next("GET", "/apis/apps/v1", 1, 503);
    applier(&fake).apply(&unit(), 1, &stamped(1, vec![config_map("settings"), deployment(1)])).unwrap();
    let attempts = fake.paths_of("PATCH").iter().filter(|p| p.ends_with("/settings")).count();
    assert_eq!(attempts, 3);
    assert_eq!(fake.paths_of("GET").iter().filter(|p| *p == "/apis/apps/v1").count(), 2);
    assert!(fake.object(DEPLOYMENT).is_some());

    // Out of attempts: the error says what was tried and why.
    let fake = FakeApi::new();
    fake.fail_next("PATCH", "/configmaps/settings", 10, 503);
    let error = applier(&fake).apply(&unit(), 1, &stamped(1, vec![config_map("settings")])).unwrap_err();
    assert_eq!(fake.paths_of("PATCH").iter().filter(|p| p.ends_with("/settings")).count(), 4);
    assert!(error.to_string().contains("ServiceUnavailable"), "{error}");
}

#[test]
fn a_refusal_is_not_retried_names_the_object_and_keeps_what_was_applied_tracked() {
    let fake = FakeApi::new();
    let applier = applier(&fake);
    applier.apply(&unit(), 1, &stamped(1, vec![config_map("old")])).unwrap();
    fake.clear_requests();
    fake.fail_next("PATCH", "/configmaps/second", 1, 403);
    let objects = stamped(2, vec![config_map("first"), config_map("second"), config_map("third")]);
    let error = applier.apply(&unit(), 2, &objects).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, K8sError::Api { action: "apply", .. }), "{error:?}");
    assert!(message.contains("ConfigMap team-ns/second"), "{message}");
    assert!(message.contains("system.local") && message.contains("forbidden"), "{message}");
    assert_eq!(fake.paths_of("PATCH").iter().filter(|p| p.ends_with("/second")).count(), 1);
    assert!(fake.paths_of("PATCH").iter().all(|p| !p.ends_with("/third")));
    assert!(fake.paths_of("DELETE").is_empty());
    assert_eq!(inventory_of(&fake), ["ConfigMap team-ns/old", "ConfigMap team-ns/first"]);
}

#[test]
fn fingerprints_change_with_hand_edits_and_deletions_only() {
    let fake = FakeApi::new();
    let applier = applier(&fake);
    let objects = stamped(1, vec![config_map("settings"), deployment(2)]);
    applier.apply(&unit(), 1, &objects).unwrap();
    let first = applier.fingerprint(&unit(), &objects).unwrap();
    assert_eq!(first.keys().collect::<Vec<_>>(), ["ConfigMap/team-ns/settings", "Deployment/team-ns/web"]);
    assert!(first.values().all(|h| h.starts_with("sha256:")));
    assert_eq!(applier.fingerprint(&unit(), &objects).unwrap(), first);

    // A new revision of the same objects, and server-side status changes: no drift.
    let again = stamped(2, vec![config_map("settings"), deployment(2)]);
    applier.apply(&unit(), 2, &again).unwrap();
    fake.edit(DEPLOYMENT, |d| d["status"]["replicas"] = json!(0));
    assert_eq!(applier.fingerprint(&unit(), &again).unwrap(), first);
    assert_eq!(fake.object(DEPLOYMENT).unwrap()["metadata"]["labels"][LABEL_REVISION], "2");

    fake.edit(DEPLOYMENT, |d| d["spec"]["replicas"] = json!(5));
    let edited = applier.fingerprint(&unit(), &again).unwrap();
    assert_ne!(edited["Deployment/team-ns/web"], first["Deployment/team-ns/web"]);
    assert_eq!(edited["ConfigMap/team-ns/settings"], first["ConfigMap/team-ns/settings"]);

    fake.remove(&format!("{CM}/settings"));
    let deleted = applier.fingerprint(&unit(), &again).unwrap();
    assert_eq!(deleted.keys().collect::<Vec<_>>(), ["Deployment/team-ns/web"]);
}

#[test]
fn unknown_kinds_and_bad_objects_fail_clearly_before_anything_is_applied() {
    let fake = FakeApi::new();
    let applier = applier(&fake);
    let widget = json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w" } });
    let error = applier.apply(&unit(), 1, &stamped(1, vec![widget])).unwrap_err();
    assert!(matches!(error, K8sError::UnknownKind { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("Widget") && message.contains("example.com/v1") && message.contains("system.local"),
        "{message}"
    );
    let typo = json!({ "apiVersion": "v1", "kind": "ConfigMapp", "metadata": { "name": "x" } });
    assert!(applier.apply(&unit(), 1, &[typo]).unwrap_err().to_string().contains("ConfigMapp"));

    let nameless = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": {} });
    let error = applier.apply(&unit(), 1, &[config_map("fine"), nameless]).unwrap_err();
    assert!(error.to_string().contains("metadata.name"), "{error}");
    assert!(applier.fingerprint(&unit(), &[json!({ "metadata": { "name": "x" } })]).is_err());
    assert!(fake.paths_of("PATCH").iter().all(|p| !p.contains("configmaps/fine")));
}

#[test]
fn existing_namespaces_are_left_alone() {
    let fake = FakeApi::new();
    let applier = applier(&fake);
    applier.ensure_namespace("default").unwrap();
    assert!(fake.paths_of("PATCH").is_empty());
    applier.ensure_namespace("fresh").unwrap();
    assert_eq!(fake.paths_of("PATCH"), ["/api/v1/namespaces/fresh"]);
    assert_eq!(fake.object("/api/v1/namespaces/fresh").unwrap()["metadata"]["labels"][LABEL_MANAGED], "true");
}

#[test]
fn connecting_to_a_cluster_that_does_not_answer_fails_quickly_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: me\n  user:\n    token: t\ncontexts:\n- name: nowhere-ctx\n  context:\n    cluster: nowhere\n    user: me\ncurrent-context: nowhere-ctx\n",
    )
    .unwrap();
    let connection = Connection {
        cluster: "system.prod".into(),
        kubeconfig: Some(path.clone()),
        context: Some("nowhere-ctx".into()),
        origin: None,
    };
    let started = std::time::Instant::now();
    let error = Applier::connect(&connection).err().expect("no cluster answers there");
    assert!(started.elapsed() < std::time::Duration::from_secs(7), "{:?}", started.elapsed());
    let message = error.to_string();
    assert!(matches!(error, K8sError::Unreachable { .. }), "{error:?}");
    assert!(message.contains("system.prod") && message.contains("nowhere-ctx"), "{message}");
    assert!(message.contains(&path.display().to_string()) && message.contains("127.0.0.1:1"), "{message}");

    let missing = Connection { context: Some("other".into()), ..connection };
    let message = Applier::connect(&missing).err().expect("no such context").to_string();
    assert!(message.contains("other") && message.contains("kubeconfig"), "{message}");
}
