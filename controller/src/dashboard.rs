//! The dashboard served by `aptc controller run` (`--ui-addr`): the pages of `aptc ui` over a
//! [`Source`] of the controller's own state. The leader's engine hands over, after each step, the
//! policy it assembled (with the Claims as claims), the desired state it resolved (redacted, no
//! decision chains: the pages compute a claim's chain when asked) and the text of the bundles'
//! files; the revision store is the engine's (in the cluster), opened read-only. A standby has
//! no step to show and says so.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use aptc_core::ir::Program;
use aptc_core::resolve::state::DesiredState;
use aptc_runtime::store::{self, Location, Store, StoreError};
use aptc_ui::source::{Loaded, Policy, Source};

/// What a replica that has not stepped yet (a standby, or a leader before its first step) shows.
const NOT_YET: &str = "this replica has not resolved the policy yet: only the leader does (the replica holding the Lease aptc-controller-leader); open its dashboard";

/// The controller's state as the dashboard reads it.
pub struct ControllerSource {
    policy: RwLock<Arc<Policy>>,
    state: Location,
    /// Steps shown so far: the live updates' stamp.
    steps: AtomicU64,
}

impl ControllerSource {
    /// The source of an engine keeping its revisions in `state` (nothing to show until a step).
    pub fn new(state: Location) -> ControllerSource {
        ControllerSource { policy: RwLock::new(Arc::new(Err(NOT_YET.to_string()))), state, steps: AtomicU64::new(0) }
    }

    /// What a step resolved: `program` with the claims, its `state` (redacted and stripped of
    /// decision chains here), the policy files unpacked under `dir`.
    pub fn show(&self, program: Program, mut state: DesiredState, dir: &Path) {
        state.redact();
        for outcome in state.claims.values_mut() {
            outcome.decisions = Vec::new();
        }
        let files = files(dir);
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Ok(Loaded { program, state, files }));
        self.steps.fetch_add(1, Ordering::Relaxed);
    }
}

/// The `.apt` files under `dir`, named as the program's origins name them (their full paths).
fn files(dir: &Path) -> Vec<(String, Arc<str>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "apt")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                files.push((path.to_string_lossy().into_owned(), Arc::from(text)));
            }
        }
    }
    files.sort();
    files
}

impl Source for ControllerSource {
    fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn store(&self) -> Result<Option<Box<dyn Store>>, StoreError> {
        store::open_read(&self.state)
    }

    fn state(&self) -> &Location {
        &self.state
    }

    fn generation(&self) -> String {
        self.steps.load(Ordering::Relaxed).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_show_before_a_step_then_the_step() {
        let work = tempfile::tempdir().unwrap();
        let source = ControllerSource::new(Location::File(work.path().join("state.db")));
        assert_eq!(source.policy().as_ref().as_ref().err().map(String::as_str), Some(NOT_YET));
        assert_eq!(source.generation(), "0");
        use crate::policy::tests::{SYSTEM, WEB, archives};
        let archives = archives(&[("system", &[("system.apt", SYSTEM)]), ("web", &[("web.apt", WEB)])]);
        let checked = crate::policy::check(&archives, work.path()).unwrap();
        std::fs::write(checked.dir.path().join("notes.txt"), "not policy").unwrap();
        source.show(checked.program.clone().unwrap(), DesiredState::default(), checked.dir.path());
        let policy = source.policy();
        let loaded = policy.as_ref().as_ref().unwrap();
        assert_eq!(loaded.files.len(), 2, "only .apt files: {:?}", loaded.files);
        assert!(loaded.files[0].0.ends_with("system/system.apt"), "{:?}", loaded.files);
        assert!(loaded.files[0].1.starts_with("namespace system"));
        assert!(loaded.files[1].0.ends_with("web/web.apt"), "{:?}", loaded.files);
        assert_eq!(source.generation(), "1");
        assert!(source.store().unwrap().is_none(), "no store yet");
    }
}
