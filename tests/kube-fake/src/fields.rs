//! Field ownership (`metadata.managedFields`) and server-side apply, simplified: an object's fields
//! are its leaves (scalars, lists, which are atomic here, and empty maps); each is owned by the
//! managers that applied or updated it, per subresource (the main resource, or `status`).

use serde_json::{Value, json};

/// Which part of an object a write addresses: the main resource (everything but `status`) or the
/// `status` subresource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Main,
    Status,
}

impl Part {
    /// `managedFields[].subresource`.
    fn subresource(self) -> &'static str {
        match self {
            Part::Main => "",
            Part::Status => "status",
        }
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
struct Owner {
    manager: String,
    operation: String,
    subresource: String,
    fields: Vec<Vec<String>>,
}

impl Owner {
    fn is(&self, manager: &str, operation: &str, part: Part) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == part.subresource()
    }
}

/// The leaf fields of an object a client sets in `part`, as paths; the server's bookkeeping
/// (`metadata.managedFields`, `uid`, …) is left out.
pub(crate) fn leaves(object: &Value, part: Part) -> Vec<Vec<String>> {
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
    const SERVER: [&str; 9] = [
        "managedFields",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "name",
        "namespace",
        "deletionTimestamp",
        "generateName",
    ];
    out.retain(|leaf| {
        let top = leaf.first().map(String::as_str);
        let server = top == Some("metadata") && leaf.get(1).is_some_and(|f| SERVER.contains(&f.as_str()));
        match part {
            Part::Main => !(server || matches!(top, Some("apiVersion" | "kind" | "status"))),
            Part::Status => top == Some("status"),
        }
    });
    out
}

pub(crate) fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

/// `managedFields` as owners.
fn owners(object: &Value) -> Vec<Owner> {
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
            let mut fields = Vec::new();
            paths(&entry["fieldsV1"], &mut Vec::new(), &mut fields);
            fields.retain(|p| !p.is_empty());
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_string();
            Owner { manager: text("manager"), operation: text("operation"), subresource: text("subresource"), fields }
        })
        .collect()
}

/// Writes `owners` (those owning anything) as the object's `managedFields`.
fn set_owners(object: &mut Value, owners: &[Owner]) {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_string();
    let entries = owners
        .iter()
        .filter(|o| !o.fields.is_empty())
        .map(|o| {
            let mut set = json!({});
            for field in &o.fields {
                let mut at = &mut set;
                for key in field {
                    at = &mut at[format!("f:{key}")];
                    if at.is_null() {
                        *at = json!({});
                    }
                }
            }
            let mut entry = json!({
                "manager": o.manager, "operation": o.operation, "apiVersion": api_version,
                "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": set,
            });
            if !o.subresource.is_empty() {
                entry["subresource"] = json!(o.subresource);
            }
            entry
        })
        .collect();
    object["metadata"]["managedFields"] = Value::Array(entries);
}

/// The managers of `object` and the fields each owns (`.data.greeting`), main resource and
/// status alike.
pub(crate) fn managers(object: &Value) -> Vec<(String, Vec<String>)> {
    owners(object)
        .into_iter()
        .map(|o| (o.manager, o.fields.iter().map(|f| format!(".{}", f.join("."))).collect()))
        .collect()
}

/// Records an update (`PUT`, a merge patch, a hand edit) of `part` by `manager` that turned
/// `before` into `after`: the leaves whose values changed become the manager's (an `Update` entry),
/// taken from whoever owned them. `before` is `None` for a create, where every leaf is the
/// manager's.
pub(crate) fn record_update(before: Option<&Value>, after: &mut Value, manager: &str, part: Part) {
    let changed: Vec<Vec<String>> = leaves(after, part)
        .into_iter()
        .filter(|leaf| before.is_none_or(|before| lookup(before, leaf) != lookup(after, leaf)))
        .collect();
    let mut entries = before.map(owners).unwrap_or_default();
    for entry in &mut entries {
        entry.fields.retain(|leaf| !changed.contains(leaf));
    }
    match entries.iter_mut().find(|e| e.is(manager, "Update", part)) {
        Some(entry) => entry.fields.extend(changed),
        None => entries.push(Owner {
            manager: manager.into(),
            operation: "Update".into(),
            subresource: part.subresource().into(),
            fields: changed,
        }),
    }
    set_owners(after, &entries);
}

/// A server-side apply by `manager` of `patch` onto `previous` (`None`: a create) in `part`: the
/// patch's fields are set and become the manager's; fields it applied before and applies no more
/// are removed (unless someone else owns them too); a field another manager owns with another value
/// is a conflict (its text, as the API server words it) unless `force`, which takes it over.
pub(crate) fn server_side_apply(
    previous: Option<Value>,
    patch: &Value,
    manager: &str,
    part: Part,
    force: bool,
) -> Result<Value, Vec<String>> {
    let version = patch["apiVersion"].as_str().unwrap_or("v1").to_string();
    let applied = leaves(patch, part);
    let Some(mut previous) = previous else {
        let mut object = patch.clone();
        let owner = Owner {
            manager: manager.into(),
            operation: "Apply".into(),
            subresource: part.subresource().into(),
            fields: applied,
        };
        set_owners(&mut object, &[owner]);
        return Ok(object);
    };
    let mut entries = owners(&previous);
    let mut conflicts = Vec::new();
    for other in entries.iter().filter(|e| !e.is(manager, "Apply", part)) {
        for field in other.fields.iter().filter(|f| applied.contains(f)) {
            if lookup(&previous, field) != lookup(patch, field) {
                conflicts.push(format!("conflict with \"{}\" using {version}: .{}", other.manager, field.join(".")));
            }
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    let before: Vec<Vec<String>> =
        entries.iter().filter(|e| e.is(manager, "Apply", part)).flat_map(|e| e.fields.clone()).collect();
    let others: Vec<Vec<String>> =
        entries.iter().filter(|e| !e.is(manager, "Apply", part)).flat_map(|e| e.fields.clone()).collect();
    for dropped in before.iter().filter(|f| !applied.contains(f) && !others.contains(f)) {
        if let Some((last, parents)) = dropped.split_last()
            && let Some(Value::Object(map)) = parents.iter().try_fold(&mut previous, |v, k| v.get_mut(k))
        {
            map.remove(last);
        }
    }
    merge(&mut previous, patch);
    for entry in &mut entries {
        entry.fields.retain(|f| !applied.contains(f));
    }
    entries.retain(|e| !e.is(manager, "Apply", part));
    let owner = Owner {
        manager: manager.into(),
        operation: "Apply".into(),
        subresource: part.subresource().into(),
        fields: applied,
    };
    entries.insert(0, owner);
    set_owners(&mut previous, &entries);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Status applied by a manager is owned apart from what it applied to the main resource:
    /// applying one never drops the other.
    #[test]
    fn status_and_main_resource_are_owned_apart() {
        let object = |extra: Value| {
            let mut o = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" } });
            merge(&mut o, &extra);
            o
        };
        let main = server_side_apply(None, &object(json!({ "data": { "a": "1" } })), "ctl", Part::Main, false).unwrap();
        let status = object(json!({ "status": { "ready": true } }));
        let both = server_side_apply(Some(main), &status, "ctl", Part::Status, false).unwrap();
        assert_eq!(both["data"]["a"], "1");
        assert_eq!(both["status"]["ready"], true);
        assert_eq!(
            managers(&both),
            [("ctl".to_string(), vec![".status.ready".to_string()]), ("ctl".to_string(), vec![".data.a".to_string()])]
        );
        assert_eq!(both["metadata"]["managedFields"][0]["subresource"], "status");
    }
}
