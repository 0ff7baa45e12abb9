//! The custom resources of group `aptc.dev`, version `v1alpha1`, as Rust types: the CRDs are
//! generated from them (`kube`'s `CustomResource` derive and `schemars`), so the schema the API
//! server enforces and the controller's reading of it cannot disagree.
//!
//! - [`PolicyBundle`] (cluster-scoped, named after its `.apt` namespace by [`kube_name`]): one
//!   team's policy files and the files they refer to, as a gzipped tar archive in Base64.
//! - [`Claim`] (namespaced): what a consumer asks for. Its Kubernetes namespace names its `.apt`
//!   namespace ([`apt_namespace`]); its `spec.user` is the claiming user, which the shipped
//!   `ValidatingAdmissionPolicy` holds equal to the requester (`request.userInfo.username`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of aptc's resources.
pub const GROUP: &str = "aptc.dev";
/// The version of the resources.
pub const VERSION: &str = "v1alpha1";

/// One `.apt` namespace's policy files and the files they refer to (users files, manifest
/// templates, local charts), packed by `aptc push`.
// Each `printcolumn(...)` repeats `type_`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "aptc.dev",
    version = "v1alpha1",
    kind = "PolicyBundle",
    status = "PolicyBundleStatus",
    shortname = "apb",
    category = "aptc",
    doc = "One .apt namespace's policy files and the files they refer to, packed by `aptc push`.",
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.namespace"),
    printcolumn(name = "Files", type_ = "integer", json_path = ".spec.files"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBundleSpec {
    /// The `.apt` namespace whose files this is (the object is named after it: lower case, `_` as `-`).
    pub namespace: String,
    /// The files, as a gzipped tar archive in Base64 (paths relative to the policy's root).
    /// Empty when the files come from `git` instead (exactly one of the two).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub archive: String,
    /// Instead of `archive`: a commit of a Git repository the controller fetches, whose policy
    /// at `path` gives this namespace's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// `sha256:` of the archive's text (for `git`, of the archive the commit's files make, as
    /// `aptc push` packs them), so the controller can tell versions apart cheaply.
    pub digest: String,
    /// How many files the archive holds (shown by `kubectl get policybundles`).
    pub files: u32,
}

/// Where a bundle's files are when they are not in the object: a commit of a Git repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// The repository: `https://`, `http://`, `git://` or `ssh://` (credentials from `secretRef`,
    /// else none: public repositories, or what the controller's environment grants).
    pub url: String,
    /// The commit: its full id (40 hexadecimal digits), never a branch or a tag, so that what a
    /// bundle holds only changes by a write of the bundle, which the admission webhook checks.
    pub revision: String,
    /// The directory of the policy's root in the repository (`/`-separated; empty: its top).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// A Secret of the controller's namespace holding the credentials for the repository:
    /// `username` and `password` (a token) for `https://`/`http://`, `ssh-privatekey` (and
    /// `known_hosts`) for `ssh://`. The controller's Role must let it get it
    /// (`aptc controller manifests --secret NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// A Secret named by a resource, in the controller's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    pub name: String,
}

/// What the controller made of a bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBundleStatus {
    /// `InUse` (this version is part of the policy) or `Invalid` (its files have errors: the last
    /// good version is used instead, if there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The digest of the version the controller uses (the last good one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_digest: Option<String>,
    /// The errors of this version's files, one rendered line each (`file:line:column: code: message`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What a consumer asks for: an instance of a contract, with labels.
// Each `printcolumn(...)` repeats `type_`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "aptc.dev",
    version = "v1alpha1",
    kind = "Claim",
    namespaced,
    status = "ClaimStatus",
    shortname = "aptclaim",
    category = "aptc",
    doc = "A consumer's claim on a contract, resolved by the aptc controller.",
    printcolumn(name = "Contract", type_ = "string", json_path = ".spec.contract"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSpec {
    /// The claiming user, as the policy declares them; the admission policy requires it to be
    /// the requester's Kubernetes user name.
    pub user: String,
    /// The contract: `NAME` of the claim's own `.apt` namespace, or `NAMESPACE.NAME`.
    pub contract: String,
    /// The claim's labels (keys as in a `claim` block: `KEY` of its namespace, or `NAMESPACE.KEY`;
    /// values strings, integers, booleans, or lists of them).
    #[serde(default)]
    #[schemars(schema_with = "label_map_schema")]
    pub labels: BTreeMap<String, serde_json::Value>,
}

/// A map whose values may be any JSON (checked against the labels' declared types by the
/// controller, which reports a mismatch in the claim's status).
fn label_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// How a claim stands, and why.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatus {
    /// `Ready`, `Resolved`, `Rejected` or `Failed` (the most telling condition that holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `Resolved`, `Rejected`, `Failed`, `Ready`, each with the reason from the decision chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The instances the claim uses, where they run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<ClaimInstance>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One instance a claim uses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimInstance {
    /// The instance's name (a Helm release's name for a chart).
    pub name: String,
    /// `NAMESPACE.NAME` of the contract it serves.
    pub contract: String,
    /// The component, or `root` for the service instance.
    pub component: String,
    /// `system.NAME` of the cluster it runs on.
    pub cluster: String,
    /// The Kubernetes namespace it runs in there.
    pub namespace: String,
}

/// The Kubernetes name of the bundle of `.apt` namespace `namespace`: lower case, `_` as `-`;
/// `None` when that is not a DNS-1123 label (such a namespace cannot be pushed).
pub fn kube_name(namespace: &str) -> Option<String> {
    let name: String = namespace.chars().map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() }).collect();
    is_dns_label(&name).then_some(name)
}

/// The `.apt` namespace a Kubernetes namespace stands for: its name with `-` as `_` (Kubernetes
/// names cannot hold `_`, `.apt` names cannot hold `-`, so the mapping is one to one).
pub fn apt_namespace(kubernetes_namespace: &str) -> String {
    kubernetes_namespace.replace('-', "_")
}

/// A DNS-1123 label: 1 to 63 of `a-z0-9-`, starting and ending alphanumeric.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_one_to_one() {
        assert_eq!(kube_name("hello_team").as_deref(), Some("hello-team"));
        assert_eq!(kube_name("Payments").as_deref(), Some("payments"));
        assert_eq!(kube_name("_x"), None);
        assert_eq!(kube_name(&"a".repeat(64)), None);
        assert_eq!(apt_namespace("hello-team"), "hello_team");
        assert_eq!(apt_namespace(&kube_name("a_b_c").unwrap()), "a_b_c");
    }
}
