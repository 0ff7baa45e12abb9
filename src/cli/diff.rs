//! `aptc diff`: what a policy change would do (two directories, or a git revision against the
//! working tree).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use aptc_core::diff::{StateDiff, diff};
use aptc_core::resolve::{DesiredState, resolve};
use clap::Args;
use serde_json::json;

use super::words::count;
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
}

/// The version of the JSON output; raised when a field changes meaning or goes away (adding one
/// does not).
const FORMAT_VERSION: u32 = 1;

pub fn run(args: DiffArgs, color: bool) -> anyhow::Result<ExitCode> {
    let (old_path, new_path, _checkout) = match (&args.git, &args.new) {
        (Some(rev), None) => {
            let checkout = Checkout::of(rev, &args.old)?;
            (checkout.dir.join(&args.old), args.old.clone(), Some(checkout))
        }
        (None, Some(new)) => (args.old.clone(), new.clone(), None),
        (Some(_), Some(_)) => bail!("give either `OLD NEW` or `--git REV PATH`, not both"),
        (None, None) => bail!("give the policy after the change (`aptc diff OLD NEW`), or `--git REV`"),
    };
    let old = resolve(&policy::load(&[old_path], color).context("the old policy")?);
    let new = resolve(&policy::load(&[new_path], color).context("the new policy")?);
    let change = diff(&old, &new);
    match args.format {
        Format::Text => print!("{}", text(&old, &new, &change)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&json(&old, &new, &change))?),
    }
    Ok(if args.exit_code && !change.is_empty() { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
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

/// A git revision's tree extracted into a temporary directory, removed on drop.
struct Checkout {
    dir: PathBuf,
}

impl Checkout {
    fn of(rev: &str, path: &Path) -> anyhow::Result<Checkout> {
        let top = git(&["rev-parse", "--show-toplevel"], None)?;
        let prefix = git(&["rev-parse", "--show-prefix"], None)?.trim().to_string();
        let dir =
            std::env::temp_dir().join(format!("aptc-diff-{}-{}", std::process::id(), rev.replace(['/', ':'], "_")));
        std::fs::create_dir_all(&dir)?;
        let archive = Command::new("git")
            .args(["archive", "--format=tar", rev, "--", &format!("{prefix}{}", path.display())])
            .current_dir(top.trim())
            .output()
            .context("running git archive")?;
        if !archive.status.success() {
            bail!("git archive {rev}: {}", String::from_utf8_lossy(&archive.stderr).trim());
        }
        let mut tar = Command::new("tar")
            .args(["-x", "-C"])
            .arg(&dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context("running tar")?;
        std::io::Write::write_all(tar.stdin.as_mut().expect("piped"), &archive.stdout)?;
        if !tar.wait()?.success() {
            bail!("extracting {rev} failed");
        }
        // The archive holds paths relative to the repository top; make them relative to here.
        let checkout = Checkout { dir: dir.join(&prefix) };
        Ok(checkout)
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(root) =
            self.dir.ancestors().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("aptc-diff-")))
        {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

fn git(args: &[&str], dir: Option<&Path>) -> anyhow::Result<String> {
    let mut command = Command::new("git");
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command.output().context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
