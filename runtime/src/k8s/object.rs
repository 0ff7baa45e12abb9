//! References to the objects a unit applies: what the inventory lists, what errors and drift
//! fingerprints name, and the order objects are applied in.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One object: its type, where it lives and its name. A namespaced object's `namespace` is set
/// once it is located on a cluster (the unit's namespace when the object names none); a
/// cluster-scoped object has none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectRef {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// A desired object that cannot be applied because it is not a complete Kubernetes object; each
/// carries the start of the object (`found`) for the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// Not a mapping.
    #[error("a document is not a Kubernetes object: {found}")]
    NotAnObject { found: String },
    /// A mapping without `kind`.
    #[error("an object has no `kind`: {found}")]
    NoKind { found: String },
    /// `field` (`apiVersion`, `metadata.name`) is missing or empty.
    #[error("the {kind} object has no `{field}`: {found}")]
    Missing { kind: String, field: &'static str, found: String },
}

impl ObjectRef {
    /// The reference of a desired object, its namespace as written (if any). An object without
    /// `apiVersion`, `kind` or `metadata.name` is an error, never a panic.
    pub fn of(value: &Value) -> Result<ObjectRef, ObjectError> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let Some(object) = value.as_object() else {
            return Err(ObjectError::NotAnObject { found: short(value) });
        };
        let kind = text(object.get("kind")).ok_or_else(|| ObjectError::NoKind { found: short(value) })?;
        let missing = |field| ObjectError::Missing { kind: kind.clone(), field, found: short(value) };
        let api_version = text(object.get("apiVersion")).ok_or_else(|| missing("apiVersion"))?;
        let metadata = object.get("metadata");
        let name = text(metadata.and_then(|m| m.get("name"))).ok_or_else(|| missing("metadata.name"))?;
        let namespace = text(metadata.and_then(|m| m.get("namespace")));
        Ok(ObjectRef { api_version, kind, namespace, name })
    }

    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(group, _)| group)
    }

    /// Whether both name the same object on the cluster, whatever the version they are served
    /// at: an object moved from `v1beta1` to `v1` is not pruned.
    pub fn same_object(&self, other: &ObjectRef) -> bool {
        (self.group(), &self.kind, &self.namespace, &self.name)
            == (other.group(), &other.kind, &other.namespace, &other.name)
    }

    /// The drift fingerprint's key: `Kind/namespace/name`, or `Kind/name` cluster-scoped.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{}/{namespace}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    /// Whether this is a Namespace (applied before anything else).
    pub fn is_namespace(&self) -> bool {
        self.api_version == "v1" && self.kind == "Namespace"
    }

    /// Whether this is a CustomResourceDefinition (applied before the objects that may need it).
    pub fn is_crd(&self) -> bool {
        self.group() == "apiextensions.k8s.io" && self.kind == "CustomResourceDefinition"
    }

    /// 0 for Namespaces, 1 for CRDs, 2 for everything else: the apply order.
    pub fn rank(&self) -> u8 {
        if self.is_namespace() {
            0
        } else if self.is_crd() {
            1
        } else {
            2
        }
    }
}

/// For people: `Deployment team/web`, `Namespace team`.
impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// The desired objects with their references, Namespaces first, then CRDs, then the rest, each
/// group in the given order.
pub(crate) fn in_apply_order(objects: &[Value]) -> Result<Vec<(ObjectRef, &Value)>, ObjectError> {
    let mut refs = with_refs(objects)?;
    refs.sort_by_key(|(r, _)| r.rank());
    Ok(refs)
}

/// Each object with its reference, the items of a `…List` (`kind: List`, `ConfigMapList`) in
/// place of the list: the API serves no list kind to apply.
pub(crate) fn with_refs(objects: &[Value]) -> Result<Vec<(ObjectRef, &Value)>, ObjectError> {
    let mut refs = Vec::new();
    for value in objects {
        let is_list = value.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"));
        match value.get("items").and_then(Value::as_array) {
            Some(items) if is_list => refs.extend(with_refs(items)?),
            _ => refs.push((ObjectRef::of(value)?, value)),
        }
    }
    Ok(refs)
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 { format!("{}…", text.chars().take(80).collect::<String>()) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_need_a_kind_an_api_version_and_a_name() {
        let r = ObjectRef::of(&json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" } }))
            .unwrap();
        assert_eq!((r.group(), r.to_string(), r.key()), ("apps", "Deployment web".into(), "Deployment/web".into()));
        assert!(
            ObjectRef::of(&json!({ "apiVersion": "v1", "metadata": { "name": "x" } }))
                .unwrap_err()
                .to_string()
                .contains("no `kind`")
        );
        assert!(
            ObjectRef::of(&json!({ "kind": "ConfigMap", "metadata": {} }))
                .unwrap_err()
                .to_string()
                .contains("no `apiVersion`")
        );
        assert!(
            ObjectRef::of(&json!({ "apiVersion": "v1", "kind": "ConfigMap" }))
                .unwrap_err()
                .to_string()
                .contains("metadata.name")
        );
        assert!(ObjectRef::of(&json!("text")).unwrap_err().to_string().contains("not a Kubernetes object"));
    }

    #[test]
    fn versions_do_not_change_identity_and_namespaces_and_crds_go_first() {
        let a =
            ObjectRef::of(&json!({ "apiVersion": "x.io/v1beta1", "kind": "W", "metadata": { "name": "n" } })).unwrap();
        let b = ObjectRef { api_version: "x.io/v1".into(), ..a.clone() };
        assert!(a.same_object(&b));
        let objects = [
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" } }),
            json!({ "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": { "name": "d" } }),
            json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "s" } }),
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "n" } }),
        ];
        let order: Vec<String> = in_apply_order(&objects).unwrap().iter().map(|(r, _)| r.name.clone()).collect();
        assert_eq!(order, ["n", "d", "c", "s"]);
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": [objects[2].clone(), objects[3].clone()] });
        let order: Vec<String> = in_apply_order(&[list]).unwrap().iter().map(|(r, _)| r.name.clone()).collect();
        assert_eq!(order, ["n", "s"]);
    }
}
