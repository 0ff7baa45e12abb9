//! Who owns the fields of a live object, from its `managedFields`: a person's tool (`kubectl`,
//! `k9s`, `helm`, aptc itself…) or a controller (an autoscaler owning `.spec.replicas`, an
//! operator filling in a field). aptc wins against people (its applies force conflicts: what the
//! policy says is what runs) but never fights a controller: a field a controller owns does not
//! count as drift (changing it is the controller's job, and repairing it would start a tug of war
//! that adds a revision at every interval), and is reported once as a conflict naming the
//! controller.

use serde_json::Value;

/// Field managers of tools people run by hand (or aptc and Helm, which act for people): their
/// changes to what aptc set are drift, and aptc's next apply takes the fields back. A manager
/// named `NAME-…` counts as `NAME` (`kubectl-edit`, `kubectl-client-side-apply`, `helm-v3`).
const PEOPLE: [&str; 8] = ["kubectl", "k9s", "helm", "aptc", "lens", "headlamp", "kustomize", "rancher-ui"];

/// Whether `manager` is a tool a person runs (see [`PEOPLE`]), as opposed to a controller.
pub fn is_person(manager: &str) -> bool {
    let manager = manager.to_ascii_lowercase();
    PEOPLE.iter().any(|tool| {
        manager == *tool
            || manager.strip_prefix(tool).is_some_and(|rest| rest.starts_with('-') || rest.starts_with('.'))
    })
}

/// A field of a live object that a controller owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ControllerField {
    /// The field's path in the object (`["spec", "replicas"]`).
    pub path: Vec<String>,
    /// The controller's field manager name.
    pub manager: String,
}

impl ControllerField {
    /// `.spec.replicas`.
    pub fn field(&self) -> String {
        self.path.iter().map(|p| format!(".{p}")).collect()
    }
}

/// The fields of `live` owned by a controller (any manager that is not [`is_person`]), by its
/// `managedFields` (`FieldsV1`). Fields inside lists are owned as their whole list (the list is
/// the field here). A field several managers share counts when any of them is a controller.
pub fn controller_fields(live: &Value) -> Vec<ControllerField> {
    let mut out = Vec::new();
    for entry in live["metadata"]["managedFields"].as_array().into_iter().flatten() {
        let manager = entry["manager"].as_str().unwrap_or_default();
        if manager.is_empty() || is_person(manager) {
            continue;
        }
        let mut paths = Vec::new();
        leaves(&entry["fieldsV1"], &mut Vec::new(), &mut paths);
        out.extend(paths.into_iter().map(|path| ControllerField { path, manager: manager.to_string() }));
    }
    out.sort();
    out.dedup();
    out
}

/// The `f:` paths of a `FieldsV1` set down to their leaves; a step of another kind (`k:`, `v:`,
/// `i:`: an item of a list) ends the path at the list.
fn leaves(set: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let children: Vec<(&String, &Value)> = set.as_object().into_iter().flatten().filter(|(k, _)| *k != ".").collect();
    if children.is_empty() {
        if !path.is_empty() {
            out.push(path.clone());
        }
        return;
    }
    for (key, inner) in children {
        match key.strip_prefix("f:") {
            Some(name) => {
                path.push(name.to_string());
                leaves(inner, path, out);
                path.pop();
            }
            None if !path.is_empty() && !out.contains(path) => out.push(path.clone()),
            None => {}
        }
    }
}

/// `live` as drift compares it: each field `owned` by a controller that `desired` sets holds the
/// desired value, as if the controller had not changed it (so the comparison with the fingerprint
/// recorded when aptc applied it finds no drift there, before or after the controller acts);
/// and those fields (the conflicts to report).
pub fn yield_to(desired: &Value, live: &Value, owned: &[ControllerField]) -> (Value, Vec<ControllerField>) {
    let mut seen = live.clone();
    let mut conflicts = Vec::new();
    for field in owned {
        let Some(wanted) = field.path.iter().try_fold(desired, |value, key| value.get(key.as_str())) else {
            continue;
        };
        let Some((last, parents)) = field.path.split_last() else { continue };
        let parent = parents.iter().try_fold(&mut seen, |value, key| value.get_mut(key.as_str()));
        if let Some(Value::Object(map)) = parent {
            map.insert(last.clone(), wanted.clone());
            conflicts.push(field.clone());
        }
    }
    (seen, conflicts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn people_and_controllers_are_told_apart() {
        for person in ["kubectl", "kubectl-edit", "kubectl-client-side-apply", "kubectl-scale", "k9s", "helm", "aptc"] {
            assert!(is_person(person), "{person}");
        }
        for controller in ["horizontal-pod-autoscaler", "kube-controller-manager", "argocd-controller", "kubectlx"] {
            assert!(!is_person(controller), "{controller}");
        }
    }

    #[test]
    fn controller_owned_fields_are_found_and_left_out_of_the_desired_object() {
        let live = json!({ "metadata": { "managedFields": [
            { "manager": "helm", "fieldsType": "FieldsV1",
              "fieldsV1": { "f:spec": { "f:replicas": {}, "f:template": { "f:spec": { "f:containers": { "k:{\"name\":\"c\"}": { ".": {}, "f:image": {} } } } } } } },
            { "manager": "horizontal-pod-autoscaler", "operation": "Update", "fieldsType": "FieldsV1",
              "fieldsV1": { "f:spec": { "f:replicas": {} } } },
            { "manager": "sidecar-injector", "fieldsType": "FieldsV1",
              "fieldsV1": { "f:spec": { "f:template": { "f:spec": { "f:containers": { "k:{\"name\":\"proxy\"}": {} } } } } } },
        ] } });
        let owned = controller_fields(&live);
        let fields: Vec<(String, &str)> = owned.iter().map(|f| (f.field(), f.manager.as_str())).collect();
        assert_eq!(
            fields,
            [
                (".spec.replicas".to_string(), "horizontal-pod-autoscaler"),
                (".spec.template.spec.containers".to_string(), "sidecar-injector"),
            ]
        );
        let desired = json!({ "spec": { "replicas": 2, "paused": false } });
        let live = json!({ "spec": { "replicas": 7, "paused": false } });
        let (seen, conflicts) = yield_to(&desired, &live, &owned);
        assert_eq!(seen, desired, "drift sees what aptc set where the autoscaler owns the field");
        assert_eq!(conflicts, owned[..1]);
    }
}
