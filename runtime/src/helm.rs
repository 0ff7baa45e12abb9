//! The real Helm binary: finding it, running it with a deadline, and `helm template`; the release
//! operations against a cluster are in [`crate::release`], on the same pieces.
//!
//! aptc runs Helm as a program (v4, or v3: `template` is the same), never a re-implementation of
//! it. It is found at the path given (`--helm PATH` or `APTC_HELM`, which the CLI passes on), else
//! on `PATH`, else at `./.tools/bin/helm` (where `tools/install-helm.sh` puts it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
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
    /// It was stopped before its end because waiting on was pointless: the reason (the cluster
    /// it talks to stopped answering).
    #[error("{0}")]
    Stopped(String),
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
    /// Handed to Helm on its standard input (`--values -`): no file holds them.
    pub values: &'a serde_json::Value,
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
        let output = run(command(path).args(["version", "--short"]), Duration::from_secs(30))
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
        let values = values_input(request.values);
        let output = run_with(&mut self.template_command(request)?, TEMPLATE_TIMEOUT, Some(&values), &|| None)?;
        if output.success {
            Ok(output.stdout)
        } else {
            Err(HelmError::Failed { command: "helm template".into(), reason: Failure::helm(output.message()) })
        }
    }

    /// The command line of [`Helm::template`], for callers that add flags (a post-renderer).
    /// The values go on its standard input ([`values_input`]).
    pub(crate) fn template_command(&self, request: &TemplateRequest) -> Result<Command, HelmError> {
        let mut command = command(&self.path);
        command.arg("template").arg(request.release);
        chart_args(&mut command, request.chart, request.version)?;
        command.arg("--namespace").arg(request.namespace).arg("--values").arg("-");
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

/// What Helm reads as `--values -`: the values as JSON (which is YAML), given on its standard
/// input so that no file ever holds them (they hold revealed secrets on a cluster target).
///
/// Helm reads it as YAML, which takes U+0085, U+2028 and U+2029 for line breaks (and folds them)
/// and refuses DEL, the C1 controls and other characters outside its printable set: each such
/// character is written as a `\uXXXX` escape, which JSON and YAML's double-quoted strings both
/// read back as the character itself. They can only stand inside strings (everything else in JSON
/// is ASCII), so the escape is always in a string.
pub fn values_input(values: &serde_json::Value) -> Vec<u8> {
    let json = values.to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if yaml_alters(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.into_bytes()
}

/// Whether a YAML reader would not give `c` back as itself inside a double-quoted string: DEL, the
/// C1 controls (U+0085 among them), the line and paragraph separators, the byte-order mark and the
/// non-characters outside YAML's printable set. (JSON already escapes the C0 controls.)
fn yaml_alters(c: char) -> bool {
    matches!(u32::from(c), 0x7F..=0x9F | 0x2028 | 0x2029 | 0xD800..=0xDFFF | 0xFEFF | 0xFFFE | 0xFFFF)
}

/// A command running `program` (Helm) as aptc runs every Helm: in its own process group (a
/// Ctrl-C on the terminal reaches aptc, which lets the running actions finish, and not Helm,
/// which would fail them), and on Linux killed when aptc dies, even by SIGKILL
/// (`PR_SET_PDEATHSIG`; see [`spawn`] for why that holds).
pub(crate) fn command(program: &Path) -> Command {
    let mut command = Command::new(program);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls are made (prctl, getppid),
        // and nothing is allocated.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // aptc died between fork and prctl: the signal will never come, so do not run.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    command
}

/// A command waiting for the spawning thread, and where to send it back with its child.
type SpawnRequest = (Command, mpsc::Sender<(Command, std::io::Result<Child>)>);

/// Starts `command` from one thread that lives as long as aptc. `PR_SET_PDEATHSIG` fires when
/// the *thread* that forked the child ends, not the process: Helm started from a worker thread
/// of the apply pool (or a tokio blocking thread) would be killed when that thread ends, so
/// every Helm is started from this one.
fn spawn(command: &mut Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (send, receive) = mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new().name("aptc-spawner".into()).spawn(move || {
            for (mut command, reply) in receive {
                let child = command.spawn();
                let _ = reply.send((command, child));
            }
        });
        started.ok().map(|_| send)
    });
    let Some(spawner) = spawner else { return command.spawn() };
    let owned = std::mem::replace(command, Command::new(""));
    let (reply, answer) = mpsc::channel();
    if let Err(mpsc::SendError((owned, _))) = spawner.send((owned, reply)) {
        *command = owned;
        return command.spawn();
    }
    match answer.recv() {
        Ok((owned, child)) => {
            *command = owned;
            child
        }
        Err(_) => Err(std::io::Error::other("the thread starting helm ended")),
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
    run_with(command, timeout, None, &|| None)
}

/// [`run`], writing `input` to its standard input (none: it reads nothing) and killing it early
/// once `stop` gives a reason (asked a few times a second).
pub(crate) fn run_with(
    command: &mut Command,
    timeout: Duration,
    input: Option<&[u8]>,
    stop: &dyn Fn() -> Option<String>,
) -> Result<RunOutput, RunError> {
    command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = spawn(command.stdout(Stdio::piped()).stderr(Stdio::piped()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        // A program that fails before reading it all closes the pipe: that error is its to tell.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    // Standard output ends when the program does (almost always): wait for that without
    // polling, which would add up to a polling interval to every call.
    let (ended, end) = mpsc::channel::<()>();
    let drain = |pipe: Option<Box<dyn Read + Send>>, ended: Option<mpsc::Sender<()>>| {
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
    let kill = |child: &mut Child, error: RunError| {
        let _ = child.kill();
        let _ = child.wait();
        Err(error)
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match end.recv_timeout(left.min(Duration::from_millis(200))) {
            Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                return kill(&mut child, RunError::Timeout(timeout));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(reason) = stop() {
                    return kill(&mut child, RunError::Stopped(reason));
                }
            }
            _ => break,
        }
    }
    let status = loop {
        match child.try_wait()? {
            Some(status) => break status,
            None if Instant::now() >= deadline => return kill(&mut child, RunError::Timeout(timeout)),
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

    /// Helm gets its values on standard input, and a `stop` reason ends it early.
    #[cfg(unix)]
    #[test]
    fn input_reaches_the_program_and_stop_kills_it() {
        let output =
            run_with(Command::new("cat").arg("-"), Duration::from_secs(10), Some(b"{\"a\":1}"), &|| None).unwrap();
        assert_eq!(output.stdout, "{\"a\":1}");
        let started = Instant::now();
        let error = run_with(command(Path::new("sleep")).arg("30"), Duration::from_secs(60), None, &|| {
            (started.elapsed() > Duration::from_millis(300)).then(|| "the cluster became unreachable".to_string())
        })
        .err()
        .unwrap();
        assert!(matches!(error, RunError::Stopped(_)) && started.elapsed() < Duration::from_secs(5), "{error}");
    }
}
