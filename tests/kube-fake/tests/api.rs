//! The double against kube's own client and runtime, as a controller uses them: generic kinds
//! from CRDs, the verbs, resourceVersion conflicts, the status subresource and generations,
//! Leases, Events, and `kube::runtime::watcher` through dropped streams and `410 Gone`.

use std::time::Duration;

use aptc_kube_fake::FakeApi;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::watcher;
use serde_json::{Value, json};

/// The CRD of `widgets.example.dev`, namespaced, with a status subresource.
fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.example.dev" },
        "spec": {
            "group": "example.dev", "scope": "Namespaced",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                           "subresources": { "status": {} },
                           "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }],
        },
    })
}

fn widget(name: &str, size: u64) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.dev/v1", "kind": "Widget",
        "metadata": { "name": name, "labels": { "size": if size > 2 { "big" } else { "small" } } },
        "spec": { "size": size },
        "status": { "ignored": "on create" },
    }))
    .unwrap()
}

/// Applies the widget CRD and returns the API of widgets in `default`, found through discovery
/// as a controller finds a kind.
async fn widgets(client: &kube::Client) -> Api<DynamicObject> {
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(widget_crd()).unwrap();
    crds.patch("widgets.example.dev", &PatchParams::apply("installer"), &Patch::Apply(&crd)).await.unwrap();
    let established = crds.get("widgets.example.dev").await.unwrap();
    assert_eq!(established.data["status"]["conditions"][1]["type"], "Established");
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (resource, capabilities) =
        discovery.resolve_gvk(&GroupVersionKind::gvk("example.dev", "v1", "Widget")).expect("Widget is discovered");
    assert_eq!(resource.plural, "widgets");
    assert_eq!(capabilities.scope, kube::discovery::Scope::Namespaced);
    assert!(capabilities.subresources.iter().any(|(sub, _)| sub.plural == "widgets/status" || sub.plural == "status"));
    Api::namespaced_with(client.clone(), "default", &resource)
}

fn code(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason),
        other => panic!("not an API error: {other}"),
    }
}

/// Create, get, list (with a resourceVersion and label selectors), replace, merge patch, apply and
/// delete of a kind a CRD defines.
#[tokio::test]
async fn a_crd_kind_is_served_with_every_verb() {
    let fake = FakeApi::new();
    let api = widgets(&fake.client()).await;

    let created = api.create(&PostParams::default(), &widget("a", 1)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.data.get("status").is_none(), "status is a subresource: ignored on create");
    let again = api.create(&PostParams::default(), &widget("a", 1)).await.unwrap_err();
    assert_eq!(code(again), (409, "AlreadyExists".to_string()));
    api.create(&PostParams::default(), &widget("b", 5)).await.unwrap();

    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    assert_eq!(list.metadata.resource_version, Some(fake.resource_version().to_string()));
    let big = api.list(&ListParams::default().labels("size in (big,huge)")).await.unwrap();
    assert_eq!(big.items.iter().map(|w| w.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["b"]);
    let bad = api.list(&ListParams::default().labels("size in (big")).await.unwrap_err();
    assert_eq!(code(bad).0, 400);

    let mut read = api.get("a").await.unwrap();
    read.data["spec"]["size"] = json!(2);
    let replaced = api.replace("a", &PostParams::default(), &read).await.unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    let patched = api
        .patch("a", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "labels": { "x": "y" } } })))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2), "a metadata change leaves the generation");
    assert_eq!(patched.labels()["size"], "small");
    let applied = api
        .patch(
            "c",
            &PatchParams::apply("ctl"),
            &Patch::Apply(json!({ "apiVersion": "example.dev/v1", "kind": "Widget", "spec": { "size": 3 } })),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["size"], 3);

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(api.get("a").await.unwrap_err()), (404, "NotFound".to_string()));
    assert_eq!(code(api.delete("a", &DeleteParams::default()).await.unwrap_err()).0, 404);
}

/// Every write carrying a stale `metadata.resourceVersion` is refused with `409 Conflict`; the
/// resourceVersion is one sequence across kinds.
#[tokio::test]
async fn stale_writes_conflict() {
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let map = serde_json::from_value(json!({ "metadata": { "name": "m" }, "data": { "k": "1" } })).unwrap();
    let first = maps.create(&PostParams::default(), &map).await.unwrap();
    let mut second = first.clone();
    second.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = maps.replace("m", &PostParams::default(), &second).await.unwrap();
    let (old, new) = (first.metadata.resource_version.clone().unwrap(), updated.metadata.resource_version.unwrap());
    assert!(new.parse::<u64>().unwrap() > old.parse::<u64>().unwrap());

    let stale = maps.replace("m", &PostParams::default(), &first).await.unwrap_err();
    let kube::Error::Api(response) = stale else { panic!("an API error") };
    assert_eq!((response.code, response.reason.as_str()), (409, "Conflict"));
    assert!(response.message.contains("the object has been modified"), "{}", response.message);
    let merge = json!({ "metadata": { "resourceVersion": old }, "data": { "k": "3" } });
    assert_eq!(code(maps.patch("m", &PatchParams::default(), &Patch::Merge(&merge)).await.unwrap_err()).0, 409);
    let precondition = DeleteParams {
        preconditions: Some(kube::api::Preconditions { resource_version: Some(old), uid: None }),
        ..DeleteParams::default()
    };
    assert_eq!(code(maps.delete("m", &precondition).await.unwrap_err()).0, 409);
    assert_eq!(maps.get("m").await.unwrap().data.unwrap()["k"], "2");
}

