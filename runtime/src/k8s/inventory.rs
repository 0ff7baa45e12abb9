//! A unit's inventory: the ConfigMap `aptc-inventory-<id>` in the unit's namespace that lists every
//! object aptc applied for it, so that objects leaving the desired set are pruned and deleting the
//! unit removes everything it made, without listing every kind on the cluster.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::object::ObjectRef;
use crate::manifest::{ANNOTATION_KEY, LABEL_INSTANCE};
use crate::plan::Unit;

/// The inventory ConfigMap's name.
pub(crate) fn name(unit: &Unit) -> String {
    format!("aptc-inventory-{}", unit.id)
}

/// The inventory ConfigMap itself, as an object reference (for errors).
pub(crate) fn reference(unit: &Unit) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some(unit.k8s_namespace.clone()),
        name: name(unit),
    }
}

/// The ConfigMap listing `objects` (in apply order) for revision `revision`, to server-side apply.
pub(crate) fn config_map(unit: &Unit, revision: u64, objects: &[ObjectRef]) -> Value {
    let listed = serde_json::to_string(objects).unwrap_or_else(|_| "[]".into());
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name(unit),
            "namespace": unit.k8s_namespace,
            "labels": { LABEL_INSTANCE: unit.id },
            "annotations": { ANNOTATION_KEY: unit.key },
        },
        "data": { "objects": listed, "revision": revision.to_string() },
    })
}

/// Why an inventory ConfigMap cannot be read (someone edited it, or it is not aptc's).
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The ConfigMap has no `objects` key.
    #[error("it has no `objects` entry")]
    NoObjects,
    /// `objects` is not the JSON list aptc writes.
    #[error("its `objects` entry is not a list of objects: {0}")]
    NotAList(#[source] serde_json::Error),
}

/// The objects an inventory's `data` lists.
pub(crate) fn objects(data: Option<&BTreeMap<String, String>>) -> Result<Vec<ObjectRef>, InventoryError> {
    let text = data.and_then(|d| d.get("objects")).ok_or(InventoryError::NoObjects)?;
    serde_json::from_str(text).map_err(InventoryError::NotAList)
}

/// `listed` followed by those of `more` not already in it (same object at any version).
pub(crate) fn union(listed: &[ObjectRef], more: &[ObjectRef]) -> Vec<ObjectRef> {
    let mut all = listed.to_vec();
    for object in more {
        if !all.iter().any(|o| o.same_object(object)) {
            all.push(object.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::unit;

    fn cm(name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("ns".into()),
            name: name.into(),
        }
    }

    #[test]
    fn inventories_round_trip_and_unions_keep_order_without_duplicates() {
        let u = unit("web", &[]);
        let value = config_map(&u, 4, &[cm("a"), cm("b")]);
        assert_eq!(value["metadata"]["name"], "aptc-inventory-web-id");
        assert_eq!(value["metadata"]["labels"][LABEL_INSTANCE], "web-id");
        assert_eq!(value["metadata"]["annotations"][ANNOTATION_KEY], "web");
        assert_eq!(value["data"]["revision"], "4");
        let data: BTreeMap<String, String> = serde_json::from_value(value["data"].clone()).unwrap();
        assert_eq!(objects(Some(&data)).unwrap(), [cm("a"), cm("b")]);
        assert_eq!(union(&[cm("a"), cm("b")], &[cm("c"), cm("a")]), [cm("a"), cm("b"), cm("c")]);
        assert!(objects(None).unwrap_err().to_string().contains("no `objects`"));
    }
}
