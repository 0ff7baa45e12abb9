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
    /// An `aptc.toml` that is not valid (TOML syntax, a key of the wrong type, a bad glob).
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
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
    governing_root(&common).unwrap_or(common)
}

/// The nearest directory from `dir` up holding an `aptc.toml` whose policy takes `dir` (the root
/// itself, or a directory its globs take; an `aptc.toml` that cannot be read takes everything):
/// a directory its root leaves out (this repository's `target/`, say) belongs to no policy there.
fn governing_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .filter(|root| root.join(POLICY_ROOT_FILE).is_file())
        .find(|root| *root == dir || PolicyConfig::read(root).map_or(true, |config| config.contains(dir)))
        .map(Path::to_path_buf)
}

/// What an `aptc.toml` says (docs/language.md §3.1): which `.apt` files under its directory
/// belong to the policy. Keys this version does not know are ignored, so that a newer file
/// works with an older aptc.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// The directory holding the `aptc.toml` (absolute, as given to [`PolicyConfig::read`]).
    pub root: PathBuf,
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

#[derive(serde::Deserialize)]
struct ConfigFile {
    include: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
}

impl PolicyConfig {
    /// Reads `root/aptc.toml`.
    pub fn read(root: &Path) -> Result<PolicyConfig, LoadError> {
        let path = root.join(POLICY_ROOT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io { path: path.clone(), source })?;
        PolicyConfig::parse(root, &text).map_err(|message| LoadError::Config { path, message })
    }

    /// The configuration of the policy rooted at `root` whose `aptc.toml` holds `text`.
    pub fn parse(root: &Path, text: &str) -> Result<PolicyConfig, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!("line {line}, column {column}: {}", e.message())
            }
            None => e.message().to_string(),
        })?;
        let patterns = |key: &str, globs: Vec<String>| -> Result<Vec<glob::Pattern>, String> {
            globs
                .iter()
                .map(|g| {
                    let relative = g.trim_start_matches("./").trim_end_matches('/');
                    if relative.starts_with('/') || relative.split('/').any(|part| part == "..") {
                        return Err(format!("`{key}` glob `{g}` leaves the policy root: globs are relative to it"));
                    }
                    glob::Pattern::new(relative).map_err(|e| format!("`{key}` glob `{g}` is not valid: {e}"))
                })
                .collect()
        };
        let include = match file.include {
            Some(globs) => patterns("include", globs)?,
            None => vec![glob::Pattern::new("**").expect("a valid glob")],
        };
        Ok(PolicyConfig { root: root.to_path_buf(), include, exclude: patterns("exclude", file.exclude)? })
    }

    /// The configuration of the policy of `dir`: the nearest directory holding `aptc.toml` from
    /// `dir` up whose policy takes `dir` (see [`policy_root`]), if there is one.
    pub fn find(dir: &Path) -> Option<Result<PolicyConfig, LoadError>> {
        let dir =
            std::fs::canonicalize(dir).or_else(|_| std::path::absolute(dir)).unwrap_or_else(|_| dir.to_path_buf());
        Some(PolicyConfig::read(&governing_root(&dir)?))
    }

    /// Whether the policy has `path` (a path under [`PolicyConfig::root`]): an include glob
    /// matches it or a directory above it, and no exclude glob does. `*` and `?` do not cross
    /// `/`, `**` does; a glob naming a directory takes everything under it.
    pub fn contains(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else { return false };
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let matches = |patterns: &[glob::Pattern]| {
            relative.ancestors().filter(|p| !p.as_os_str().is_empty()).any(|p| {
                let p = p.to_string_lossy().replace('\\', "/");
                patterns.iter().any(|pattern| pattern.matches_with(&p, options))
            })
        };
        matches(&self.include) && !matches(&self.exclude)
    }

    /// The policy's `.apt` files: those under the root that it [contains](PolicyConfig::contains),
    /// leaving out directories holding an `aptc.toml` of their own (other policies), hidden
    /// directories, `target/` and `node_modules/`; sorted.
    pub fn files(&self) -> Result<Vec<PathBuf>, LoadError> {
        let mut found = Vec::new();
        walk_with(&self.root, &mut found, &|dir| dir != self.root && dir.join(POLICY_ROOT_FILE).is_file())?;
        found.retain(|path| self.contains(path));
        found.sort();
        Ok(found)
    }
}

