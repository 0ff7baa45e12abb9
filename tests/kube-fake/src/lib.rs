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
}

impl Recorded {
    /// The query's `key=value` pairs.
    pub fn params(&self) -> Vec<&str> {
        self.query.split('&').filter(|p| !p.is_empty()).collect()
    }

    /// The body as JSON (`null` if it is not JSON, such as an empty body).
    pub fn json(&self) -> Value {
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
    /// While set, requests whose path contains one of these are not answered (held until
    /// [`FakeApi::come_back`]); `""` holds every request: the API server is gone.
    held: Vec<String>,
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

    /// Deletes an object as someone deleting it by hand would (nothing is recorded).
    pub fn remove(&self, path: &str) {
        self.lock().objects.remove(path);
    }

    /// Stops answering: every request from now on waits, unanswered, until [`FakeApi::come_back`]
    /// (an API server that went away, or a network that drops everything).
    pub fn go_away(&self) {
        self.hold("");
    }

    /// Stops answering the requests whose path contains `path_contains` (the rest are served)
    /// until [`FakeApi::come_back`]: a client stuck partway through an operation.
    pub fn hold(&self, path_contains: &str) {
        self.lock().held.push(path_contains.into());
    }

    /// Answers again, the held requests first.
    pub fn come_back(&self) {
        self.lock().held.clear();
    }

    /// Whether a request to `path` is held now (it is recorded once it is answered or held).
    fn holds(&self, path: &str) -> bool {
        self.lock().held.iter().any(|h| path.contains(h.as_str()))
    }

    /// Waits while a request to `path` is held; records it first, so tests see it arrive.
    async fn wait_while_held(&self, recorded: &Recorded) -> bool {
        if !self.holds(&recorded.path) {
            return false;
        }
        self.lock().requests.push(recorded.clone());
        while self.holds(&recorded.path) {
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
    }
}

impl Answer {
    /// The answer as an HTTP response with a JSON body.
    fn into_response(self) -> Response<Vec<u8>> {
        // `null`: an empty body (a watch stream that ends at once).
        let body = if self.body.is_null() { Vec::new() } else { self.body.to_string().into_bytes() };
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
            "PUT" => match serde_json::from_str::<Value>(&request.body) {
                Ok(object) if self.objects.contains_key(&request.path) => {
                    let object = self.store(&request.path, object, None);
                    ok(&object)
                }
                Ok(_) => not_found(&kind, name),
                Err(_) => status(400, "the body is not JSON"),
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
        let Ok(mut object) = serde_json::from_str::<Value>(&request.body) else {
            return status(400, "the body is not JSON");
        };
        self.version += 1;
        let previous = self.objects.get(&request.path);
        let uid = previous
            .map_or(format!("uid-{}", self.version), |p| p["metadata"]["uid"].as_str().unwrap_or("").to_string());
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(uid);
        metadata["resourceVersion"] = json!(self.version.to_string());
        metadata["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
        metadata["managedFields"] = json!([{ "manager": manager, "operation": "Apply" }]);
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
                if request.params().iter().any(|p| *p == "watch=true" || *p == "watch=1") {
                    // A watch that ends at once with no events: a client lists again (Helm's
                    // readiness wait reads the objects' state from the lists).
                    return Answer { code: 200, body: Value::Null };
                }
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
                ok(&json!({
                    "kind": format!("{}List", kind.kind),
                    "apiVersion": kind.group_version(),
                    "metadata": { "resourceVersion": self.version.to_string() },
                    "items": items,
                }))
            }
            "POST" => {
                let Ok(object) = serde_json::from_str::<Value>(&request.body) else {
                    return status(400, "the body is not JSON");
                };
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
            metadata["managedFields"] = json!([{ "manager": manager, "operation": "Update" }]);
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
