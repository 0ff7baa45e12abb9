//! Finding and reading the `.apt` files a run works on.

use std::path::{Path, PathBuf};

use crate::source::SourceMap;

/// Why the files could not be read. Problems *in* the files are diagnostics instead.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid UTF-8 text")]
    NotUtf8 { path: PathBuf },
}

/// The `.apt` files named by `paths`: files as given, directories searched recursively
/// (skipping hidden directories and `target/`), sorted and without repeats.
pub fn find_apt_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut found = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound { path: path.clone() },
            _ => LoadError::Io { path: path.clone(), source },
        })?;
        if meta.is_dir() {
            walk(path, &mut found)?;
        } else {
            found.push(path.clone());
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |source| LoadError::Io { path: dir.to_path_buf(), source };
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry.file_type().map_err(io)?;
        if file_type.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                walk(&path, found)?;
            }
        } else if path.extension().is_some_and(|ext| ext == "apt") {
            found.push(path);
        }
    }
    Ok(())
}

/// Reads the files into a new [`SourceMap`].
pub fn load(files: &[PathBuf]) -> Result<SourceMap, LoadError> {
    let mut sources = SourceMap::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.clone(), source })?;
        let text = String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 { path: path.clone() })?;
        sources.add(path.clone(), text);
    }
    Ok(sources)
}

/// Reads a file a policy refers to (such as a users file); the error is the reason, for a
/// diagnostic at the reference.
pub fn read_referenced(path: &Path) -> Result<std::sync::Arc<str>, String> {
    std::fs::read_to_string(path).map(std::sync::Arc::from).map_err(|error| error.to_string())
}
