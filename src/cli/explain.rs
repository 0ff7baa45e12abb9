//! `aptc explain`: why a claim resolved as it did, or why an instance exists.

use aptc_compiler::host::paths_or_cwd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use aptc_core::ir::Program;
use aptc_core::resolve::{
    Chains, ClaimOutcome, Decision, DeployedNames, DesiredState, Instance, Options, Status, resolve_with,
};
use clap::Args;
use serde_json::json;
use std::collections::BTreeSet;

use super::plan::cluster_name;
use super::{Format, policy};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A claim (`name` or `namespace.name`), or an instance (its name, id or key).
    target: String,
    /// Policy files or directories, or one `.aptir` file. Default: the current directory.
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// The version of the JSON output; raised when a field changes meaning or goes away (adding one
/// does not). `diff` has its own: the two formats change independently.
const FORMAT_VERSION: u32 = 1;

/// What the target named: a claim, or an instance (explained by the claims that need it).
enum Found<'s> {
    Claim(&'s ClaimOutcome),
    Instance(&'s Instance),
}

pub fn run(args: ExplainArgs, color: bool) -> anyhow::Result<ExitCode> {
    let program = policy::load(&paths_or_cwd(&args.paths)?, color)?;
    // Redacted: the JSON output carries the instance's values, and no secret is ever shown.
    let mut state = explained(&program, &args.target);
    state.redact();
    let found = find(&state, &args.target)?;
    match args.format {
        Format::Text => print!("{}", super::words::printable(&text(&state, &found))),
        Format::Json => println!("{}", serde_json::to_string_pretty(&json(&state, &found))?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The desired state with the decision chains of the claims `target` is about, and no other
/// (every claim's, ~60 steps each, would be most of a large resolution's memory). A claim is
/// known from the program; an instance only once resolved, so then the policy is resolved twice:
/// resolution is a pure function, and the second gives the same state with those claims' chains.
fn explained(program: &Program, target: &str) -> DesiredState {
    let deployed = DeployedNames::new();
    let with = |claims: &BTreeSet<String>| {
        resolve_with(program, &Options { deployed: &deployed, chains: Chains::Only(claims) })
    };
    let named: BTreeSet<String> =
        program.claims.iter().filter(|c| c.id() == target || c.name == target).map(|c| c.id()).collect();
    if !named.is_empty() {
        // Several claims of that name make `find` ask for `namespace.name`: their chains are unused.
        return with(&named);
    }
    let state = resolve_with(program, &Options { deployed: &deployed, chains: Chains::None });
    let needing: BTreeSet<String> = match find(&state, target) {
        Ok(Found::Instance(instance)) => instance.claims.iter().map(|used| used.claim.clone()).collect(),
        _ => return state,
    };
    with(&needing)
}

/// The claim `target` names (`name` or `namespace.name`), else the instance (name, id or key).
fn find<'s>(state: &'s DesiredState, target: &str) -> anyhow::Result<Found<'s>> {
    let claims: Vec<&ClaimOutcome> = state
        .claims
        .values()
        .map(|c| &**c)
        .filter(|c| c.claim == target || c.claim.rsplit('.').next() == Some(target))
        .collect();
    if let [claim] = claims.as_slice() {
        return Ok(Found::Claim(claim));
    }
    if claims.len() > 1 {
        let names: Vec<&str> = claims.iter().map(|c| c.claim.as_str()).collect();
        bail!("`{target}` names several claims: {}; write `namespace.name`", names.join(", "));
    }
    match state.instances.values().find(|i| i.key == target || i.name == target || i.id == target) {
        Some(instance) => Ok(Found::Instance(instance)),
        None => bail!(
            "no claim or instance `{target}` (claims are `namespace.name`; instances are named as `aptc plan` shows)"
        ),
    }
}

/// The claims that need an instance, in resolution order.
fn needing<'s>(state: &'s DesiredState, instance: &Instance) -> Vec<&'s ClaimOutcome> {
    instance.claims.iter().filter_map(|used| state.claims.get(&used.claim)).map(|c| &**c).collect()
}

