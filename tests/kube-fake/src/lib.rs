//! A stand-in for the Kubernetes API server at the HTTP level, for aptc's tests only (this crate
//! is never a dependency of the product, only a dev-dependency): the real API cannot run where
//! the tests run, and aptc's cluster driver and controller must be tested through the same
//! requests they send to a real one.
//!
//! [`FakeApi`] serves any group/version/kind: a table of built-in kinds (ConfigMap, Namespace,
//! Service, Secret, Event, Deployment, CustomResourceDefinition, Lease, events.k8s.io Event,
//! ValidatingWebhookConfiguration) and
//! the kinds of the CRDs written to it (`kinds`); objects are kept by URL path with one global
//! resourceVersion, generations and finalizers (`objects`); the REST verbs (list, create, get,
//! replace, merge/JSON patch, server-side apply, delete, the `status` subresource, resourceVersion
//! preconditions: `rest`; field ownership: `fields`; label and field selectors: `select`); watches
//! streamed from an event log (`watch`). It records every request, and can be told to fail or hold
//! the next requests. It is reached in process as a tower service ([`FakeApi::client`], for unit
//! tests of the runtime) or over real HTTP on loopback ([`FakeApi::serve`] and
//! [`write_kubeconfig`], for running the `aptc` binary against it).

mod fields;
mod kinds;
mod objects;
mod proto;
mod rest;
mod select;
mod serve;
mod watch;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use hyper::body::{Bytes, Frame};
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
    /// The `Accept` header (`…;as=PartialObjectMetadataList;…` asks a list for metadata only).
    pub accept: String,
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
    kinds: Vec<kinds::Kind>,
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    failures: Vec<Failure>,
    /// The resourceVersion of the last write, one sequence for every object.
    version: u64,
    events: watch::Log,
}

/// An answer: the HTTP status and the body, whichever transport carries it.
struct Answer {
    code: u16,
    body: Reply,
}

/// A response body: one JSON value, or a watch's stream of events.
enum Reply {
    Json(Value),
    Watch(watch::Stream),
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
    /// A server with the built-in kinds (core v1 ConfigMap, Namespace, Service, Secret, Event;
    /// apps/v1 Deployment; apiextensions.k8s.io/v1 CustomResourceDefinition;
    /// coordination.k8s.io/v1 Lease; events.k8s.io/v1 Event; admissionregistration.k8s.io/v1
    /// ValidatingWebhookConfiguration) and the namespace `default`.
    pub fn new() -> FakeApi {
        let state = State {
            held: Vec::new(),
            kinds: kinds::built_in(),
            objects: BTreeMap::new(),
            requests: Vec::new(),
            failures: Vec::new(),
            version: 0,
            events: watch::Log::default(),
        };
        let fake = FakeApi { state: Arc::new(Mutex::new(state)) };
        fake.insert_namespace("default");
        fake
    }

    /// Creates the namespace `name` (namespaced objects can only be created in one that exists).
    pub fn insert_namespace(&self, name: &str) {
        self.insert(
            &format!("/api/v1/namespaces/{name}"),
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } }),
        );
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

    /// Puts an object there as if someone else had created it (a write: watches see it).
    pub fn insert(&self, path: &str, object: Value) {
        self.lock().commit(path, object, None);
    }

    /// Changes a held object as someone editing it by hand would (a write: watches see it).
    pub fn edit(&self, path: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.lock();
        let mut object = state.objects.get(path).cloned().expect("the object to edit exists");
        change(&mut object);
        state.commit(path, object, None);
    }

    /// Changes a held object as a client named `manager` updating it would (`kubectl edit` is
    /// `kubectl-edit`, `kubectl scale` is `kubectl`, a controller its own name): the fields whose
    /// values change become that manager's (an `Update` entry of `managedFields`), taken from
    /// whoever owned them.
    pub fn edit_as(&self, manager: &str, path: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.lock();
        let before = state.objects.get(path).cloned().expect("the object to edit exists");
        let mut object = before.clone();
        change(&mut object);
        fields::record_update(Some(&before), &mut object, manager, fields::Part::Main);
        state.commit(path, object, None);
    }

    /// The managers of the object at `path` and the fields each owns (`.data.greeting`).
    pub fn managers(&self, path: &str) -> Vec<(String, Vec<String>)> {
        self.lock().objects.get(path).map(fields::managers).unwrap_or_default()
    }

    /// Deletes an object as someone deleting it by hand would (nothing is recorded; watches see
    /// it).
    pub fn remove(&self, path: &str) {
        self.lock().delete(path);
    }

    /// The resourceVersion of the last write.
    pub fn resource_version(&self) -> u64 {
        self.lock().version
    }

    /// Forgets the history of changes so far, as an API server's watch cache does: a watch from
    /// an older resourceVersion than now gets `410 Gone` (and a client must list again).
    pub fn compact(&self) {
        let mut state = self.lock();
        let version = state.version;
        state.events.compact(version);
    }

    /// Ends every open watch (an API server restarting, a proxy closing long connections): the
    /// clients watch again from the last resourceVersion they saw.
    pub fn drop_watches(&self) {
        self.lock().events.drop_watchers();
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

    async fn serve_tower(self, request: Request<Body>) -> Result<Response<ReplyBody>, Infallible> {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let answer = self.answer(recorded(&parts, &body)).await;
        Ok(answer.into_response())
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
        accept: header(http::header::ACCEPT),
        body: String::from_utf8_lossy(body).into_owned(),
        raw: body.to_vec(),
    }
}

