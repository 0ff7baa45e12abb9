//! Finding and reading the `.apt` files a run works on.

use std::path::{Path, PathBuf};

use crate::db::ChartOnDisk;
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
    /// The paths hold no `.apt` file: there is no policy to check (a wrong directory, a typo).
    #[error(
        "no .apt files in {}: there is no policy to check (a policy is the .apt files under the paths given; hidden \
directories, target/ and node_modules/ are skipped)",
        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoPolicyFiles { paths: Vec<PathBuf> },
}

/// The file that marks a policy's root directory: the state of its deploys (`.aptc/state.db`) and
/// their rendered output (`.aptc/rendered`) live beside it, wherever aptc is run from. An empty
/// file is a valid one (docs/language.md §3.1).
pub const POLICY_ROOT_FILE: &str = "aptc.toml";

/// The root of the policy `paths` name: the nearest directory holding [`POLICY_ROOT_FILE`], from
/// the common directory of `paths` up; else that common directory (a file's is its directory).
/// Absolute, with symbolic links resolved where the paths exist, so that the same policy gives the
/// same root from any current directory.
pub fn policy_root(paths: &[PathBuf]) -> PathBuf {
    let dirs: Vec<PathBuf> = paths
        .iter()
        .map(|path| {
            let path =
                std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.clone());
            if path.is_dir() { path } else { path.parent().map(Path::to_path_buf).unwrap_or(path) }
        })
        .collect();
    let common = match dirs.split_first() {
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        Some((first, rest)) => {
            let mut common = first.clone();
            for dir in rest {
                while !dir.starts_with(&common) {
                    if !common.pop() {
                        break;
                    }
                }
            }
            common
        }
    };
    common.ancestors().find(|dir| dir.join(POLICY_ROOT_FILE).is_file()).map_or(common.clone(), Path::to_path_buf)
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

/// [`find_apt_files`], refusing paths that hold none ([`LoadError::NoPolicyFiles`]): for commands
/// that need a policy, where an empty one would pass unnoticed (`aptc check` of the wrong directory
/// would say "no problems").
pub fn find_policy_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let found = find_apt_files(paths)?;
    if found.is_empty() {
        return Err(LoadError::NoPolicyFiles { paths: paths.to_vec() });
    }
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

/// The largest file a policy may refer to (users files, manifests): far more than any real one,
/// and small enough that a mistaken glob does not read a disk image into memory.
pub const MAX_REFERENCED_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a file a policy refers to (such as a users file or a manifest); the error is the
/// reason, for a diagnostic at the reference.
pub fn read_referenced(path: &Path) -> Result<std::sync::Arc<str>, String> {
    let size = std::fs::metadata(path).map_err(|error| error.to_string())?.len();
    if size > MAX_REFERENCED_BYTES {
        return Err(format!("it has {size} bytes, more than the {MAX_REFERENCED_BYTES} a policy may refer to"));
    }
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    String::from_utf8(bytes).map(std::sync::Arc::from).map_err(|_| "it is not UTF-8 text".to_string())
}

