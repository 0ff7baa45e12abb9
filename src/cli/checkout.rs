//! A git revision's copy of some policy paths, for commands that compare the working tree with a
//! revision (`aptc diff --git`, `aptc check --git`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The paths as git revision `rev` holds them, unpacked (`git archive`) into a temporary
/// directory that goes away with it.
pub struct Checkout {
    dir: tempfile::TempDir,
    /// The repository's top directory, which the archive's paths are relative to.
    top: PathBuf,
}

impl Checkout {
    /// `paths` (files or directories anywhere inside one repository) at revision `rev`.
    pub fn of(rev: &str, paths: &[PathBuf]) -> anyhow::Result<Checkout> {
        let first = paths.first().map_or(Path::new("."), PathBuf::as_path);
        let at = if first.is_dir() {
            first
        } else {
            first.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
        };
        let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"], at)?.trim());
        let mut relative = Vec::new();
        for path in paths {
            let inside = Self::inside(&top, path)?;
            relative.push(if inside.as_os_str().is_empty() { ".".to_string() } else { inside.display().to_string() });
        }
        let mut args = vec!["archive", "--format=tar", rev, "--"];
        args.extend(relative.iter().map(String::as_str));
        let archive = Command::new("git").args(&args).current_dir(&top).output().context("running git archive")?;
        if !archive.status.success() {
            bail!("git archive {rev}: {}", String::from_utf8_lossy(&archive.stderr).trim());
        }
        let dir = tempfile::Builder::new().prefix("aptc-git-").tempdir().context("a temporary directory")?;
        tar::Archive::new(archive.stdout.as_slice()).unpack(dir.path()).with_context(|| format!("unpacking {rev}"))?;
        Ok(Checkout { dir, top })
    }

    /// Where `path` (as given to [`Checkout::of`]) is in the checkout.
    pub fn path_of(&self, path: &Path) -> anyhow::Result<PathBuf> {
        Ok(self.dir.path().join(Self::inside(&self.top, path)?))
    }

    fn inside(top: &Path, path: &Path) -> anyhow::Result<PathBuf> {
        let absolute = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
        let top = std::fs::canonicalize(top).unwrap_or_else(|_| top.to_path_buf());
        Ok(absolute
            .strip_prefix(&top)
            .with_context(|| format!("{} is not inside the git repository at {}", path.display(), top.display()))?
            .to_path_buf())
    }
}

/// Runs git in `dir`; its standard output.
fn git(args: &[&str], dir: &Path) -> anyhow::Result<String> {
    let out = Command::new("git").args(args).current_dir(dir).output().context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
