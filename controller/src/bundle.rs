//! Policy bundles as bytes: which files belong to each `.apt` namespace of a policy tree
//! ([`collect`]: its `.apt` files and the files they refer to), packed into a deterministic gzipped
//! tar archive ([`Bundle::pack`], so pushing an unchanged tree changes nothing) and unpacked with
//! every limit a hostile archive could test ([`unpack`]: size, count, paths, entry kinds).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use aptc_compiler::check::PRELUDE_PATH;
use aptc_compiler::db::{ChartOnDisk, Settings};
use aptc_compiler::host::Analysis;
use aptc_compiler::semantics::index::file_summary;
use aptc_compiler::workspace::{self, LoadError};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::crd::{PolicyBundle, PolicyBundleSpec, kube_name};

/// The largest archive a bundle may carry, in Base64 characters: well below the API server's
/// 1.5 MiB object limit (etcd's default request size), leaving room for metadata and status.
pub const MAX_ARCHIVE: usize = 1024 * 1024;
/// The most bytes an archive may unpack to (a small archive of zeros must not fill the disk).
pub const MAX_UNPACKED: u64 = 64 * 1024 * 1024;
/// The most entries an archive may hold.
pub const MAX_ENTRIES: usize = 10_000;

/// Why bundles could not be built, packed or unpacked.
#[derive(Debug, Error)]
pub enum BundleError {
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The policy has errors: nothing is pushed (`rendered` shows them).
    #[error("the policy has {count} error(s); fix them first (`aptc check`)")]
    Invalid { count: usize, rendered: String },
    #[error("{file}: the file declares no `namespace`, so it belongs to no bundle")]
    NoNamespace { file: PathBuf },
    #[error(
        "namespace `{namespace}` has no Kubernetes name (a bundle is named after its namespace: lower case, `_` as `-`, at most 63 characters)"
    )]
    Unnamed { namespace: String },
    #[error("{file}: it is outside the policy's root {root}, so it cannot be bundled; move it under the root")]
    OutsideRoot { file: PathBuf, root: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The packed bundle is over [`MAX_ARCHIVE`].
    #[error(
        "the bundle of namespace `{namespace}` is {size} bytes packed, over the limit of {MAX_ARCHIVE} (the API server keeps objects under 1.5 MiB); its largest files: {largest}. Publish large charts to a chart repository or an OCI registry and name them with `repo` instead of a local path"
    )]
    TooLarge { namespace: String, size: usize, largest: String },
    /// An archive that cannot be unpacked (not Base64, not gzip, a bad entry, over a limit).
    #[error("the bundle's archive cannot be unpacked: {0}")]
    Archive(String),
}

/// One namespace's files, by path relative to the policy's root (`/`-separated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub namespace: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// The bundles of the policy at `paths` (one per `.apt` namespace), after checking that it has no
/// errors. Each holds its namespace's `.apt` files and the users files, manifest templates and
/// local charts they name, at their paths relative to the policy's root, so that unpacked
/// anywhere the files find each other as they did here.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<Bundle>, BundleError> {
    let root = canonical(&workspace::policy_root(paths))?;
    let mut analysis = Analysis::open(paths, Settings::default())?;
    let result = analysis.check();
    let errors: Vec<_> = result.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
    if !errors.is_empty() {
        return Err(BundleError::Invalid { count: errors.len(), rendered: analysis.render(&errors, false) });
    }
    let db = analysis.db();
    let ws = analysis.workspace();
    let mut bundles: BTreeMap<String, Bundle> = BTreeMap::new();
    for &file in ws.files(db).iter().filter(|f| f.path(db) != Path::new(PRELUDE_PATH)) {
        let path = file.path(db).clone();
        let Some(namespace) = file_summary(db, file).namespace.clone() else {
            return Err(BundleError::NoNamespace { file: path });
        };
        let bundle = bundles
            .entry(namespace.to_string())
            .or_insert_with(|| Bundle { namespace: namespace.to_string(), files: BTreeMap::new() });
        let id = file.id(db);
        let mut referenced = vec![path];
        referenced.extend(ws.users_files(db).iter().filter(|u| u.declared_in(db) == id).map(|u| u.path(db).clone()));
        for set in ws.manifests(db).iter().filter(|m| m.declared_in(db) == id) {
            referenced.extend(set.files(db).iter().flatten().map(|f| f.path.clone()));
        }
        for chart in ws.charts(db).iter().filter(|c| c.declared_in(db) == id) {
            match chart.on_disk(db) {
                ChartOnDisk::Directory => walk(chart.path(db), &mut referenced)?,
                _ => referenced.push(chart.path(db).clone()),
            }
        }
        for path in referenced {
            let full = canonical(&path)?;
            let relative = full
                .strip_prefix(&root)
                .map_err(|_| BundleError::OutsideRoot { file: path.clone(), root: root.clone() })?;
            let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            let bytes = std::fs::read(&full).map_err(|source| BundleError::Io { path: path.clone(), source })?;
            bundle.files.insert(name, bytes);
        }
    }
    for namespace in bundles.keys() {
        kube_name(namespace).ok_or_else(|| BundleError::Unnamed { namespace: namespace.clone() })?;
    }
    Ok(bundles.into_values().collect())
}

