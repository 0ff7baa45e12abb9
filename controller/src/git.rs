//! Bundles whose files are a commit of a Git repository (`spec.git`): the source's shape
//! ([`check_spec`]: a full commit id, never a branch; a URL of an allowed transport; a relative
//! path), and the archive the commit makes ([`Sources::archive`]): fetched into a bare cache
//! repository per URL, its tree at the path unpacked with the limits of any archive, and the
//! namespace's bundle collected from it exactly as `aptc push` collects it from a checkout
//! ([`bundle_at`]), so a Git bundle and an archive bundle of the same files are the same archive
//! with the same digest. Git is the real `git` CLI, run with explicit arguments (no shell), a
//! deadline, no terminal prompt, no system or user configuration, no hooks, and only the
//! `http`, `https`, `git` and `ssh` transports (`file` and `ext` never).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::bundle::{self, Bundle, BundleError, MAX_UNPACKED};
use crate::crd::{GitSource, PolicyBundleSpec};

/// How long the Git work for one bundle may take (fetching included): under the admission
/// webhook's 30 s, which must fetch the commit too.
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// The transports git may use (`GIT_ALLOW_PROTOCOL`): no `file` (the controller's own disk) and
/// no `ext` (a command).
const PROTOCOLS: &str = "http:https:git:ssh";
/// The URL schemes a source may name.
const SCHEMES: [&str; 4] = ["https://", "http://", "git://", "ssh://"];
/// How many archives a [`Sources`] remembers.
const REMEMBERED: usize = 256;
/// How long a source that failed is not tried again (an unreachable host must not hold up every
/// step of the controller for [`TIMEOUT`]).
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why a Git source gives no archive.
#[derive(Debug, Error)]
pub enum GitError {
    #[error("a bundle holds either spec.archive or spec.git, not both")]
    Both,
    #[error("a bundle holds spec.archive or spec.git; this one has neither")]
    Neither,
    #[error(
        "spec.git.revision `{0}` is not a full commit id (40 hexadecimal digits): a bundle is pinned to a commit, so that what it holds changes only by a write of the bundle, which admission checks (`git rev-parse {0}` gives its commit)"
    )]
    NotPinned(String),
    #[error(
        "spec.git.url `{0}` is not an https://, http://, git:// or ssh:// URL (write `git@host:path` as `ssh://git@host/path`)"
    )]
    Url(String),
    #[error("spec.git.path `{0}` is not a relative path inside the repository (`/`-separated, no `.` or `..`)")]
    Path(String),
    #[error("cannot fetch {url}: {why}")]
    Fetch { url: String, why: String },
    #[error("the credentials for {url} (spec.git.secretRef `{name}`): {why}")]
    Credentials { url: String, name: String, why: String },
    #[error("{url} has no commit {revision} (push it to the repository first)")]
    MissingCommit { url: String, revision: String },
    #[error("commit {revision} has no directory `{path}`")]
    NoPath { revision: String, path: String },
    #[error("the policy at `{path}` of commit {revision} holds no `.apt` file of namespace `{namespace}`")]
    NoFiles { revision: String, path: String, namespace: String },
    #[error("the policy at `{path}` of commit {revision} does not check ({count} error(s)): {first}")]
    Policy { revision: String, path: String, count: usize, first: String },
    #[error(
        "the files of commit {revision} at `{path}` make a bundle of digest {made}, not the pushed {pushed} (push it again with `aptc push --git-url`)"
    )]
    Digest { revision: String, path: String, made: String, pushed: String },
    #[error("the files of commit {revision} at `{path}`: {source}")]
    Bundle {
        revision: String,
        path: String,
        #[source]
        source: BundleError,
    },
    #[error("{dir} is not in a Git repository: {why}")]
    NotARepository { dir: PathBuf, why: String },
    #[error(
        "the files of namespace `{namespace}` differ from commit {revision} ({paths}): commit them (the controller fetches the commit, not this checkout)"
    )]
    Differs { namespace: String, revision: String, paths: String },
    #[error("running git: {0}")]
    Git(String),
    /// A failure of the last [`RETRY_AFTER`], as it was told then.
    #[error("{0}")]
    Remembered(String),
    #[error("the work directory {path}: {source}")]
    Work {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether `revision` is a full commit id: 40 hexadecimal digits.
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a URL names an allowed transport (and so cannot be read as an option either).
pub fn check_url(url: &str) -> Result<(), GitError> {
    let allowed =
        SCHEMES.iter().any(|s| url.len() > s.len() && url.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)));
    if allowed && !url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(())
    } else {
        Err(GitError::Url(url.to_string()))
    }
}

