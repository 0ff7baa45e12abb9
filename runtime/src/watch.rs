//! Noticing policy changes without a file-watching dependency: a [`Snapshot`] of the policy files'
//! paths, sizes and modification times, taken again every second; any difference (a file changed,
//! added or deleted) is a change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

/// The policy files under some paths, with their size and modification time. A path that cannot
/// be read counts as an entry too (its error), so that its coming back is a change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    files: BTreeMap<PathBuf, Option<(u64, Option<SystemTime>)>>,
    error: Option<String>,
}

impl Snapshot {
    /// The state of `files` now (the policy's files, as the compiler lists them), or the error
    /// listing them gave.
    pub fn of<E: std::fmt::Display>(files: Result<Vec<PathBuf>, E>) -> Snapshot {
        match files {
            Ok(found) => Snapshot {
                files: found
                    .into_iter()
                    .map(|path| {
                        let meta = std::fs::metadata(&path).ok().map(|m| (m.len(), m.modified().ok()));
                        (path, meta)
                    })
                    .collect(),
                error: None,
            },
            // Kept as text: only whether it changes matters.
            Err(error) => Snapshot { files: BTreeMap::new(), error: Some(error.to_string()) },
        }
    }

    /// How many files it holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files that differ between `self` (before) and `now`: changed, added or deleted, with
    /// the word for each.
    pub fn changes(&self, now: &Snapshot) -> Vec<(PathBuf, &'static str)> {
        let mut out = Vec::new();
        for (path, meta) in &self.files {
            match now.files.get(path) {
                None => out.push((path.clone(), "deleted")),
                Some(other) if other != meta => out.push((path.clone(), "changed")),
                Some(_) => {}
            }
        }
        for path in now.files.keys().filter(|p| !self.files.contains_key(*p)) {
            out.push((path.clone(), "added"));
        }
        if out.is_empty() && self.error != now.error {
            out.push((PathBuf::from(now.error.as_deref().unwrap_or("the policy paths")), "changed"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(paths: &[PathBuf]) -> Snapshot {
        Snapshot::of(aptc_compiler::workspace::find_apt_files(paths).map_err(|e| e.to_string()))
    }

    #[test]
    fn changed_added_and_deleted_files_are_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = vec![dir.path().to_path_buf()];
        std::fs::write(dir.path().join("a.apt"), "namespace a\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not policy").unwrap();
        let first = take(&root);
        assert_eq!(first.len(), 1);
        assert!(first.changes(&take(&root)).is_empty());

        std::fs::write(dir.path().join("notes.txt"), "still not policy, longer").unwrap();
        assert!(first.changes(&take(&root)).is_empty(), "only .apt files count");

        std::fs::write(dir.path().join("a.apt"), "namespace a {}\n").unwrap();
        std::fs::write(dir.path().join("b.apt"), "namespace b\n").unwrap();
        let second = take(&root);
        let shown: Vec<(String, &str)> = first
            .changes(&second)
            .into_iter()
            .map(|(p, w)| (p.file_name().unwrap().to_string_lossy().into(), w))
            .collect();
        assert_eq!(shown, [("a.apt".to_string(), "changed"), ("b.apt".to_string(), "added")]);

        std::fs::remove_file(dir.path().join("a.apt")).unwrap();
        let third = take(&root);
        assert_eq!(second.changes(&third).len(), 1);
        assert_eq!(second.changes(&third)[0].1, "deleted");
    }
}