/// The body of a response, for either transport: all at once, or a watch's lines as they come.
struct ReplyBody(Option<Reply>);

impl http_body::Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.0 {
            None => Poll::Ready(None),
            Some(Reply::Json(value)) => {
                let body = Bytes::from(value.to_string());
                self.0 = None;
                Poll::Ready(Some(Ok(Frame::data(body))))
            }
            Some(Reply::Watch(stream)) => stream.poll_line(cx).map(|line| line.map(|l| Ok(Frame::data(l)))),
        }
    }
}

impl Answer {
    /// The answer as an HTTP response with a JSON body.
    fn into_response(self) -> Response<ReplyBody> {
        let mut response = Response::new(ReplyBody(Some(self.body)));
        *response.status_mut() = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response
    }
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

fn ok(value: &Value) -> Answer {
    Answer { code: 200, body: Reply::Json(value.clone()) }
}

/// A `Status` failure as the API server sends it, its reason from the code.
fn status(code: u16, message: &str) -> Answer {
    let reason = match code {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Gone",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    let message = if code == 403 { format!("forbidden: {message}") } else { message.to_string() };
    failure(code, reason, &message)
}

/// A `Status` failure with its reason.
fn failure(code: u16, reason: &str, message: &str) -> Answer {
    let body = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code });
    Answer { code, body: Reply::Json(body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code and JSON body of a server-side apply.
    fn apply(fake: &FakeApi, manager: &str, force: bool, body: Value) -> (u16, Value) {
        let answer = fake.handle(
            Recorded {
                method: "PATCH".into(),
                path: "/api/v1/namespaces/default/configmaps/c".into(),
                query: format!("fieldManager={manager}&force={force}"),
                content_type: "application/apply-patch+yaml".into(),
                accept: String::new(),
                body: body.to_string(),
                raw: Vec::new(),
            },
            true,
        );
        match answer.body {
            Reply::Json(body) => (answer.code, body),
            Reply::Watch(_) => panic!("an apply is answered with JSON"),
        }
    }

    /// Server-side apply as the double does it: fields have owners, another owner's field with
    /// another value is a conflict unless forced, and a field no longer applied goes.
    #[test]
    fn fields_have_managers_and_conflicts_need_force() {
        let fake = FakeApi::new();
        let path = "/api/v1/namespaces/default/configmaps/c";
        let object =
            |data: Value| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": data });
        assert_eq!(apply(&fake, "helm", false, object(json!({ "a": "1", "b": "2" }))).0, 201);
        fake.edit_as("kubectl-edit", path, |o| o["data"]["a"] = "by hand".into());
        assert_eq!(
            fake.managers(path),
            [
                ("helm".to_string(), vec![".data.b".to_string()]),
                ("kubectl-edit".to_string(), vec![".data.a".to_string()])
            ]
        );
        let refused = apply(&fake, "helm", false, object(json!({ "a": "1", "b": "2" })));
        assert_eq!(refused.0, 409);
        assert_eq!(
            refused.1["message"],
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.a"
        );
        assert_eq!(apply(&fake, "helm", true, object(json!({ "a": "1" }))).0, 200);
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
