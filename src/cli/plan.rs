//! `aptc plan`: resolve the claims and show the desired state.

use aptc_compiler::host::paths_or_cwd;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use aptc_core::resolve::{
    Chains, DeployedNames, DesiredState, Instance, InstanceKind, Options, Status, resolve_taking,
};
use clap::{Args, ValueEnum};
use std::io::Write;

use super::policy;
use super::words::{count, printable};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Policy files or directories, or one `.aptir` file. Default: the current directory.
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Tree)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A tree by cluster and namespace, for people.
    Tree,
    /// The whole desired state as JSON (docs/formats.md, docs/schema/plan.schema.json).
    Json,
    /// The whole desired state as YAML (the same document as the JSON).
    Yaml,
}

pub fn run(args: PlanArgs, color: bool) -> anyhow::Result<ExitCode> {
    let program = policy::load(&paths_or_cwd(&args.paths)?, color)?;
    // No decision chains: the plan shows none (`aptc explain` recomputes one), and they were most
    // of a large resolution's memory. The program goes to the resolver, which frees its claims as
    // they merge.
    let mut state = resolve_taking(program, &Options { deployed: &DeployedNames::new(), chains: Chains::None });
    match args.format {
        Format::Tree => {
            state.redact();
            print!("{}", printable(&tree(&state)))
        }
        // Both written as they are encoded (the text of 100,000 claims is never held whole), each
        // secret redacted as it is written (`Redacted`: the state is neither copied nor rewritten).
        Format::Json => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            serde_json::to_writer_pretty(&mut out, &state.redacted()).context("encoding JSON")?;
            writeln!(out).and_then(|()| out.flush()).context("writing the plan")?;
        }
        Format::Yaml => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            serde_saphyr::to_io_writer(&mut out, &state.redacted()).context("encoding YAML")?;
            out.flush().context("writing the plan")?;
        }
    }
    // A failed claim is a fault of the policy to fix (a deploy keeps what it had meanwhile).
    let failed = state.claims.values().any(|c| c.status == Status::Failed);
    // The process ends here: freeing a large state one allocation at a time only costs time (8%
    // of the CPU of a 10,000-claim plan), the operating system takes the memory back whole.
    std::mem::forget(state);
    Ok(if failed { ExitCode::from(super::EXIT_FINDINGS) } else { ExitCode::SUCCESS })
}

/// A cluster's name for people (`us_east`, not `system.us_east`).
pub fn cluster_name(cluster: &str) -> &str {
    cluster.strip_prefix("system.").unwrap_or(cluster)
}

/// What a component instance deploys, in a few words.
pub fn describe(state: &DesiredState, instance: &Instance) -> String {
    match &instance.kind {
        InstanceKind::Chart { chart, version, .. } => {
            format!("chart {chart}{}", version.as_ref().map(|v| format!(" {v}")).unwrap_or_default())
        }
        InstanceKind::Manifests { glob, .. } => format!("manifests {glob}"),
        InstanceKind::Uses { contract } => {
            let target = instance.edges.last().and_then(|k| state.instances.get(k));
            let at = target
                .map(|t| format!(" → {} on {}/{}", t.name, cluster_name(&t.cluster), t.k8s_namespace))
                .unwrap_or_default();
            format!("uses {contract}{at}")
        }
        InstanceKind::Service => "service".to_string(),
    }
}

/// The desired state as a tree: cluster → Kubernetes namespace → service instance → components,
/// then every claim's outcome, then a summary line.
pub fn tree(state: &DesiredState) -> String {
    let mut out = String::new();
    let mut placed: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for instance in state.instances.values().filter(|i| i.kind == InstanceKind::Service) {
        placed.entry((cluster_name(&instance.cluster), &instance.k8s_namespace)).or_default().push(&instance.key);
    }
    for ((cluster, namespace), roots) in &placed {
        out.push_str(&format!("cluster {cluster}, namespace {namespace}\n"));
        for root in roots {
            let service = &state.instances[*root];
            let claims: Vec<&str> = service.claims.iter().map(|c| c.claim.as_str()).collect();
            let keys = if service.allocation.is_empty() {
                String::new()
            } else {
                format!(" [{}]", service.allocation.join(", "))
            };
            out.push_str(&format!(
                "  {} via {} / {}{keys}  ← {}\n",
                service.service,
                service.contract,
                service.context,
                claims.join(", ")
            ));
            for (i, key) in service.edges.iter().enumerate() {
                let Some(component) = state.instances.get(key) else { continue };
                let last = i + 1 == service.edges.len();
                out.push_str(&format!(
                    "    {} {} ({})\n",
                    if last { "└─" } else { "├─" },
                    component.name,
                    describe(state, component)
                ));
                if let Some(values) = component.values.as_object().filter(|v| !v.is_empty()) {
                    let shown: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    out.push_str(&format!("    {}   values: {}\n", if last { "   " } else { "│  " }, shown.join(", ")));
                }
            }
        }
    }
    out.push_str("claims\n");
    let (mut resolved, mut rejected, mut failed) = (0, 0, 0);
    for outcome in state.claims.values() {
        let line = match outcome.status {
            Status::Resolved => {
                resolved += 1;
                let root = outcome.root.as_ref().and_then(|k| state.instances.get(k));
                format!("resolved → {}", root.map_or("?".to_string(), |r| format!("{} / {}", r.contract, r.context)))
            }
            Status::Rejected => {
                rejected += 1;
                format!("REJECTED: {}", outcome.reason.clone().unwrap_or_default())
            }
            Status::Failed => {
                failed += 1;
                format!("FAILED: {}", outcome.reason.clone().unwrap_or_default())
            }
        };
        let at = outcome.reason_origin.as_ref().map(|o| format!(" ({o})")).unwrap_or_default();
        out.push_str(&format!("  {:<28} {line}{at}\n", outcome.claim));
        for note in &outcome.notes {
            out.push_str(&format!("  {:<28} note: {note}\n", ""));
        }
    }
    let deployable = state
        .instances
        .values()
        .filter(|i| matches!(i.kind, InstanceKind::Chart { .. } | InstanceKind::Manifests { .. }))
        .count();
    out.push_str(&format!(
        "{}: {resolved} resolved, {rejected} rejected, {failed} failed; {} ({deployable} to deploy) in {}\n",
        count(state.claims.len(), "claim"),
        count(state.instances.len(), "instance"),
        count(placed.len(), "cluster namespace")
    ));
    out
}
