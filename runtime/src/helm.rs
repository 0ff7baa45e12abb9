//! The real Helm binary: finding it, running it with a deadline, and `helm template`; the release
//! operations against a cluster are in [`crate::release`], on the same pieces.
//!
//! aptc runs Helm as a program (v4, or v3: `template` is the same), never a re-implementation of
//! it. It is found at the path given (`--helm PATH` or `APTC_HELM`, which the CLI passes on), else
//! on `PATH`, else at `./.tools/bin/helm` (where `tools/install-helm.sh` puts it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::source::ChartRef;

/// How to get Helm, for error messages.
pub const INSTALL_HINT: &str = "install it with `tools/install-helm.sh` (from the aptc repository; it puts the pinned \
helm v4 into ./.tools/bin), or put helm on PATH, or pass --helm PATH (or set APTC_HELM)";

/// Where `tools/install-helm.sh` installs Helm, relative to the directory aptc runs in.
pub const TOOLS_HELM: &str = ".tools/bin/helm";

/// How long one `helm template` may take (a remote chart is downloaded first).
pub const TEMPLATE_TIMEOUT: Duration = Duration::from_secs(300);

/// A Helm binary that runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helm {
    pub path: PathBuf,
    /// `helm version --short`, e.g. `v4.1.4+g05fa379`.
    pub version: String,
}

/// Helm is missing, does not run, or failed. Callers branch on the kind (a missing chart is not
/// retried, a dropped connection is); the message is what people see.
#[derive(Clone, Debug, thiserror::Error)]
pub enum HelmError {
    /// No Helm binary where it was looked for; `place` says where (`at PATH (given by …)`).
    #[error("helm was not found {place}; {INSTALL_HINT}")]
    NotFound { place: String },
    /// The binary found cannot be run: not a usable Helm.
    #[error("helm at {shown} does not run: {source}; {INSTALL_HINT}")]
    DoesNotRun {
        shown: String,
        #[source]
        source: RunError,
    },
    /// `helm version` failed: not Helm, or a broken one.
    #[error("`helm version` failed for {shown}: {stderr}; {INSTALL_HINT}")]
    VersionFailed { shown: String, stderr: String },
    /// Helm could not be run to completion (not started, or killed at its deadline).
    #[error("running helm: {0}")]
    Run(#[from] RunError),
    /// A Helm call failed: `command` names it (`helm upgrade of release web (namespace web) on
    /// cluster x`), `reason` says how.
    #[error("{command} failed: {reason}")]
    Failed { command: String, reason: Failure },
    /// A release is locked by another (or an interrupted) operation; `fix` says how to unlock it.
    /// Never retried: only a person knows whether the other operation still runs.
    #[error(
        "release {release} (namespace {namespace}) on {on} is {state}: another Helm operation holds it, or one was \
interrupted and left it locked; aptc does not retry this. If no operation is running, {fix}, then deploy again"
    )]
    Pending { release: String, namespace: String, on: String, state: String, fix: String },
    /// A local chart path that does not exist (Helm's own message reads as if a repository chart
    /// were meant).
    #[error("the chart {} does not exist", .0.display())]
    ChartMissing(PathBuf),
    /// A unit that is not a chart instance was handed to Helm (a bug in the caller).
    #[error("{key} is not a chart instance ({source_text})")]
    NotAChart { key: String, source_text: String },
    /// A private file for Helm (values, the post-renderer plugin) could not be written or removed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// Helm's plugin directories contain a character that cannot be in a path list.
    #[error("Helm's plugin directories cannot be joined: {0}")]
    Plugins(#[source] std::sync::Arc<std::env::JoinPathsError>),
}

impl HelmError {
    /// `what` (writing a private file, finding a program) failed.
    pub fn io(what: &'static str, source: std::io::Error) -> HelmError {
        HelmError::Io { what, source: std::sync::Arc::new(source) }
    }

    /// Whether trying again may succeed: Helm failed because the API server was unreachable or
    /// overloaded for a moment (as its message says), or Helm was killed at its deadline.
    pub fn is_transient(&self) -> bool {
        matches!(self, HelmError::Failed { reason, .. } if reason.is_transient())
    }
}