/// Every directory at or under `dirs` holding an `aptc.toml` (hidden directories, `target/` and
/// `node_modules/` skipped), sorted.
pub fn find_policy_roots(dirs: &[PathBuf]) -> Vec<PathBuf> {
    fn visit(dir: &Path, found: &mut Vec<PathBuf>) {
        if dir.join(POLICY_ROOT_FILE).is_file() {
            found.push(dir.to_path_buf());
        }
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !skipped(&name) {
                visit(&entry.path(), found);
            }
        }
    }
    let mut found = Vec::new();
    for dir in dirs {
        visit(dir, &mut found);
    }
    found.sort();
    found.dedup();
    found
}

fn skipped(directory_name: &str) -> bool {
    directory_name.starts_with('.') || directory_name == "target" || directory_name == "node_modules"
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
    walk_with(dir, found, &|_| false)
}

/// [`walk`], leaving out the directories `leave_out` says.
fn walk_with(dir: &Path, found: &mut Vec<PathBuf>, leave_out: &dyn Fn(&Path) -> bool) -> Result<(), LoadError> {
    let io = |source| LoadError::Io { path: dir.to_path_buf(), source };
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry.file_type().map_err(io)?;
        if file_type.is_dir() {
            if !skipped(&name) && !leave_out(&path) {
                walk_with(&path, found, leave_out)?;
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
        // A directory the root's globs leave out belongs to no policy there.
        std::fs::write(base.join(POLICY_ROOT_FILE), "exclude = [\"alone\"]").unwrap();
        assert_eq!(policy_root(&[base.join("alone")]), base.join("alone"));
        assert_eq!(policy_root(&[base.join("shop/web")]), base.join("shop"));
        std::fs::remove_file(base.join("shop").join(POLICY_ROOT_FILE)).unwrap();
        assert_eq!(policy_root(&[base.join("shop/web")]), base.clone());
    }

    #[test]
    fn aptc_toml_includes_and_excludes_files_and_leaves_nested_policies_out() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        for file in ["a.apt", "web/b.apt", "tests/cases/c.apt", "tests/d.apt", "other/e.apt", "gen/f.apt"] {
            std::fs::create_dir_all(base.join(file).parent().unwrap()).unwrap();
            std::fs::write(base.join(file), "").unwrap();
        }
        std::fs::write(base.join("other").join(POLICY_ROOT_FILE), "").unwrap();
        let files = |config: &PolicyConfig| -> Vec<String> {
            let found = config.files().unwrap();
            found.iter().map(|p| p.strip_prefix(&base).unwrap().to_string_lossy().replace('\\', "/")).collect()
        };
        // An empty file: everything under it, except the nested policy.
        let all = PolicyConfig::parse(&base, "").unwrap();
        assert_eq!(files(&all), ["a.apt", "gen/f.apt", "tests/cases/c.apt", "tests/d.apt", "web/b.apt"]);
        // A directory glob takes what is under it; `*` does not cross `/`, `**` does.
        let some =
            PolicyConfig::parse(&base, "include = [\"web\", \"tests/**\", \"*.apt\"]\nexclude = [\"tests/cases\"]")
                .unwrap();
        assert_eq!(files(&some), ["a.apt", "tests/d.apt", "web/b.apt"]);
        let star = PolicyConfig::parse(&base, "exclude = [\"*/*.apt\"]\nfuture_key = 1").unwrap();
        assert_eq!(files(&star), ["a.apt", "tests/cases/c.apt"], "unknown keys are ignored");
        assert!(!some.contains(&base.join("../x.apt")) && !some.contains(Path::new("/elsewhere/a.apt")));
        // Mistakes are errors, with the reason.
        let wrong_type = PolicyConfig::parse(&base, "# a comment\ninclude = \"web\"").unwrap_err();
        assert!(wrong_type.starts_with("line 2, column 11: ") && wrong_type.contains("sequence"), "{wrong_type}");
        assert!(PolicyConfig::parse(&base, "exclude = [\"../x\"]").unwrap_err().contains("leaves the policy root"));
        assert!(PolicyConfig::parse(&base, "exclude = [\"[\"]").unwrap_err().contains("not valid"));
        assert_eq!(find_policy_roots(std::slice::from_ref(&base)), [base.join("other")]);
        assert_eq!(PolicyConfig::find(&base.join("other")).unwrap().unwrap().root, base.join("other"));
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