/// `/status` writes change only the status, main-resource writes never the status, and the
/// generation counts spec changes only.
#[tokio::test]
async fn status_is_a_subresource() {
    let fake = FakeApi::new();
    let api = widgets(&fake.client()).await;
    api.create(&PostParams::default(), &widget("w", 1)).await.unwrap();

    let status = json!({ "status": { "ready": true }, "spec": { "size": 99 } });
    let patched = api.patch_status("w", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    assert_eq!(patched.data["status"]["ready"], true);
    assert_eq!(patched.data["spec"]["size"], 1, "a status write leaves the spec");
    assert_eq!(patched.metadata.generation, Some(1));

    let mut whole = api.get("w").await.unwrap();
    whole.data["status"] = json!({ "ready": false });
    whole.data["spec"]["size"] = json!(4);
    let replaced = api.replace("w", &PostParams::default(), &whole).await.unwrap();
    assert_eq!(replaced.data["status"]["ready"], true, "a main-resource write leaves the status");
    assert_eq!(replaced.metadata.generation, Some(2));

    let mut status_only = replaced.clone();
    status_only.data["status"] = json!({ "ready": false, "observedGeneration": 2 });
    let replaced = api.replace_status("w", &PostParams::default(), &status_only).await.unwrap();
    assert_eq!(replaced.data["status"]["observedGeneration"], 2);
    let ready = Patch::Apply(json!({ "apiVersion": "example.dev/v1", "kind": "Widget", "status": { "ready": true } }));
    let taken = api.patch_status("w", &PatchParams::apply("ctl"), &ready).await.unwrap_err();
    assert_eq!(code(taken).0, 409, "another manager set status.ready");
    let applied = api.patch_status("w", &PatchParams::apply("ctl").force(), &ready).await.unwrap();
    assert_eq!(applied.data["status"]["ready"], true);
    assert_eq!(applied.metadata.generation, Some(2));
    let stale = api.replace_status("w", &PostParams::default(), &whole).await;
    assert_eq!(code(stale.unwrap_err()).0, 409);
}

/// A Lease acquired, renewed, and taken over; two candidates racing for it from the same
/// resourceVersion: one wins, the other gets `409 Conflict`.
#[tokio::test]
async fn leases_are_taken_with_optimistic_concurrency() {
    let fake = FakeApi::new();
    let leases: Api<Lease> = Api::default_namespaced(fake.client());
    let lease = |holder: &str| -> Lease {
        serde_json::from_value(json!({
            "metadata": { "name": "leader" },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 0 },
        }))
        .unwrap()
    };
    leases.create(&PostParams::default(), &lease("a")).await.unwrap();
    assert_eq!(code(leases.create(&PostParams::default(), &lease("b")).await.unwrap_err()).0, 409);

    let mut renewed = leases.get("leader").await.unwrap();
    renewed.spec.as_mut().unwrap().lease_duration_seconds = Some(20);
    let renewed = leases.replace("leader", &PostParams::default(), &renewed).await.unwrap();

    let mut by_b = renewed.clone();
    let spec = by_b.spec.as_mut().unwrap();
    spec.holder_identity = Some("b".into());
    spec.lease_transitions = Some(1);
    let mut by_c = renewed.clone();
    by_c.spec.as_mut().unwrap().holder_identity = Some("c".into());
    leases.replace("leader", &PostParams::default(), &by_b).await.unwrap();
    let lost = leases.replace("leader", &PostParams::default(), &by_c).await.unwrap_err();
    assert_eq!(code(lost), (409, "Conflict".to_string()));
    let held = leases.get("leader").await.unwrap();
    assert_eq!(held.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

/// Events of both APIs are served, named by `generateName` too.
#[tokio::test]
async fn events_are_served() {
    let fake = FakeApi::new();
    let events: Api<Event> = Api::default_namespaced(fake.client());
    let event: Event = serde_json::from_value(json!({
        "metadata": { "generateName": "claim-" }, "eventTime": "2025-01-01T00:00:00.000000Z",
        "reason": "Applied", "action": "Apply", "type": "Normal", "reportingController": "aptc.dev/controller",
        "reportingInstance": "aptc-0", "note": "applied",
    }))
    .unwrap();
    let created = events.create(&PostParams::default(), &event).await.unwrap();
    assert!(created.metadata.name.unwrap().starts_with("claim-"));
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(fake.client());
    assert!(core.list(&ListParams::default()).await.unwrap().items.is_empty(), "the two APIs keep their own");
}

/// Waits for the watcher's next event (a test that hangs is a failure, not a timing).
async fn next<S: futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin>(
    stream: &mut S,
) -> watcher::Event<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(30), stream.try_next())
        .await
        .expect("the watcher gets an event")
        .expect("the watcher has no error")
        .expect("the watcher goes on")
}

