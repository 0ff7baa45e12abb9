//! The JSON of each `/api/v1` endpoint (docs/ui.md), as plain functions of a [`Source`], so that
//! the HTTP layer only routes and the tests read the same values. Every value comes from library
//! calls (the resolver, the store); no policy logic lives here. Secrets are redacted before
//! anything leaves: the desired state is resolved redacted, stored records go through
//! [`redact`].

use std::collections::BTreeSet;

use aptc_core::diff::json_changes;
use aptc_core::ir::Consumer;
use aptc_core::resolve::{Chains, DeployedNames, Instance, InstanceKind, Options, Status, resolve_with};
use aptc_core::secret::{redact, redact_text};
use aptc_runtime::drift::{Drift, DriftKind};
use aptc_runtime::helm::{Helm, HelmError};
use aptc_runtime::manifest::write_stream;
use aptc_runtime::plan::unit;
use aptc_runtime::render::template_chart;
use aptc_runtime::store::Revision;
use serde_json::{Value, json};

use crate::UiError;
use crate::source::{Loaded, Source};

/// The version of the API's JSON; raised when a field changes meaning or goes away.
pub const FORMAT_VERSION: u32 = 1;

fn loaded(policy: &crate::source::Policy) -> Result<&Loaded, UiError> {
    policy.as_ref().map_err(|rendered| UiError::Policy(rendered.clone()))
}

/// `GET /api/v1/policy`: counts, clusters, the store, or the policy's errors.
pub fn summary(source: &dyn Source) -> Result<Value, UiError> {
    let policy = source.policy();
    let revisions = match source.store()? {
        Some(store) => store.list()?.last().map(|r| r.number),
        None => None,
    };
    let store = json!({ "path": source.state().to_string(), "last_revision": revisions });
    let loaded = match &*policy {
        Ok(loaded) => loaded,
        Err(rendered) => {
            return Ok(json!({ "format_version": FORMAT_VERSION, "error": rendered, "store": store }));
        }
    };
    let state = &loaded.state;
    let count = |status: Status| state.claims.values().filter(|c| c.status == status).count();
    let clusters: BTreeSet<&str> = state.instances.values().map(|i| &*i.cluster).collect();
    let deployable = state
        .instances
        .values()
        .filter(|i| matches!(i.kind, InstanceKind::Chart { .. } | InstanceKind::Manifests { .. }))
        .count();
    Ok(json!({
        "format_version": FORMAT_VERSION,
        "error": null,
        "claims": { "total": state.claims.len(), "resolved": count(Status::Resolved), "rejected": count(Status::Rejected), "failed": count(Status::Failed) },
        "instances": { "total": state.instances.len(), "deployable": deployable },
        "clusters": clusters,
        "files": loaded.files.iter().map(|(path, _)| path).collect::<Vec<_>>(),
        "store": store,
    }))
}

