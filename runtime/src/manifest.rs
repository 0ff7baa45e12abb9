//! Kubernetes object streams: multi-document YAML read into JSON values, stamped with aptc's
//! labels and annotations, and written back, keeping the document order and Helm's
//! `# Source:` comments.
//!
//! Every object aptc applies carries:
//!
//! | where | key | value |
//! | --- | --- | --- |
//! | label | `aptc.dev/instance` | the instance id (a short hash of the instance key) |
//! | label | `aptc.dev/revision` | the revision that applied it |
//! | label | `aptc.dev/namespace` | the policy namespace that owns the service |
//! | annotation | `aptc.dev/key` | the instance key |
//!
//! Only the objects' own metadata is stamped, never pod templates: a revision label there would
//! restart every pod at every revision.

use serde_json::{Map, Value};

use crate::plan::Unit;

pub const LABEL_INSTANCE: &str = "aptc.dev/instance";
pub const LABEL_REVISION: &str = "aptc.dev/revision";
pub const LABEL_NAMESPACE: &str = "aptc.dev/namespace";
pub const ANNOTATION_KEY: &str = "aptc.dev/key";

/// One YAML document of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Helm's `# Source: chart/templates/x.yaml` comment (without `# Source: `), if any.
    pub source: Option<String>,
    pub value: Value,
}

/// What every object of an instance is stamped with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub instance_id: String,
    pub instance_key: String,
    pub revision: u64,
    pub namespace: String,
}

impl Stamp {
    /// What `unit`'s objects are stamped with when `revision` applies them.
    pub fn of(unit: &Unit, revision: u64) -> Stamp {
        Stamp {
            instance_id: unit.id.clone(),
            instance_key: unit.key.clone(),
            revision,
            namespace: unit.namespace.clone(),
        }
    }
}

