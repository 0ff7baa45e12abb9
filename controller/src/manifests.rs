//! What installs the controller (`aptc controller manifests`): the CRDs (generated from
//! [`crate::crd`]), a ServiceAccount, least-privilege RBAC, the `ValidatingAdmissionPolicy` that
//! holds a claim's user to its requester, the webhook configuration for bundles, the Service and
//! the Deployment. Every object is a JSON value written by serde; the only text added is the
//! fixed comments that say why each permission is needed. `deploy/aptc-controller` (the Helm
//! chart) renders the same objects; a test holds them equal.

use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::crd::{Claim, PolicyBundle};

/// The name shared by the controller's ServiceAccount, roles, Service and Deployment.
pub const NAME: &str = "aptc-controller";
/// The port of the admission webhook (HTTPS).
pub const WEBHOOK_PORT: u16 = 8443;
/// The port of `/healthz`, `/readyz` and `/metrics` (HTTP).
pub const PROBE_PORT: u16 = 8080;
/// The path the webhook answers bundle reviews on.
pub const WEBHOOK_PATH: &str = "/validate/policybundles";
/// The name of the webhook configuration (the controller writes its CA bundle into it).
pub const WEBHOOK_CONFIGURATION: &str = "aptc-policybundles";
/// The name of the bundle webhook within its configuration.
pub const WEBHOOK_NAME: &str = "policybundles.aptc.dev";
/// The Secret (in the controller's namespace) holding the generated webhook certificate every
/// replica serves.
pub const WEBHOOK_SECRET: &str = "aptc-controller-webhook-tls";
/// The Lease the replicas elect their leader with.
pub const LEASE: &str = "aptc-controller-leader";

/// Where and what to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    /// The Kubernetes namespace the controller runs in.
    pub namespace: String,
    /// The controller's container image.
    pub image: String,
    /// Replicas (one leads, the others stand by).
    pub replicas: u32,
    /// The Secrets (in its namespace) the policy names, which the controller may `get`, by name:
    /// the kubeconfigs of clusters declared with `kubeconfig secret` (docs/language.md §8.1), the
    /// values of `secret_k8s` (§5.9) and the credentials of Git sources (`spec.git.secretRef`).
    pub secrets: Vec<String>,
}

/// One object, with the comment lines written above it.
pub struct Manifest {
    pub why: &'static [&'static str],
    pub object: Value,
}

/// The CRDs, generated from the Rust types.
pub fn crds() -> Vec<Value> {
    [PolicyBundle::crd(), Claim::crd()]
        .into_iter()
        .map(|crd| serde_json::to_value(crd).expect("a CRD is plain data"))
        .collect()
}

