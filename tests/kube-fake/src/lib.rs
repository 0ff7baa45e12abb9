//! A stand-in for the Kubernetes API server at the HTTP level, for aptc's tests only (this crate
//! is never a dependency of the product, only a dev-dependency): the real API cannot run where
//! the tests run, and aptc's cluster driver must be tested through the same requests it sends to
//! a real one.
//!
//! [`FakeApi`] serves discovery for a few built-in kinds (and the kinds of CRDs applied to it),
//! keeps objects in a map by URL path, records every request, and can be told to fail the next
//! requests with a status. It is reached in process as a tower service ([`FakeApi::client`], for
//! unit tests of the runtime) or over real HTTP on loopback ([`FakeApi::serve`] and
//! [`write_kubeconfig`], for running the `aptc` binary against it).

mod proto;
mod serve;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

pub use serve::write_kubeconfig;

/// One request as the server saw it, for tests to assert what went over the wire.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `GET`, `PATCH`, `DELETE`, …
    pub method: String,
    /// The URL path, which is also the key of the object it addresses.
    pub path: String,
    /// The query string without `?` (`fieldManager=aptc&force=true`).
    pub query: String,
    /// The `Content-Type` header (`application/apply-patch+yaml` for server-side apply).
    pub content_type: String,
    /// The request body as text (JSON for everything kube sends).
    pub body: String,
    /// The request body as sent (protobuf from client-go's typed clients).
    pub raw: Vec<u8>,
}

impl Recorded {
    /// The query's `key=value` pairs.
    pub fn params(&self) -> Vec<&str> {
        self.query.split('&').filter(|p| !p.is_empty()).collect()
    }

    /// The body as JSON (`null` if it is not JSON, such as an empty body); a protobuf body (core
    /// kinds from client-go, such as Helm's release Secrets) as the JSON of its object.
    pub fn json(&self) -> Value {
        if self.content_type.contains("protobuf") {
            return proto::decode(&self.raw).unwrap_or(Value::Null);
        }
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Clone)]
struct Kind {
    group: String,
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
}

impl Kind {
    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Kind {
        Kind { group: group.into(), version: version.into(), kind: kind.into(), plural: plural.into(), namespaced }
    }

    fn group_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
}

struct Failure {
    method: String,
    path_contains: String,
    left: u32,
    code: u16,
}

struct State {
    /// While set, requests of the method (`""`: any) whose path contains the text are not
    /// answered (held until [`FakeApi::come_back`]); `("", "")` holds every request.
    held: Vec<(String, String)>,
    kinds: Vec<Kind>,
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    failures: Vec<Failure>,
    version: u64,
}

/// An answer: the HTTP status and the JSON body, whichever transport carries it.
struct Answer {
    code: u16,
    body: Value,
}

/// The fake API server; clones share one state, so a test keeps one to inspect and change what
/// a client (or a served copy) works on.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl Default for FakeApi {
    fn default() -> FakeApi {
        FakeApi::new()
    }
}

