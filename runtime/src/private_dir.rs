//! Private temporary directories: 0700, in the system's temporary directory, named after aptc's
//! process id, for the files a run must not leave behind (a Helm call's post-renderer files, a
//! reader's copy of the store, which holds the revisions). `TempDir` removes them when a run
//! ends; [`sweep`] removes those a killed run left.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// The prefix of private directories: `aptc-private-PID-PURPOSE-…`.
const PREFIX: &str = "aptc-private-";

/// The prefix earlier builds' Helm calls used (`aptc-helm-PID-…`), swept the same way.
const HELM_PREFIX: &str = "aptc-helm-";

/// A private directory, removed when dropped (or by [`PrivateDir::remove`], which reports a
/// failure to remove it) and, if aptc is killed, by the next run's [`sweep`].
pub struct PrivateDir {
    dir: tempfile::TempDir,
}

impl PrivateDir {
    /// A new private directory; `purpose` (a word) goes into its name, for whoever finds it.
    pub fn create(purpose: &str) -> std::io::Result<PrivateDir> {
        let mut builder = tempfile::Builder::new();
        let prefix = format!("{PREFIX}{}-{purpose}-", std::process::id());
        builder.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        Ok(PrivateDir { dir: builder.tempdir()? })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Removes it now, saying so if it cannot be.
    pub fn remove(self) -> std::io::Result<()> {
        self.dir.close()
    }
}

/// How old a values directory of an older aptc (`aptc-values-*`, which held the values file)
/// must be to be removed: older than any Helm call may run, so none still uses it.
const STALE_VALUES_DIR: Duration = Duration::from_secs(3600);

/// Removes what killed runs left in `root` (the system's temporary directory): private
/// directories of this user's aptc processes that no longer run, and values directories of older
/// aptc versions past any Helm call's deadline. Called at the start of every run that uses Helm
/// against a cluster and whenever the store is read; what cannot be removed stays (it is this
/// user's own, 0700).
pub fn sweep(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = if let Some(rest) = name.strip_prefix(PREFIX).or_else(|| name.strip_prefix(HELM_PREFIX)) {
            rest.split('-').next().and_then(|pid| pid.parse::<u32>().ok()).is_some_and(|pid| !is_running(pid))
        } else if name.starts_with("aptc-values-") {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .is_some_and(|age| age > STALE_VALUES_DIR)
        } else {
            false
        };
        if stale && is_own_directory(&entry) && std::fs::remove_dir_all(entry.path()).is_ok() {
            tracing::info!(path = %entry.path().display(), "removed a private directory a stopped aptc left");
            removed += 1;
        }
    }
    removed
}

/// Whether process `pid` runs (on Unix; elsewhere it is assumed to, so nothing is removed).
pub(crate) fn is_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Whether `entry` is a real directory (not a link) of the user running aptc.
fn is_own_directory(entry: &std::fs::DirEntry) -> bool {
    let Ok(metadata) = entry.path().symlink_metadata() else { return false };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: getuid has no preconditions.
        metadata.is_dir() && metadata.uid() == unsafe { libc::getuid() }
    }
    #[cfg(not(unix))]
    {
        metadata.is_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_directories_are_private_and_those_of_stopped_runs_are_swept() {
        let dir = PrivateDir::create("test").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let root = tempfile::tempdir().unwrap();
        // A pid above the kernel's maximum (2^22) runs nowhere.
        let (dead, dead_helm, ours, other) = (
            root.path().join("aptc-private-99999999-store-abc"),
            root.path().join("aptc-helm-99999999-abc"),
            root.path().join(format!("aptc-private-{}-helm-abc", std::process::id())),
            root.path().join("unrelated-99999999"),
        );
        for made in [&dead, &dead_helm, &ours, &other] {
            std::fs::create_dir(made).unwrap();
            std::fs::write(made.join("post-render.error"), "x").unwrap();
        }
        let fresh_values = root.path().join("aptc-values-new");
        std::fs::create_dir(&fresh_values).unwrap();
        assert_eq!(sweep(root.path()), 2);
        assert!(!dead.exists() && !dead_helm.exists() && ours.exists() && other.exists() && fresh_values.exists());
        let path = dir.path().to_path_buf();
        dir.remove().unwrap();
        assert!(!path.exists());
    }
}
