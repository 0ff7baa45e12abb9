//! The render driver: writes what would be applied into a directory tree, one directory per
//! instance, `OUT/CLUSTER/K8S_NAMESPACE/INSTANCE_NAME/`:
//!
//! - a chart instance: `manifest.yaml`, the output of the real `helm template` (the values in a
//!   private temporary file, removed afterwards), every object stamped ([`crate::manifest`]);
//! - a manifests instance: `manifests/NN-FILE.yaml`, each of its rendered templates
//!   ([`crate::manifest::unit_documents`]) stamped, in sorted path order;
//! - every instance: `instance.json`, its key, claims, values, discovery and source.
//!
//! The output is meant for Git: secrets are never revealed here; Helm and `instance.json` get the
//! values with every secret as `***` ([`aptc_core::secret::redact`]).
//!
//! An instance's directory is replaced whole (written beside it, then swapped in), so a failed
//! render leaves the previous one in place. A directory without aptc's `instance.json` for that
//! instance is never overwritten or removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::driver::{ActionResult, Driver, DriverError, INSTANCE_FILE};
use crate::helm::{Helm, HelmError, TemplateRequest};
use crate::manifest::{Document, Stamp, parse_stream, stamp_all, unit_documents, write_stream};
use crate::plan::{Action, Op, Plan, Unit};
use crate::source::Source;
use aptc_core::secret::{redact, redact_text};

/// Renders into a directory: the embedded default target, needing no cluster.
pub struct RenderDriver {
    out: PathBuf,
    helm: Result<Helm, HelmError>,
}

impl RenderDriver {
    /// Renders into `out` (made absolute); `helm` is needed only for chart instances.
    pub fn new(out: &Path, helm: Result<Helm, HelmError>) -> RenderDriver {
        RenderDriver { out: crate::source::absolute(out), helm }
    }

    pub fn out(&self) -> &Path {
        &self.out
    }

    /// `OUT/CLUSTER/K8S_NAMESPACE/NAME`.
    pub fn instance_dir(&self, unit: &Unit) -> Result<PathBuf, DriverError> {
        for part in [unit.cluster_name(), unit.k8s_namespace.as_str(), unit.name.as_str()] {
            let plain = !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !plain {
                return Err(DriverError::BadName(part.to_string()));
            }
        }
        Ok(self.out.join(unit.cluster_name()).join(&unit.k8s_namespace).join(&unit.name))
    }