fn text(state: &DesiredState, found: &Found) -> String {
    let instance = match found {
        Found::Claim(claim) => return explain_claim(state, claim),
        Found::Instance(instance) => instance,
    };
    let mut out = format!("instance {} (id {})\n", instance.name, instance.id);
    out.push_str(&format!("  key      {}\n", instance.key));
    out.push_str(&format!(
        "  on       cluster {}, namespace {}\n",
        cluster_name(&instance.cluster),
        instance.k8s_namespace
    ));
    out.push_str(&format!(
        "  from     contract {} / context {} → service {}, component {}\n",
        instance.contract, instance.context, instance.service, instance.component
    ));
    if !instance.allocation.is_empty() {
        out.push_str(&format!("  shared per {}\n", instance.allocation.join(", ")));
    }
    out.push_str("  needed by:\n");
    for used in &instance.claims {
        out.push_str(&format!("    claim {} (depth {})\n", used.claim, used.depth));
    }
    for claim in needing(state, instance) {
        out.push('\n');
        out.push_str(&explain_claim(state, claim));
    }
    out
}

/// The explanation for tools, as docs/formats.md and docs/schema/explain.schema.json describe it:
/// the claims (each with its outcome and decision chain) and, for an instance, where it is.
fn json(state: &DesiredState, found: &Found) -> serde_json::Value {
    let (claims, instance) = match found {
        Found::Claim(claim) => (vec![*claim], serde_json::Value::Null),
        Found::Instance(instance) => (
            needing(state, instance),
            json!({
                "key": instance.key,
                "name": instance.name,
                "id": instance.id,
                "cluster": instance.cluster,
                "k8s_namespace": instance.k8s_namespace,
                "contract": instance.contract,
                "context": instance.context,
                "service": instance.service,
                "component": instance.component,
                "allocation": instance.allocation,
                "values": instance.values,
                "needed_by": instance.claims.iter().map(|used| json!({ "claim": used.claim, "depth": used.depth })).collect::<Vec<_>>(),
            }),
        ),
    };
    json!({ "format_version": FORMAT_VERSION, "claims": claims, "instance": instance })
}

/// The decision chain of a claim, step by step.
pub fn explain_claim(state: &DesiredState, claim: &ClaimOutcome) -> String {
    let mut out = format!("claim {} ({})\n", claim.claim, claim.origin);
    let mut depth = 0;
    for decision in &claim.decisions {
        let indent = "  ".repeat(depth + 1);
        let line = match decision {
            Decision::EnterContract { contract, depth: d } => {
                depth = *d;
                format!("{}contract {contract}", "  ".repeat(depth + 1))
            }
            Decision::Context { context, matched, origin, .. } => {
                format!(
                    "{indent}  context {context}: {} ({origin})",
                    if *matched { "matches, chosen" } else { "does not match" }
                )
            }
            Decision::Rule { rule, fired: true, effect, origin } => {
                let what = if effect.is_empty() { "no action".to_string() } else { effect.join("; ") };
                format!("{indent}  rule {rule} fired: {what} ({origin})")
            }
            Decision::Rule { rule, fired: false, origin, .. } => {
                format!("{indent}  rule {rule}: criteria false ({origin})")
            }
            Decision::Placement { cluster, k8s_namespace } => {
                format!("{indent}  placed on cluster {}, namespace {k8s_namespace}", cluster_name(cluster))
            }
            Decision::Allocation { keys } if keys.is_empty() => {
                format!("{indent}  no allocation keys: shared by everyone who gets here")
            }
            Decision::Allocation { keys } => format!("{indent}  allocated per {}", keys.join(", ")),
            Decision::Component { key, included } => match state.instances.get(key) {
                Some(instance) if *included => {
                    format!("{indent}  component {} → instance {}", instance.component, instance.name)
                }
                _ if *included => format!("{indent}  component {key}"),
                _ => format!("{indent}  component {key} skipped: its `when` is false"),
            },
        };
        out.push_str(&line);
        out.push('\n');
    }
    let verdict = match claim.status {
        Status::Resolved => "resolved".to_string(),
        Status::Rejected => format!("REJECTED: {}", claim.reason.clone().unwrap_or_default()),
        Status::Failed => format!("FAILED: {}", claim.reason.clone().unwrap_or_default()),
    };
    let at = claim.reason_origin.as_ref().map(|o| format!(" at {o}")).unwrap_or_default();
    out.push_str(&format!("→ {verdict}{at}\n"));
    for note in &claim.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
