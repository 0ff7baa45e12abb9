//! The REST API over the kept objects: routing a path to discovery, a collection or an object
//! (and its `status` subresource), and the verbs: list and watch, create, get, replace, patch
//! (JSON merge, strategic merge read as JSON merge, JSON patch, server-side apply) and delete,
//! with a resourceVersion precondition on every write that carries one.

use serde_json::{Value, json};

use crate::fields::{self, Part};
use crate::kinds::{self, Kind};
use crate::select::Selector;
use crate::watch::{self, Collection};
use crate::{Answer, Recorded, State, decode, failure, ok, status};

/// What a path under a group/version names.
enum Target<'p> {
    Collection { namespace: Option<&'p str>, plural: &'p str },
    Object { namespace: Option<&'p str>, plural: &'p str, name: &'p str, part: Part },
}

impl State {
    /// Answers a request as the API server would.
    pub(crate) fn route(&mut self, request: &Recorded) -> Answer {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["version"] => return ok(&kinds::version_info()),
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
        let namespaced = |plural: &str| self.kind(group, version, plural).is_some_and(|k| k.namespaced);
        let target = match rest {
            [] => {
                return match self.resource_list(group, version) {
                    Some(list) => ok(&list),
                    None => status(404, "the server could not find the requested resource"),
                };
            }
            ["namespaces", namespace, plural, name, "status"] => {
                Target::Object { namespace: Some(namespace), plural, name, part: Part::Status }
            }
            ["namespaces", namespace, plural, name] => {
                Target::Object { namespace: Some(namespace), plural, name, part: Part::Main }
            }
            ["namespaces", namespace, plural] if namespaced(plural) => {
                Target::Collection { namespace: Some(namespace), plural }
            }
            [plural, name, "status"] => Target::Object { namespace: None, plural, name, part: Part::Status },
            [plural, name] => Target::Object { namespace: None, plural, name, part: Part::Main },
            [plural] => Target::Collection { namespace: None, plural },
            _ => return status(404, "the server could not find the requested resource"),
        };
        let api = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let plural = match target {
            Target::Collection { plural, .. } | Target::Object { plural, .. } => plural,
        };
        let Some(kind) = self.kind(group, version, plural) else {
            return status(404, &format!("the server could not find the requested resource ({plural})"));
        };
        match target {
            Target::Collection { namespace, .. } => {
                let collection = Collection { api, namespace: namespace.map(String::from), plural: plural.into() };
                match request.method.as_str() {
                    "GET" => self.list(request, &kind, collection),
                    "POST" => self.create(request, &kind, collection),
                    _ => status(405, "method not allowed"),
                }
            }
            Target::Object { namespace, name, part, .. } => {
                if namespace.is_some() != kind.namespaced {
                    return status(404, &format!("the server could not find the requested resource ({plural})"));
                }
                if part == Part::Status && !kind.status {
                    return status(404, &format!("{} has no status subresource", kind.resource()));
                }
                let key = match namespace {
                    Some(namespace) => format!("{api}/namespaces/{namespace}/{plural}/{name}"),
                    None => format!("{api}/{plural}/{name}"),
                };
                let object = Object { kind: &kind, key: &key, name, namespace, part };
                match request.method.as_str() {
                    "GET" => match self.objects.get(&key) {
                        Some(found) => ok(found),
                        None => object.not_found(),
                    },
                    "PUT" => self.replace(request, &object),
                    "PATCH" => self.patch(request, &object),
                    "DELETE" if part == Part::Main => self.remove(request, &object),
                    _ => status(405, "method not allowed"),
                }
            }
        }
    }