/// A YAML stream or a document in it that cannot be read, stamped or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A document is not valid YAML.
    #[error("the YAML document at line {line} does not parse: {source}")]
    Parse {
        line: usize,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A document is not a mapping (`found` is its start, for the message).
    #[error("a document is not a Kubernetes object (a YAML mapping): {found}")]
    NotAnObject { found: String },
    /// A mapping without `kind` (`found` is its start).
    #[error("a document has no `kind`: {found}")]
    NoKind { found: String },
    /// An object cannot be written as YAML.
    #[error("writing YAML: {0}")]
    Write(#[from] serde_saphyr::SerializeError),
    /// One of the above, in a unit's manifest file `path`.
    #[error("{path}: {source}")]
    InFile {
        path: String,
        #[source]
        source: Box<ManifestError>,
    },
    /// One of the above, in what a tool (`helm`) printed: `what` says which output.
    #[error("reading {what}: {source}")]
    Output {
        what: &'static str,
        #[source]
        source: Box<ManifestError>,
    },
}

impl ManifestError {
    /// This error, in `what` (a tool's output: `Helm's manifests`).
    pub fn in_output(self, what: &'static str) -> ManifestError {
        ManifestError::Output { what, source: Box::new(self) }
    }
}

/// The documents of a multi-document YAML stream, in order; empty documents (only comments or
/// nothing) are dropped.
///
/// The stream is split at document markers (`---` at the start of a line, which YAML forbids
/// inside any scalar), and each document is parsed on its own, so a comment `# Source: …` right
/// after a marker stays with its document.
pub fn parse_stream(text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut documents = Vec::new();
    for chunk in aptc_core::manifest::documents(text) {
        let (line, chunk) = (chunk.line, chunk.text);
        let source = chunk.lines().find_map(|l| l.strip_prefix("# Source: ")).map(|s| s.trim().to_string());
        let value: Option<Value> =
            serde_saphyr::from_str(&chunk).map_err(|e| ManifestError::Parse { line, source: Box::new(e) })?;
        match value {
            None | Some(Value::Null) => {}
            Some(value) => documents.push(Document { source, value }),
        }
    }
    Ok(documents)
}

/// The objects a manifests unit applies at `revision`: the documents of its rendered files, in
/// order, each with its file as `source` and stamped. Secrets in them are still placeholders
/// ([`aptc_core::secret::placeholder`]): the driver reveals or redacts them.
pub fn unit_documents(unit: &Unit, revision: u64) -> Result<Vec<Document>, ManifestError> {
    let with = Stamp::of(unit, revision);
    let mut out = Vec::new();
    for file in &unit.files {
        let in_file = |e| ManifestError::InFile { path: file.path.clone(), source: Box::new(e) };
        let mut documents = parse_stream(&file.text).map_err(in_file)?;
        stamp_all(&mut documents, &with).map_err(in_file)?;
        for mut document in documents {
            document.source = Some(file.path.clone());
            out.push(document);
        }
    }
    Ok(out)
}

/// Stamps every document's object (see [`stamp`]).
pub fn stamp_all(documents: &mut [Document], with: &Stamp) -> Result<(), ManifestError> {
    documents.iter_mut().try_for_each(|document| stamp(&mut document.value, with))
}

/// The documents as one YAML stream: each preceded by `---` and its `# Source:` comment.
pub fn write_stream(documents: &[Document]) -> Result<String, ManifestError> {
    let mut out = String::new();
    for document in documents {
        out.push_str("---\n");
        if let Some(source) = &document.source {
            out.push_str(&format!("# Source: {source}\n"));
        }
        let text = serde_saphyr::to_string(&document.value)?;
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Adds aptc's labels and annotation to a Kubernetes object (and to the items of a `…List`).
/// A document that is not an object with a `kind` is an error.
pub fn stamp(value: &mut Value, stamp: &Stamp) -> Result<(), ManifestError> {
    let Value::Object(object) = value else {
        return Err(ManifestError::NotAnObject { found: short(value) });
    };
    let kind = object.get("kind").and_then(Value::as_str).map(str::to_string);
    let Some(kind) = kind else {
        return Err(ManifestError::NoKind { found: short(value) });
    };
    if kind.ends_with("List")
        && let Some(Value::Array(items)) = object.get_mut("items")
    {
        for item in items {
            self::stamp(item, stamp)?;
        }
    }
    let metadata = entry_object(object, "metadata");
    let labels = entry_object(metadata, "labels");
    labels.insert(LABEL_INSTANCE.into(), Value::String(stamp.instance_id.clone()));
    labels.insert(LABEL_REVISION.into(), Value::String(stamp.revision.to_string()));
    labels.insert(LABEL_NAMESPACE.into(), Value::String(stamp.namespace.clone()));
    let annotations = entry_object(metadata, "annotations");
    annotations.insert(ANNOTATION_KEY.into(), Value::String(stamp.instance_key.clone()));
    Ok(())
}

/// The object at `key`, made one if it is missing or not an object (`labels: null`).
fn entry_object<'m>(map: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("made an object above")
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 { format!("{}…", text.chars().take(80).collect::<String>()) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELM: &str = "---\n# Source: hello/templates/service.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels:\n    app: x\nspec:\n  ports:\n    - port: 80\n---\n# Source: hello/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\ndata:\n  script: |\n    echo ---\n    echo done\n---\n# Source: hello/templates/empty.yaml\n";

    fn stamp_of() -> Stamp {
        Stamp {
            instance_id: "abc123".into(),
            instance_key: "local/ns/a.b/dev/web".into(),
            revision: 7,
            namespace: "team".into(),
        }
    }

    #[test]
    fn streams_keep_order_and_sources_and_drop_empty_documents() {
        let docs = parse_stream(HELM).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].source.as_deref(), Some("hello/templates/service.yaml"));
        assert_eq!(docs[1].value["kind"], "Deployment");
        assert_eq!(docs[1].value["data"]["script"], "echo ---\necho done\n");
        let again = parse_stream(&write_stream(&docs).unwrap()).unwrap();
        assert_eq!(again, docs);
    }

    #[test]
    fn every_object_is_stamped_and_existing_labels_stay() {
        let mut docs = parse_stream(HELM).unwrap();
        for doc in &mut docs {
            stamp(&mut doc.value, &stamp_of()).unwrap();
        }
        let labels = &docs[0].value["metadata"]["labels"];
        assert_eq!(labels["app"], "x");
        assert_eq!(labels[LABEL_INSTANCE], "abc123");
        assert_eq!(labels[LABEL_REVISION], "7");
        assert_eq!(labels[LABEL_NAMESPACE], "team");
        assert_eq!(docs[1].value["metadata"]["annotations"][ANNOTATION_KEY], "local/ns/a.b/dev/web");
        let text = write_stream(&docs).unwrap();
        assert!(text.contains("aptc.dev/revision: \"7\""), "{text}");
    }

    #[test]
    fn lists_are_stamped_item_by_item_and_non_objects_are_refused() {
        let mut list: Value = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMapList",
            "items": [{ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "a", "labels": null } }]
        });
        stamp(&mut list, &stamp_of()).unwrap();
        assert_eq!(list["items"][0]["metadata"]["labels"][LABEL_INSTANCE], "abc123");
        assert!(
            stamp(&mut serde_json::json!(["x"]), &stamp_of())
                .unwrap_err()
                .to_string()
                .contains("not a Kubernetes object")
        );
        assert!(stamp(&mut serde_json::json!({ "a": 1 }), &stamp_of()).unwrap_err().to_string().contains("no `kind`"));
    }

    #[test]
    fn a_bad_document_is_an_error() {
        assert!(parse_stream("a: [1\n").unwrap_err().to_string().contains("does not parse"));
    }
}