/// Checks a path inside the repository: empty (its top), or `/`-separated plain names.
pub fn check_path(path: &str) -> Result<(), GitError> {
    let plain = |name: &str| !name.is_empty() && name != "." && name != ".." && !name.contains(['\\', ':', '\0']);
    if path.is_empty() || path.split('/').all(plain) { Ok(()) } else { Err(GitError::Path(path.to_string())) }
}

/// The Git source of a bundle, checked (`None`: its files are in `spec.archive`). Exactly one of
/// `archive` and `git`; a Git source pinned to a full commit id, of an allowed URL and path.
pub fn check_spec(spec: &PolicyBundleSpec) -> Result<Option<&GitSource>, GitError> {
    match (&spec.git, spec.archive.is_empty()) {
        (None, false) => Ok(None),
        (None, true) => Err(GitError::Neither),
        (Some(_), false) => Err(GitError::Both),
        (Some(git), true) => {
            check_url(&git.url)?;
            if !is_commit(&git.revision) {
                return Err(GitError::NotPinned(git.revision.clone()));
            }
            check_path(&git.path)?;
            Ok(Some(git))
        }
    }
}

/// The archives of Git sources, made once per (source, namespace) and remembered; the fetched
/// repositories are kept under a cache directory, one bare repository per URL.
pub struct Sources {
    cache: PathBuf,
    timeout: Duration,
    /// Where the Secrets of `spec.git.secretRef` are read (the controller's namespace); `None`:
    /// a source naming one fails.
    home: Option<aptc_runtime::credentials::Home>,
    /// Archives by (source, namespace). The lock is held while git runs, so one process never
    /// runs two gits in one cache repository.
    made: Mutex<Made>,
}

type Key = (String, String, String, String);

/// What a [`Sources`] remembers: archives made, and recent failures with when they happened.
#[derive(Default)]
struct Made {
    archives: BTreeMap<Key, String>,
    failed: BTreeMap<Key, (Instant, String)>,
}

impl Sources {
    /// Sources keeping their repositories under `cache`.
    pub fn new(cache: &Path) -> Sources {
        Sources { cache: cache.to_path_buf(), timeout: TIMEOUT, home: None, made: Mutex::new(Made::default()) }
    }

    /// The same, reading the credentials of `spec.git.secretRef` from `home`'s Secrets.
    pub fn with_home(mut self, home: aptc_runtime::credentials::Home) -> Sources {
        self.home = Some(home);
        self
    }