    /// `GET` of a collection: the objects the selectors take, with the list's resourceVersion; or,
    /// with `watch=true`, a watch.
    fn list(&mut self, request: &Recorded, kind: &Kind, collection: Collection) -> Answer {
        let selector = match Selector::parse(
            &param(request, "labelSelector").unwrap_or_default(),
            &param(request, "fieldSelector").unwrap_or_default(),
        ) {
            Ok(selector) => selector,
            Err(message) => return failure(400, "BadRequest", &message),
        };
        if matches!(param(request, "watch").as_deref(), Some("true" | "1")) {
            let watch = watch::Request {
                collection,
                selector,
                since: param(request, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0),
                initial_events: param(request, "sendInitialEvents").as_deref() == Some("true"),
                bookmarks: param(request, "allowWatchBookmarks").as_deref() == Some("true"),
                timeout: param(request, "timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .map(std::time::Duration::from_secs),
            };
            return self.watch(kind, watch);
        }
        let items = self.objects.iter().filter(|(path, object)| {
            Collection::of(path).is_some_and(|c| collection.covers(&c)) && selector.matches(object)
        });
        // `kubectl get` and kube's `list_metadata` ask for metadata only, through `Accept`.
        if request.accept.contains("as=PartialObjectMetadataList") {
            let items: Vec<Value> = items
                .map(|(_, object)| {
                    json!({
                        "apiVersion": "meta.k8s.io/v1",
                        "kind": "PartialObjectMetadata",
                        "metadata": object["metadata"],
                    })
                })
                .collect();
            return ok(&json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": { "resourceVersion": self.version.to_string() },
                "items": items,
            }));
        }
        let items: Vec<&Value> = items.map(|(_, object)| object).collect();
        ok(&json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.group_version(),
            "metadata": { "resourceVersion": self.version.to_string() },
            "items": items,
        }))
    }

    /// `POST` to a collection: a new object (`generateName` honoured); `409 AlreadyExists` if the
    /// name is taken.
    fn create(&mut self, request: &Recorded, kind: &Kind, collection: Collection) -> Answer {
        let mut object = request.json();
        if !object.is_object() {
            return status(400, "the body is not an object");
        }
        let name = match (object["metadata"]["name"].as_str(), object["metadata"]["generateName"].as_str()) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) => format!("{prefix}{:05x}", self.version + 1),
            _ => return status(422, "metadata.name or metadata.generateName is required"),
        };
        if object["metadata"]["resourceVersion"].as_str().is_some_and(|v| !v.is_empty()) {
            return failure(400, "BadRequest", "resourceVersion should not be set on objects to be created");
        }
        if let Some(namespace) = &collection.namespace {
            if object["metadata"]["namespace"].as_str().is_some_and(|n| !n.is_empty() && n != namespace) {
                return failure(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                );
            }
            if let Some(missing) = self.missing_namespace(namespace) {
                return missing;
            }
            object["metadata"]["namespace"] = json!(namespace);
        }
        object["metadata"]["name"] = json!(name);
        let path = format!("{}/{name}", request.path.trim_end_matches('/'));
        if self.objects.contains_key(&path) {
            return failure(409, "AlreadyExists", &format!("{} \"{name}\" already exists", kind.resource()));
        }
        if kind.status
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        let manager = param(request, "fieldManager").unwrap_or_else(|| "unknown".into());
        let stored = self.write(kind, &path, None, object, Some((&manager, Part::Main)));
        Answer { code: 201, body: crate::Reply::Json(stored) }
    }

    /// `PUT` of an object or its status: the whole part replaced; the other part kept.
    fn replace(&mut self, request: &Recorded, target: &Object<'_>) -> Answer {
        let body = request.json();
        if !body.is_object() {
            return status(400, "the body is not an object");
        }
        let Some(current) = self.objects.get(target.key).cloned() else { return target.not_found() };
        if body["metadata"]["name"].as_str().is_some_and(|n| n != target.name) {
            return failure(400, "BadRequest", "the name of the object does not match the name on the URL");
        }
        if let Some(stale) = target.stale(&current, &body) {
            return stale;
        }
        let object = target.scoped(&current, body);
        let manager = param(request, "fieldManager").unwrap_or_else(|| "unknown".into());
        ok(&self.write(target.kind, target.key, Some(&current), object, Some((&manager, target.part))))
    }

    /// `PATCH` of an object or its status.
    fn patch(&mut self, request: &Recorded, target: &Object<'_>) -> Answer {
        let Ok(patch) = serde_json::from_str::<Value>(&request.body) else {
            return status(400, "the body is not JSON");
        };
        let current = self.objects.get(target.key).cloned();
        if request.content_type.starts_with("application/apply-patch") {
            return self.apply(request, target, current, patch);
        }
        let Some(current) = current else { return target.not_found() };
        let mut object = current.clone();
        match request.content_type.as_str() {
            // Strategic merge patch is read as a JSON merge patch: lists are replaced whole.
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                json_patch::merge(&mut object, &patch);
            }
            "application/json-patch+json" => {
                let Ok(operations) = serde_json::from_value::<json_patch::Patch>(patch) else {
                    return failure(400, "BadRequest", "the body is not a JSON patch");
                };
                if let Err(error) = json_patch::patch(&mut object, &operations) {
                    return failure(422, "Invalid", &error.to_string());
                }
            }
            other => return status(415, &format!("the patch type {other:?} is not served")),
        }
        if let Some(stale) = target.stale(&current, &object) {
            return stale;
        }
        let object = target.scoped(&current, object);
        let manager = param(request, "fieldManager").unwrap_or_else(|| "unknown".into());
        ok(&self.write(target.kind, target.key, Some(&current), object, Some((&manager, target.part))))
    }

    /// A server-side apply (see [`fields::server_side_apply`]); creates the object if missing.
    fn apply(&mut self, request: &Recorded, target: &Object<'_>, current: Option<Value>, mut patch: Value) -> Answer {
        if let Some(namespace) = target.namespace
            && let Some(missing) = self.missing_namespace(namespace)
        {
            return missing;
        }
        let Some(manager) = param(request, "fieldManager") else {
            return status(422, "PATCH with an apply patch requires a fieldManager");
        };
        if let Some(current) = &current
            && let Some(stale) = target.stale(current, &patch)
        {
            return stale;
        }
        if target.part == Part::Status && current.is_none() {
            return target.not_found();
        }
        if target.kind.status
            && target.part == Part::Main
            && let Some(map) = patch.as_object_mut()
        {
            map.remove("status");
        }
        patch["apiVersion"] = json!(target.kind.group_version());
        patch["kind"] = json!(target.kind.kind);
        let created = current.is_none();
        let force = param(request, "force").as_deref() == Some("true");
        let mut object = match fields::server_side_apply(current, &patch, &manager, target.part, force) {
            Ok(object) => object,
            Err(conflicts) => {
                let count = conflicts.len();
                let message = format!(
                    "Apply failed with {count} conflict{}: {}",
                    if count == 1 { "" } else { "s" },
                    conflicts.join(", ")
                );
                return failure(409, "Conflict", &message);
            }
        };
        object["metadata"]["name"] = json!(target.name);
        if let Some(namespace) = target.namespace {
            object["metadata"]["namespace"] = json!(namespace);
        }
        let stored = self.write(target.kind, target.key, None, object, None);
        Answer { code: if created { 201 } else { 200 }, body: crate::Reply::Json(stored) }
    }

    /// `DELETE` of an object, with the `preconditions` of its options; a CRD takes its kinds and
    /// their objects with it.
    fn remove(&mut self, request: &Recorded, target: &Object<'_>) -> Answer {
        let Some(current) = self.objects.get(target.key) else { return target.not_found() };
        let preconditions = &request.json()["preconditions"];
        for field in ["resourceVersion", "uid"] {
            if let Some(want) = preconditions[field].as_str()
                && current["metadata"][field].as_str() != Some(want)
            {
                return target.conflict();
            }
        }
        let Some(object) = self.request_delete(target.key) else { return target.not_found() };
        if self.objects.contains_key(target.key) {
            return ok(&object);
        }
        if kinds::is_crd(target.kind) {
            for kind in self.unregister(&object) {
                let api = format!("/apis/{}/{}", kind.group, kind.version);
                let gone: Vec<String> = self
                    .objects
                    .keys()
                    .filter(|p| Collection::of(p).is_some_and(|c| c.api == api && c.plural == kind.plural))
                    .cloned()
                    .collect();
                for path in gone {
                    self.delete(&path);
                }
            }
        }
        ok(&json!({ "kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {},
                    "details": { "name": target.name, "kind": target.kind.plural, "uid": object["metadata"]["uid"] } }))
    }

    /// Stores a write: the kind's `apiVersion` and `kind`, the fields a `(manager, part)` update
    /// changed made that manager's, what the server adds ([`kinds::complete`]); a CRD's kinds are
    /// served from now on.
    fn write(
        &mut self,
        kind: &Kind,
        key: &str,
        before: Option<&Value>,
        mut object: Value,
        update: Option<(&str, Part)>,
    ) -> Value {
        object["apiVersion"] = json!(kind.group_version());
        object["kind"] = json!(kind.kind);
        if let Some((manager, part)) = update {
            fields::record_update(before, &mut object, manager, part);
        }
        let stored = self.commit(key, object, Some(kind));
        if kinds::is_crd(kind) && self.objects.contains_key(key) {
            self.register(&stored);
        }
        stored
    }

    /// The `404` of a namespace that does not exist, if it does not.
    fn missing_namespace(&self, namespace: &str) -> Option<Answer> {
        let exists = self.objects.contains_key(&format!("/api/v1/namespaces/{namespace}"));
        (!exists).then(|| failure(404, "NotFound", &format!("namespaces \"{namespace}\" not found")))
    }
}