    fn relative<'p>(&self, path: &'p Path) -> std::borrow::Cow<'p, str> {
        path.strip_prefix(&self.out).unwrap_or(path).to_string_lossy()
    }

    /// The files of an instance directory (relative name, content) and its number of objects.
    fn render(&self, revision: u64, unit: &Unit) -> Result<(Vec<(String, String)>, usize), DriverError> {
        // Rendered output is for Git and people: secrets never go into it, not even to Helm.
        let values = redact(&unit.values);
        let mut files = Vec::new();
        let mut objects = 0;
        let mut listed = Vec::new();
        match &unit.source {
            Source::Chart { .. } => {
                let helm = self.helm.as_ref().map_err(|e| e.clone())?;
                let mut documents = template_chart(helm, unit)?;
                stamp_all(&mut documents, &Stamp::of(unit, revision))?;
                files.push(("manifest.yaml".to_string(), write_stream(&documents)?));
                objects += documents.len();
                listed.push("manifest.yaml".to_string());
            }
            Source::Manifests { .. } => {
                let documents = unit_documents(unit, revision)?;
                let width = unit.files.len().to_string().len().max(2);
                for (n, file) in unit.files.iter().enumerate() {
                    let own: Vec<Document> =
                        documents.iter().filter(|d| d.source.as_deref() == Some(&file.path)).cloned().collect();
                    // Secrets stay out of the output, which is for Git: each placeholder is `***`.
                    let text = redact_text(&write_stream(&own)?);
                    let stem = Path::new(&file.path).file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
                    let name = format!("manifests/{:0width$}-{stem}.yaml", n + 1);
                    files.push((name.clone(), text));
                    objects += own.len();
                    listed.push(name);
                }
            }
        }
        let record = json!({
            "format": "aptc-rendered-instance",
            "key": unit.key,
            "name": unit.name,
            "id": unit.id,
            "revision": revision,
            "cluster": unit.cluster,
            "k8s_namespace": unit.k8s_namespace,
            "namespace": unit.namespace,
            "service": unit.service,
            "contract": unit.contract,
            "context": unit.context,
            "component": unit.component,
            "source": unit.source,
            "claims": unit.claims,
            "values": values,
            "discovery": unit.discovery,
            "depends_on": unit.depends_on,
            "files": listed,
            "objects": objects,
            "helm": self.helm.as_ref().ok().filter(|_| matches!(unit.source, Source::Chart { .. })).map(|h| &h.version),
        });
        let text =
            serde_json::to_string_pretty(&record).expect("a JSON value with string keys always serialises") + "\n";
        files.push((INSTANCE_FILE.to_string(), text));
        Ok((files, objects))
    }

    /// Whether `dir` holds aptc's rendering of the instance `key`.
    fn owns(dir: &Path, key: &str) -> bool {
        std::fs::read_to_string(dir.join(INSTANCE_FILE))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|v| v["key"] == key)
    }

    fn write(&self, revision: u64, unit: &Unit) -> Result<ActionResult, DriverError> {
        let dir = self.instance_dir(unit)?;
        let (files, objects) = self.render(revision, unit)?;
        let parent = dir.parent().expect("an instance directory has a parent");
        std::fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e))?;
        if dir.exists() && !Self::owns(&dir, &unit.key) {
            return Err(DriverError::NotOurs { dir, key: unit.key.clone(), writing: true });
        }
        remove_leftovers(parent, &unit.name);
        let tag = format!("{}-{revision}", std::process::id());
        let staging = parent.join(format!(".{}.staging-{tag}", unit.name));
        let old = parent.join(format!(".{}.old-{tag}", unit.name));
        let written = (|| -> Result<(), DriverError> {
            for (name, text) in &files {
                let path = staging.join(name);
                if let Some(folder) = path.parent() {
                    std::fs::create_dir_all(folder).map_err(|e| io_error("creating", folder, e))?;
                }
                std::fs::write(&path, text).map_err(|e| io_error("writing", &path, e))?;
            }
            if dir.exists() {
                std::fs::rename(&dir, &old).map_err(|e| io_error("moving aside", &dir, e))?;
            }
            std::fs::rename(&staging, &dir).map_err(|e| io_error("moving into place", &staging, e))?;
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
            if old.exists() && !dir.exists() {
                let _ = std::fs::rename(&old, &dir);
            }
        }
        written?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| io_error("removing", &old, e))?;
        }
        let noun = if objects == 1 { "object" } else { "objects" };
        Ok(ActionResult { detail: format!("{objects} {noun} in {}", self.relative(&dir)) })
    }

    fn remove(&self, unit: &Unit) -> Result<ActionResult, DriverError> {
        let dir = self.instance_dir(unit)?;
        if !dir.exists() {
            return Ok(ActionResult { detail: format!("{} was already gone", self.relative(&dir)) });
        }
        if !Self::owns(&dir, &unit.key) {
            return Err(DriverError::NotOurs { dir, key: unit.key.clone(), writing: false });
        }
        std::fs::remove_dir_all(&dir).map_err(|e| io_error("removing", &dir, e))?;
        // The namespace and cluster directories go when they are left empty.
        for folder in dir.ancestors().skip(1).take(2) {
            if std::fs::remove_dir(folder).is_err() {
                break;
            }
        }
        Ok(ActionResult { detail: format!("removed {}", self.relative(&dir)) })
    }
}

/// The objects `helm template` renders for a chart unit, with every secret in its values as
/// `***` (they are never revealed to a rendering), before aptc's stamp: what the render target
/// writes, and what the dashboard shows of a chart instance. Errors are Helm's (a missing chart, a
/// bad template) or its output not being YAML; a unit that is not a chart is [`DriverError::NotAChart`].
pub fn template_chart(helm: &Helm, unit: &Unit) -> Result<Vec<Document>, DriverError> {
    let (Source::Chart { version, .. }, Some(chart)) = (&unit.source, unit.source.chart_ref()) else {
        return Err(DriverError::NotAChart(unit.key.clone()));
    };
    let output = helm.template(&TemplateRequest {
        release: &unit.name,
        chart: &chart,
        version: version.as_deref(),
        namespace: &unit.k8s_namespace,
        values: &redact(&unit.values),
    })?;
    parse_stream(&output).map_err(|e| e.in_output("helm's output").into())
}

