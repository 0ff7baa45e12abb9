//! Keeping objects: every write takes the next value of one global, monotonically increasing
//! resourceVersion, keeps the object's identity (`uid`, `creationTimestamp`), counts
//! `metadata.generation` up when anything but metadata and status changed, honours finalizers
//! (a deleted object with finalizers is only marked, and goes once they are removed), and is an
//! event for watches.

use serde_json::{Value, json};

use crate::State;
use crate::kinds::{self, Kind};
use crate::watch::{Collection, Event};

impl State {
    /// Stores `object` at `path` with what a server adds (and, given its kind, what the server
    /// adds to objects of that kind: [`kinds::complete`]); returns what is stored (or, when the
    /// write removed the last finalizer of an object being deleted, what was deleted).
    pub(crate) fn commit(&mut self, path: &str, mut object: Value, kind: Option<&Kind>) -> Value {
        self.version += 1;
        let before = self.objects.get(path).cloned();
        let metadata = &before.as_ref().map(|b| b["metadata"].clone()).unwrap_or(Value::Null);
        let generation = match (&before, metadata["generation"].as_i64()) {
            (Some(before), Some(generation)) if spec(before) == spec(&object) => generation,
            (Some(_), Some(generation)) => generation + 1,
            _ => 1,
        };
        let own = &mut object["metadata"];
        own["uid"] = metadata.get("uid").cloned().unwrap_or_else(|| json!(format!("uid-{}", self.version)));
        own["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
        own["resourceVersion"] = json!(self.version.to_string());
        own["generation"] = json!(generation);
        if let Some(deleted) = metadata.get("deletionTimestamp") {
            own["deletionTimestamp"] = deleted.clone();
        }
        let finalized =
            own.get("deletionTimestamp").is_some() && own["finalizers"].as_array().is_none_or(Vec::is_empty);
        if let Some(kind) = kind {
            kinds::complete(kind, &mut object);
        }
        if finalized {
            self.version -= 1;
            return self.delete(path).unwrap_or(object);
        }
        self.objects.insert(path.to_string(), object.clone());
        if let Some(collection) = Collection::of(path) {
            let event = Event { version: self.version, collection, before, after: Some(object.clone()) };
            self.events.record(event);
        }
        object
    }

    /// Deletes the object at `path` (a Namespace with everything in it); returns it.
    pub(crate) fn delete(&mut self, path: &str) -> Option<Value> {
        let object = self.objects.remove(path)?;
        self.version += 1;
        if let Some(collection) = Collection::of(path) {
            let event = Event { version: self.version, collection, before: Some(object.clone()), after: None };
            self.events.record(event);
        }
        if let Some(name) = path.strip_prefix("/api/v1/namespaces/")
            && !name.contains('/')
        {
            let inside = format!("/namespaces/{name}/");
            let contents: Vec<String> = self.objects.keys().filter(|p| p.contains(&inside)).cloned().collect();
            for path in contents {
                self.delete(&path);
            }
        }
        Some(object)
    }

    /// A delete request: an object with finalizers is only marked (`deletionTimestamp`, a
    /// `MODIFIED` event) and stays until a write removes them; otherwise it goes now.
    pub(crate) fn request_delete(&mut self, path: &str) -> Option<Value> {
        let object = self.objects.get(path)?.clone();
        if object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
            let mut marked = object;
            if marked["metadata"].get("deletionTimestamp").is_none() {
                marked["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
                return Some(self.commit(path, marked, None));
            }
            return Some(marked);
        }
        self.delete(path)
    }
}

/// What `metadata.generation` counts changes of: everything but metadata and status.
fn spec(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}
