//! Where a deployable instance's content comes from: a Helm chart (local or remote) or manifest
//! files, located on disk relative to the directory of the policy file that declared it
//! (docs/language.md §5.1, §5.2), and a digest of the local files, so that editing a local chart or
//! a manifest is a change to deploy even when no value changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a deployable instance deploys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// A Helm chart: a path (`./`, `../`, `/`), an `oci://` reference, a name in `repo`, or
    /// `REPO/CHART` of the Helm installation.
    Chart { chart: String, repo: Option<String>, version: Option<String>, base_dir: String },
    /// Raw manifests: every file matching `glob` (relative to `base_dir`), in sorted path order.
    Manifests { glob: String, base_dir: String },
}

/// Where Helm finds a chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartRef {
    /// A chart directory or packaged `.tgz` on disk.
    Local(PathBuf),
    /// Fetched by Helm: `oci://…`, a name in a repository URL, or `REPO/CHART`.
    Remote { chart: String, repo: Option<String> },
}

impl Source {
    /// The same source as if the policy were read from another directory: two checkouts of one
    /// policy deploy the same thing.
    pub fn without_base_dir(&self) -> Source {
        match self {
            Source::Chart { chart, repo, version, .. } => Source::Chart {
                chart: chart.clone(),
                repo: repo.clone(),
                version: version.clone(),
                base_dir: String::new(),
            },
            Source::Manifests { glob, .. } => Source::Manifests { glob: glob.clone(), base_dir: String::new() },
        }
    }

    /// Where Helm finds the chart (`None` for manifests).
    pub fn chart_ref(&self) -> Option<ChartRef> {
        let Source::Chart { chart, repo, base_dir, .. } = self else { return None };
        let local = repo.is_none() && (chart.starts_with("./") || chart.starts_with("../") || chart.starts_with('/'));
        Some(if local {
            ChartRef::Local(absolute(&Path::new(base_dir).join(chart)))
        } else {
            ChartRef::Remote { chart: chart.clone(), repo: repo.clone() }
        })
    }

    /// In a few words, for plans and history: `chart ./charts/hello`, `chart kafka 1.6.0 from URL`.
    pub fn describe(&self) -> String {
        match self {
            Source::Chart { chart, repo, version, .. } => {
                let version = version.as_ref().map(|v| format!(" {v}")).unwrap_or_default();
                let repo = repo.as_ref().map(|r| format!(" from {r}")).unwrap_or_default();
                format!("chart {chart}{version}{repo}")
            }
            Source::Manifests { glob, .. } => format!("manifests {glob}"),
        }
    }

    /// A digest of the local files this source reads: the chart directory (or `.tgz`), or the
    /// manifest files with their names. `None` for a remote chart (its `version` pins it). A source
    /// that cannot be read gets a digest naming the problem, so it is retried and fails visibly.
    pub fn content_digest(&self) -> Option<String> {
        match self {
            Source::Chart { .. } => match self.chart_ref()? {
                ChartRef::Local(path) => Some(digest_path(&path)),
                ChartRef::Remote { .. } => None,
            },
            Source::Manifests { glob, base_dir } => Some(match manifest_files(base_dir, glob) {
                Ok(files) => {
                    let mut hasher = Sha256::new();
                    for file in &files {
                        hasher.update(file.relative.as_bytes());
                        hasher.update([0]);
                        match std::fs::read(&file.path) {
                            Ok(bytes) => hasher.update(&bytes),
                            Err(error) => return Some(format!("unreadable: {}: {error}", file.path.display())),
                        }
                        hasher.update([0]);
                    }
                    hex(&hasher.finalize())
                }
                Err(error) => format!("unreadable: {error}"),
            }),
        }
    }
}

/// Content digests for many sources at once; each distinct source is read once.
#[derive(Default)]
pub struct DigestCache {
    known: HashMap<Source, Option<String>>,
}

impl DigestCache {
    pub fn digest(&mut self, source: &Source) -> Option<String> {
        self.known.entry(source.clone()).or_insert_with(|| source.content_digest()).clone()
    }
}

/// One manifest file matched by a glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: PathBuf,
    /// The path relative to the policy file's directory, with `/` separators.
    pub relative: String,
}

