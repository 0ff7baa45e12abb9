//! What the tests of the `aptc` binary share: where the repository is, scratch directories, and
//! copies of example policies to change.

#![allow(dead_code)] // each test crate uses its own part of it

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository (the `aptc` package's directory).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh scratch directory `target/GROUP/NAME-PID-N` (removed first if a run left it).
pub fn scratch(group: &str, name: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = root().join("target").join(group).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies a directory tree (a policy) for a test to change, without the state a deploy left in it.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        // The state a deploy left beside a policy (the README's first command deploys the
        // quickstart in place) belongs to that copy, not to the policy.
        if entry.file_name() == ".aptc" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Polls `done` every 50 ms for up to `seconds`.
pub fn wait_for(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// A long-running `aptc` (a watcher) that is killed if the test fails before stopping it.
pub struct Reaper(pub std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Reaper {
    /// Starts `command` with no input, its output into `log` and its errors into `errors`.
    pub fn spawn(command: &mut std::process::Command, log: &Path, errors: &Path) -> Reaper {
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(errors).unwrap())
            .spawn()
            .expect("starting aptc");
        Reaper(child)
    }

    /// Sends SIGTERM and waits up to 10 s for the process to end; its exit status, or `None` if
    /// it did not stop.
    #[cfg(unix)]
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = i32::try_from(self.0.id()).unwrap();
        // SAFETY: a signal to the child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        if wait_for(10, || self.0.try_wait().unwrap().is_some()) { self.0.wait().ok() } else { None }
    }
}

/// Every release in every namespace and state, as Helm 4 lists them (it has no `--all`); the
/// pinned Helm's acceptance of these flags is tested in `tests/release_helm.rs`, which runs in CI.
pub const HELM_LIST_EVERY_RELEASE: [&str; 9] = [
    "list",
    "--all-namespaces",
    "--deployed",
    "--failed",
    "--pending",
    "--superseded",
    "--uninstalling",
    "--output",
    "json",
];