impl FakeApi {
    /// A server with core v1 ConfigMap, Namespace, Service, Secret, apps/v1 Deployment and
    /// apiextensions.k8s.io/v1 CustomResourceDefinition, and the namespace `default`.
    pub fn new() -> FakeApi {
        let kinds = vec![
            Kind::new("", "v1", "ConfigMap", "configmaps", true),
            Kind::new("", "v1", "Namespace", "namespaces", false),
            Kind::new("", "v1", "Service", "services", true),
            Kind::new("", "v1", "Secret", "secrets", true),
            Kind::new("apps", "v1", "Deployment", "deployments", true),
            Kind::new("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false),
        ];
        let state = State {
            held: Vec::new(),
            kinds,
            objects: BTreeMap::new(),
            requests: Vec::new(),
            failures: Vec::new(),
            version: 0,
        };
        let fake = FakeApi { state: Arc::new(Mutex::new(state)) };
        fake.insert(
            "/api/v1/namespaces/default",
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "default" } }),
        );
        fake
    }

    /// A client talking to this server in process (to be called inside a tokio runtime).
    pub fn client(&self) -> kube::Client {
        let fake = self.clone();
        kube::Client::new(tower::service_fn(move |request| fake.clone().serve_tower(request)), "default")
    }

    /// Fails the next `count` requests of `method` whose path contains `path_contains` with
    /// HTTP `code`, to exercise retries and refusals.
    pub fn fail_next(&self, method: &str, path_contains: &str, count: u32, code: u16) {
        let failure = Failure { method: method.into(), path_contains: path_contains.into(), left: count, code };
        self.lock().failures.push(failure);
    }

    /// Stops the failures [`FakeApi::fail_next`] asked for.
    pub fn stop_failing(&self) {
        self.lock().failures.clear();
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The requests of `method`, as `path`.
    pub fn paths_of(&self, method: &str) -> Vec<String> {
        self.lock().requests.iter().filter(|r| r.method == method).map(|r| r.path.clone()).collect()
    }

    /// Forgets the requests so far, so that a test looks at those of its next step only.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// The object held at `path` (`/api/v1/namespaces/NS/configmaps/NAME`), as the server
    /// stores it.
    pub fn object(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// The paths of the objects held.
    pub fn paths(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    /// Puts an object there as if someone else had created it.
    pub fn insert(&self, path: &str, object: Value) {
        self.lock().objects.insert(path.into(), object);
    }

    /// Changes a held object as someone editing it by hand would.
    pub fn edit(&self, path: &str, change: impl FnOnce(&mut Value)) {
        change(self.lock().objects.get_mut(path).expect("the object to edit exists"));
    }

    /// Changes a held object as a client named `manager` updating it would (`kubectl edit` is
    /// `kubectl-edit`, `kubectl scale` is `kubectl`, a controller its own name): the fields whose
    /// values change become that manager's (an `Update` entry of `managedFields`), taken from
    /// whoever owned them.
    pub fn edit_as(&self, manager: &str, path: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.lock();
        state.version += 1;
        let version = state.version.to_string();
        let object = state.objects.get_mut(path).expect("the object to edit exists");
        let before = object.clone();
        change(object);
        let changed: Vec<Vec<String>> =
            leaves(object).into_iter().filter(|leaf| lookup(&before, leaf) != lookup(object, leaf)).collect();
        let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_string();
        let mut entries = managed_fields(object);
        for entry in &mut entries {
            entry.1.retain(|leaf| !changed.contains(leaf));
        }
        match entries.iter_mut().find(|e| e.0 == manager && e.2 == "Update") {
            Some(entry) => entry.1.extend(changed),
            None => entries.push((manager.to_string(), changed, "Update".to_string())),
        }
        object["metadata"]["managedFields"] = Value::Array(
            entries
                .iter()
                .filter(|e| !e.1.is_empty())
                .map(|(m, f, op)| managed_entry(m, op, &api_version, f))
                .collect(),
        );
        object["metadata"]["resourceVersion"] = json!(version);
    }

    /// The managers of the object at `path` and the fields each owns (`.data.greeting`).
    pub fn managers(&self, path: &str) -> Vec<(String, Vec<String>)> {
        let state = self.lock();
        let Some(object) = state.objects.get(path) else { return Vec::new() };
        managed_fields(object)
            .into_iter()
            .map(|(manager, fields, _)| (manager, fields.iter().map(|f| format!(".{}", f.join("."))).collect()))
            .collect()
    }

    /// Deletes an object as someone deleting it by hand would (nothing is recorded).
    pub fn remove(&self, path: &str) {
        self.lock().objects.remove(path);
    }

    /// Stops answering: every request from now on waits, unanswered, until [`FakeApi::come_back`]
    /// (an API server that went away, or a network that drops everything).
    pub fn go_away(&self) {
        self.hold("", "");
    }

    /// Stops answering the requests of `method` (`""`: any) whose path contains `path_contains`
    /// (the rest are served) until [`FakeApi::come_back`]: a client stuck partway through an
    /// operation.
    pub fn hold(&self, method: &str, path_contains: &str) {
        self.lock().held.push((method.into(), path_contains.into()));
    }

    /// Answers again, the held requests first.
    pub fn come_back(&self) {
        self.lock().held.clear();
    }

    /// Whether a request is held now (it is recorded once it is answered or held).
    fn holds(&self, request: &Recorded) -> bool {
        let state = self.lock();
        state.held.iter().any(|(method, path)| {
            (method.is_empty() || *method == request.method) && request.path.contains(path.as_str())
        })
    }

    /// Waits while a request is held; records it first, so tests see it arrive.
    async fn wait_while_held(&self, recorded: &Recorded) -> bool {
        if !self.holds(recorded) {
            return false;
        }
        self.lock().requests.push(recorded.clone());
        while self.holds(recorded) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    /// Records (unless it already was, while held) and answers.
    async fn answer(&self, recorded: Recorded) -> Answer {
        let was_held = self.wait_while_held(&recorded).await;
        self.handle(recorded, !was_held)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the request and answers it: an injected failure, or what the API server would.
    fn handle(&self, recorded: Recorded, record: bool) -> Answer {
        let mut state = self.lock();
        if record {
            state.requests.push(recorded.clone());
        }
        let failing = state
            .failures
            .iter_mut()
            .find(|f| f.left > 0 && f.method == recorded.method && recorded.path.contains(&f.path_contains));
        if let Some(failure) = failing {
            failure.left -= 1;
            return status(failure.code, "injected failure");
        }
        state.route(&recorded)
    }

    async fn serve_tower(self, request: Request<Body>) -> Result<Response<Body>, Infallible> {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let answer = self.answer(recorded(&parts, &body)).await;
        Ok(answer.into_response().map(Body::from))
    }
}

/// The parts of a request the fake looks at and records.
fn recorded(parts: &http::request::Parts, body: &[u8]) -> Recorded {
    let header = |name: http::header::HeaderName| {
        parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        content_type: header(http::header::CONTENT_TYPE),
        body: String::from_utf8_lossy(body).into_owned(),
        raw: body.to_vec(),
    }
}

impl Answer {
    /// The answer as an HTTP response with a JSON body.
    fn into_response(self) -> Response<Vec<u8>> {
        // A string: the body itself (a watch's stream of events).
        let body = match self.body {
            Value::String(text) => text.into_bytes(),
            body => body.to_string().into_bytes(),
        };
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response
    }
}

impl State {
    fn route(&mut self, request: &Recorded) -> Answer {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["version"] => return ok(&version_info()),
            ["api"] => {
                return ok(&json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [] }));
            }
            ["apis"] => return ok(&self.group_list()),
            ["openapi", "v3"] => return ok(&self.openapi_paths()),
            ["openapi", "v3", "api", version] => return ok(&self.openapi("", version)),
            ["openapi", "v3", "apis", group, version] => return ok(&self.openapi(group, version)),
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return status(404, "no such path"),
        };
        let (namespace, plural, name) = match rest {
            [] => return self.resource_list(group, version),
            ["namespaces", namespace, plural, name] => (Some(*namespace), *plural, *name),
            ["namespaces", namespace, plural] => {
                return self.collection(request, group, version, Some(namespace), plural);
            }
            [plural, name] => (None, *plural, *name),
            [plural] => return self.collection(request, group, version, None, plural),
            _ => return status(405, "subresources are not served"),
        };
        let found = self.kinds.iter().find(|k| {
            k.group == group && k.version == version && k.plural == plural && k.namespaced == namespace.is_some()
        });
        let Some(kind) = found.cloned() else {
            return status(404, &format!("the server could not find the requested resource ({plural})"));
        };
        match request.method.as_str() {
            "GET" => match self.objects.get(&request.path) {
                Some(object) => ok(object),
                None => not_found(&kind, name),
            },
            "PATCH" => self.apply(request, &kind, namespace),
            "PUT" => match request.json() {
                Value::Null => status(400, "the body is not an object"),
                object if self.objects.contains_key(&request.path) => {
                    let object = self.store(&request.path, object, None);
                    ok(&object)
                }
                _ => not_found(&kind, name),
            },
            "DELETE" => match self.objects.remove(&request.path) {
                Some(_) => {
                    if kind.kind == "Namespace" {
                        let inside = format!("/namespaces/{name}/");
                        self.objects.retain(|path, _| !path.contains(&inside));
                    }
                    ok(&json!({ "kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {} }))
                }
                None => not_found(&kind, name),
            },
            _ => status(405, "method not allowed"),
        }
    }

    /// A server-side apply, simplified: the applied object replaces the held one, plus what a
    /// server adds (bookkeeping, a defaulted field, status).
    fn apply(&mut self, request: &Recorded, kind: &Kind, namespace: Option<&str>) -> Answer {
        if request.content_type != "application/apply-patch+yaml" {
            return status(415, "only server-side apply is served");
        }
        if let Some(namespace) = namespace
            && !self.objects.contains_key(&format!("/api/v1/namespaces/{namespace}"))
        {
            return status(404, &format!("namespaces \"{namespace}\" not found"));
        }
        let Some(manager) = request.params().into_iter().find_map(|p| p.strip_prefix("fieldManager=")) else {
            return status(422, "PATCH with an apply patch requires a fieldManager");
        };
        let Ok(patch) = serde_json::from_str::<Value>(&request.body) else {
            return status(400, "the body is not JSON");
        };
        let force = request.params().contains(&"force=true");
        let previous = self.objects.get(&request.path).cloned();
        let mut object = match previous.clone() {
            Some(previous) => {
                match server_side_apply(previous, &patch, &decode(manager), &kind.group_version(), force) {
                    Ok(object) => object,
                    Err(conflicts) => {
                        let message = format!(
                            "Apply failed with {} conflict{}: {}",
                            conflicts.len(),
                            if conflicts.len() == 1 { "" } else { "s" },
                            conflicts.join(", ")
                        );
                        return status(409, &message);
                    }
                }
            }
            None => {
                let mut object = patch.clone();
                object["metadata"]["managedFields"] =
                    json!([managed_entry(&decode(manager), "Apply", &kind.group_version(), &leaves(&patch))]);
                object
            }
        };
        self.version += 1;
        let uid = previous
            .map_or(format!("uid-{}", self.version), |p| p["metadata"]["uid"].as_str().unwrap_or("").to_string());
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(uid);
        metadata["resourceVersion"] = json!(self.version.to_string());
        metadata["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
        if kind.kind == "Deployment" {
            if object["spec"].get("progressDeadlineSeconds").is_none() {
                object["spec"]["progressDeadlineSeconds"] = json!(600);
            }
            let replicas = object["spec"]["replicas"].as_u64().unwrap_or(1);
            object["metadata"]["generation"] = json!(1);
            object["status"] = json!({
                "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas, "observedGeneration": 1,
                "conditions": [{ "type": "Available", "status": "True" }, { "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" }],
            });
        }
        if kind.kind == "CustomResourceDefinition" {
            self.register(&object);
        }
        self.objects.insert(request.path.clone(), object.clone());
        ok(&object)
    }

    /// A collection: `GET` lists the objects held under it that match the `labelSelector`
    /// (equality terms only, as Helm's storage sends), `POST` creates one.
    fn collection(
        &mut self,
        request: &Recorded,
        group: &str,
        version: &str,
        namespace: Option<&str>,
        plural: &str,
    ) -> Answer {
        let found = self.kinds.iter().find(|k| {
            k.group == group && k.version == version && k.plural == plural && (k.namespaced || namespace.is_none())
        });
        let Some(kind) = found.cloned() else {
            return status(404, &format!("the server could not find the requested resource ({plural})"));
        };
        let prefix = request.path.trim_end_matches('/').to_string();
        match request.method.as_str() {
            "GET" => {
                let selector = request
                    .params()
                    .into_iter()
                    .find_map(|p| p.strip_prefix("labelSelector="))
                    .map(decode)
                    .unwrap_or_default();
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(path, object)| {
                        let in_collection = match (namespace, kind.namespaced) {
                            // All namespaces: `/api/v1/secrets` lists `/api/v1/namespaces/*/secrets/*`.
                            (None, true) => {
                                let base = prefix.trim_end_matches(&format!("/{plural}"));
                                path.starts_with(&format!("{base}/namespaces/"))
                                    && path.split('/').rev().nth(1) == Some(plural)
                            }
                            _ => path.strip_prefix(&format!("{prefix}/")).is_some_and(|n| !n.contains('/')),
                        };
                        in_collection && matches(&object["metadata"]["labels"], &selector)
                    })
                    .map(|(_, object)| object.clone())
                    .collect();
                if request.params().iter().any(|p| *p == "watch=true" || *p == "watch=1") {
                    return self.watch(request, &kind, items);
                }
                ok(&json!({
                    "kind": format!("{}List", kind.kind),
                    "apiVersion": kind.group_version(),
                    "metadata": { "resourceVersion": self.version.to_string() },
                    "items": items,
                }))
            }
            "POST" => {
                let object = request.json();
                if object.is_null() {
                    return status(400, "the body is not an object");
                }
                let Some(name) = object["metadata"]["name"].as_str().map(String::from) else {
                    return status(422, "metadata.name is required");
                };
                if let Some(namespace) = namespace
                    && !self.objects.contains_key(&format!("/api/v1/namespaces/{namespace}"))
                {
                    return status(404, &format!("namespaces \"{namespace}\" not found"));
                }
                let path = format!("{prefix}/{name}");
                if self.objects.contains_key(&path) {
                    return status(409, &format!("{} \"{name}\" already exists", kind.plural));
                }
                let manager = request.params().into_iter().find_map(|p| p.strip_prefix("fieldManager=")).map(decode);
                let object = self.store(&path, object, manager.as_deref().or(Some("unknown")));
                Answer { code: 201, body: object }
            }
            _ => status(405, "method not allowed"),
        }
    }

    /// A watch, as a stream that ends at once: asked for the initial events (`sendInitialEvents`,
    /// how client-go's informers start), every object as `ADDED` and the bookmark that ends them;
    /// otherwise, the objects changed since the `resourceVersion` given. A client then watches
    /// again (Helm's readiness wait reads the objects' state from these events).
    fn watch(&self, request: &Recorded, kind: &Kind, items: Vec<Value>) -> Answer {
        let params = request.params();
        let initial = params.contains(&"sendInitialEvents=true");
        let since: u64 =
            params.iter().find_map(|p| p.strip_prefix("resourceVersion=")).and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut lines = String::new();
        for item in items {
            let version: u64 = item["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
            if initial || version > since {
                let mut item = item;
                item["apiVersion"] = json!(kind.group_version());
                item["kind"] = json!(kind.kind);
                lines.push_str(&json!({ "type": "ADDED", "object": item }).to_string());
                lines.push('\n');
            }
        }
        if initial {
            let bookmark = json!({ "type": "BOOKMARK", "object": {
                "apiVersion": kind.group_version(), "kind": kind.kind,
                "metadata": { "resourceVersion": self.version.to_string(),
                              "annotations": { "k8s.io/initial-events-end": "true" } },
            }});
            lines.push_str(&bookmark.to_string());
            lines.push('\n');
        }
        Answer { code: 200, body: Value::String(lines) }
    }

    /// Keeps `object` at `path` with what a server adds (uid, resourceVersion, and a
    /// managedFields entry for `manager` when given); returns it.
    fn store(&mut self, path: &str, mut object: Value, manager: Option<&str>) -> Value {
        self.version += 1;
        let uid = self.objects.get(path).and_then(|p| p["metadata"]["uid"].as_str().map(String::from));
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(uid.unwrap_or_else(|| format!("uid-{}", self.version)));
        metadata["resourceVersion"] = json!(self.version.to_string());
        metadata["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
        if let Some(manager) = manager {
            let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_string();
            object["metadata"]["managedFields"] =
                json!([managed_entry(manager, "Update", &api_version, &leaves(&object))]);
        }
        self.objects.insert(path.to_string(), object.clone());
        object
    }

    /// Serves the kinds a CRD defines from now on.
    fn register(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        for version in spec["versions"].as_array().into_iter().flatten() {
            self.kinds.push(Kind {
                group: text(&spec["group"]),
                version: text(&version["name"]),
                kind: text(&spec["names"]["kind"]),
                plural: text(&spec["names"]["plural"]),
                namespaced: spec["scope"] == "Namespaced",
            });
        }
    }

    /// `/openapi/v3`: a document per group/version, as clients look them up.
    fn openapi_paths(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for kind in &self.kinds {
            let at = if kind.group.is_empty() {
                format!("api/{}", kind.version)
            } else {
                format!("apis/{}", kind.group_version())
            };
            paths.insert(at.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{at}?hash=fake") }));
        }
        json!({ "paths": paths })
    }

    /// The OpenAPI v3 document of a group/version: for each kind, the PATCH of an object, which
    /// takes `fieldValidation` (so clients leave validation to the server, as with a real one)
    /// and no schemas.
    fn openapi(&self, group: &str, version: &str) -> Value {
        let mut paths = serde_json::Map::new();
        for kind in self.kinds.iter().filter(|k| k.group == group && k.version == version) {
            let base = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
            let path = if kind.namespaced {
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", kind.plural)
            } else {
                format!("{base}/{}/{{name}}", kind.plural)
            };
            let operation = json!({
                "x-kubernetes-group-version-kind": { "group": group, "version": version, "kind": kind.kind },
                "parameters": [{ "name": "fieldValidation", "in": "query", "schema": { "type": "string" } }],
                "responses": { "200": { "description": "OK" } },
            });
            paths.insert(path, json!({ "patch": operation }));
        }
        json!({
            "openapi": "3.0.0",
            "info": { "title": "Kubernetes", "version": "v1.33.0" },
            "paths": paths,
            "components": { "schemas": {} },
        })
    }

    fn group_list(&self) -> Value {
        let mut groups: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for kind in self.kinds.iter().filter(|k| !k.group.is_empty()) {
            let version = json!({ "groupVersion": kind.group_version(), "version": kind.version });
            let versions = groups.entry(&kind.group).or_default();
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(name, versions)| json!({ "name": name, "preferredVersion": versions[0].clone(), "versions": versions }))
            .collect();
        json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
    }

    fn resource_list(&self, group: &str, version: &str) -> Answer {
        let resources: Vec<Value> = self
            .kinds
            .iter()
            .filter(|k| k.group == group && k.version == version)
            .map(|k| {
                json!({
                    "name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced, "kind": k.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                })
            })
            .collect();
        if resources.is_empty() {
            return status(404, "the server could not find the requested resource");
        }
        let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        ok(
            &json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
        )
    }
}

/// The leaf fields of an object a client sets, as paths: scalars, lists (atomic here) and empty
/// maps; the server's bookkeeping (`metadata.managedFields`, `uid`, …) and `status` are left out.
fn leaves(object: &Value) -> Vec<Vec<String>> {
    fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, value) in map {
                    path.push(key.clone());
                    walk(value, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }
    let mut out = Vec::new();
    walk(object, &mut Vec::new(), &mut out);
    const SERVER: [&str; 6] = ["managedFields", "uid", "resourceVersion", "creationTimestamp", "generation", "name"];
    out.retain(|leaf| {
        let top = leaf.first().map(String::as_str);
        let server =
            top == Some("metadata") && leaf.get(1).is_some_and(|f| SERVER.contains(&f.as_str()) || f == "namespace");
        !(server || matches!(top, Some("apiVersion" | "kind" | "status")))
    });
    out
}

fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

/// `managedFields` as (manager, leaf paths, operation).
fn managed_fields(object: &Value) -> Vec<(String, Vec<Vec<String>>, String)> {
    fn paths(fields: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match fields.as_object() {
            Some(map) if !map.is_empty() => {
                for (key, value) in map {
                    let Some(name) = key.strip_prefix("f:") else { continue };
                    path.push(name.to_string());
                    paths(value, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let mut out = Vec::new();
            paths(&entry["fieldsV1"], &mut Vec::new(), &mut out);
            out.retain(|p| !p.is_empty());
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_string();
            (text("manager"), out, text("operation"))
        })
        .collect()
}

/// A `managedFields` entry owning `fields`.
fn managed_entry(manager: &str, operation: &str, api_version: &str, fields: &[Vec<String>]) -> Value {
    let mut set = json!({});
    for field in fields {
        let mut at = &mut set;
        for key in field {
            at = &mut at[format!("f:{key}")];
            if at.is_null() {
                *at = json!({});
            }
        }
    }
    json!({
        "manager": manager, "operation": operation, "apiVersion": api_version,
        "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": set,
    })
}

/// A server-side apply by `manager` of `patch` onto `previous`, simplified: the patch's fields
/// are set and become the manager's; fields it applied before and applies no more are removed
/// (unless someone else owns them too); a field another manager owns with another value is a
/// conflict (its text, as the API server words it) unless `force`, which takes it over.
fn server_side_apply(
    mut previous: Value,
    patch: &Value,
    manager: &str,
    version: &str,
    force: bool,
) -> Result<Value, Vec<String>> {
    let applied = leaves(patch);
    let mut entries = managed_fields(&previous);
    let mut conflicts = Vec::new();
    for (other, fields, operation) in &entries {
        if other == manager && operation == "Apply" {
            continue;
        }
        for field in fields.iter().filter(|f| applied.contains(f)) {
            if lookup(&previous, field) != lookup(patch, field) {
                conflicts.push(format!("conflict with \"{other}\" using {version}: .{}", field.join(".")));
            }
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    let before: Vec<Vec<String>> =
        entries.iter().filter(|e| e.0 == manager && e.2 == "Apply").flat_map(|e| e.1.clone()).collect();
    let others: Vec<Vec<String>> =
        entries.iter().filter(|e| !(e.0 == manager && e.2 == "Apply")).flat_map(|e| e.1.clone()).collect();
    for dropped in before.iter().filter(|f| !applied.contains(f) && !others.contains(f)) {
        if let Some((last, parents)) = dropped.split_last()
            && let Some(Value::Object(map)) = parents.iter().try_fold(&mut previous, |v, k| v.get_mut(k))
        {
            map.remove(last);
        }
    }
    merge(&mut previous, patch);
    for entry in &mut entries {
        entry.1.retain(|f| !applied.contains(f));
    }
    entries.retain(|e| !(e.1.is_empty() || (e.0 == manager && e.2 == "Apply")));
    entries.insert(0, (manager.to_string(), applied, "Apply".to_string()));
    previous["metadata"]["managedFields"] =
        Value::Array(entries.iter().map(|(m, f, op)| managed_entry(m, op, version, f)).collect());
    Ok(previous)
}

/// Sets every field of `patch` in `target` (maps merged, anything else replaced).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Whether `labels` satisfy every `key=value` (or `key==value`, `key!=value`) term of `selector`.
fn matches(labels: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let label = |key: &str| labels[key.trim()].as_str().map(String::from);
        if let Some((key, value)) = term.split_once("!=") {
            label(key).as_deref() != Some(value.trim())
        } else if let Some((key, value)) = term.split_once('=') {
            label(key).as_deref() == Some(value.trim_start_matches('=').trim())
        } else {
            label(term).is_some()
        }
    })
}

/// A query value, percent-decoded.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn version_info() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "fake", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
    })
}

fn ok(value: &Value) -> Answer {
    Answer { code: 200, body: value.clone() }
}

fn not_found(kind: &Kind, name: &str) -> Answer {
    let resource = if kind.group.is_empty() { kind.plural.clone() } else { format!("{}.{}", kind.plural, kind.group) };
    status(404, &format!("{resource} \"{name}\" not found"))
}

/// A `Status` failure as the API server sends it.
fn status(code: u16, message: &str) -> Answer {
    let reason = match code {
        403 => "Forbidden",
        409 => "AlreadyExists",
        404 => "NotFound",
        422 => "Invalid",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    let message = if code == 403 { format!("forbidden: {message}") } else { message.to_string() };
    let body = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code });
    Answer { code, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(fake: &FakeApi, manager: &str, force: bool, body: Value) -> Answer {
        fake.handle(
            Recorded {
                method: "PATCH".into(),
                path: "/api/v1/namespaces/default/configmaps/c".into(),
                query: format!("fieldManager={manager}&force={force}"),
                content_type: "application/apply-patch+yaml".into(),
                body: body.to_string(),
                raw: Vec::new(),
            },
            true,
        )
    }

    /// Server-side apply as the double does it: fields have owners, another owner's field with
    /// another value is a conflict unless forced, and a field no longer applied goes.
    #[test]
    fn fields_have_managers_and_conflicts_need_force() {
        let fake = FakeApi::new();
        let path = "/api/v1/namespaces/default/configmaps/c";
        let object =
            |data: Value| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": data });
        assert_eq!(apply(&fake, "helm", false, object(json!({ "a": "1", "b": "2" }))).code, 200);
        fake.edit_as("kubectl-edit", path, |o| o["data"]["a"] = "by hand".into());
        assert_eq!(
            fake.managers(path),
            [
                ("helm".to_string(), vec![".data.b".to_string()]),
                ("kubectl-edit".to_string(), vec![".data.a".to_string()])
            ]
        );
        let refused = apply(&fake, "helm", false, object(json!({ "a": "1", "b": "2" })));
        assert_eq!(refused.code, 409);
        assert_eq!(
            refused.body["message"],
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.a"
        );
        assert_eq!(apply(&fake, "helm", true, object(json!({ "a": "1" }))).code, 200);
        assert_eq!(fake.object(path).unwrap()["data"], json!({ "a": "1" }), "b is no longer applied");
        assert_eq!(fake.managers(path), [("helm".to_string(), vec![".data.a".to_string()])]);
    }

    #[test]
    fn protobuf_secrets_are_read_as_json() {
        // k8s\0 + Unknown{typeMeta{apiVersion v1, kind Secret}, raw Secret{metadata{name s, labels{owner: helm}}, data{release: "x"}, type t}}
        fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![number << 3 | 2, u8::try_from(bytes.len()).unwrap()];
            out.extend_from_slice(bytes);
            out
        }
        let labels = field(11, &[field(1, b"owner"), field(2, b"helm")].concat());
        let metadata = field(1, &[field(1, b"s"), labels].concat());
        let secret = [metadata, field(2, &[field(1, b"release"), field(2, b"x")].concat()), field(3, b"t")].concat();
        let type_meta = field(1, &[field(1, b"v1"), field(2, b"Secret")].concat());
        let body = [b"k8s\0".to_vec(), type_meta, field(2, &secret)].concat();
        assert_eq!(
            proto::decode(&body).unwrap(),
            json!({ "apiVersion": "v1", "kind": "Secret", "type": "t",
                    "metadata": { "name": "s", "labels": { "owner": "helm" } }, "data": { "release": "eA==" } })
        );
    }
}