/// Every object that installs the controller, in apply order.
pub fn manifests(install: &Install) -> Vec<Manifest> {
    let ns = install.namespace.as_str();
    let labels = json!({ "app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "aptc" });
    let mut out: Vec<Manifest> = crds().into_iter().map(|object| Manifest { why: &[], object }).collect();
    out.push(Manifest {
        why: &[],
        object: json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns, "labels": labels } }),
    });
    out.push(Manifest {
        why: &[],
        object: json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": NAME, "namespace": ns, "labels": labels }
        }),
    });
    out.push(Manifest {
        why: &[
            "Why each verb:",
            "- policybundles get/list/watch: the policy is assembled from every team's bundle, kept current by a watch.",
            "- policybundles/status patch: a bundle's diagnostics and the version in use are written to its status.",
            "- claims get/list/watch: every Claim in every namespace is resolved, kept current by a watch.",
            "- claims/status patch: each Claim's conditions, instances and observedGeneration.",
            "- validatingwebhookconfigurations get/update (only aptc's, by name): the controller writes the CA of",
            "  the serving certificate it generates into its webhook configuration.",
            "- events (events.k8s.io) create/patch: each apply and failure is told on its Claims, in their",
            "  namespaces, and a bundle's errors on its PolicyBundle (in `default`); patch counts a repeat.",
            "Nothing here lets the controller change bundles or claims themselves, or read Secrets but its own.",
        ],
        object: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": NAME, "labels": labels },
            "rules": [
                { "apiGroups": ["aptc.dev"], "resources": ["policybundles", "claims"], "verbs": ["get", "list", "watch"] },
                { "apiGroups": ["aptc.dev"], "resources": ["policybundles/status", "claims/status"], "verbs": ["patch"] },
                {
                    "apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
                    "resourceNames": [WEBHOOK_CONFIGURATION], "verbs": ["get", "update"]
                },
                { "apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] }
            ]
        }),
    });
    out.push(Manifest {
        why: &[],
        object: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": NAME, "labels": labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME },
            "subjects": [{ "kind": "ServiceAccount", "name": NAME, "namespace": ns }]
        }),
    });
    out.push(Manifest {
        why: &[
            "Why each verb (in the controller's namespace only):",
            "- leases get/create/update: leader election; one replica holds the Lease and renews it,",
            "  a standby reads it and takes it over once it has expired.",
            "- configmaps get/list/create/update: the revision store (ConfigMaps aptc-store and",
            "  aptc-revision-N): revisions are created, never replaced; the store's head (its lock",
            "  and the journal of a running deploy) is read and updated with resourceVersion preconditions.",
            "- secrets create: the first replica stores the webhook certificate it generates (creating",
            "  cannot be limited to one name; nothing else is granted on Secrets but get of that one).",
            "- secrets get (only the webhook certificate's, by name): every replica serves that certificate.",
            "- secrets get (only those named by --secret, by name; none by default): the kubeconfigs",
            "  of `kubeconfig secret` clusters, the values of `secret_k8s` and the credentials of",
            "  Git sources (spec.git.secretRef) that the policy and its bundles name.",
        ],
        object: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": NAME, "namespace": ns, "labels": labels },
            "rules": role_rules(install)
        }),
    });
    out.push(Manifest {
        why: &[],
        object: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": NAME, "namespace": ns, "labels": labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME },
            "subjects": [{ "kind": "ServiceAccount", "name": NAME, "namespace": ns }]
        }),
    });
    out.push(Manifest {
        why: &[
            "A Claim's user is its requester: creating a Claim, or changing its spec, as anyone else is refused.",
            "(Changes of metadata only, such as labels or finalizers, are left to RBAC.)",
        ],
        object: json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": { "name": "aptc-claim-user", "labels": labels },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": ["aptc.dev"], "apiVersions": ["v1alpha1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["claims"]
                }] },
                "validations": [{
                    "expression": "(request.operation == 'UPDATE' && object.spec == oldObject.spec) || object.spec.user == request.userInfo.username",
                    "messageExpression": "'spec.user must be the requesting user (' + request.userInfo.username + '), not ' + object.spec.user",
                    "reason": "Forbidden"
                }]
            }
        }),
    });
    out.push(Manifest {
        why: &[],
        object: json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": { "name": "aptc-claim-user", "labels": labels },
            "spec": { "policyName": "aptc-claim-user", "validationActions": ["Deny"] }
        }),
    });
    out.push(Manifest {
        why: &[
            "Bundles are checked by the policy's own rule of who may change what (docs/language.md §11):",
            "the controller runs the change check with the requester's user name. Its CA bundle is written",
            "by the controller: the serving certificate the first replica generated, kept in a Secret.",
            "30 s (the most Kubernetes allows): a bundle of a Git commit is fetched before it is checked.",
        ],
        object: json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": { "name": WEBHOOK_CONFIGURATION, "labels": labels },
            "webhooks": [{
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 30,
                "rules": [{
                    "apiGroups": ["aptc.dev"], "apiVersions": ["v1alpha1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["policybundles"], "scope": "Cluster"
                }],
                "clientConfig": { "service": { "namespace": ns, "name": NAME, "path": WEBHOOK_PATH, "port": 443 } }
            }]
        }),
    });
    out.push(Manifest {
        why: &[],
        object: json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": NAME, "namespace": ns, "labels": labels },
            "spec": {
                "selector": { "app.kubernetes.io/name": NAME },
                "ports": [
                    { "name": "webhook", "port": 443, "targetPort": WEBHOOK_PORT },
                    { "name": "metrics", "port": PROBE_PORT, "targetPort": PROBE_PORT }
                ]
            }
        }),
    });
    out.push(Manifest {
        why: &[
            "Two replicas: one leads (holds the Lease), the other serves the webhook and stands by; both",
            "serve the one webhook certificate kept in the Secret aptc-controller-webhook-tls.",
            "Target clusters are reached through the kubeconfigs their declarations name; to deploy into",
            "this cluster, bind the ServiceAccount to the rights the policy's objects need.",
        ],
        object: deployment(install, &labels),
    });
    out
}