    /// The same, with another bound on the Git work for one bundle (instead of [`TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Sources {
        self.timeout = timeout;
        self
    }

    /// The archive a bundle's spec stands for: its `archive`, or the one its Git source makes,
    /// which must have the spec's digest (what `aptc push` checked against the commit). A source
    /// that failed in the last 30 s is not tried again: its failure is told again.
    pub fn archive(&self, spec: &PolicyBundleSpec) -> Result<String, GitError> {
        self.archive_with(spec, true)
    }

    /// The same, trying a source again whatever its last failure (the webhook: a user who just
    /// pushed the missing commit to the repository must not be refused for 30 s more).
    pub fn archive_fresh(&self, spec: &PolicyBundleSpec) -> Result<String, GitError> {
        self.archive_with(spec, false)
    }

    fn archive_with(&self, spec: &PolicyBundleSpec, remembered: bool) -> Result<String, GitError> {
        let Some(git) = check_spec(spec)? else { return Ok(spec.archive.clone()) };
        // What one Secret's credentials fetched is not another's (or no Secret's) to use: the
        // Secret is part of the key, and of the cache repository's name.
        let key = (source_key(git), git.revision.to_ascii_lowercase(), git.path.clone(), spec.namespace.clone());
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        made.failed.retain(|_, (when, _)| when.elapsed() < RETRY_AFTER);
        if let Some((_, why)) = made.failed.get(&key).filter(|_| remembered) {
            return Err(GitError::Remembered(why.clone()));
        }
        let archive = match made.archives.get(&key) {
            Some(archive) => archive.clone(),
            None => {
                let started = Instant::now();
                let archive = self.fetched(git).and_then(|repo| {
                    let deadline = started + self.timeout;
                    let bundle = bundle_at(&repo, &key.1, &git.path, &spec.namespace, &self.cache, deadline)?;
                    bundle.pack().map_err(|source| GitError::Bundle {
                        revision: git.revision.clone(),
                        path: git.path.clone(),
                        source,
                    })
                });
                let archive = match archive {
                    Ok(archive) => archive,
                    Err(error) => {
                        made.failed.insert(key, (Instant::now(), error.to_string()));
                        return Err(error);
                    }
                };
                tracing::info!(url = %git.url, revision = %git.revision, path = %git.path, namespace = %spec.namespace,
                    ms = started.elapsed().as_millis() as u64, "made a bundle from Git");
                if made.archives.len() >= REMEMBERED {
                    made.archives.clear();
                }
                made.archives.insert(key, archive.clone());
                archive
            }
        };
        let digest = bundle::digest(&archive);
        if digest != spec.digest {
            return Err(GitError::Digest {
                revision: git.revision.clone(),
                path: git.path.clone(),
                made: digest,
                pushed: spec.digest.clone(),
            });
        }
        Ok(archive)
    }

    /// The cache repository of the source's URL, holding its commit (fetched when missing: the
    /// commit itself, else every branch and tag, for servers that refuse a commit by id).
    fn fetched(&self, git: &GitSource) -> Result<PathBuf, GitError> {
        let deadline = Instant::now() + self.timeout;
        let repo = self.cache.join(format!("{}.git", &hex::encode(Sha256::digest(source_key(git).as_bytes()))[..24]));
        let repo_arg = repo.to_string_lossy().to_string();
        if !repo.join("HEAD").exists() {
            std::fs::create_dir_all(&self.cache)
                .map_err(|source| GitError::Work { path: self.cache.clone(), source })?;
            run_git(&["init", "--bare", "--quiet", &repo_arg], deadline, 0).map_err(GitError::Git)?;
        }
        let revision = git.revision.to_ascii_lowercase();
        if has_commit(&repo, &revision, deadline) {
            return Ok(repo);
        }
        let git_dir = format!("--git-dir={repo_arg}");
        // Kept in a private directory while git runs, removed when `auth` is dropped.
        let auth = match &git.secret_ref {
            None => None,
            Some(secret) => Some(self.credentials(git, &secret.name)?),
        };
        let env = auth.as_ref().map(|a| a.env.as_slice()).unwrap_or_default();
        let named = |why: String| match &git.secret_ref {
            Some(secret) => format!("{why} (with the credentials of the Secret `{}`)", secret.name),
            None => why,
        };
        let fetch = |refspecs: &[&str]| {
            let mut args = vec![git_dir.as_str(), "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", &git.url];
            args.extend_from_slice(refspecs);
            run_git_with(&args, deadline, 0, env).map_err(named)
        };
        let first = fetch(&[&revision]);
        if first.is_ok() && has_commit(&repo, &revision, deadline) {
            return Ok(repo);
        }
        match fetch(&["+refs/heads/*:refs/aptc/heads/*", "+refs/tags/*:refs/aptc/tags/*"]) {
            Err(why) => Err(GitError::Fetch { url: git.url.clone(), why }),
            Ok(_) if has_commit(&repo, &revision, deadline) => Ok(repo),
            Ok(_) => Err(GitError::MissingCommit { url: git.url.clone(), revision: git.revision.clone() }),
        }
    }
}

impl Sources {
    /// The credentials of the Secret `name` for the source's URL, kept where git reads them.
    fn credentials(&self, git: &GitSource, name: &str) -> Result<Auth, GitError> {
        let failed = |why: String| GitError::Credentials { url: git.url.clone(), name: name.to_string(), why };
        let home = self.home.as_ref().ok_or_else(|| failed("no Secrets can be read here".into()))?;
        let data = home.secret_data(name).map_err(failed)?;
        std::fs::create_dir_all(&self.cache).map_err(|source| GitError::Work { path: self.cache.clone(), source })?;
        Auth::new(&git.url, &data, &self.cache).map_err(failed)
    }
}

