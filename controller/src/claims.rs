//! Claim resources as the program's claims, and their statuses from a resolution.
//!
//! A `Claim` in Kubernetes namespace `team-a` belongs to `.apt` namespace `team_a`
//! ([`crate::crd::apt_namespace`]), is named as its object, and is filed by `spec.user` (which the
//! admission policy holds equal to the requester). Its contract and label keys are read as a
//! `claim` block in that namespace would: `NAME` of the namespace, or `NAMESPACE.NAME`; its label
//! values must have the labels' declared types, since no compiler has checked them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use aptc_core::ir::{Claim as IrClaim, Consumer, Origin, Program, Value};
use aptc_core::resolve::state::{ClaimOutcome, DesiredState, Instance, InstanceKind, Status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::Value as Json;

use crate::crd::{Claim, ClaimInstance, ClaimStatus, apt_namespace};

/// The file name a Claim resource's origin carries (`kubernetes:NAMESPACE/NAME`), so a decision
/// chain that points at the claim names the resource.
pub fn origin(claim: &Claim) -> Origin {
    let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    Origin { file: format!("kubernetes:{namespace}/{name}").into(), line: 0, column: 0 }
}

/// The program's claim for a Claim resource, or why it cannot be one (its status says so).
pub fn to_program_claim(claim: &Claim, program: &Program) -> Result<IrClaim, String> {
    let namespace = apt_namespace(claim.metadata.namespace.as_deref().unwrap_or("default"));
    if !program.namespaces.contains_key(&namespace) {
        return Err(format!(
            "the policy has no namespace `{namespace}` (a Claim's Kubernetes namespace names its .apt namespace, `-` as `_`)"
        ));
    }
    let name = claim.metadata.name.clone().unwrap_or_default();
    if let Some(declared) = program.claims.iter().find(|c| *c.namespace == *namespace && c.name == name) {
        return Err(format!(
            "the policy declares a claim `{name}` in namespace `{namespace}` already ({})",
            declared.origin
        ));
    }
    let contract = qualified(&namespace, &claim.spec.contract);
    if !program.contracts.contains_key(&contract) {
        return Err(format!("there is no contract `{}` (looked for `{contract}`)", claim.spec.contract));
    }
    let mut labels = BTreeMap::new();
    for (key, value) in &claim.spec.labels {
        let id = qualified(&namespace, key);
        let Some(declared) = program.labels.get(&id) else {
            return Err(format!("label `{key}`: no such label (looked for `{id}`)"));
        };
        let value = typed(value, &declared.ty).map_err(|why| format!("label `{key}`: {why}"))?;
        labels.insert(id, value);
    }
    Ok(IrClaim {
        namespace: namespace.into(),
        name,
        consumer: Consumer::User(claim.spec.user.as_str().into()),
        contract: contract.into(),
        labels: labels.into(),
        origin: origin(claim),
    })
}

/// `name` in `namespace` unless it names its namespace itself.
fn qualified(namespace: &str, name: &str) -> String {
    if name.contains('.') { name.to_string() } else { format!("{namespace}.{name}") }
}

/// A JSON value as a value of the label type `ty` (as `aptc_core::ir::LabelDecl::ty` writes it).
fn typed(value: &Json, ty: &str) -> Result<Value, String> {
    let ty = ty.trim();
    let wrong = || Err(format!("{value} is not of type {ty}"));
    if let Some(element) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let Json::Array(items) = value else { return wrong() };
        return items.iter().map(|item| typed(item, element)).collect::<Result<_, _>>().map(Value::List);
    }
    match (ty, value) {
        ("string", Json::String(s)) => Ok(Value::Str(s.clone())),
        ("int", Json::Number(n)) => n.as_i64().map(Value::Int).ok_or_else(|| format!("{n} is not an int")),
        ("bool", Json::Bool(b)) => Ok(Value::Bool(*b)),
        ("any", _) => any(value),
        (_, Json::String(s)) if ty.starts_with('"') => {
            let allowed: Vec<&str> = ty.split('|').map(|v| v.trim().trim_matches('"')).collect();
            if allowed.contains(&s.as_str()) { Ok(Value::Str(s.clone())) } else { wrong() }
        }
        _ => wrong(),
    }
}