impl Driver for RenderDriver {
    fn target(&self) -> String {
        format!("render:{}", self.out.display())
    }

    fn describe(&self) -> String {
        format!("rendered to {}", self.out.display())
    }

    fn preflight(&self, plan: &Plan) -> Result<(), DriverError> {
        let charts = plan.actions.iter().any(|a| a.op != Op::Delete && matches!(a.unit.source, Source::Chart { .. }));
        if charts && let Err(error) = &self.helm {
            return Err(DriverError::NeedsHelm(error.clone()));
        }
        std::fs::create_dir_all(&self.out).map_err(|e| io_error("creating", &self.out, e))?;
        Ok(())
    }

    fn is_present(&self, unit: &Unit) -> bool {
        self.instance_dir(unit).is_ok_and(|dir| Self::owns(&dir, &unit.key))
    }

    fn is_local(&self) -> bool {
        true
    }

    fn apply(&self, revision: u64, action: &Action) -> Result<ActionResult, DriverError> {
        match action.op {
            Op::Create | Op::Update => self.write(revision, &action.unit),
            Op::Delete => self.remove(&action.unit),
        }
    }

    /// Every file of the instance's directory (relative path, `/`-separated) → `sha256:` of its
    /// bytes; `None` when the directory is not aptc's rendering of it.
    fn fingerprint(&self, unit: &Unit) -> Option<BTreeMap<String, String>> {
        let dir = self.instance_dir(unit).ok()?;
        if !Self::owns(&dir, &unit.key) {
            return None;
        }
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.clone()];
        while let Some(folder) = stack.pop() {
            for entry in std::fs::read_dir(&folder).ok()? {
                let path = entry.ok()?.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path).ok()?;
                let name = path
                    .strip_prefix(&dir)
                    .ok()?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                files.insert(name, aptc_core::digest::sha256_hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
            }
        }
        Some(files)
    }
}