/// The files matching `glob` relative to `base_dir`, in sorted path order (`*` and `?` do not cross
/// `/`; `**` does). No match is an error, as in docs/language.md §5.2.
pub fn manifest_files(base_dir: &str, glob: &str) -> Result<Vec<ManifestFile>, String> {
    let base = absolute(Path::new(base_dir));
    let pattern = format!("{}/{}", glob::Pattern::escape(&base.to_string_lossy()), glob.trim_start_matches("./"));
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let paths = glob::glob_with(&pattern, options).map_err(|e| format!("invalid manifests glob `{glob}`: {e}"))?;
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| format!("reading manifests `{glob}`: {e}"))?;
        if path.is_file() {
            let relative = path.strip_prefix(&base).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            files.push(ManifestFile { path, relative });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if files.is_empty() {
        return Err(format!("manifests `{glob}` match no file under {}", base.display()));
    }
    Ok(files)
}

/// `path` made absolute against the current directory (without resolving symbolic links).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// SHA-256 of a file, or of a directory tree (relative names and contents, in sorted order).
fn digest_path(path: &Path) -> String {
    let mut hasher = Sha256::new();
    match hash_tree(path, Path::new(""), &mut hasher) {
        Ok(()) => hex(&hasher.finalize()),
        Err(error) => format!("unreadable: {}: {error}", path.display()),
    }
}

fn hash_tree(path: &Path, relative: &Path, hasher: &mut Sha256) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            hash_tree(&entry.path(), &relative.join(entry.file_name()), hasher)?;
        }
    } else {
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(path)?);
        hasher.update([0]);
    }
    Ok(())
}

/// `sha256:` and the lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(7 + bytes.len() * 2);
    out.push_str("sha256:");
    for byte in bytes {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// SHA-256 of some text, as `sha256:…`.
pub fn sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(chart: &str, repo: Option<&str>) -> Source {
        Source::Chart { chart: chart.into(), repo: repo.map(Into::into), version: None, base_dir: "/p".into() }
    }

    #[test]
    fn local_charts_are_paths_and_everything_else_is_remote() {
        assert_eq!(chart("./charts/x", None).chart_ref(), Some(ChartRef::Local(PathBuf::from("/p/./charts/x"))));
        assert_eq!(chart("/abs/x", None).chart_ref(), Some(ChartRef::Local(PathBuf::from("/abs/x"))));
        assert!(matches!(chart("bitnami/nginx", None).chart_ref(), Some(ChartRef::Remote { .. })));
        assert!(matches!(chart("oci://r/x", None).chart_ref(), Some(ChartRef::Remote { .. })));
        assert!(matches!(chart("kafka", Some("https://r")).chart_ref(), Some(ChartRef::Remote { .. })));
    }

    #[test]
    fn manifest_globs_match_sorted_and_digests_follow_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("k8s/sub")).unwrap();
        std::fs::write(dir.path().join("k8s/b.yaml"), "b").unwrap();
        std::fs::write(dir.path().join("k8s/a.yaml"), "a").unwrap();
        std::fs::write(dir.path().join("k8s/sub/c.yaml"), "c").unwrap();
        let base = dir.path().to_string_lossy().into_owned();
        let names = |glob: &str| -> Vec<String> {
            manifest_files(&base, glob).unwrap().into_iter().map(|f| f.relative).collect()
        };
        assert_eq!(names("k8s/*.yaml"), ["k8s/a.yaml", "k8s/b.yaml"]);
        assert_eq!(names("./k8s/**/*.yaml"), ["k8s/a.yaml", "k8s/b.yaml", "k8s/sub/c.yaml"]);
        assert!(manifest_files(&base, "nothing/*.yaml").unwrap_err().contains("match no file"));
        let source = Source::Manifests { glob: "k8s/*.yaml".into(), base_dir: base.clone() };
        let before = source.content_digest().unwrap();
        assert!(before.starts_with("sha256:"));
        std::fs::write(dir.path().join("k8s/a.yaml"), "a2").unwrap();
        assert_ne!(source.content_digest().unwrap(), before);
    }
}