/// `GET /api/v1/graph`: every claim (with its consumer and, unless resolved, its reason) and every
/// instance (with its place and edges), for the graph page.
pub fn graph(source: &dyn Source) -> Result<Value, UiError> {
    let policy = source.policy();
    let loaded = loaded(&policy)?;
    let state = &loaded.state;
    let consumers: std::collections::BTreeMap<String, Value> = loaded
        .program
        .claims
        .iter()
        .map(|claim| {
            // The team a claim is for: the consuming team, or the consuming user's team as the
            // policy declares it (`user.team`; none when the user has none).
            let (consumer, team) = match &claim.consumer {
                Consumer::User(user) => {
                    (json!({ "user": user }), loaded.program.users.get(&**user).and_then(|u| u.team.clone()))
                }
                Consumer::Team(team) => (json!({ "team": team }), Some(team.to_string())),
            };
            (claim.id(), json!({ "contract": claim.contract, "consumer": consumer, "team": team }))
        })
        .collect();
    let claims: Vec<Value> = state
        .claims
        .values()
        .map(|c| {
            let of = consumers.get(&c.claim).cloned().unwrap_or(Value::Null);
            json!({
                "claim": c.claim,
                "status": c.status,
                "reason": c.reason,
                "reason_origin": c.reason_origin,
                "origin": c.origin,
                "root": c.root,
                "contract": of["contract"],
                "consumer": of["consumer"],
                "team": of["team"],
            })
        })
        .collect();
    let instances: Vec<Value> = state
        .instances
        .values()
        .map(|i| {
            json!({
                "key": i.key,
                "name": i.name,
                "id": i.id,
                "kind": kind_name(&i.kind),
                "cluster": i.cluster,
                "k8s_namespace": i.k8s_namespace,
                "contract": i.contract,
                "context": i.context,
                "service": i.service,
                "component": i.component,
                "edges": i.edges,
                "claims": i.claims.iter().map(|u| &u.claim).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({ "format_version": FORMAT_VERSION, "claims": claims, "instances": instances }))
}

fn kind_name(kind: &InstanceKind) -> &'static str {
    match kind {
        InstanceKind::Service => "service",
        InstanceKind::Chart { .. } => "chart",
        InstanceKind::Manifests { .. } => "manifests",
        InstanceKind::Uses { .. } => "uses",
    }
}

/// `GET /api/v1/claims/{id}`: the claim with its decision chain, as `aptc explain CLAIM --format
/// json` writes it (the chain is resolved for this claim only).
pub fn claim(source: &dyn Source, id: &str) -> Result<Value, UiError> {
    let policy = source.policy();
    let loaded = loaded(&policy)?;
    if !loaded.state.claims.contains_key(id) {
        return Err(UiError::NotFound(format!("no claim `{id}` (claims are `namespace.name`)")));
    }
    let only = BTreeSet::from([id.to_string()]);
    let deployed = DeployedNames::new();
    let mut state = resolve_with(&loaded.program, &Options { deployed: &deployed, chains: Chains::Only(&only) });
    state.redact();
    let outcome = &state.claims[id];
    Ok(json!({ "format_version": FORMAT_VERSION, "claims": [outcome], "instance": null }))
}

/// The instance called `name` (as `aptc plan` shows it).
fn find_instance<'a>(loaded: &'a Loaded, name: &str) -> Result<&'a Instance, UiError> {
    loaded
        .state
        .instances
        .values()
        .find(|i| i.name == name)
        .map(|i| &**i)
        .ok_or_else(|| UiError::NotFound(format!("no instance `{name}` (instances are named as `aptc plan` shows)")))
}

/// `GET /api/v1/instances/{name}`: an instance's place, values (secrets `***`), discovery, the
/// claims that consume it, its rendered manifest files and the last revision that changed it.
pub fn instance(source: &dyn Source, name: &str) -> Result<Value, UiError> {
    let policy = source.policy();
    let loaded = loaded(&policy)?;
    let instance = find_instance(loaded, name)?;
    let files = template_files(instance);
    // The kind as the plan format writes it, less the manifest files (shown redacted above).
    let mut kind = serde_json::to_value(&instance.kind)?;
    if let Some(manifests) = kind.get_mut("manifests").and_then(Value::as_object_mut) {
        manifests.remove("files");
    }
    let mut last_change = Value::Null;
    if let Some(store) = source.store()?
        && let Some(revision) =
            store.list()?.into_iter().rev().find(|r| r.actions.iter().any(|a| a.key == instance.key))
    {
        let action =
            revision.actions.iter().find(|a| a.key == instance.key).map(|a| json!({ "op": a.op, "why": a.why }));
        last_change =
            json!({ "revision": revision.number, "time": revision.time, "user": revision.user, "action": action });
    }
    Ok(json!({
        "format_version": FORMAT_VERSION,
        "key": instance.key,
        "name": instance.name,
        "id": instance.id,
        "kind": redact(&kind),
        "cluster": instance.cluster,
        "k8s_namespace": instance.k8s_namespace,
        "contract": instance.contract,
        "context": instance.context,
        "service": instance.service,
        "component": instance.component,
        "allocation": instance.allocation,
        "values": instance.values,
        "discovery": instance.discovery,
        "edges": instance.edges,
        "needed_by": instance.claims.iter().map(|u| json!({ "claim": u.claim, "depth": u.depth })).collect::<Vec<_>>(),
        "files": files,
        "last_change": last_change,
    }))
}