fn canonical(path: &Path) -> Result<PathBuf, BundleError> {
    std::fs::canonicalize(path).map_err(|source| BundleError::Io { path: path.to_path_buf(), source })
}

/// Every file under `dir` (a local chart directory), recursively.
fn walk(dir: &Path, into: &mut Vec<PathBuf>) -> Result<(), BundleError> {
    let io = |source| BundleError::Io { path: dir.to_path_buf(), source };
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(io)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, into)?;
        } else {
            into.push(entry);
        }
    }
    Ok(())
}

impl Bundle {
    /// The archive: a tar of the files in path order (mode 0644, time 0, no owner) gzipped, in
    /// Base64; the same files always give the same text. Over [`MAX_ARCHIVE`] it is an error
    /// naming the largest files.
    pub fn pack(&self) -> Result<String, BundleError> {
        let io = |source| BundleError::Io { path: PathBuf::from(&self.namespace), source };
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::best()));
        for (path, bytes) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, bytes.as_slice()).map_err(io)?;
        }
        let gzipped = tar.into_inner().map_err(io)?.finish().map_err(io)?;
        let text = data_encoding::BASE64.encode(&gzipped);
        if text.len() > MAX_ARCHIVE {
            let mut sizes: Vec<(&String, usize)> = self.files.iter().map(|(p, b)| (p, b.len())).collect();
            sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let largest = sizes.iter().take(3).map(|(p, n)| format!("{p} ({n} bytes)")).collect::<Vec<_>>().join(", ");
            return Err(BundleError::TooLarge { namespace: self.namespace.clone(), size: text.len(), largest });
        }
        Ok(text)
    }

    /// The custom resource carrying this bundle.
    pub fn resource(&self) -> Result<PolicyBundle, BundleError> {
        let name =
            kube_name(&self.namespace).ok_or_else(|| BundleError::Unnamed { namespace: self.namespace.clone() })?;
        let archive = self.pack()?;
        let spec = PolicyBundleSpec {
            namespace: self.namespace.clone(),
            digest: digest(&archive),
            archive,
            git: None,
            files: u32::try_from(self.files.len()).unwrap_or(u32::MAX),
        };
        Ok(PolicyBundle::new(&name, spec))
    }
}

/// `sha256:` of an archive's text.
pub fn digest(archive: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(archive.as_bytes())))
}

/// Unpacks an archive (as [`Bundle::pack`] writes it) into `dir`, which it creates; returns the
/// paths written. Refused: more than [`MAX_ARCHIVE`] characters, more than [`MAX_ENTRIES`]
/// entries or [`MAX_UNPACKED`] bytes, an entry that is not a plain file or directory (links,
/// devices), a path that is absolute or leaves the directory.
pub fn unpack(archive: &str, dir: &Path) -> Result<Vec<String>, BundleError> {
    let bad = |what: String| BundleError::Archive(what);
    if archive.len() > MAX_ARCHIVE {
        return Err(bad(format!("it is {} characters, over the limit of {MAX_ARCHIVE}", archive.len())));
    }
    let bytes = data_encoding::BASE64.decode(archive.as_bytes()).map_err(|e| bad(format!("not Base64: {e}")))?;
    unpack_tar(GzDecoder::new(bytes.as_slice()), dir)
}