/// Removes what a write of instance `name` into `parent` left when aptc was killed mid-write
/// (`.NAME.staging-*`, `.NAME.old-*`): the write about to happen replaces it all.
fn remove_leftovers(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let (staging, old) = (format!(".{name}.staging-"), format!(".{name}.old-"));
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file.starts_with(&staging) || file.starts_with(&old) {
            tracing::info!(path = %entry.path().display(), "removing what an interrupted write left");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> DriverError {
    DriverError::Io { what, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::unit;
    use aptc_core::resolve::RenderedFile;

    /// A manifests unit whose rendered files are `files` (path, text).
    fn manifests_unit(files: &[(&str, &str)]) -> Unit {
        let mut unit = unit("local/default/team.svc/dev/web", &[]);
        unit.name = "svc-web-0123456789".into();
        unit.id = "0123456789".into();
        unit.source = Source::Manifests { glob: "k8s/*.yaml".into(), base_dir: "/policy".into() };
        unit.files =
            files.iter().map(|(path, text)| RenderedFile { path: path.to_string(), text: text.to_string() }).collect();
        unit
    }

    fn action(op: Op, unit: Unit) -> Action {
        Action { op, unit, why: "test".into(), after: Vec::new() }
    }

    #[test]
    fn manifests_are_rendered_stamped_and_removed() {
        let out = tempfile::tempdir().unwrap();
        let driver = RenderDriver::new(out.path(), Err(HelmError::NotFound { place: "in this test".into() }));
        let unit = manifests_unit(&[(
            "k8s/config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n",
        )]);
        assert!(!driver.is_present(&unit));
        driver
            .preflight(&Plan { actions: vec![action(Op::Create, unit.clone())], unchanged: vec![], kept: vec![] })
            .unwrap();
        let done = driver.apply(3, &action(Op::Create, unit.clone())).unwrap();
        assert_eq!(done.detail, "2 objects in local/default/svc-web-0123456789");
        let dir = out.path().join("local/default/svc-web-0123456789");
        let text = std::fs::read_to_string(dir.join("manifests/01-config.yaml")).unwrap();
        assert!(text.contains("aptc.dev/instance: \"0123456789\""), "{text}");
        assert!(text.contains("aptc.dev/key: local/default/team.svc/dev/web"), "{text}");
        assert!(text.contains("aptc.dev/revision: \"3\""), "{text}");
        assert!(text.contains("# Source: k8s/config.yaml"), "{text}");
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(INSTANCE_FILE)).unwrap()).unwrap();
        assert_eq!(record["key"], unit.key.as_str());
        assert_eq!(record["objects"], 2);
        assert!(driver.is_present(&unit));
        // Updating replaces the directory whole.
        driver.apply(4, &action(Op::Update, unit.clone())).unwrap();
        assert!(std::fs::read_to_string(dir.join("manifests/01-config.yaml")).unwrap().contains("revision: \"4\""));
        assert_eq!(std::fs::read_dir(dir.parent().unwrap()).unwrap().count(), 1, "no staging directory left behind");
        driver.apply(5, &action(Op::Delete, unit.clone())).unwrap();
        assert!(!dir.exists() && !out.path().join("local").exists(), "empty parents are removed too");
        assert_eq!(
            driver.apply(6, &action(Op::Delete, unit)).unwrap().detail,
            "local/default/svc-web-0123456789 was already gone"
        );
    }

    #[test]
    fn foreign_directories_and_documents_that_are_no_objects_are_refused() {
        let out = tempfile::tempdir().unwrap();
        let driver = RenderDriver::new(out.path(), Err(HelmError::NotFound { place: "in this test".into() }));
        let bad = manifests_unit(&[("k8s/list.yaml", "- a\n- b\n")]);
        let error = driver.apply(1, &action(Op::Create, bad)).unwrap_err();
        assert!(error.to_string().contains("k8s/list.yaml: a document is not a Kubernetes object"), "{error}");
        let unit = manifests_unit(&[("ok.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")]);
        let dir = driver.instance_dir(&unit).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("precious.txt"), "mine").unwrap();
        let error = driver.apply(1, &action(Op::Create, unit.clone())).unwrap_err();
        assert!(error.to_string().contains("is not aptc's rendering"), "{error}");
        assert!(driver.apply(1, &action(Op::Delete, unit)).is_err());
        assert!(dir.join("precious.txt").exists());
    }

    #[test]
    fn a_templated_manifest_is_rendered_from_the_policy_and_stamped() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let policy = root.join("tests/cases/resolve/33_manifests_component");
        let program = aptc_compiler::host::load_program(&[policy], false).unwrap();
        let units = crate::plan::units(&aptc_core::resolve::resolve(&program), &crate::secrets::Secrets::local());
        let unit = units.values().find(|u| u.claims == ["web.with_owner"]).unwrap();
        let out = tempfile::tempdir().unwrap();
        let driver = RenderDriver::new(out.path(), Err(HelmError::NotFound { place: "in this test".into() }));
        assert_eq!(driver.apply(9, &action(Op::Create, unit.clone())).unwrap().detail.split(' ').next(), Some("1"));
        let text =
            std::fs::read_to_string(driver.instance_dir(unit).unwrap().join("manifests/01-configmap.yaml")).unwrap();
        assert!(text.contains(&format!("name: {}", unit.name)), "{text}");
        assert!(text.contains("owner: ada"), "{text}");
        assert!(text.contains("greeting: hello, world"), "{text}");
        assert!(text.contains("literal: ${not.interpolated}"), "{text}");
        assert!(text.contains("length: 12"), "{text}");
        assert!(text.contains("aptc.dev/revision: \"9\""), "{text}");
    }

    #[test]
    fn charts_without_helm_fail_the_preflight_with_the_install_hint() {
        let out = tempfile::tempdir().unwrap();
        let driver = RenderDriver::new(out.path(), Helm::locate(Some(Path::new("/nonexistent/helm"))));
        let plan = Plan { actions: vec![action(Op::Create, unit("k", &[]))], unchanged: vec![], kept: vec![] };
        let error = driver.preflight(&plan).unwrap_err();
        assert!(error.to_string().contains("tools/install-helm.sh"), "{error}");
    }
}