/// How one Helm call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Failure {
    /// Helm ran and said no: its message (without `Error: `), and why the post-renderer failed when
    /// it did (Helm 4 only says that it did).
    #[error("{stderr}{}", stamping.as_ref().map(|why| format!(" (stamping aptc's labels failed: {why})")).unwrap_or_default())]
    Helm { stderr: String, stamping: Option<String> },
    /// Helm could not be run to completion.
    #[error("running helm: {0}")]
    Run(#[from] RunError),
    /// Helm succeeded but its answer is not the JSON it documents.
    #[error("reading Helm's answer: {0}")]
    Answer(#[source] std::sync::Arc<serde_json::Error>),
}

impl Failure {
    /// Helm's own message, when it ran and failed.
    pub(crate) fn helm(stderr: impl Into<String>) -> Failure {
        Failure::Helm { stderr: stderr.into(), stamping: None }
    }

    /// Whether Helm said `message` (a release that is not found, or is locked).
    pub(crate) fn says(&self, message: &str) -> bool {
        matches!(self, Failure::Helm { stderr, .. } if stderr.contains(message))
    }

    /// Whether the API server was unreachable or overloaded for a moment, as Helm's message says
    /// (Helm reports it in words only; this is the one place they are read).
    pub fn is_transient(&self) -> bool {
        let Failure::Helm { stderr, .. } = self else { return false };
        let message = stderr.to_lowercase();
        TRANSIENT.iter().any(|t| message.contains(t))
    }
}

impl crate::retry::Transient for Failure {
    fn is_transient(&self) -> bool {
        Failure::is_transient(self)
    }
}

impl crate::retry::Transient for HelmError {
    fn is_transient(&self) -> bool {
        HelmError::is_transient(self)
    }
}

/// What Helm says when the API server is unreachable or overloaded for a while: worth retrying.
const TRANSIENT: [&str; 7] = [
    "connection refused",
    "i/o timeout",
    "tls handshake timeout",
    "the server is currently unable to handle the request",
    "etcdserver: request timed out",
    "too many requests",
    "connection reset by peer",
];

/// A command that could not be run to completion.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RunError {
    /// It could not be started (or waited for).
    #[error("{0}")]
    Spawn(#[source] std::sync::Arc<std::io::Error>),
    /// It ran past its deadline and was killed.
    #[error("timed out after {} s", .0.as_secs())]
    Timeout(Duration),
}

impl From<std::io::Error> for RunError {
    fn from(error: std::io::Error) -> RunError {
        RunError::Spawn(std::sync::Arc::new(error))
    }
}

/// What `helm template` renders.
#[derive(Clone, Debug)]
pub struct TemplateRequest<'a> {
    /// The release name.
    pub release: &'a str,
    pub chart: &'a ChartRef,
    pub version: Option<&'a str>,
    pub namespace: &'a str,
    pub values_file: &'a Path,
}

impl Helm {
    /// Finds Helm: `explicit` (from `--helm` or `APTC_HELM`) if given, else `helm` on `PATH`, else
    /// `./.tools/bin/helm`; the one found must run (`helm version`).
    pub fn locate(explicit: Option<&Path>) -> Result<Helm, HelmError> {
        if let Some(path) = explicit {
            return Helm::found(path, " (given by --helm or APTC_HELM)");
        }
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|dir| dir.join("helm")).find(|c| is_executable(c)))
            .unwrap_or_default();
        let tools = Path::new(TOOLS_HELM);
        match on_path {
            Some(path) => Helm::found(&path, " (on PATH)"),
            None if is_executable(tools) => Helm::found(tools, ""),
            None => Err(HelmError::NotFound { place: format!("(not on PATH, not at ./{TOOLS_HELM})") }),
        }
    }

    /// The Helm binary at `path`, if it runs.
    pub fn at(path: &Path) -> Result<Helm, HelmError> {
        Helm::found(path, "")
    }

    /// The Helm binary at `path`, found as `how` says (for messages).
    fn found(path: &Path, how: &str) -> Result<Helm, HelmError> {
        let shown = format!("{}{how}", path.display());
        if !path.exists() {
            return Err(HelmError::NotFound { place: format!("at {shown}") });
        }
        let output = run(Command::new(path).args(["version", "--short"]), Duration::from_secs(30))
            .map_err(|source| HelmError::DoesNotRun { shown: shown.clone(), source })?;
        if !output.success {
            return Err(HelmError::VersionFailed { shown, stderr: output.stderr.trim().to_string() });
        }
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Helm { path, version: output.stdout.trim().to_string() })
    }

    /// Whether this is Helm 3, whose flags differ from Helm 4's for upgrades (`--atomic`, and a
    /// post-renderer that is an executable rather than a plugin).
    pub fn is_v3(&self) -> bool {
        self.version.starts_with("v3.")
    }

    /// `helm template RELEASE CHART --namespace NS --values FILE [--version V] [--repo URL]`: the
    /// rendered manifests, or Helm's error (a remote chart that cannot be downloaded fails here).
    pub fn template(&self, request: &TemplateRequest) -> Result<String, HelmError> {
        let output = run(&mut self.template_command(request)?, TEMPLATE_TIMEOUT)?;
        if output.success {
            Ok(output.stdout)
        } else {
            Err(HelmError::Failed { command: "helm template".into(), reason: Failure::helm(output.message()) })
        }
    }

    /// The command line of [`Helm::template`], for callers that add flags (a post-renderer).
    pub(crate) fn template_command(&self, request: &TemplateRequest) -> Result<Command, HelmError> {
        let mut command = Command::new(&self.path);
        command.arg("template").arg(request.release);
        chart_args(&mut command, request.chart, request.version)?;
        command.arg("--namespace").arg(request.namespace).arg("--values").arg(request.values_file);
        Ok(command)
    }
}

