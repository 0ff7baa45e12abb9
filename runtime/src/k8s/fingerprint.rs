//! Drift fingerprints of live objects: a live object projected onto the fields aptc sets (those of
//! the desired object), hashed. Fields the server fills in (defaults, status, bookkeeping) and the
//! revision label, which changes at every deploy, do not count, so a fingerprint changes only when
//! someone edits what aptc applied. Fields a controller owns (`crate::owners`) do not count
//! either: aptc leaves them to it.

use serde_json::{Map, Value};

use crate::manifest::LABEL_REVISION;
use crate::owners::{self, ControllerField};

/// Metadata the server maintains, never compared.
const SERVER_METADATA: [&str; 5] = ["resourceVersion", "uid", "managedFields", "generation", "creationTimestamp"];

/// `sha256:` of `live` projected onto the field paths of `desired`, where a field a controller
/// owns counts as holding the desired value (`owners::yield_to`); those fields are returned (each
/// one a conflict aptc does not fight).
pub(crate) fn hash(desired: &Value, live: &Value) -> (String, Vec<ControllerField>) {
    let (live, conflicts) = owners::yield_to(desired, live, &owners::controller_fields(live));
    (aptc_core::digest::sha256(&project(desired, &live, &[]).to_string()), conflicts)
}

/// The parts of `live` at the paths present in `desired` (`path` is where both are). Lists are
/// compared item by item; items beyond the desired ones are kept whole (an added container
/// counts). Keys are sorted, so the text is canonical.
fn project(desired: &Value, live: &Value, path: &[&str]) -> Value {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => {
            let mut keys: Vec<&String> = want.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                if ignored(path, key) {
                    continue;
                }
                if let Some(value) = have.get(key) {
                    let mut inner = path.to_vec();
                    inner.push(key);
                    out.insert(key.clone(), project(&want[key], value, &inner));
                }
            }
            Value::Object(out)
        }
        (Value::Array(want), Value::Array(have)) => Value::Array(
            have.iter()
                .enumerate()
                .map(|(i, item)| want.get(i).map_or(item.clone(), |w| project(w, item, path)))
                .collect(),
        ),
        _ => live.clone(),
    }
}

fn ignored(path: &[&str], key: &str) -> bool {
    match path {
        [] => key == "status",
        ["metadata"] => SERVER_METADATA.contains(&key),
        ["metadata", "labels"] => key == LABEL_REVISION,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "labels": { "app": "web", LABEL_REVISION: "1" } },
            "spec": { "replicas": 2, "template": { "spec": { "containers": [{ "name": "c", "image": "nginx" }] } } },
        })
    }

    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "uid": "u", "resourceVersion": "9", "generation": 3,
                          "labels": { "app": "web", LABEL_REVISION: "7" } },
            "spec": { "replicas": 2, "progressDeadlineSeconds": 600,
                      "template": { "spec": { "containers": [{ "name": "c", "image": "nginx", "imagePullPolicy": "Always" }] } } },
            "status": { "replicas": 2 },
        })
    }

    #[test]
    fn server_fields_and_the_revision_do_not_count_but_edits_do() {
        let base = hash(&desired(), &live()).0;
        let mut bookkeeping = live();
        bookkeeping["metadata"]["resourceVersion"] = json!("10");
        bookkeeping["metadata"]["labels"][LABEL_REVISION] = json!("8");
        bookkeeping["status"]["replicas"] = json!(1);
        bookkeeping["spec"]["paused"] = json!(false);
        assert_eq!(hash(&desired(), &bookkeeping).0, base);
        let mut scaled = live();
        scaled["spec"]["replicas"] = json!(5);
        assert_ne!(hash(&desired(), &scaled).0, base);
        let mut added = live();
        added["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().push(json!({ "name": "sidecar" }));
        assert_ne!(hash(&desired(), &added).0, base);
        let mut unlabelled = live();
        unlabelled["metadata"]["labels"].as_object_mut().unwrap().remove("app");
        assert_ne!(hash(&desired(), &unlabelled).0, base);
        assert!(base.starts_with("sha256:"));
    }

    #[test]
    fn a_field_a_controller_owns_does_not_count_and_is_returned() {
        let mut scaled = live();
        scaled["spec"]["replicas"] = json!(5);
        scaled["metadata"]["managedFields"] = json!([
            { "manager": "horizontal-pod-autoscaler", "fieldsType": "FieldsV1", "fieldsV1": { "f:spec": { "f:replicas": {} } } },
        ]);
        let (by_controller, conflicts) = hash(&desired(), &scaled);
        let mut unscaled = scaled.clone();
        unscaled["spec"]["replicas"] = json!(2);
        assert_eq!(by_controller, hash(&desired(), &unscaled).0, "replicas are the autoscaler's");
        assert_eq!(by_controller, hash(&desired(), &live()).0, "as recorded before the autoscaler acted");
        assert_eq!(conflicts.len(), 1);
        assert_eq!(
            (conflicts[0].field(), conflicts[0].manager.as_str()),
            (".spec.replicas".into(), "horizontal-pod-autoscaler")
        );
        scaled["metadata"]["managedFields"][0]["manager"] = json!("kubectl-scale");
        assert_ne!(hash(&desired(), &scaled).0, by_controller, "a person's scale is drift");
    }
}