/// The files matching a `manifests` glob (docs/language.md §5.2) relative to `base`, in sorted
/// path order, each with its path relative to `base` (`/`-separated). `*` and `?` do not cross
/// `/`; `**` does. A glob that is absolute, climbs out of `base` (`..`), is invalid or matches no
/// file is an error (the reason, for a diagnostic at the glob).
pub fn manifest_files(base: &Path, glob: &str) -> Result<Vec<(PathBuf, String)>, String> {
    let relative = glob.trim_start_matches("./");
    if relative.starts_with('/') || relative.split(['/', '\\']).any(|part| part == "..") {
        return Err(format!("`{glob}` leaves the directory of the file: manifests are found below it"));
    }
    let base = if base.as_os_str().is_empty() { Path::new(".") } else { base };
    let pattern = format!("{}/{relative}", glob::Pattern::escape(&base.to_string_lossy()));
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let paths = glob::glob_with(&pattern, options).map_err(|e| format!("`{glob}` is not a valid glob: {e}"))?;
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| format!("reading the files of `{glob}`: {e}"))?;
        if path.is_file() {
            let relative = path.strip_prefix(base).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            files.push((path, relative));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("`{glob}` matches no file under {}", base.display()));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_root_is_the_nearest_aptc_toml_else_the_common_directory() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        for sub in ["shop/web", "shop/db", "alone"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        std::fs::write(base.join("shop/web/a.apt"), "").unwrap();
        // No aptc.toml: the directory given, a file's directory, the common directory.
        assert_eq!(policy_root(&[base.join("alone")]), base.join("alone"));
        assert_eq!(policy_root(&[base.join("shop/web/a.apt")]), base.join("shop/web"));
        assert_eq!(policy_root(&[base.join("shop/web"), base.join("shop/db")]), base.join("shop"));
        // An empty aptc.toml marks the root, found from below.
        std::fs::write(base.join("shop").join(POLICY_ROOT_FILE), "").unwrap();
        assert_eq!(policy_root(&[base.join("shop/web/a.apt")]), base.join("shop"));
        assert_eq!(policy_root(&[base.join("shop/web/../db")]), base.join("shop"), "paths are resolved");
        assert_eq!(policy_root(&[base.join("alone")]), base.join("alone"));
    }

    #[test]
    fn manifest_globs_match_sorted_and_stay_inside_their_directory() {
        let dir = std::env::temp_dir().join(format!("aptc-globs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("k8s/sub")).unwrap();
        for (name, text) in [("k8s/b.yaml", "b"), ("k8s/a.yaml", "a"), ("k8s/sub/c.yaml", "c")] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let names = |glob: &str| -> Vec<String> {
            manifest_files(&dir, glob).unwrap().into_iter().map(|(_, relative)| relative).collect()
        };
        assert_eq!(names("k8s/*.yaml"), ["k8s/a.yaml", "k8s/b.yaml"]);
        assert_eq!(names("./k8s/**/*.yaml"), ["k8s/a.yaml", "k8s/b.yaml", "k8s/sub/c.yaml"]);
        assert_eq!(names("k8s/?.yaml"), ["k8s/a.yaml", "k8s/b.yaml"]);
        assert!(manifest_files(&dir, "nothing/*.yaml").unwrap_err().contains("matches no file"));
        assert!(manifest_files(&dir, "../*.yaml").unwrap_err().contains("leaves the directory"));
        assert!(manifest_files(&dir, "/etc/*").unwrap_err().contains("leaves the directory"));
        assert!(manifest_files(&dir, "k8s/[.yaml").unwrap_err().contains("not a valid glob"));
        std::fs::write(dir.join("k8s/latin1.yaml"), [0xff, 0xfe]).unwrap();
        assert_eq!(read_referenced(&dir.join("k8s/latin1.yaml")).unwrap_err(), "it is not UTF-8 text");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// What is at `path`, a local chart's path (docs/language.md §5.1): a chart directory (with a
/// `Chart.yaml` file), a packaged chart (a file named `*.tgz` or `*.tar.gz`; what it holds is not
/// read), or what is wrong. Only metadata is read (symbolic links followed).
pub fn probe_chart(path: &Path) -> ChartOnDisk {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => match std::fs::metadata(path.join("Chart.yaml")) {
            Ok(meta) if meta.is_file() => ChartOnDisk::Directory,
            Ok(_) => ChartOnDisk::NoChartYaml,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => ChartOnDisk::NoChartYaml,
            Err(error) => ChartOnDisk::Unreadable(error.to_string()),
        },
        Ok(_) => {
            let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
            if name.ends_with(".tgz") || name.ends_with(".tar.gz") {
                ChartOnDisk::Archive
            } else {
                ChartOnDisk::NotAChart
            }
        }
        Err(error) if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            ChartOnDisk::Missing
        }
        Err(error) => ChartOnDisk::Unreadable(error.to_string()),
    }
}
