//! Puts the git commit aptc is built from into `APTC_GIT_COMMIT`, for `aptc --version`: a bug
//! report then says exactly which code ran. Outside a git checkout (a source tarball, a crate) or
//! without git it is `unknown`; no dependency, only the `git` command when it is there.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=APTC_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a checkout), and the branch it points to (a commit).
    // Paths come from git because in a worktree `.git` is a file, not the directory.
    for name in ["HEAD", "packed-refs"] {
        watch(name);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&branch);
    }
}

/// Asks cargo to rerun this script when the git file `name` (`HEAD`, `refs/heads/main`) changes.
fn watch(name: &str) {
    let Some(path) = git(&["rev-parse", "--git-path", name]) else { return };
    let path = PathBuf::from(path);
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The trimmed output of a successful `git ARGS`, else `None`.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
