//! `aptc diff`: what a policy change would do (two directories, or a git revision against the
//! working tree).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use aptc_core::diff::diff;
use aptc_core::resolve::resolve;
use clap::Args;

use super::{EXIT_FINDINGS, policy};

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
}

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
    for key in &change.added {
        println!("+ {key} ({})", new.instances[key].name);
    }
    for key in &change.removed {
        println!("- {key} ({})", old.instances[key].name);
    }
    for changed in &change.changed {
        println!("~ {} ({})", changed.key, new.instances[&changed.key].name);
        for (field, before, after) in &changed.fields {
            println!("    {field}: {before} → {after}");
        }
    }
    if !change.claims.is_empty() {
        println!("claims whose outcome changes:");
        for claim in &change.claims {
            println!("  {}: {} ⇒ {}", claim.claim, claim.before, claim.after);
        }
    }
    println!(
        "{} added, {} removed, {} changed; {} claims change",
        change.added.len(),
        change.removed.len(),
        change.changed.len(),
        change.claims.len()
    );
    Ok(if args.exit_code && !change.is_empty() { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
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
