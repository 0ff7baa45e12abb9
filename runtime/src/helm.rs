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

/// Helm is missing, does not run, or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HelmError(pub String);

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
            None => Err(HelmError(format!("helm was not found (not on PATH, not at ./{TOOLS_HELM}); {INSTALL_HINT}"))),
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
            return Err(HelmError(format!("helm was not found at {shown}; {INSTALL_HINT}")));
        }
        let output = run(Command::new(path).args(["version", "--short"]), Duration::from_secs(30))
            .map_err(|e| HelmError(format!("helm at {shown} does not run: {e}; {INSTALL_HINT}")))?;
        if !output.success {
            return Err(HelmError(format!(
                "`helm version` failed for {shown}: {}; {INSTALL_HINT}",
                output.stderr.trim()
            )));
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
        let output = run(&mut self.template_command(request)?, TEMPLATE_TIMEOUT)
            .map_err(|e| HelmError(format!("running helm: {e}")))?;
        if output.success {
            Ok(output.stdout)
        } else {
            Err(HelmError(format!("helm template failed: {}", output.message())))
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
                return Err(HelmError(format!("the chart {} does not exist", path.display())));
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
    pub(crate) fn write(values: &serde_json::Value) -> Result<PrivateValues, String> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("aptc-values-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let path = dir.path().join("values.json");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(|e| format!("writing the values file: {e}"))?;
        let text = serde_json::to_string(values).map_err(|e| e.to_string())?;
        file.write_all(text.as_bytes()).map_err(|e| format!("writing the values file: {e}"))?;
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

    pub(crate) fn remove(self) -> Result<(), String> {
        self.dir.close().map_err(|e| format!("removing the values file: {e}"))
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
pub(crate) fn run(command: &mut Command, timeout: Duration) -> Result<RunOutput, String> {
    // In its own process group: a Ctrl-C on the terminal reaches aptc, which lets the running
    // actions finish (a clean stop), and not Helm, which would fail them.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(command, 0);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
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
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s", timeout.as_secs()));
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
        let error = Helm::locate(Some(Path::new("/nonexistent/helm"))).unwrap_err().0;
        assert!(error.contains("tools/install-helm.sh"), "{error}");
        assert!(error.contains("at /nonexistent/helm (given by --helm or APTC_HELM); install"), "{error}");
    }

    #[test]
    fn a_binary_that_is_not_helm_is_refused() {
        let error = Helm::at(Path::new("/bin/false")).unwrap_err().0;
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