/// Unpacks a plain tar stream into `dir` with the limits of [`unpack`] (a global pax header, as
/// `git archive` writes, is skipped).
pub fn unpack_tar(reader: impl Read, dir: &Path) -> Result<Vec<String>, BundleError> {
    let bad = |what: String| BundleError::Archive(what);
    let mut tar = tar::Archive::new(reader);
    let io = |source| BundleError::Io { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut written = Vec::new();
    let mut total: u64 = 0;
    for (index, entry) in tar.entries().map_err(|e| bad(e.to_string()))?.enumerate() {
        if index >= MAX_ENTRIES {
            return Err(bad(format!("it holds more than {MAX_ENTRIES} entries")));
        }
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let shown = path.display().to_string();
        if path.as_os_str().is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad(format!("the entry `{shown}` is not a relative path inside the bundle")));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory | tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Regular => {}
            other => return Err(bad(format!("the entry `{shown}` is a {other:?}, not a plain file"))),
        }
        let mut bytes = Vec::new();
        let left = MAX_UNPACKED - total;
        (&mut entry).take(left + 1).read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
        total += bytes.len() as u64;
        if total > MAX_UNPACKED {
            return Err(bad(format!("it unpacks to more than {MAX_UNPACKED} bytes")));
        }
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| BundleError::Io { path: parent.to_path_buf(), source })?;
        }
        let mut file =
            std::fs::File::create(&target).map_err(|source| BundleError::Io { path: target.clone(), source })?;
        file.write_all(&bytes).map_err(|source| BundleError::Io { path: target.clone(), source })?;
        written.push(path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, text: &str) {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    /// The quickstart example: two namespaces, a local chart and manifest templates.
    fn quickstart() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")
    }

    #[test]
    fn collects_one_bundle_per_namespace_with_the_files_they_name() {
        let bundles = collect(&[quickstart()]).unwrap();
        let names: Vec<&str> = bundles.iter().map(|b| b.namespace.as_str()).collect();
        assert_eq!(names, ["hello", "system"]);
        let hello: Vec<&String> = bundles[0].files.keys().collect();
        assert!(hello.contains(&&"hello.apt".to_string()), "{hello:?}");
        assert!(hello.iter().any(|p| p.starts_with("charts/")), "the local chart is bundled: {hello:?}");
        assert!(bundles[1].files.contains_key("system.apt"));
        // `tests.apt` declares a namespace too; every `.apt` file is in exactly one bundle.
        let apt: usize = bundles.iter().map(|b| b.files.keys().filter(|p| p.ends_with(".apt")).count()).sum();
        assert_eq!(
            apt,
            std::fs::read_dir(quickstart())
                .unwrap()
                .filter(|e| { e.as_ref().unwrap().path().extension().is_some_and(|x| x == "apt") })
                .count()
        );
    }

    #[test]
    fn packing_is_deterministic_and_unpacks_to_the_same_files() {
        let bundles = collect(&[quickstart()]).unwrap();
        let first = bundles[0].pack().unwrap();
        assert_eq!(first, collect(&[quickstart()]).unwrap()[0].pack().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let written = unpack(&first, dir.path()).unwrap();
        assert_eq!(written, bundles[0].files.keys().cloned().collect::<Vec<_>>());
        for (path, bytes) in &bundles[0].files {
            assert_eq!(&std::fs::read(dir.path().join(path)).unwrap(), bytes, "{path}");
        }
    }

    #[test]
    fn a_policy_with_errors_is_not_bundled() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.apt", "namespace a\ncontract c { context x { use nothing } }\n");
        let error = collect(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(matches!(error, BundleError::Invalid { .. }), "{error}");
    }

    #[test]
    fn a_file_outside_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "users.yaml", "- name: bob@example.com\n");
        write(dir.path(), "policy/aptc.toml", "");
        write(dir.path(), "policy/system.apt", "namespace system\nusers from \"../users.yaml\"\n");
        let error = collect(&[dir.path().join("policy")]).unwrap_err();
        assert!(matches!(error, BundleError::OutsideRoot { .. }), "{error}");
    }

    #[test]
    fn an_oversized_bundle_points_to_a_chart_repository() {
        // Incompressible bytes (a simple generator), so the archive stays large.
        let mut state: u64 = 0x9e3779b97f4a7c15;
        let noise: Vec<u8> = (0..900_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let bundle = Bundle {
            namespace: "big".into(),
            files: BTreeMap::from([("charts/big/blob.bin".to_string(), noise), ("big.apt".to_string(), b"x".to_vec())]),
        };
        let error = bundle.pack().unwrap_err().to_string();
        assert!(error.contains("namespace `big`"), "{error}");
        assert!(error.contains("charts/big/blob.bin (900000 bytes)"), "{error}");
        assert!(error.contains("chart repository or an OCI registry"), "{error}");
    }

    /// A gzipped tar written entry by entry, with headers as a hostile pusher would write them.
    fn hostile(entries: &[(&str, tar::EntryType, &[u8])]) -> String {
        let mut out = Vec::new();
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_old();
            // `set_path` refuses `..`; write the name field directly, as a hostile tool would.
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_size(data.len() as u64);
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0; 1024]);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&out).unwrap();
        data_encoding::BASE64.encode(&gz.finish().unwrap())
    }

    #[test]
    fn hostile_archives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let into = dir.path().join("b");
        let cases = [
            (hostile(&[("../escape.apt", tar::EntryType::Regular, b"x")]), "not a relative path"),
            (hostile(&[("/etc/passwd", tar::EntryType::Regular, b"x")]), "not a relative path"),
            (hostile(&[("link", tar::EntryType::Symlink, b"")]), "not a plain file"),
            ("not base64!".to_string(), "not Base64"),
            (data_encoding::BASE64.encode(b"not gzip"), "cannot be unpacked"),
        ];
        for (archive, expected) in cases {
            let error = unpack(&archive, &into).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} (expected {expected})");
        }
        assert!(!dir.path().join("escape.apt").exists());
        // A small archive of zeros that unpacks past the limit.
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        let mut header = tar::Header::new_gnu();
        header.set_size(MAX_UNPACKED + 1);
        header.set_mode(0o644);
        header.set_cksum();
        let mut tar = tar::Builder::new(&mut gz);
        tar.append_data(&mut header, "zeros", std::io::repeat(0).take(MAX_UNPACKED + 1)).unwrap();
        tar.finish().unwrap();
        drop(tar);
        let archive = data_encoding::BASE64.encode(&gz.finish().unwrap());
        let error = unpack(&archive, &into).unwrap_err().to_string();
        assert!(error.contains("more than"), "{error}");
    }
}