/// A source's credentials as git reads them: files in a private directory (0700, each file
/// 0600; removed on drop) and the environment naming them. No other process of another user can
/// read them, and nothing else of aptc's is in that directory.
struct Auth {
    _dir: tempfile::TempDir,
    env: Vec<(&'static str, std::ffi::OsString)>,
}

impl Auth {
    /// For `https://`/`http://`: `username` and `password` answered by a `GIT_ASKPASS` helper
    /// that reads them from the files beside it. For `ssh://`: `ssh-privatekey` (and
    /// `known_hosts`, else the system's) through `GIT_SSH_COMMAND`.
    fn new(url: &str, data: &BTreeMap<String, Vec<u8>>, under: &Path) -> Result<Auth, String> {
        let dir = tempfile::Builder::new().prefix(".auth-").tempdir_in(under).map_err(|e| e.to_string())?;
        let write = |name: &str, contents: &[u8], mode: u32| -> Result<PathBuf, String> {
            let path = dir.path().join(name);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(mode);
            }
            #[cfg(not(unix))]
            let _ = mode;
            let mut file = options.open(&path).map_err(|e| format!("writing {}: {e}", path.display()))?;
            std::io::Write::write_all(&mut file, contents).map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(path)
        };
        let key = |name: &str| {
            data.get(name).ok_or_else(|| {
                let keys: Vec<&str> = data.keys().map(String::as_str).collect();
                format!(
                    "the Secret has no key `{name}` (its keys: {})",
                    if keys.is_empty() { "none".into() } else { keys.join(", ") }
                )
            })
        };
        let lower = url.to_ascii_lowercase();
        let env = if lower.starts_with("https://") || lower.starts_with("http://") {
            write("username", key("username")?, 0o600)?;
            write("password", key("password")?, 0o600)?;
            // The helper names no path: it reads the files beside itself.
            let helper = "#!/bin/sh\ndir=$(dirname \"$0\")\ncase \"$1\" in\n[Uu]sername*) exec cat \"$dir/username\" ;;\n*) exec cat \"$dir/password\" ;;\nesac\n";
            let helper = write("askpass", helper.as_bytes(), 0o700)?;
            vec![("GIT_ASKPASS", helper.into_os_string())]
        } else if lower.starts_with("ssh://") {
            let identity = write("identity", key("ssh-privatekey")?, 0o600)?;
            let mut command = format!(
                "ssh -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -i {}",
                shell_quote(&identity.to_string_lossy())
            );
            if let Some(known) = data.get("known_hosts") {
                let known = write("known_hosts", known, 0o600)?;
                command.push_str(&format!(
                    " -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
                    shell_quote(&known.to_string_lossy())
                ));
            }
            vec![("GIT_SSH_COMMAND", command.into())]
        } else {
            return Err("only https://, http:// and ssh:// sources take credentials".into());
        };
        Ok(Auth { _dir: dir, env })
    }
}

/// `text` as one word of a POSIX shell (`GIT_SSH_COMMAND` is run by a shell).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The URL, and the Secret its credentials come from (none: the URL alone, as before).
fn source_key(git: &GitSource) -> String {
    match &git.secret_ref {
        None => git.url.clone(),
        Some(secret) => format!("{}\0{}", git.url, secret.name),
    }
}

fn has_commit(repo: &Path, revision: &str, deadline: Instant) -> bool {
    let git_dir = format!("--git-dir={}", repo.display());
    run_git(&[&git_dir, "cat-file", "-e", &format!("{revision}^{{commit}}")], deadline, 0).is_ok()
}

/// The bundle of `namespace` that commit `revision` of the repository `git_dir` makes: its tree
/// at `path` unpacked under `scratch` (with the limits of any bundle archive: no links, sizes,
/// counts) and collected as `aptc push` collects a checkout ([`bundle::collect`]).
pub fn bundle_at(
    git_dir: &Path,
    revision: &str,
    path: &str,
    namespace: &str,
    scratch: &Path,
    deadline: Instant,
) -> Result<Bundle, GitError> {
    let git_dir_arg = format!("--git-dir={}", git_dir.display());
    let tree = format!("{revision}:{path}");
    let limit = MAX_UNPACKED * 2;
    let tar = run_git(&[&git_dir_arg, "archive", "--format=tar", &tree], deadline, limit).map_err(|why| {
        if has_commit(git_dir, revision, deadline) {
            GitError::NoPath { revision: revision.to_string(), path: path.to_string() }
        } else {
            GitError::Git(why)
        }
    })?;
    let failed = |source| GitError::Bundle { revision: revision.to_string(), path: path.to_string(), source };
    if tar.len() as u64 > limit {
        return Err(failed(BundleError::Archive(format!("it unpacks to more than {MAX_UNPACKED} bytes"))));
    }
    std::fs::create_dir_all(scratch).map_err(|source| GitError::Work { path: scratch.to_path_buf(), source })?;
    let dir = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(scratch)
        .map_err(|source| GitError::Work { path: scratch.to_path_buf(), source })?;
    let root = dir.path().join("policy");
    bundle::unpack_tar(tar.as_slice(), &root).map_err(failed)?;
    // The root is this directory, whatever lies above it.
    let settings = root.join("aptc.toml");
    if !settings.exists() {
        std::fs::write(&settings, "").map_err(|source| GitError::Work { path: settings.clone(), source })?;
    }
    let has_apt = |b: &Bundle| b.files.keys().any(|p| p.ends_with(".apt"));
    match bundle::collect(std::slice::from_ref(&root)) {
        Ok(bundles) => {
            bundles.into_iter().find(|b| b.namespace == namespace && has_apt(b)).ok_or_else(|| GitError::NoFiles {
                revision: revision.to_string(),
                path: path.to_string(),
                namespace: namespace.to_string(),
            })
        }
        Err(BundleError::Invalid { count, rendered }) => {
            let shown = format!("{}/", root.display());
            let first = rendered.replace(&shown, "").lines().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            Err(GitError::Policy { revision: revision.to_string(), path: path.to_string(), count, first })
        }
        Err(source) => Err(failed(source)),
    }
}

