//! Where a deployable instance's content comes from: a Helm chart (local or remote) or manifest
//! files, located relative to the directory of the policy file that declared it
//! (docs/language.md §5.1, §5.2), and digests of that content (a local chart's files, rendered
//! manifests), so that editing a local chart or a manifest is a change to deploy even when no
//! value changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use aptc_core::resolve::RenderedFile;

/// What a deployable instance deploys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// A Helm chart: a path (`./`, `../`, `/`), an `oci://` reference, a name in `repo`, or
    /// `REPO/CHART` of the Helm installation.
    Chart { chart: String, repo: Option<String>, version: Option<String>, base_dir: String },
    /// Raw manifests: every file matching `glob` (relative to `base_dir`), in sorted path order,
    /// rendered per instance from the templates the IR carries (the unit holds the result).
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

    /// The directory of the policy file that declared the component: relative paths in it
    /// (charts, manifests, `secret_file`) start there.
    pub fn base_dir(&self) -> &Path {
        match self {
            Source::Chart { base_dir, .. } | Source::Manifests { base_dir, .. } => Path::new(base_dir),
        }
    }

    /// Where Helm finds the chart (`None` for manifests).
    pub fn chart_ref(&self) -> Option<ChartRef> {
        let Source::Chart { chart, repo, base_dir, .. } = self else { return None };
        Some(if aptc_core::ir::is_local_chart(chart, repo.is_some()) {
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

    /// A digest of the local files this source reads: the chart directory (or `.tgz`). `None`
    /// for a remote chart (its `version` pins it) and for manifests, which are rendered from the
    /// IR and never read here ([`rendered_digest`]). A chart that cannot be read gets a digest
    /// naming the problem, so it is retried and fails visibly.
    pub fn content_digest(&self) -> Option<String> {
        match self.chart_ref()? {
            ChartRef::Local(path) => Some(digest_path(&path)),
            ChartRef::Remote { .. } => None,
        }
    }
}

/// The digest of a manifests instance's rendered files (names and texts, in order): editing a
/// template, or a value it reads, changes it.
pub fn rendered_digest(files: &[RenderedFile]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        for part in [file.path.as_bytes(), &[0], file.text.as_bytes(), &[0]] {
            hasher.update(part);
        }
    }
    aptc_core::digest::sha256_hex(&hasher.finalize())
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

/// `path` made absolute against the current directory (without resolving symbolic links).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// SHA-256 of a file, or of a directory tree (relative names and contents, in sorted order).
fn digest_path(path: &Path) -> String {
    let mut hasher = Sha256::new();
    match hash_tree(path, Path::new(""), &mut hasher) {
        Ok(()) => aptc_core::digest::sha256_hex(&hasher.finalize()),
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
    fn rendered_digests_follow_names_and_texts() {
        let file = |path: &str, text: &str| RenderedFile { path: path.into(), text: text.into() };
        let before = rendered_digest(&[file("a.yaml", "x"), file("b.yaml", "y")]);
        assert!(before.starts_with("sha256:"));
        assert_eq!(before, rendered_digest(&[file("a.yaml", "x"), file("b.yaml", "y")]));
        assert_ne!(before, rendered_digest(&[file("a.yaml", "x"), file("b.yaml", "z")]));
        assert_ne!(before, rendered_digest(&[file("a.yaml", "xb.yaml"), file("", "y")]));
    }
}