/// Adds `CHART [--repo URL] [--version V]` to a Helm command line; a local chart must exist (Helm's
/// own message for a missing path reads as if a repository chart were meant).
pub(crate) fn chart_args(command: &mut Command, chart: &ChartRef, version: Option<&str>) -> Result<(), HelmError> {
    match chart {
        ChartRef::Local(path) => {
            if !path.exists() {
                return Err(HelmError::ChartMissing(path.clone()));
            }
            command.arg(path);
        }
        ChartRef::Remote { chart, repo } => {
            command.arg(chart);
            if let Some(repo) = repo {
                command.arg("--repo").arg(repo);
            }
        }
    }
    if let Some(version) = version {
        command.arg("--version").arg(version);
    }
    Ok(())
}

/// An instance's values in a file only its owner can read (0600, in a private temporary
/// directory), for `helm --values`; removed afterwards, also when Helm fails (dropping it removes
/// the directory too).
pub(crate) struct PrivateValues {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl PrivateValues {
    pub(crate) fn write(values: &serde_json::Value) -> Result<PrivateValues, HelmError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("aptc-values-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir().map_err(|e| HelmError::io("temporary directory", e))?;
        let path = dir.path().join("values.json");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let writing = |e| HelmError::io("writing the values file", e);
        let mut file = options.open(&path).map_err(writing)?;
        serde_json::to_writer(&mut file, values).map_err(|e| writing(e.into()))?;
        file.flush().map_err(writing)?;
        Ok(PrivateValues { dir, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The private directory (0700) holding the file, for other per-call files that must not be
    /// shared.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn remove(self) -> Result<(), HelmError> {
        self.dir.close().map_err(|e| HelmError::io("removing the values file", e))
    }
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// What a finished Helm command printed.
pub(crate) struct RunOutput {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl RunOutput {
    /// Helm's error message, trimmed (Helm prints `Error: …` on stderr).
    pub(crate) fn message(&self) -> &str {
        let message = self.stderr.trim();
        if message.is_empty() { "(no message)" } else { message }
    }
}

/// Runs a command to completion with a deadline (killed past it), capturing its output.
pub(crate) fn run(command: &mut Command, timeout: Duration) -> Result<RunOutput, RunError> {
    // In its own process group: a Ctrl-C on the terminal reaches aptc, which lets the running
    // actions finish (a clean stop), and not Helm, which would fail them.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(command, 0);
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // Standard output ends when the program does (almost always): wait for that without
    // polling, which would add up to a polling interval to every call.
    let (ended, end) = std::sync::mpsc::channel::<()>();
    let drain = |pipe: Option<Box<dyn Read + Send>>, ended: Option<std::sync::mpsc::Sender<()>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            if let Some(ended) = ended {
                let _ = ended.send(());
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), Some(ended));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>), None);
    let deadline = Instant::now() + timeout;
    let _ = end.recv_timeout(timeout);
    let status = loop {
        match child.try_wait()? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(timeout));
            }
            // It closed its output but runs on: rare, so polling is fine.
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(RunOutput { success: status.success(), stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_helm_says_how_to_install_it() {
        let error = Helm::locate(Some(Path::new("/nonexistent/helm"))).unwrap_err().to_string();
        assert!(error.contains("tools/install-helm.sh"), "{error}");
        assert!(error.contains("at /nonexistent/helm (given by --helm or APTC_HELM); install"), "{error}");
    }

    #[test]
    fn a_binary_that_is_not_helm_is_refused() {
        let error = Helm::at(Path::new("/bin/false")).unwrap_err().to_string();
        assert!(error.contains("`helm version` failed for /bin/false"), "{error}");
    }

    #[test]
    fn the_values_file_is_private_and_removed() {
        let values = PrivateValues::write(&serde_json::json!({ "a": 1 })).unwrap();
        let path = values.path().to_path_buf();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(values.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        values.remove().unwrap();
        assert!(!path.exists() && !path.parent().unwrap().exists());
    }
}
