//! `aptc history`: the revisions of the store, one line each; `aptc history show N`: one
//! revision's plan and results.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use aptc_core::secret::redact;
use aptc_runtime::apply::Outcome;
use aptc_runtime::store::{self, Location, Revision};
use clap::{Args, Subcommand, ValueEnum};

use super::deploy::show_results;
use super::store::{policy_root, state_location};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    command: Option<HistoryCommand>,
    /// The revision store (default: .aptc/state.db under the policy root of the current
    /// directory: the nearest directory holding aptc.toml, else the current directory).
    /// PATH is a file; kube://CONTEXT/NAMESPACE keeps the revisions as ConfigMaps in NAMESPACE of
    /// the kubeconfig's CONTEXT (empty: its current context), shared by everyone deploying there.
    #[arg(long, value_name = "PATH|kube://CONTEXT/NAMESPACE", env = "APTC_STATE", value_parser = super::store::parse_state(), global = true)]
    state: Option<Location>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum HistoryCommand {
    /// Show one revision: who, when, what policy, and each action with its outcome and timing.
    Show {
        /// The revision number.
        revision: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people.
    Text,
    /// The stored records as JSON (`show` adds the full desired state).
    Json,
}

pub fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let state = state_location(args.state.as_ref(), &policy_root(&[]));
    let Some(store) = store::open_read(&state)? else {
        match (&args.command, args.format) {
            (Some(HistoryCommand::Show { revision }), _) => {
                bail!("there is no revision {revision}: {state} does not exist")
            }
            (None, Format::Json) => println!("[]"),
            (None, Format::Text) => println!("no revisions yet ({state} does not exist)"),
        }
        return Ok(ExitCode::SUCCESS);
    };
    match args.command {
        None => {
            let revisions = store.list()?;
            match args.format {
                Format::Json => {
                    let mut values = Vec::new();
                    for revision in &revisions {
                        values.push(revision_json(revision, true)?);
                    }
                    if let Some(unfinished) = store.unfinished()? {
                        values.push(revision_json(&unfinished, false)?);
                    }
                    let value = redact(&serde_json::Value::Array(values));
                    println!("{}", serde_json::to_string_pretty(&value).context("encoding JSON")?)
                }
                Format::Text if revisions.is_empty() && store.pending()?.is_none() => println!("no revisions yet"),
                Format::Text => {
                    let width = revisions.iter().map(|r| r.user.chars().count()).max().unwrap_or(0);
                    for revision in &revisions {
                        println!(
                            "{:>4}  {}  {:<width$}  {}: {}  (policy {})",
                            revision.number,
                            revision.time,
                            revision.user,
                            revision.cause_text(),
                            revision.counts().summary(),
                            short(&revision.policy)
                        );
                    }
                    if let Some(journal) = store.pending()? {
                        let r = &journal.revision;
                        println!(
                            "{:>4}  {}  {:<width$}  {}: not finished (aptc was killed or crashed, or it is still \
running; the next deploy records what it did)",
                            r.number,
                            r.time,
                            r.user,
                            r.cause_text()
                        );
                    }
                }
            }
        }
        Some(HistoryCommand::Show { revision: number }) => {
            // A recorded revision, or the one a deploy that has not finished is making.
            let (revision, finished) = match store.get(number)? {
                Some(revision) => (revision, true),
                None => match store.unfinished()?.filter(|r| r.number == number) {
                    Some(revision) => (revision, false),
                    None => {
                        let last =
                            store.last()?.map_or("there are none".to_string(), |r| format!("the last is {}", r.number));
                        bail!("there is no revision {number} in {state} ({last})");
                    }
                },
            };
            match args.format {
                Format::Json => {
                    let mut value = revision_json(&revision, finished)?;
                    value["desired_state"] = store.desired_state(number)?.unwrap_or_default();
                    println!("{}", serde_json::to_string_pretty(&redact(&value)).context("encoding JSON")?);
                }
                Format::Text => print!("{}", super::words::printable(&show(&revision, finished))),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A revision as JSON, with `finished`: `false` for the revision of a deploy that has not
/// finished (running, or killed), whose actions are those it reported so far.
fn revision_json(revision: &Revision, finished: bool) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(revision).context("encoding JSON")?;
    value["finished"] = serde_json::Value::Bool(finished);
    Ok(value)
}

/// `sha256:0123456789ab` (the first 12 hex digits).
fn short(hash: &str) -> String {
    let cut = hash.find(':').map_or(0, |i| i + 1) + 12;
    hash.get(..cut).unwrap_or(hash).to_string()
}

fn show(revision: &Revision, finished: bool) -> String {
    let counts = revision.counts();
    let mut out = format!("revision {}\n", revision.number);
    if !finished {
        out.push_str(
            "  status  not finished: the deploy is still running, or aptc was killed (the next deploy records what it \
did); its actions as reported so far\n",
        );
    }
    let took = Duration::from_millis(revision.duration_ms).as_secs_f64();
    for (name, value) in [
        ("time", revision.time.clone()),
        ("user", revision.user.clone()),
        ("cause", revision.cause_text()),
        ("policy", revision.policy.clone()),
        ("target", revision.target.clone()),
        ("took", format!("{took:.2} s")),
        ("result", counts.summary()),
        ("after", format!("{} in place", super::words::count(revision.applied.len(), "instance"))),
    ] {
        out.push_str(&format!("  {name:<8}{value}\n"));
    }
    if !revision.kept.is_empty() {
        out.push_str(&format!("  {:<8}{} instances of failed claims, as they were\n", "kept", revision.kept.len()));
    }
    out.push_str("plan\n");
    if revision.actions.is_empty() && revision.kept.is_empty() {
        out.push_str("  (no actions)\n");
    }
    for action in &revision.actions {
        let mark = match action.report.outcome {
            Outcome::Succeeded { .. } => "ok",
            Outcome::Failed { .. } => "FAILED",
            Outcome::Skipped { .. } | Outcome::Interrupted => "skipped",
        };
        out.push_str(&format!(
            "  {:<6}  {}  {}  {}  ({})  {mark}\n",
            action.op.verb(),
            action.name,
            action.place,
            action.source,
            action.why
        ));
    }
    let width = revision.kept.iter().map(|k| k.name.len()).max().unwrap_or(0);
    for kept in &revision.kept {
        out.push_str(&format!("  = kept    {:<width$}  {}  {}  ({})\n", kept.name, kept.place, kept.source, kept.why));
    }
    out.push_str("results\n");
    out.push_str(&show_results(revision));
    out
}