/// Runs git with `args` until `deadline`: its standard output (at most `limit` bytes and one
/// more, when `limit` is not 0), or why it failed (its last lines of standard error).
pub fn run_git(args: &[&str], deadline: Instant, limit: u64) -> Result<Vec<u8>, String> {
    run_git_with(args, deadline, limit, &[])
}

/// [`run_git`] with `env` set after aptc's own settings (a source's credentials).
fn run_git_with(
    args: &[&str],
    deadline: Instant,
    limit: u64,
    env: &[(&'static str, std::ffi::OsString)],
) -> Result<Vec<u8>, String> {
    let mut command = Command::new("git");
    command
        .args(["-c", "core.hooksPath=/dev/null", "-c", "protocol.version=2"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", PROTOCOLS)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .env("LC_ALL", "C");
    for name in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().map_err(|e| format!("git cannot be started ({e}); is git installed?"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = if limit == 0 {
            stdout.read_to_end(&mut bytes)
        } else {
            (&mut stdout).take(limit + 1).read_to_end(&mut bytes)
        };
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut bytes);
        bytes
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => return Err(error.to_string()),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).to_string();
    match status {
        None => Err(format!("git {} did not finish in time", args.iter().find(|a| !a.starts_with('-')).unwrap_or(&""))),
        Some(status) if status.success() => Ok(stdout),
        // Past the limit (git ended by the closed pipe): the caller tells it from the length.
        Some(_) if limit != 0 && stdout.len() as u64 > limit => Ok(stdout),
        Some(status) => {
            let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(3)..].join("; ");
            Err(if tail.is_empty() { format!("git exited with {status}") } else { tail })
        }
    }
}

/// The Git repository holding `dir` (a policy's root in a checkout): its git directory and the
/// path of `dir` in it (`/`-separated, empty at its top).
pub fn locate(dir: &Path) -> Result<(PathBuf, String), GitError> {
    let deadline = Instant::now() + TIMEOUT;
    let dir_arg = dir.to_string_lossy().to_string();
    let ask = |what: &str| {
        run_git(&["-C", &dir_arg, "rev-parse", what], deadline, 0)
            .map(|out| String::from_utf8_lossy(&out).trim().to_string())
            .map_err(|why| GitError::NotARepository { dir: dir.to_path_buf(), why })
    };
    let git_dir = PathBuf::from(ask("--absolute-git-dir")?);
    let prefix = ask("--show-prefix")?;
    Ok((git_dir, prefix.trim_end_matches('/').to_string()))
}

/// The commit a revision of the repository `git_dir` names (`HEAD`, a branch, a commit id).
pub fn commit_of(git_dir: &Path, revision: &str) -> Result<String, GitError> {
    let git_dir_arg = format!("--git-dir={}", git_dir.display());
    let out = run_git(
        &[&git_dir_arg, "rev-parse", "--verify", "--end-of-options", &format!("{revision}^{{commit}}")],
        Instant::now() + TIMEOUT,
        0,
    )
    .map_err(GitError::Git)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The paths of two bundles' files that differ (at most five named, then how many more).
pub fn differing(ours: &Bundle, theirs: &Bundle) -> Option<String> {
    let mut paths: Vec<&String> = ours.files.keys().chain(theirs.files.keys()).collect();
    paths.sort();
    paths.dedup();
    let differ: Vec<&String> = paths.into_iter().filter(|p| ours.files.get(*p) != theirs.files.get(*p)).collect();
    if differ.is_empty() {
        return None;
    }
    let mut shown = differ.iter().take(5).map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
    if differ.len() > 5 {
        shown.push_str(&format!(" and {} more", differ.len() - 5));
    }
    Some(shown)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::tests::{SYSTEM, WEB};

    /// `git` in `dir` (a test's own repository).
    pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// A `git daemon` serving the repositories under a directory on loopback, ended on drop.
    pub(crate) struct Daemon {
        child: std::process::Child,
        pub port: u16,
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub(crate) fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// Serves `base` (its repositories as `git://127.0.0.1:PORT/NAME`).
    pub(crate) fn serve(base: &Path) -> Daemon {
        let daemon = Path::new("/usr/lib/git-core/git-daemon");
        assert!(daemon.exists(), "{} is missing: install Debian's git package (it ships git-daemon)", daemon.display());
        let port = free_port();
        let child = Command::new(daemon)
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1", &format!("--port={port}")])
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting git daemon");
        let served = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        served
    }

    /// A repository `policy` under `base` holding the test policy under `path/`, committed.
    pub(crate) fn repository(base: &Path, path: &str) -> (PathBuf, String) {
        let repo = base.join("policy");
        let root = repo.join(path);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("system.apt"), SYSTEM).unwrap();
        std::fs::create_dir_all(root.join("web")).unwrap();
        std::fs::write(root.join("web/web.apt"), WEB).unwrap();
        std::fs::write(repo.join("README"), "not policy\n").unwrap();
        git(&repo, &["init", "--quiet", "--initial-branch=main"]);
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "--quiet", "-m", "policy"]);
        let commit = git(&repo, &["rev-parse", "HEAD"]);
        (repo, commit)
    }

    pub(crate) fn spec(namespace: &str, url: &str, revision: &str, path: &str, digest: &str) -> PolicyBundleSpec {
        PolicyBundleSpec {
            namespace: namespace.into(),
            archive: String::new(),
            git: Some(GitSource { url: url.into(), revision: revision.into(), path: path.into(), secret_ref: None }),
            digest: digest.into(),
            files: 1,
        }
    }

    #[test]
    fn a_source_is_pinned_to_a_commit_of_an_allowed_url() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert!(is_commit(commit));
        assert!(!is_commit("main") && !is_commit(&commit[..39]) && !is_commit(&format!("{}g", &commit[..39])));
        let ok = spec("web", "https://git.example.com/policy.git", commit, "policy", "sha256:x");
        assert!(check_spec(&ok).unwrap().is_some());
        let message = |spec: PolicyBundleSpec| check_spec(&spec).unwrap_err().to_string();
        let branch = message(spec("web", "https://git.example.com/p", "main", "", ""));
        assert!(branch.contains("`main` is not a full commit id") && branch.contains("git rev-parse main"), "{branch}");
        for url in ["file:///etc", "/srv/repo", "ext::sh -c touch% /tmp/x", "-uhttps://x", "git@host:repo", "https://"]
        {
            assert!(message(spec("web", url, commit, "", "")).contains("is not an https://"), "{url}");
        }
        for path in ["../up", "/abs", "a//b", "a/./b", "a\\b", "HEAD:x"] {
            assert!(message(spec("web", "git://h/r", commit, path, "")).contains("not a relative path"), "{path}");
        }
        let mut both = ok.clone();
        both.archive = "H4sI".into();
        assert_eq!(message(both), "a bundle holds either spec.archive or spec.git, not both");
        let mut neither = ok.clone();
        neither.git = None;
        assert!(message(neither).contains("has neither"));
        // An archive bundle is its archive.
        let archive = PolicyBundleSpec { archive: "A".into(), git: None, ..ok };
        assert!(check_spec(&archive).unwrap().is_none());
    }

    #[test]
    fn a_commit_served_on_loopback_makes_the_bundle_push_would_make() {
        let base = tempfile::tempdir().unwrap();
        let (repo, first) = repository(base.path(), "policy");
        let daemon = serve(base.path());
        let url = format!("git://127.0.0.1:{}/policy", daemon.port);
        let local = bundle::collect(&[repo.join("policy")]).unwrap();
        let web = local.iter().find(|b| b.namespace == "web").unwrap().pack().unwrap();
        let work = tempfile::tempdir().unwrap();
        let sources = Sources::new(&work.path().join("git"));
        let made = sources.archive(&spec("web", &url, &first, "policy", &bundle::digest(&web))).unwrap();
        assert_eq!(made, web, "the same archive as `aptc push` packs from the checkout");

        // A new commit is fetched into the same cache repository.
        std::fs::write(repo.join("policy/web/web.apt"), WEB.replace("context all", "context everyone")).unwrap();
        git(&repo, &["commit", "--quiet", "-am", "everyone"]);
        let second = git(&repo, &["rev-parse", "HEAD"]);
        let changed = bundle::collect(&[repo.join("policy")]).unwrap()[1].pack().unwrap();
        assert_ne!(changed, web);
        let made = sources.archive(&spec("web", &url, &second, "policy", &bundle::digest(&changed))).unwrap();
        assert_eq!(made, changed);
        assert_eq!(
            std::fs::read_dir(work.path().join("git"))
                .unwrap()
                .filter(|e| { e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".git") })
                .count(),
            1
        );

        // What fails, and says why.
        let error = |spec: PolicyBundleSpec| sources.archive(&spec).unwrap_err().to_string();
        let missing = "0123456789abcdef0123456789abcdef01234567";
        let said = error(spec("web", &url, missing, "policy", ""));
        assert_eq!(said, format!("{url} has no commit {missing} (push it to the repository first)"));
        let said = error(spec("web", &url, &first, "nowhere", ""));
        assert_eq!(said, format!("commit {first} has no directory `nowhere`"));
        let said = error(spec("shop", &url, &first, "policy", ""));
        assert!(said.contains("holds no `.apt` file of namespace `shop`"), "{said}");
        let said = error(spec("web", &url, &first, "policy", "sha256:00"));
        assert!(said.contains("not the pushed sha256:00"), "{said}");
        let nobody = format!("git://127.0.0.1:{}/policy", free_port());
        let said = error(spec("web", &nobody, &first, "policy", ""));
        assert!(said.starts_with(&format!("cannot fetch {nobody}: ")), "{said}");
        let said = error(spec("web", &format!("{url}-gone"), &first, "policy", ""));
        assert!(said.starts_with("cannot fetch"), "{said}");
    }

    #[test]
    fn a_server_that_never_answers_is_given_up_on_in_time_and_not_asked_again_at_once() {
        // Accepts connections and says nothing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        let work = tempfile::tempdir().unwrap();
        let sources = Sources::new(work.path()).with_timeout(Duration::from_secs(2));
        let url = format!("git://127.0.0.1:{port}/policy");
        let source = spec("web", &url, "0123456789abcdef0123456789abcdef01234567", "", "");
        let started = Instant::now();
        let said = sources.archive(&source).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        assert!(said.starts_with(&format!("cannot fetch {url}: git fetch did not finish in time")), "{said}");
        let started = Instant::now();
        assert_eq!(sources.archive(&source).unwrap_err().to_string(), said);
        assert!(started.elapsed() < Duration::from_millis(500), "remembered, not tried again");
        // The webhook tries again.
        let started = Instant::now();
        assert_eq!(sources.archive_fresh(&source).unwrap_err().to_string(), said);
        assert!(started.elapsed() >= Duration::from_secs(2), "tried again: {:?}", started.elapsed());
    }

    #[test]
    fn a_checkout_is_located_and_compared() {
        let base = tempfile::tempdir().unwrap();
        let (repo, first) = repository(base.path(), "deep/policy");
        let (git_dir, prefix) = locate(&repo.join("deep/policy")).unwrap();
        assert_eq!(prefix, "deep/policy");
        assert_eq!(commit_of(&git_dir, "HEAD").unwrap(), first);
        assert_eq!(commit_of(&git_dir, "main").unwrap(), first);
        let work = tempfile::tempdir().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let at = bundle_at(&git_dir, &first, &prefix, "system", work.path(), deadline).unwrap();
        let system = |bundles: Vec<Bundle>| bundles.into_iter().find(|b| b.namespace == "system").unwrap();
        let local = system(bundle::collect(&[repo.join("deep/policy")]).unwrap());
        assert_eq!(differing(&local, &at), None);
        std::fs::write(repo.join("deep/policy/system.apt"), format!("{SYSTEM}\n")).unwrap();
        let local = system(bundle::collect(&[repo.join("deep/policy")]).unwrap());
        assert_eq!(differing(&local, &at).as_deref(), Some("system.apt"));
        let outside = tempfile::tempdir().unwrap();
        assert!(matches!(locate(outside.path()), Err(GitError::NotARepository { .. })));
    }

    /// `git http-backend` behind a small HTTP server on loopback that serves the repositories
    /// under `base` only to a request with HTTP Basic credentials `user:password` (others get
    /// 401, as a private repository's host answers). Its thread lives as long as the tests.
    fn http_git(base: &Path, user: &str, password: &str) -> u16 {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let expected = format!("Basic {}", data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes()));
        let base = base.to_path_buf();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let mut headers = BTreeMap::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
                    }
                }
                let mut body = Vec::new();
                if let Some(length) = headers.get("content-length").and_then(|l| l.parse::<u64>().ok()) {
                    (&mut reader).take(length).read_to_end(&mut body).unwrap();
                } else if headers.get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
                    loop {
                        let mut size = String::new();
                        reader.read_line(&mut size).unwrap();
                        let size = u64::from_str_radix(size.trim(), 16).unwrap_or(0);
                        let mut chunk = Vec::new();
                        (&mut reader).take(size + 2).read_to_end(&mut chunk).unwrap();
                        if size == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..size as usize]);
                    }
                }
                if headers.get("authorization") != Some(&expected) {
                    let _ = stream.write_all(
                        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                let mut parts = request.split_whitespace();
                let (method, target) = (parts.next().unwrap_or("GET"), parts.next().unwrap_or("/"));
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let mut command = Command::new("git");
                command
                    .arg("http-backend")
                    .env("GIT_PROJECT_ROOT", &base)
                    .env("GIT_HTTP_EXPORT_ALL", "1")
                    .env("GIT_CONFIG_NOSYSTEM", "1")
                    .env("GIT_CONFIG_GLOBAL", "/dev/null")
                    .env("REQUEST_METHOD", method)
                    .env("PATH_INFO", path)
                    .env("QUERY_STRING", query)
                    .env("REMOTE_USER", "ada")
                    .env("REMOTE_ADDR", "127.0.0.1")
                    .env("CONTENT_LENGTH", body.len().to_string())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped());
                for (header, variable) in [
                    ("content-type", "CONTENT_TYPE"),
                    ("git-protocol", "GIT_PROTOCOL"),
                    ("content-encoding", "HTTP_CONTENT_ENCODING"),
                ] {
                    if let Some(value) = headers.get(header) {
                        command.env(variable, value);
                    }
                }
                let mut child = command.spawn().unwrap();
                child.stdin.take().unwrap().write_all(&body).unwrap();
                let output = child.wait_with_output().unwrap();
                let split = output.stdout.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
                let split = split.or_else(|| output.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
                let (head, body) = match split {
                    Some((at, gap)) => {
                        (String::from_utf8_lossy(&output.stdout[..at]).to_string(), &output.stdout[at + gap..])
                    }
                    None => (String::new(), &output.stdout[..]),
                };
                let mut status = "200 OK".to_string();
                let mut response = String::new();
                for line in head.lines() {
                    match line.split_once(':') {
                        Some((name, value)) if name.eq_ignore_ascii_case("status") => status = value.trim().to_string(),
                        Some(_) => response.push_str(&format!("{line}\r\n")),
                        None => {}
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
            }
        });
        port
    }

    #[test]
    fn a_private_repository_is_fetched_with_its_secret_s_credentials_and_a_wrong_password_says_so() {
        const PASSWORD: &str = "git-pw-0b61";
        let base = tempfile::tempdir().unwrap();
        let (repo, commit) = repository(base.path(), "policy");
        let port = http_git(base.path(), "ada", PASSWORD);
        let url = format!("http://127.0.0.1:{port}/policy");
        let fake = aptc_kube_fake::FakeApi::new();
        for (name, keys) in [
            ("git-ok", vec![("username", "ada"), ("password", PASSWORD)]),
            ("git-wrong", vec![("username", "ada"), ("password", "not-the-pw-5c")]),
            ("git-partial", vec![("username", "ada")]),
        ] {
            let data: serde_json::Map<String, serde_json::Value> = keys
                .iter()
                .map(|(k, v)| {
                    (k.to_string(), serde_json::to_value(k8s_openapi::ByteString(v.as_bytes().to_vec())).unwrap())
                })
                .collect();
            fake.insert(
                &format!("/api/v1/namespaces/aptc-system/secrets/{name}"),
                serde_json::json!({ "apiVersion": "v1", "kind": "Secret",
                    "metadata": { "name": name, "namespace": "aptc-system" }, "data": data }),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("home");
        fake.serve_to(&kubeconfig, "control").unwrap();
        let home = aptc_runtime::credentials::Home {
            kubeconfig: Some(kubeconfig),
            context: None,
            namespace: Some("aptc-system".into()),
        };
        let cache = dir.path().join("git");
        let sources = Sources::new(&cache).with_home(home);
        let local = bundle::collect(&[repo.join("policy")]).unwrap();
        let web = local.iter().find(|b| b.namespace == "web").unwrap().pack().unwrap();
        let with = |secret: Option<&str>| {
            let mut spec = spec("web", &url, &commit, "policy", &bundle::digest(&web));
            spec.git.as_mut().unwrap().secret_ref = secret.map(|name| crate::crd::SecretRef { name: name.into() });
            spec
        };

        assert_eq!(sources.archive(&with(Some("git-ok"))).unwrap(), web, "fetched with the credentials");
        let errors: Vec<String> = [None, Some("git-wrong"), Some("git-partial"), Some("absent")]
            .into_iter()
            .map(|secret| sources.archive(&with(secret)).unwrap_err().to_string())
            .collect();
        assert!(errors[0].starts_with(&format!("cannot fetch {url}: ")), "no credentials, no fetch: {}", errors[0]);
        assert!(
            errors[1].contains("Authentication failed")
                && errors[1].contains("(with the credentials of the Secret `git-wrong`)"),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].contains("spec.git.secretRef `git-partial`") && errors[2].contains("has no key `password`"),
            "{}",
            errors[2]
        );
        assert!(errors[3].contains("there is no Secret `absent` in namespace `aptc-system`"), "{}", errors[3]);
        for error in &errors {
            assert!(!error.contains(PASSWORD) && !error.contains("not-the-pw"), "never a password: {error}");
        }
        let left: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".auth-"))
            .collect();
        assert!(left.is_empty(), "the credentials' files are removed after git ran: {left:?}");
        // Without a home, a source naming a Secret fails, saying so.
        let homeless = Sources::new(&dir.path().join("other")).archive(&with(Some("git-ok"))).unwrap_err();
        assert!(homeless.to_string().contains("no Secrets can be read here"), "{homeless}");
    }
}
