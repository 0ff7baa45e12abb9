//! The real Helm binary: finding it, and `helm template`.
//!
//! aptc runs Helm as a program (v4, or v3: `template` is the same), never a re-implementation of
//! it. It is found at the path given (`--helm PATH` or `APTC_HELM`, which the CLI passes on), else
//! on `PATH`, else at `./.tools/bin/helm` (where `tools/install-helm.sh` puts it).

use std::io::Read;
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

    /// `helm template RELEASE CHART --namespace NS --values FILE [--version V] [--repo URL]`: the
    /// rendered manifests, or Helm's error (a remote chart that cannot be downloaded fails here).
    pub fn template(&self, request: &TemplateRequest) -> Result<String, HelmError> {
        let mut command = Command::new(&self.path);
        command.arg("template").arg(request.release);
        match request.chart {
            ChartRef::Local(path) => {
                command.arg(path);
            }
            ChartRef::Remote { chart, repo } => {
                command.arg(chart);
                if let Some(repo) = repo {
                    command.arg("--repo").arg(repo);
                }
            }
        }
        command.arg("--namespace").arg(request.namespace).arg("--values").arg(request.values_file);
        if let Some(version) = request.version {
            command.arg("--version").arg(version);
        }
        let output = run(&mut command, TEMPLATE_TIMEOUT).map_err(|e| HelmError(format!("running helm: {e}")))?;
        if output.success {
            Ok(output.stdout)
        } else {
            let message = output.stderr.trim();
            Err(HelmError(format!(
                "helm template failed: {}",
                if message.is_empty() { "(no message)" } else { message }
            )))
        }
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

struct RunOutput {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs a command to completion with a deadline (killed past it), capturing its output.
fn run(command: &mut Command, timeout: Duration) -> Result<RunOutput, String> {
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
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s", timeout.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
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
}