fn names(event: &watcher::Event<ConfigMap>) -> (&'static str, Vec<String>) {
    let name = |m: &ConfigMap| m.metadata.name.clone().unwrap();
    match event {
        watcher::Event::Apply(m) => ("apply", vec![name(m)]),
        watcher::Event::Delete(m) => ("delete", vec![name(m)]),
        watcher::Event::Init => ("init", vec![]),
        watcher::Event::InitApply(m) => ("init-apply", vec![name(m)]),
        watcher::Event::InitDone => ("init-done", vec![]),
    }
}

fn map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name }, "data": {} })).unwrap()
}

/// kube's watcher over real HTTP: the initial list, then changes as they happen; after the double
/// drops the stream it watches again from where it was, missing nothing; after the history it
/// would resume from was compacted (`410 Gone`), it lists again.
#[tokio::test]
async fn kube_watcher_follows_changes_through_dropped_streams_and_gone() {
    let fake = FakeApi::new();
    let url = fake.serve().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    aptc_kube_fake::write_kubeconfig(&path, &url, "fake").unwrap();
    let options = kube::config::KubeConfigOptions { context: Some("fake".into()), ..Default::default() };
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let client =
        kube::Client::try_from(kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap()).unwrap();
    let maps: Api<ConfigMap> = Api::default_namespaced(client);
    maps.create(&PostParams::default(), &map("a")).await.unwrap();

    let mut events = watcher(maps.clone(), watcher::Config::default()).boxed();
    assert_eq!(names(&next(&mut events).await).0, "init");
    assert_eq!(names(&next(&mut events).await), ("init-apply", vec!["a".to_string()]));
    assert_eq!(names(&next(&mut events).await).0, "init-done");

    maps.create(&PostParams::default(), &map("b")).await.unwrap();
    assert_eq!(names(&next(&mut events).await), ("apply", vec!["b".to_string()]));

    fake.drop_watches();
    maps.create(&PostParams::default(), &map("c")).await.unwrap();
    maps.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(names(&next(&mut events).await), ("apply", vec!["c".to_string()]));
    assert_eq!(names(&next(&mut events).await), ("delete", vec!["a".to_string()]));
    let watches = fake.requests().iter().filter(|r| r.query.contains("watch=true")).count();
    assert!(watches >= 2, "the watcher watched again after the stream ended");

    // The watcher watches again only when polled: the history it would resume from is compacted
    // before it does.
    fake.drop_watches();
    fake.insert("/api/v1/namespaces/default/configmaps/d", serde_json::to_value(map("d")).unwrap());
    fake.compact();
    let gone = tokio::time::timeout(Duration::from_secs(30), events.next()).await.unwrap().unwrap();
    match gone {
        Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    assert_eq!(names(&next(&mut events).await).0, "init", "after 410 Gone, the watcher lists again");
    let mut listed = Vec::new();
    loop {
        match names(&next(&mut events).await) {
            ("init-apply", name) => listed.extend(name),
            ("init-done", _) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(listed, ["b", "c", "d"]);
}

/// The raw watch protocol: events after a resourceVersion, a BOOKMARK when asked for, the ERROR
/// event with a 410 Status for a compacted one, and the stream ending at `timeoutSeconds`.
#[tokio::test]
async fn watch_protocol() {
    let fake = FakeApi::new();
    let client = fake.client();
    let maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let created = maps.create(&PostParams::default(), &map("a")).await.unwrap();
    let since = created.metadata.resource_version.unwrap();
    maps.patch("a", &PatchParams::default(), &Patch::Merge(json!({ "data": { "k": "v" } }))).await.unwrap();
    maps.delete("a", &DeleteParams::default()).await.unwrap();

    let lines = |query: String| {
        let client = client.clone();
        async move {
            let request =
                http::Request::get(format!("/api/v1/namespaces/default/configmaps?{query}")).body(Vec::new()).unwrap();
            let text = client.request_text(request).await.unwrap();
            text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>()
        }
    };
    let events = lines(format!("watch=true&resourceVersion={since}&allowWatchBookmarks=true&timeoutSeconds=1")).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["MODIFIED", "DELETED", "BOOKMARK"]);
    assert_eq!(events[2]["object"]["metadata"]["resourceVersion"], fake.resource_version().to_string());

    fake.compact();
    let gone = lines(format!("watch=true&resourceVersion={since}&timeoutSeconds=1")).await;
    assert_eq!(gone.len(), 1);
    assert_eq!((gone[0]["type"].as_str(), gone[0]["object"]["code"].as_u64()), (Some("ERROR"), Some(410)));
}