/// A manifests instance's rendered templates (`path`, `text`), each secret `***`; empty for
/// any other kind.
fn template_files(instance: &Instance) -> Vec<Value> {
    match &instance.kind {
        InstanceKind::Manifests { files, .. } => {
            files.iter().map(|f| json!({ "path": f.path, "text": redact_text(&f.text) })).collect()
        }
        _ => Vec::new(),
    }
}

/// `GET /api/v1/instances/{name}/manifests`: what the instance deploys, rendered. A manifests
/// instance: its rendered templates. A chart instance: the real `helm template` of its chart
/// (the runtime's [`template_chart`], as the render target runs it), given the values already
/// redacted, so no secret reaches Helm or the page; `helm` is asked only then. When Helm fails
/// (not found, the chart missing, a bad template), `error` says why and `files` is empty: the
/// page shows the message.
pub fn manifests(
    source: &dyn Source,
    name: &str,
    helm: impl FnOnce() -> Result<Helm, HelmError>,
) -> Result<Value, UiError> {
    let policy = source.policy();
    let loaded = loaded(&policy)?;
    let instance = find_instance(loaded, name)?;
    let answer = |renderer: &str, helm: Option<&str>, files: Vec<Value>, error: Option<String>| {
        json!({ "format_version": FORMAT_VERSION, "name": instance.name, "renderer": renderer, "helm": helm,
                "files": files, "error": error })
    };
    if !matches!(instance.kind, InstanceKind::Chart { .. }) {
        return Ok(answer("templates", None, template_files(instance), None));
    }
    let helm = match helm() {
        Ok(helm) => helm,
        Err(error) => return Ok(answer("helm template", None, Vec::new(), Some(error.to_string()))),
    };
    // Rendered with `***` for every secret: the digest of the secrets is not needed.
    let unit = unit(&loaded.state, &instance.key, &aptc_runtime::secrets::Secrets::local())
        .ok_or_else(|| UiError::NotFound(format!("instance `{name}` deploys nothing")))?;
    let rendered = match template_chart(&helm, &unit) {
        Ok(documents) => write_stream(&documents).map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    Ok(match rendered {
        Ok(text) => {
            answer("helm template", Some(&helm.version), vec![json!({ "path": "manifest.yaml", "text": text })], None)
        }
        Err(error) => answer("helm template", Some(&helm.version), Vec::new(), Some(error)),
    })
}

/// A revision as `aptc history --format json` writes it (`finished`: false for a deploy that
/// has not finished), secrets redacted.
fn revision_json(revision: &Revision, finished: bool) -> Result<Value, UiError> {
    let mut value = serde_json::to_value(revision)?;
    value["finished"] = Value::Bool(finished);
    Ok(redact(&value))
}

/// `GET /api/v1/revisions`: every revision, oldest first, as `aptc history --format json`.
pub fn revisions(source: &dyn Source) -> Result<Value, UiError> {
    let Some(store) = source.store()? else { return Ok(json!([])) };
    let mut values = Vec::new();
    for revision in store.list()? {
        values.push(revision_json(&revision, true)?);
    }
    if let Some(unfinished) = store.unfinished()? {
        values.push(revision_json(&unfinished, false)?);
    }
    Ok(Value::Array(values))
}

/// `GET /api/v1/revisions/{n}`: one revision with its plan, each action's outcome and timing, and
/// its desired state, as `aptc history show N --format json`.
pub fn revision(source: &dyn Source, number: u64) -> Result<Value, UiError> {
    let store = source.store()?.ok_or_else(|| UiError::NotFound("no revisions yet".to_string()))?;
    let (revision, finished) = match store.get(number)? {
        Some(revision) => (revision, true),
        None => match store.unfinished()?.filter(|r| r.number == number) {
            Some(revision) => (revision, false),
            None => return Err(UiError::NotFound(format!("there is no revision {number}"))),
        },
    };
    let mut value = revision_json(&revision, finished)?;
    value["desired_state"] = redact(&store.desired_state(number)?.unwrap_or_default());
    Ok(value)
}

/// `GET /api/v1/diff?from=A&to=B`: the deployable instances revision `to` adds, removes and
/// changes (their values and discovery, leaf by leaf) against revision `from`.
pub fn diff(source: &dyn Source, from: u64, to: u64) -> Result<Value, UiError> {
    let store = source.store()?.ok_or_else(|| UiError::NotFound("no revisions yet".to_string()))?;
    let get = |n: u64| -> Result<Revision, UiError> {
        store.get(n)?.ok_or_else(|| UiError::NotFound(format!("there is no revision {n}")))
    };
    let (old, new) = (get(from)?, get(to)?);
    let added: Vec<&String> = new.desired.keys().filter(|k| !old.desired.contains_key(*k)).collect();
    let removed: Vec<&String> = old.desired.keys().filter(|k| !new.desired.contains_key(*k)).collect();
    let mut changed = Vec::new();
    for (key, after) in &new.desired {
        let Some(before) = old.desired.get(key) else { continue };
        let mut fields = Vec::new();
        json_changes("values", &before.values, &after.values, &mut fields);
        json_changes("discovery", &before.discovery, &after.discovery, &mut fields);
        if before.content != after.content {
            fields.push(("content".to_string(), json!(before.content).to_string(), json!(after.content).to_string()));
        }
        if !fields.is_empty() {
            let fields: Vec<Value> =
                fields.into_iter().map(|(path, old, new)| json!({ "path": path, "old": old, "new": new })).collect();
            changed.push(json!({ "key": key, "name": after.name, "fields": fields }));
        }
    }
    Ok(
        json!({ "format_version": FORMAT_VERSION, "from": from, "to": to, "added": added, "removed": removed, "changed": changed }),
    )
}

/// One drifted unit as the API writes it: `key`, `name`, `place`, `kind` (`missing`,
/// `modified`), and the files `changed`, `added`, `removed` (empty when missing).
pub fn drift_json(drift: &Drift) -> Value {
    let none = Vec::new();
    let (changed, added, removed) = match &drift.kind {
        DriftKind::Missing => (&none, &none, &none),
        DriftKind::Modified { changed, added, removed } => (changed, added, removed),
    };
    json!({ "key": drift.key, "name": drift.name, "place": drift.place, "kind": drift.kind.name(),
            "changed": changed, "added": added, "removed": removed })
}

/// `GET /api/v1/drift`: what the last drift check kept in the store found (`checked`: when, by
/// whom, why; `revision` and `target`: what was compared), without asking the target; all `null`
/// and no `drift` when none was recorded yet.
pub fn last_drift(source: &dyn Source) -> Result<Value, UiError> {
    let Some(record) = source.last_drift()? else {
        return Ok(
            json!({ "format_version": FORMAT_VERSION, "checked": null, "revision": null, "target": null, "drift": [] }),
        );
    };
    Ok(json!({
        "format_version": FORMAT_VERSION,
        "checked": { "time": record.time, "user": record.user, "cause": record.cause },
        "revision": record.revision,
        "target": record.target,
        "drift": record.drift.iter().map(drift_json).collect::<Vec<_>>(),
    }))
}

/// `GET /api/v1/source?file=PATH`: the text of one of the policy's files (only those: the path
/// must be one the policy was loaded from), for the claim page's source view.
pub fn source_file(source: &dyn Source, file: &str) -> Result<Value, UiError> {
    let policy = source.policy();
    let loaded = loaded(&policy)?;
    match loaded.files.iter().find(|(path, _)| path == file) {
        Some((path, text)) => Ok(json!({ "path": path, "text": &**text })),
        None => Err(UiError::NotFound(format!("`{file}` is not a file of this policy"))),
    }
}