fn any(value: &Json) -> Result<Value, String> {
    Ok(match value {
        Json::String(s) => Value::Str(s.clone()),
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Int(n.as_i64().ok_or_else(|| format!("{n} is not an int"))?),
        Json::Array(items) => Value::List(items.iter().map(any).collect::<Result<_, _>>()?),
        Json::Object(map) => {
            Value::Map(map.iter().map(|(k, v)| Ok((k.clone(), any(v)?))).collect::<Result<_, String>>()?)
        }
        Json::Null => return Err("null is not a value".into()),
    })
}

/// What a claim came to, for its status.
pub enum Came<'a> {
    /// It could not become a claim of the program (unknown namespace, contract, label; a bad value).
    Invalid(String),
    /// There is no policy to resolve it against yet.
    NoPolicy,
    /// The resolver's outcome, with the state it belongs to and the instances the claim uses
    /// (from [`uses_by_claim`]).
    Outcome { outcome: &'a ClaimOutcome, state: &'a DesiredState, uses: &'a [&'a Instance] },
}

/// The instances each claim uses, by claim id: made once per step, so a status need not look at
/// every instance of the state (10,000 claims and as many instances would be 10^8 looks).
pub fn uses_by_claim(state: &DesiredState) -> HashMap<&str, Vec<&Instance>> {
    let mut uses: HashMap<&str, Vec<&Instance>> = HashMap::new();
    for instance in state.instances.values() {
        for used in &instance.claims {
            let list = uses.entry(used.claim.as_str()).or_default();
            // A claim reaching one instance by two paths lists it once.
            if list.last().is_none_or(|last| last.key != instance.key) {
                list.push(instance);
            }
        }
    }
    uses
}

/// The status of `claim` given what it came to, which deployable instances the target holds
/// (`applied`, by instance key), where the policy was unpacked (`dir`, cut from file names) and
/// its previous status (conditions keep their transition time while they hold).
pub fn status(claim: &Claim, came: Came<'_>, applied: &BTreeSet<String>, dir: &Path, now: &Time) -> ClaimStatus {
    let generation = claim.metadata.generation;
    let previous = claim.status.clone().unwrap_or_default();
    let condition = |type_: &str, holds: bool, reason: &str, message: String| {
        let status = if holds { "True" } else { "False" };
        let last = previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: shortened(message, MAX_MESSAGE),
            last_transition_time: last,
            observed_generation: generation,
        }
    };
    let mut instances = Vec::new();
    let (state, conditions) = match came {
        Came::NoPolicy => {
            ("Pending", vec![condition("Resolved", false, "NoPolicy", "no policy bundle checks clean yet".into())])
        }
        Came::Invalid(why) => (
            "Failed",
            vec![
                condition("Resolved", false, "InvalidClaim", why.clone()),
                condition("Failed", true, "InvalidClaim", why),
            ],
        ),
        Came::Outcome { outcome, state, uses } => {
            let reason = outcome.reason.clone().unwrap_or_default();
            let at = outcome.reason_origin.as_ref().map(|o| {
                let file =
                    Path::new(&*o.file).strip_prefix(dir).map_or(o.file.to_string(), |p| p.display().to_string());
                format!(" ({file}:{}:{})", o.line, o.column)
            });
            let why = format!("{reason}{}", at.unwrap_or_default());
            match outcome.status {
                Status::Rejected => (
                    "Rejected",
                    vec![
                        condition("Resolved", false, "Rejected", why.clone()),
                        condition("Rejected", true, "RejectedByRule", why),
                    ],
                ),
                Status::Failed => (
                    "Failed",
                    vec![
                        condition("Resolved", false, "Failed", why.clone()),
                        condition("Failed", true, "ResolutionFailed", why),
                    ],
                ),
                Status::Resolved => {
                    let mut deployable = Vec::new();
                    for instance in uses {
                        instances.push(ClaimInstance {
                            name: instance.name.clone(),
                            contract: instance.contract.to_string(),
                            component: instance.component.to_string(),
                            cluster: instance.cluster.to_string(),
                            namespace: instance.k8s_namespace.to_string(),
                        });
                        if matches!(instance.kind, InstanceKind::Chart { .. } | InstanceKind::Manifests { .. }) {
                            deployable.push(instance.key.clone());
                        }
                    }
                    let waiting: Vec<&String> = deployable.iter().filter(|k| !applied.contains(*k)).collect();
                    let ready = if waiting.is_empty() {
                        condition("Ready", true, "Applied", format!("{} instance(s) applied", deployable.len()))
                    } else {
                        condition(
                            "Ready",
                            false,
                            "NotApplied",
                            format!("{} of {} instance(s) not applied yet", waiting.len(), deployable.len()),
                        )
                    };
                    let root = outcome.root.as_ref().and_then(|key| state.instances.get(key));
                    let resolved = match root {
                        Some(root) => format!("contract {} served by instance {}", root.contract, root.name),
                        None => format!("claim {} resolved", outcome.claim),
                    };
                    let state = if waiting.is_empty() { "Ready" } else { "Resolved" };
                    (state, vec![condition("Resolved", true, "Resolved", resolved), ready])
                }
            }
        }
    };
    ClaimStatus { state: Some(state.into()), conditions, instances, observed_generation: generation }
}

