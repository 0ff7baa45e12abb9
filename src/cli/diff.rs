//! `aptc diff`: what a policy change would do (two directories, or a git revision against the
//! working tree).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use aptc_compiler::syntax::format::claim_block;
use aptc_core::changes::{Refusal, refusals};
use aptc_core::diff::{StateDiff, diff};
use aptc_core::resolve::{DesiredState, resolve};
use aptc_core::verify::{Aspect, Comparison, Impact, compare};
use clap::Args;
use serde_json::json;

use super::checkout::Checkout;
use super::words::{count, printable};
use super::{EXIT_FINDINGS, Format, policy};

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The policy before the change (directory, files or `.aptir`); with `--git`, the path to
    /// compare in both the revision and the working tree.
    old: PathBuf,
    /// The policy after the change (omit with `--git`).
    new: Option<PathBuf>,
    /// Compare the policy at this git revision with the working tree.
    #[arg(long, value_name = "REV")]
    git: Option<String>,
    /// Exit 1 when the change has any effect (as `git diff --exit-code`).
    #[arg(long)]
    exit_code: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also say which changes to the policy this user may not make, by the old policy's roles
    /// (as a deploy refuses them, docs/language.md §11.3); exit 1 when there are any.
    #[arg(long = "as", value_name = "USER")]
    acting_user: Option<String>,
    /// Also compare the two policies over every possible claim, not only the policy's own
    /// (docs/verification.md §6): which kinds of claims change outcome, placement or sharing,
    /// each with an example; or a proof that none does.
    #[arg(long)]
    all_claims: bool,
}

/// The version of the JSON output; raised when a field changes meaning or goes away (adding one
/// does not).
const FORMAT_VERSION: u32 = 1;