/// An object a request addresses.
struct Object<'r> {
    kind: &'r Kind,
    key: &'r str,
    name: &'r str,
    namespace: Option<&'r str>,
    part: Part,
}

impl Object<'_> {
    fn not_found(&self) -> Answer {
        failure(404, "NotFound", &format!("{} \"{}\" not found", self.kind.resource(), self.name))
    }

    fn conflict(&self) -> Answer {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            self.kind.resource(),
            self.name
        );
        failure(409, "Conflict", &message)
    }

    /// The `409 Conflict` of a write whose `metadata.resourceVersion` is not the current one.
    fn stale(&self, current: &Value, written: &Value) -> Option<Answer> {
        let asked = written["metadata"]["resourceVersion"].as_str().filter(|v| !v.is_empty())?;
        (current["metadata"]["resourceVersion"].as_str() != Some(asked)).then(|| self.conflict())
    }

    /// What a write of this part leaves: a write of the main resource keeps the current status
    /// (when status is a subresource), a write of the status keeps everything else.
    fn scoped(&self, current: &Value, mut written: Value) -> Value {
        match self.part {
            Part::Main if self.kind.status => {
                match current.get("status") {
                    Some(status) => written["status"] = status.clone(),
                    None => {
                        if let Some(map) = written.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
                written
            }
            Part::Main => written,
            Part::Status => {
                let mut object = current.clone();
                object["status"] = written["status"].take();
                object
            }
        }
    }
}

/// The query parameter `name`, percent-decoded.
fn param(request: &Recorded, name: &str) -> Option<String> {
    request.params().into_iter().find_map(|p| p.strip_prefix(name)?.strip_prefix('=')).map(decode)
}
