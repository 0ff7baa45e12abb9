//! The kinds the double serves and how clients discover them: a table of built-in kinds, the
//! kinds of the `CustomResourceDefinition`s written to it, discovery (`/api`, `/apis`, resource
//! lists, OpenAPI v3 documents), and what a server adds to objects of some kinds (a Deployment's
//! status as if its pods were ready, a CRD's conditions once established).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::State;

/// A served kind.
#[derive(Clone, Debug)]
pub(crate) struct Kind {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) kind: String,
    pub(crate) plural: String,
    pub(crate) namespaced: bool,
    /// Whether `status` is a subresource: writes to the main resource leave it alone.
    pub(crate) status: bool,
}

impl Kind {
    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool, status: bool) -> Kind {
        Kind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            status,
        }
    }

    pub(crate) fn group_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `configmaps` or `leases.coordination.k8s.io`, as messages name a resource.
    pub(crate) fn resource(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }
}

/// The kinds served from the start: what aptc's cluster driver, Helm's storage and a controller
/// (Leases, Events, its webhook's configuration) use.
pub(crate) fn built_in() -> Vec<Kind> {
    vec![
        Kind::new("", "v1", "ConfigMap", "configmaps", true, false),
        Kind::new("", "v1", "Namespace", "namespaces", false, true),
        Kind::new("", "v1", "Service", "services", true, true),
        Kind::new("", "v1", "Secret", "secrets", true, false),
        Kind::new("", "v1", "Event", "events", true, false),
        Kind::new("apps", "v1", "Deployment", "deployments", true, true),
        Kind::new("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, true),
        Kind::new("coordination.k8s.io", "v1", "Lease", "leases", true, false),
        Kind::new("events.k8s.io", "v1", "Event", "events", true, false),
        Kind::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
            false,
        ),
    ]
}

/// Whether `kind` is the CustomResourceDefinition kind.
pub(crate) fn is_crd(kind: &Kind) -> bool {
    kind.group == "apiextensions.k8s.io" && kind.kind == "CustomResourceDefinition"
}

/// What the server (and the controllers a real cluster runs) add to an object about to be
/// stored: a Deployment's status as if its pods were ready at once (Helm waits for it), a CRD's
/// `Established` and `NamesAccepted` conditions.
pub(crate) fn complete(kind: &Kind, object: &mut Value) {
    if kind.group == "apps" && kind.kind == "Deployment" {
        if object["spec"].get("progressDeadlineSeconds").is_none() {
            object["spec"]["progressDeadlineSeconds"] = json!(600);
        }
        let replicas = object["spec"]["replicas"].as_u64().unwrap_or(1);
        let generation = object["metadata"]["generation"].clone();
        object["status"] = json!({
            "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas, "observedGeneration": generation,
            "conditions": [{ "type": "Available", "status": "True" }, { "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" }],
        });
    }
    if is_crd(kind) {
        let names = object["spec"]["names"].clone();
        object["status"] = json!({
            "acceptedNames": names,
            "storedVersions": object["spec"]["versions"].as_array().into_iter().flatten()
                .filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>(),
            "conditions": [
                { "type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": "2025-01-01T00:00:00Z" },
                { "type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": "2025-01-01T00:00:00Z" },
            ],
        });
    }
}

impl State {
    /// The served kind at `group`/`version` named `plural`.
    pub(crate) fn kind(&self, group: &str, version: &str, plural: &str) -> Option<Kind> {
        self.kinds.iter().find(|k| k.group == group && k.version == version && k.plural == plural).cloned()
    }

    /// Serves the kinds a CRD defines (its served versions) from now on, replacing what an
    /// earlier version of it defined.
    pub(crate) fn register(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let (group, plural) = (text(&spec["group"]), text(&spec["names"]["plural"]));
        self.kinds.retain(|k| !(k.group == group && k.plural == plural));
        for version in spec["versions"].as_array().into_iter().flatten().filter(|v| v["served"] != false) {
            self.kinds.push(Kind {
                group: group.clone(),
                version: text(&version["name"]),
                kind: text(&spec["names"]["kind"]),
                plural: plural.clone(),
                namespaced: spec["scope"] == "Namespaced",
                status: version["subresources"].get("status").is_some(),
            });
        }
    }

    /// Stops serving the kinds of a deleted CRD; returns them (their objects go too).
    pub(crate) fn unregister(&mut self, crd: &Value) -> Vec<Kind> {
        let spec = &crd["spec"];
        let (group, plural) = (spec["group"].as_str().unwrap_or_default(), spec["names"]["plural"].as_str());
        let (gone, kept) = std::mem::take(&mut self.kinds)
            .into_iter()
            .partition(|k| k.group == group && Some(k.plural.as_str()) == plural);
        self.kinds = kept;
        gone
    }

    /// `/apis`: every group with its versions.
    pub(crate) fn group_list(&self) -> Value {
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

    /// `/api/v1`, `/apis/GROUP/VERSION`: the resources of a group/version (with their `/status`
    /// subresources); `None` when it serves none.
    pub(crate) fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let verbs = ["create", "delete", "get", "list", "patch", "update", "watch"];
        let mut resources = Vec::new();
        for k in self.kinds.iter().filter(|k| k.group == group && k.version == version) {
            resources.push(json!({
                "name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced, "kind": k.kind,
                "verbs": verbs,
            }));
            if k.status {
                resources.push(json!({
                    "name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                    "kind": k.kind, "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        Some(
            json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
        )
    }

    /// `/openapi/v3`: a document per group/version, as clients look them up.
    pub(crate) fn openapi_paths(&self) -> Value {
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
    pub(crate) fn openapi(&self, group: &str, version: &str) -> Value {
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
}

/// `/version`.
pub(crate) fn version_info() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "fake", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
    })
}