fn deployment(install: &Install, labels: &Value) -> Value {
    let env = |name: &str, path: &str| json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } });
    let probe = |path: &str| json!({ "httpGet": { "path": path, "port": PROBE_PORT }, "periodSeconds": 10 });
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": NAME, "namespace": install.namespace, "labels": labels },
        "spec": {
            "replicas": install.replicas,
            "selector": { "matchLabels": { "app.kubernetes.io/name": NAME } },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "serviceAccountName": NAME,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{
                        "name": "controller",
                        "image": install.image,
                        "args": ["controller", "run", "--work-dir", "/work"],
                        "env": [env("POD_NAME", "metadata.name"), env("POD_NAMESPACE", "metadata.namespace")],
                        "ports": [
                            { "name": "webhook", "containerPort": WEBHOOK_PORT },
                            { "name": "metrics", "containerPort": PROBE_PORT }
                        ],
                        "livenessProbe": probe("/healthz"),
                        "readinessProbe": probe("/readyz"),
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] }
                        },
                        "volumeMounts": [{ "name": "work", "mountPath": "/work" }, { "name": "tmp", "mountPath": "/tmp" }]
                    }],
                    "volumes": [{ "name": "work", "emptyDir": {} }, { "name": "tmp", "emptyDir": {} }]
                }
            }
        }
    })
}

/// The objects as one YAML stream, each after `---` and its comment lines.
pub fn to_yaml(manifests: &[Manifest]) -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for manifest in manifests {
        out.push_str("---\n");
        for line in manifest.why {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&serde_saphyr::to_string(&manifest.object)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// The Role's rules: a rule for the kubeconfig Secrets only when some are named (an empty
/// `resourceNames` would allow every name).
fn role_rules(install: &Install) -> Value {
    let mut rules = vec![
        json!({ "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"] }),
        json!({ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "update"] }),
        json!({ "apiGroups": [""], "resources": ["secrets"], "verbs": ["create"] }),
        json!({ "apiGroups": [""], "resources": ["secrets"], "resourceNames": [WEBHOOK_SECRET], "verbs": ["get"] }),
    ];
    if !install.secrets.is_empty() {
        rules.push(json!({
            "apiGroups": [""], "resources": ["secrets"], "resourceNames": install.secrets, "verbs": ["get"]
        }));
    }
    Value::Array(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install() -> Install {
        Install { namespace: "aptc-system".into(), image: "aptc:0.1.0".into(), replicas: 2, secrets: vec![] }
    }

    #[test]
    fn the_crds_are_generated_from_the_types() {
        let crds: Vec<Manifest> = crds().into_iter().map(|object| Manifest { why: &[], object }).collect();
        insta::assert_snapshot!(to_yaml(&crds).unwrap());
    }

    #[test]
    fn the_install_manifests() {
        insta::assert_snapshot!(to_yaml(&manifests(&install())[2..]).unwrap());
    }

    #[test]
    fn values_are_written_as_data() {
        let hostile = Install {
            namespace: "x\n---\nkind: Secret".into(),
            image: "i: {\"'".into(),
            replicas: 1,
            secrets: vec!["a\n- b".into()],
        };
        let yaml = to_yaml(&manifests(&hostile)).unwrap();
        let documents = aptc_runtime::manifest::parse_stream(&yaml).unwrap();
        assert_eq!(documents.len(), manifests(&hostile).len(), "no document was injected");
        assert!(documents.iter().all(|d| d.value["kind"] != "Secret"));
        let deployment = documents.iter().find(|d| d.value["kind"] == "Deployment").unwrap();
        assert_eq!(deployment.value["spec"]["template"]["spec"]["containers"][0]["image"], "i: {\"'");
        assert_eq!(deployment.value["metadata"]["namespace"], "x\n---\nkind: Secret");
        let role = documents.iter().find(|d| d.value["kind"] == "Role").unwrap();
        assert_eq!(role.value["rules"][4]["resourceNames"], json!(["a\n- b"]));
    }

    #[test]
    fn secrets_are_granted_by_name_only() {
        let role = |names: Vec<String>| {
            let install = Install { secrets: names, ..install() };
            manifests(&install).into_iter().find(|m| m.object["kind"] == "Role").unwrap().object
        };
        let none = role(vec![]);
        assert_eq!(none["rules"].as_array().unwrap().len(), 4, "no rule without names (empty would mean all)");
        let some = role(vec!["prod-kubeconfig".into(), "fleet".into()]);
        assert_eq!(
            some["rules"][4],
            json!({ "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["prod-kubeconfig", "fleet"], "verbs": ["get"] })
        );
    }
}
