//! `aptc explain`: why a claim resolved as it did, or why an instance exists.

use aptc_compiler::host::paths_or_cwd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use aptc_core::resolve::{ClaimOutcome, Decision, DesiredState, Status, resolve};
use clap::Args;

use super::plan::cluster_name;
use super::policy;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A claim (`name` or `namespace.name`), or an instance (its name, id or key).
    target: String,
    /// Policy files or directories, or one `.aptir` file. Default: the current directory.
    paths: Vec<PathBuf>,
}

pub fn run(args: ExplainArgs, color: bool) -> anyhow::Result<ExitCode> {
    let program = policy::load(&paths_or_cwd(&args.paths), color)?;
    let state = resolve(&program);
    let target = args.target.as_str();
    let claims: Vec<&ClaimOutcome> =
        state.claims.values().filter(|c| c.claim == target || c.claim.rsplit('.').next() == Some(target)).collect();
    if let [claim] = claims.as_slice() {
        print!("{}", explain_claim(&state, claim));
        return Ok(ExitCode::SUCCESS);
    }
    if claims.len() > 1 {
        let names: Vec<&str> = claims.iter().map(|c| c.claim.as_str()).collect();
        bail!("`{target}` names several claims: {}; write `namespace.name`", names.join(", "));
    }
    let Some(instance) = state.instances.values().find(|i| i.key == target || i.name == target || i.id == target)
    else {
        bail!(
            "no claim or instance `{target}` (claims are `namespace.name`; instances are named as `aptc plan` shows)"
        );
    };
    println!("instance {} (id {})", instance.name, instance.id);
    println!("  key      {}", instance.key);
    println!("  on       cluster {}, namespace {}", cluster_name(&instance.cluster), instance.k8s_namespace);
    println!(
        "  from     contract {} / context {} → service {}, component {}",
        instance.contract, instance.context, instance.service, instance.component
    );
    if !instance.allocation.is_empty() {
        println!("  shared per {}", instance.allocation.join(", "));
    }
    println!("  needed by:");
    for used in &instance.claims {
        println!("    claim {} (depth {})", used.claim, used.depth);
    }
    for used in &instance.claims {
        if let Some(claim) = state.claims.get(&used.claim) {
            println!();
            print!("{}", explain_claim(&state, claim));
        }
    }
    Ok(ExitCode::SUCCESS)
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