pub fn run(args: DiffArgs, color: bool) -> anyhow::Result<ExitCode> {
    let (old_path, new_path, _checkout) = match (&args.git, &args.new) {
        (Some(rev), None) => {
            let checkout = Checkout::of(rev, std::slice::from_ref(&args.old))?;
            (checkout.path_of(&args.old)?, args.old.clone(), Some(checkout))
        }
        (None, Some(new)) => (args.old.clone(), new.clone(), None),
        (Some(_), Some(_)) => bail!("give either `OLD NEW` or `--git REV PATH`, not both"),
        (None, None) => bail!("give the policy after the change (`aptc diff OLD NEW`), or `--git REV`"),
    };
    let old_program = policy::load(&[old_path], color).context("the old policy")?;
    let new_program = policy::load(&[new_path], color).context("the new policy")?;
    let refused = args.acting_user.as_ref().map(|user| refusals(&old_program, &new_program, user));
    let (old, new) = (resolve(&old_program), resolve(&new_program));
    let change = diff(&old, &new);
    let every = args.all_claims.then(|| compare(&old_program, &new_program));
    match args.format {
        Format::Text => {
            print!("{}", printable(&text(&old, &new, &change)));
            if let Some(every) = &every {
                print!("{}", printable(&every_claim_text(every)));
            }
            if let (Some(user), Some(refused)) = (&args.acting_user, &refused) {
                print!("{}", printable(&refusals_text(user, refused)));
            }
        }
        Format::Json => {
            let mut out = json(&old, &new, &change);
            if let Some(refused) = &refused {
                out["refused"] = serde_json::to_value(refused)?;
            }
            if let Some(every) = &every {
                out["all_claims"] = every_claim_json(every)?;
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    // A possible claim that changes, or may (unknown), is an effect of the change.
    let effect = !change.is_empty() || every.as_ref().is_some_and(|e| !matches!(e.verdict, Impact::Unchanged));
    let findings = (args.exit_code && effect) || refused.is_some_and(|r| !r.is_empty());
    Ok(if findings { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
}

/// The comparison over every possible claim, for people: each kind of change with its example
/// claim (a `claim` block, to paste into a `test`), or the proof that none changes.
fn every_claim_text(every: &Comparison) -> String {
    let mut out = String::from("\nevery possible claim:\n");
    // Enumerated: one claim per class. Past the budget: the classes, covered by paths (§3), and a
    // kind counts the paths that showed it.
    let (over, unit) = match &every.solver {
        None => (count(every.claims, "possible claim"), "possible claim"),
        Some(run) => (
            format!("{} classes of claims, along {} through both versions", run.classes, count(run.paths, "path")),
            "path",
        ),
    };
    match &every.verdict {
        Impact::Unchanged => out.push_str(&format!(
            "  no possible claim changes outcome, placement or sharing (proved over {over}, docs/verification.md)\n"
        )),
        Impact::Unknown { reason } => out.push_str(&format!("  unknown: {reason}\n")),
        Impact::Changed { kinds } => {
            for kind in kinds {
                let aspect = match kind.aspect {
                    Aspect::Outcome => "outcome",
                    Aspect::Placement => "placement",
                    Aspect::Sharing => "sharing",
                };
                let consumers: Vec<&str> = kind.consumers.iter().map(String::as_str).collect();
                out.push_str(&format!(
                    "  ~ {aspect} of claims of {} ({}; by {})\n",
                    kind.contract,
                    count(kind.claims, unit),
                    consumers.join(", ")
                ));
                out.push_str(&format!(
                    "      before: {}\n      after:  {}\n      for example:\n",
                    kind.before, kind.after
                ));
                for line in claim_block(&kind.example).lines() {
                    out.push_str(&format!("        {line}\n"));
                }
            }
            out.push_str(&format!(
                "{} of claims change{} (over {over})\n",
                count(kinds.len(), "kind"),
                if kinds.len() == 1 { "s" } else { "" },
            ));
        }
    }
    out
}

/// The comparison for tools (docs/formats.md): the verdict, each kind with its example claim
/// (also as a `claim` block).
fn every_claim_json(every: &Comparison) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(every)?;
    if let (Impact::Changed { kinds }, Some(items)) =
        (&every.verdict, value.get_mut("kinds").and_then(|k| k.as_array_mut()))
    {
        for (kind, item) in kinds.iter().zip(items) {
            item["claim_block"] = json!(claim_block(&kind.example));
        }
    }
    Ok(value)
}

/// What `user` may not change, for people.
fn refusals_text(user: &str, refused: &[Refusal]) -> String {
    if refused.is_empty() {
        return format!("`{user}` may make every change to the policy\n");
    }
    let mut out = format!("`{user}` may not make these changes to the policy (docs/language.md §11.3):\n");
    for refusal in refused {
        out.push_str(&format!("  ✗ {refusal}\n"));
    }
    out
}

/// A changed field whose two sides read the same is a secret whose reference changed (another
/// variable or file): both sides are redacted to `***`, which would read as no change at all.
fn secret_source_changed(before: &str, after: &str) -> bool {
    before == after
}

/// The change for people: one line per instance (`+`, `-`, `~` with its changed fields), the
/// claims whose outcome changes, and a summary line.
fn text(old: &DesiredState, new: &DesiredState, change: &StateDiff) -> String {
    let mut out = String::new();
    for key in &change.added {
        out.push_str(&format!("+ {key} ({})\n", new.instances[key].name));
    }
    for key in &change.removed {
        out.push_str(&format!("- {key} ({})\n", old.instances[key].name));
    }
    for changed in &change.changed {
        out.push_str(&format!("~ {} ({})\n", changed.key, new.instances[&changed.key].name));
        for (field, before, after) in &changed.fields {
            if secret_source_changed(before, after) {
                out.push_str(&format!("    {field}: secret source changed\n"));
            } else {
                out.push_str(&format!("    {field}: {before} → {after}\n"));
            }
        }
    }
    if !change.claims.is_empty() {
        out.push_str("claims whose outcome changes:\n");
        for claim in &change.claims {
            out.push_str(&format!("  {}: {} ⇒ {}\n", claim.claim, claim.before, claim.after));
        }
    }
    let claims = change.claims.len();
    out.push_str(&format!(
        "{} added, {} removed, {} changed; {} {}\n",
        change.added.len(),
        change.removed.len(),
        change.changed.len(),
        count(claims, "claim"),
        if claims == 1 { "changes" } else { "change" }
    ));
    out
}

/// The change for tools, as docs/formats.md and docs/schema/diff.schema.json describe it.
fn json(old: &DesiredState, new: &DesiredState, change: &StateDiff) -> serde_json::Value {
    let instance = |state: &DesiredState, key: &String| json!({ "key": key, "name": state.instances[key].name });
    let changed: Vec<serde_json::Value> = change
        .changed
        .iter()
        .map(|changed| {
            let fields: Vec<serde_json::Value> = changed
                .fields
                .iter()
                .map(|(field, before, after)| {
                    json!({
                        "field": field,
                        "before": before,
                        "after": after,
                        "secret_source_changed": secret_source_changed(before, after),
                    })
                })
                .collect();
            json!({ "key": changed.key, "name": new.instances[&changed.key].name, "fields": fields })
        })
        .collect();
    json!({
        "format_version": FORMAT_VERSION,
        "added": change.added.iter().map(|key| instance(new, key)).collect::<Vec<_>>(),
        "removed": change.removed.iter().map(|key| instance(old, key)).collect::<Vec<_>>(),
        "changed": changed,
        "claims": change.claims,
    })
}