/// The longest condition message written (the API server's limit is 32,768; a message can quote
/// a consumer's label value).
const MAX_MESSAGE: usize = 2048;

/// `message`, cut at `max` bytes (on a character boundary) with `…` when longer (condition
/// messages, event notes: the API server bounds both).
pub fn shortened(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut end = max;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ClaimSpec;
    use crate::policy::tests::{SYSTEM, archives};
    use aptc_core::resolve::resolve;

    fn claim(namespace: &str, name: &str, user: &str, contract: &str, labels: Json) -> Claim {
        let labels = serde_json::from_value(labels).unwrap();
        let mut claim = Claim::new(name, ClaimSpec { user: user.into(), contract: contract.into(), labels });
        claim.metadata.namespace = Some(namespace.into());
        claim.metadata.generation = Some(3);
        claim
    }

    const LABELED: &str = "namespace web owned_by web_team\nlabel env: \"dev\" | \"prod\" = \"dev\"\nlabel replicas: int = 1\nrule no_prod when labels.env == \"prod\" and user.team != \"web_team\" {\n    reject \"prod is for the web team\"\n}\nservice site {\n    component page chart \"site\" {\n        repo \"https://charts.example.com\"\n        version \"1.0.0\"\n    }\n}\ncontract site {\n    context all {\n        use site\n    }\n}\n";

    /// The policy, the directory it is unpacked in (under the work directory, kept alive too).
    fn program() -> (Program, tempfile::TempDir, tempfile::TempDir) {
        let work = tempfile::tempdir().unwrap();
        let checked = crate::policy::check(
            &archives(&[("system", &[("system.apt", SYSTEM)]), ("web", &[("web.apt", LABELED)])]),
            work.path(),
        )
        .unwrap();
        assert_eq!(checked.problems, BTreeMap::new());
        (checked.program.unwrap(), checked.dir, work)
    }

    #[test]
    fn claims_become_the_programs_claims() {
        let (program, _dir, _work) = program();
        let c = claim("web", "mine", "ada", "site", serde_json::json!({ "env": "prod", "web.replicas": 2 }));
        let ir = to_program_claim(&c, &program).unwrap();
        assert_eq!(&*ir.namespace, "web");
        assert_eq!(&*ir.contract, "web.site");
        assert_eq!(ir.consumer, Consumer::User("ada".into()));
        assert_eq!(ir.labels["web.env"], Value::Str("prod".into()));
        assert_eq!(ir.labels["web.replicas"], Value::Int(2));
        assert_eq!(&*ir.origin.file, "kubernetes:web/mine");
    }

    #[test]
    fn a_bad_claim_says_why() {
        let (program, _dir, _work) = program();
        let cases = [
            (claim("shop", "x", "ada", "site", serde_json::json!({})), "no namespace `shop`"),
            (claim("web", "x", "ada", "nope", serde_json::json!({})), "no contract `nope`"),
            (claim("web", "x", "ada", "site", serde_json::json!({ "colour": "red" })), "label `colour`: no such label"),
            (claim("web", "x", "ada", "site", serde_json::json!({ "env": "staging" })), "\"staging\" is not of type"),
            (claim("web", "x", "ada", "site", serde_json::json!({ "replicas": "2" })), "is not of type int"),
            (claim("web", "x", "ada", "site", serde_json::json!({ "replicas": 1.5 })), "1.5 is not an int"),
            (
                claim("web", "x", "ada", "site", serde_json::json!({ "env": "dev\n---\nkind: Secret" })),
                "is not of type",
            ),
        ];
        for (c, expected) in cases {
            let error = to_program_claim(&c, &program).unwrap_err();
            assert!(error.contains(expected), "{error} (expected {expected})");
        }
    }

    #[test]
    fn statuses_say_why_with_the_rule_and_its_place() {
        let (mut program, dir, _work) = program();
        let claims = [
            claim("web", "ok", "ada", "site", serde_json::json!({ "env": "prod" })),
            claim("web", "rejected", "eve", "site", serde_json::json!({ "env": "prod" })),
            claim("web", "nobody", "mallory", "site", serde_json::json!({})),
        ];
        for c in &claims {
            program.claims.push(to_program_claim(c, &program).unwrap());
        }
        let state = resolve(&program);
        let uses = uses_by_claim(&state);
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let statuses: Vec<ClaimStatus> = claims
            .iter()
            .map(|c| {
                let id = format!("web.{}", c.metadata.name.as_deref().unwrap());
                let came = Came::Outcome {
                    outcome: &state.claims[&id],
                    state: &state,
                    uses: uses.get(id.as_str()).map_or(&[][..], Vec::as_slice),
                };
                status(c, came, &BTreeSet::new(), dir.path(), &now)
            })
            .collect();
        assert_eq!(statuses[0].state.as_deref(), Some("Resolved"));
        assert_eq!(statuses[0].instances.len(), 2, "{:?}", statuses[0].instances);
        assert!(statuses[0].instances.iter().all(|i| i.cluster == "system.local"));
        assert_eq!(statuses[0].conditions[1].reason, "NotApplied");
        assert!(statuses[0].conditions[0].message.starts_with("contract web.site served by instance site-root-"));
        assert_eq!(statuses[0].observed_generation, Some(3));
        assert_eq!(statuses[1].state.as_deref(), Some("Rejected"));
        let rejected = &statuses[1].conditions[1];
        assert_eq!((rejected.type_.as_str(), rejected.status.as_str()), ("Rejected", "True"));
        assert!(rejected.message.contains("prod is for the web team"), "{}", rejected.message);
        assert!(rejected.message.contains("(web/web.apt:4:"), "the rule's place, in the bundle: {}", rejected.message);
        assert_eq!(statuses[2].state.as_deref(), Some("Failed"));
        assert!(statuses[2].conditions[1].message.contains("`mallory` does not exist"), "{:?}", statuses[2].conditions);
        // Once its instances are applied, it is ready; the Resolved condition keeps its time.
        let applied: BTreeSet<String> = state.instances.keys().cloned().collect();
        let mut ok = claims[0].clone();
        ok.status = Some(statuses[0].clone());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_600).unwrap());
        let came = Came::Outcome { outcome: &state.claims["web.ok"], state: &state, uses: &uses["web.ok"] };
        let ready = status(&ok, came, &applied, dir.path(), &later);
        assert_eq!(ready.state.as_deref(), Some("Ready"));
        assert_eq!(ready.conditions[0].last_transition_time, now);
        assert_eq!(ready.conditions[1].last_transition_time, later);
    }
}
