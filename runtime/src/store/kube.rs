//! The revision store in a namespace of a Kubernetes cluster (`--state kube://CONTEXT/NAMESPACE`),
//! so that the revisions and the journal of a running deploy live in the cluster, shared by every
//! deployer and by aptc's controller.
//!
//! ConfigMaps, not a custom resource: a store needs no CRD installed (installing one takes
//! cluster-wide rights a team deploying into its namespace does not have), RBAC on ConfigMaps in
//! one namespace is all it asks for, and `binaryData` holds the compressed records as they are.
//! Every object carries `app.kubernetes.io/managed-by: aptc` and `aptc.dev/store`:
//!
//! - `aptc-revision-N` (`aptc.dev/store: revision`, `aptc.dev/revision: N`; who, when and why as
//!   annotations, for `kubectl get configmaps -L aptc.dev/revision`): one per revision, `immutable`,
//!   with the [`Revision`], the full desired state and the policy's IR, each as gzip-compressed
//!   JSON in `binaryData`. It is created with a POST, never replaced: two writers recording the
//!   same number cannot both succeed, and the second gets [`StoreError::Conflict`], so no revision
//!   is ever lost or overwritten. Compressed, a record must fit one object ([`LIMIT`] bytes, under
//!   the API server's 1 MiB): past it, [`StoreError::TooLarge`] says to keep that policy's
//!   revisions in a file. JSON compresses about tenfold, so that is a desired state of about
//!   10 MB.
//! - `aptc-journal` (`aptc.dev/store: journal`): the journal of the running deploy (its revision,
//!   plan, desired state and policy, compressed), written by the lock holder before the first
//!   action. It is in force only while the head names its revision (`journal` in the head's
//!   `data`): one left behind by a finished deploy, or written by a deploy killed before it marked
//!   the head (so before any action), is stale and ignored. Kept out of the head so that the
//!   head's frequent writes (every action's report, every lock renewal) stay small.
//! - `aptc-store` (`aptc.dev/store: head`): the store's schema, the policy root, the writer's lock
//!   (`holder`: host, process, since, last renewal, lifetime), the revision of the running deploy's
//!   journal with the reports of its actions, and the last drift check. Every write of it is a replace
//!   with the `resourceVersion` this writer last wrote (optimistic concurrency): a writer whose
//!   lock was taken over gets 409 on its next write and stops writing ([`StoreError::LockLost`]);
//!   two deployers never interleave.
//!
//! The lock: opening for writing takes it when nobody holds it, when its holder's renewal has
//! lapsed ([`LAPSE`] without one; a writer renews every [`RENEW`] from a task of its own), or when
//! its holder is a process of this machine that no longer runs (a killed deploy's lock is taken at
//! once, as a file store's is). Dropping the store releases it. A deploy killed on another machine
//! blocks writers until its lock lapses; its journal is then recovered as a file store's is
//! ([`Store::recover`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};

use super::{DriftRecord, Journal, KubeLocation, Location, Revision, Store, StoreError};
use crate::apply::ActionReport;
use crate::connection::Connection;
use crate::k8s::ops::reason;

/// The layout of a Kubernetes store (its head's `schema`); a newer one is refused.
pub const SCHEMA: u64 = 1;

/// The head object's name.
pub const HEAD: &str = "aptc-store";

/// What an object of the store is: `head` or `revision`.
pub const LABEL_STORE: &str = "aptc.dev/store";

/// A revision object's number.
pub const LABEL_REVISION: &str = "aptc.dev/revision";

/// The most compressed bytes one object holds: the API server refuses a ConfigMap of more than
/// 1 MiB of data, and the rest of the object needs room too.
pub const LIMIT: usize = 1_000_000;

/// How long a writer's lock holds without a renewal.
pub const LAPSE: Duration = Duration::from_secs(60);

/// How often a writer renews its lock.
pub const RENEW: Duration = Duration::from_secs(15);

/// How long connecting waits for the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The keys of the records in `binaryData`.
pub(super) const REVISION: &str = "revision.json.gz";
pub(super) const DESIRED: &str = "desired-state.json.gz";
const PROGRAM: &str = "program.json.gz";
pub(super) const JOURNAL: &str = "journal.json.gz";
/// The journal's object (see the module's documentation).
pub(super) const JOURNAL_OBJECT: &str = "aptc-journal";
/// The head's mark of the journal in force: its revision number.
pub(super) const JOURNAL_MARK: &str = "journal";
pub(super) const REPORTS: &str = "reports.json.gz";
const DRIFT: &str = "drift.json.gz";

/// A revision object's name.
pub(super) fn revision_name(number: u64) -> String {
    format!("aptc-revision-{number}")
}

/// Who holds a store's lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Holder {
    host: String,
    pid: u32,
    /// When it took the lock (RFC 3339), which tells two openings by one process apart.
    since: String,
    /// Its last renewal (RFC 3339).
    renewed: String,
    /// How long the lock holds after a renewal.
    pub(super) lapse_seconds: u64,
}

impl Holder {
    fn me() -> Holder {
        let now = super::now_rfc3339();
        Holder {
            host: hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            pid: std::process::id(),
            since: now.clone(),
            renewed: now,
            lapse_seconds: LAPSE.as_secs(),
        }
    }

    /// Whether nobody holds the lock any more: its renewal lapsed, or it is a process of this
    /// machine that no longer runs.
    pub(super) fn lapsed(&self) -> bool {
        let renewed = humantime::parse_rfc3339(&self.renewed).unwrap_or(SystemTime::UNIX_EPOCH);
        let expired =
            SystemTime::now().duration_since(renewed).is_ok_and(|age| age > Duration::from_secs(self.lapse_seconds));
        let here = hostname::get().is_ok_and(|h| h.to_string_lossy() == self.host.as_str());
        expired || (here && !crate::private_dir::is_running(self.pid))
    }

    /// For people: `pid 42 on host ci-7, since …, renewed …`.
    pub(super) fn describe(&self) -> String {
        format!("pid {} on host {}, since {}, renewed {}", self.pid, self.host, self.since, self.renewed)
    }
}

/// The reports the running deploy journaled.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Reports {
    number: u64,
    by_index: BTreeMap<usize, ActionReport>,
}

/// A store in a namespace of a cluster (see the module docs). Its requests run on a small runtime
/// of its own; its methods block, as a file store's do.
pub struct KubeStore {
    location: Location,
    runtime: tokio::runtime::Runtime,
    api: Api<ConfigMap>,
    /// Set when opened for writing.
    writer: Option<Writer>,
}

/// What a writer holds: the lock, renewed by a task.
struct Writer {
    shared: Arc<Shared>,
    renewal: tokio::task::JoinHandle<()>,
    created: bool,
}

/// A writer's head, shared with its renewal task.
struct Shared {
    location: Location,
    api: Api<ConfigMap>,
    me: Holder,
    /// The head as this writer last wrote it (its `resourceVersion` the precondition of the next
    /// write), or why the lock was lost.
    head: tokio::sync::Mutex<Result<ConfigMap, String>>,
}

impl KubeStore {
    /// Opens the store in `kube`'s namespace for writing, taking its lock (see the module docs);
    /// the head is created when there is none.
    pub fn open(location: &Location, kube: &KubeLocation) -> Result<KubeStore, StoreError> {
        let (runtime, api) = connect(location, kube)?;
        let me = Holder::me();
        let (head, created) = runtime.block_on(acquire(location, &api, &me))?;
        let shared = Arc::new(Shared {
            location: location.clone(),
            api: api.clone(),
            me,
            head: tokio::sync::Mutex::new(Ok(head)),
        });
        let renewal = runtime.spawn(renew(shared.clone()));
        Ok(KubeStore { location: location.clone(), runtime, api, writer: Some(Writer { shared, renewal, created }) })
    }

    /// Opens the store in `kube`'s namespace for reading only; `None` when it has no head (nothing
    /// was ever written there).
    pub fn open_read(location: &Location, kube: &KubeLocation) -> Result<Option<KubeStore>, StoreError> {
        let (runtime, api) = connect(location, kube)?;
        let store = KubeStore { location: location.clone(), runtime, api, writer: None };
        match store.head()? {
            Some(head) => {
                check_schema(location, &head)?;
                Ok(Some(store))
            }
            None => Ok(None),
        }
    }

    fn error(&self, action: &str, error: &kube::Error) -> StoreError {
        kube_error(&self.location, action, error)
    }

    fn head(&self) -> Result<Option<ConfigMap>, StoreError> {
        self.runtime.block_on(self.api.get_opt(HEAD)).map_err(|e| self.error("reading the store's head", &e))
    }

    fn shared(&self) -> Result<&Shared, StoreError> {
        match &self.writer {
            Some(writer) => Ok(&writer.shared),
            None => Err(StoreError::ReadOnly { store: self.location.clone() }),
        }
    }

    /// Every revision object, by number.
    fn revisions(&self) -> Result<BTreeMap<u64, ConfigMap>, StoreError> {
        let params = ListParams::default().labels(&format!("{LABEL_STORE}=revision"));
        let list =
            self.runtime.block_on(self.api.list(&params)).map_err(|e| self.error("listing the revisions", &e))?;
        list.items.into_iter().map(|object| Ok((self.number_of(&object.metadata)?, object))).collect()
    }

    /// The numbers of the revision objects, from their metadata only: a list with their data
    /// would carry every revision's desired state, and `last`, `len` and `next_number` run at
    /// every deploy, so a step's cost would grow with the history.
    fn revision_numbers(&self) -> Result<BTreeSet<u64>, StoreError> {
        let params = ListParams::default().labels(&format!("{LABEL_STORE}=revision"));
        let list = self
            .runtime
            .block_on(self.api.list_metadata(&params))
            .map_err(|e| self.error("listing the revisions", &e))?;
        list.items.iter().map(|object| self.number_of(&object.metadata)).collect()
    }

    /// A revision object's number, from its label.
    fn number_of(&self, metadata: &ObjectMeta) -> Result<u64, StoreError> {
        let number = metadata.labels.as_ref().and_then(|labels| labels.get(LABEL_REVISION));
        number.and_then(|n| n.parse::<u64>().ok()).ok_or_else(|| {
            let name = metadata.name.clone().unwrap_or_default();
            self.corrupt(format!("{name} has no revision number ({LABEL_REVISION})"))
        })
    }

    fn revision_object(&self, number: u64) -> Result<Option<ConfigMap>, StoreError> {
        self.runtime
            .block_on(self.api.get_opt(&revision_name(number)))
            .map_err(|e| self.error(&format!("reading revision {number}"), &e))
    }

    fn corrupt(&self, part: String) -> StoreError {
        StoreError::Corrupt { store: self.location.clone(), part }
    }

    /// Record `key` of `object` (`part` names it in errors), decoded; `None` when absent.
    fn record<T: serde::de::DeserializeOwned>(
        &self,
        object: &ConfigMap,
        key: &str,
        part: &str,
    ) -> Result<Option<T>, StoreError> {
        decode(object, key).map_err(|why| self.corrupt(format!("{part} cannot be read ({why})")))
    }

    fn decode_revision(&self, number: u64, object: &ConfigMap) -> Result<Revision, StoreError> {
        let part = format!("revision {number}");
        self.record(object, REVISION, &part)?.ok_or_else(|| self.corrupt(format!("{part} has no record")))
    }

    /// Changes the head as its lock holder (renewing the lock), with this writer's last
    /// `resourceVersion` as the precondition.
    fn update(&self, change: impl FnOnce(&mut ConfigMap) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let shared = self.shared()?;
        self.runtime.block_on(shared.update(change))
    }
}

impl Shared {
    async fn update(&self, change: impl FnOnce(&mut ConfigMap) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut head = self.head.lock().await;
        let current = match &*head {
            Ok(current) => current,
            Err(why) => return Err(StoreError::LockLost { store: self.location.clone(), why: why.clone() }),
        };
        let mut next = current.clone();
        change(&mut next)?;
        let mut renewed = self.me.clone();
        renewed.renewed = super::now_rfc3339();
        set_holder(&mut next, Some(&renewed));
        let size: usize = next.binary_data.iter().flatten().map(|(_, bytes)| bytes.0.len()).sum();
        if size > LIMIT {
            return Err(StoreError::TooLarge {
                store: self.location.clone(),
                what: "the reports of this deploy's actions and the last drift check".into(),
                size,
                limit: LIMIT,
            });
        }
        match self.api.replace(HEAD, &PostParams::default(), &next).await {
            Ok(written) => {
                *head = Ok(written);
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                let why = match self.api.get_opt(HEAD).await.ok().flatten().and_then(|h| holder(&h)) {
                    Some(other) => format!("now held by {}", other.describe()),
                    None => "its lock object changed".to_string(),
                };
                *head = Err(why.clone());
                Err(StoreError::LockLost { store: self.location.clone(), why })
            }
            Err(error) => Err(kube_error(&self.location, "writing the store's head", &error)),
        }
    }
}

/// Renews the lock every [`RENEW`] until it is lost (or the store is dropped, which aborts it).
async fn renew(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(RENEW).await;
        match shared.update(|_| Ok(())).await {
            Ok(()) => {}
            Err(error @ StoreError::LockLost { .. }) => {
                tracing::error!(%error, "the store's lock");
                return;
            }
            Err(error) => tracing::warn!(%error, "renewing the store's lock; trying again"),
        }
    }
}

/// Takes the lock of the store (creating its head when there is none): the head and whether it
/// was created.
async fn acquire(location: &Location, api: &Api<ConfigMap>, me: &Holder) -> Result<(ConfigMap, bool), StoreError> {
    let failed = |action: &str, error: &kube::Error| kube_error(location, action, error);
    for _ in 0..8 {
        let Some(mut head) = api.get_opt(HEAD).await.map_err(|e| failed("reading the store's head", &e))? else {
            let mut head = ConfigMap {
                metadata: ObjectMeta { name: Some(HEAD.into()), labels: Some(labels("head")), ..ObjectMeta::default() },
                data: Some(BTreeMap::from([("schema".to_string(), SCHEMA.to_string())])),
                ..ConfigMap::default()
            };
            set_holder(&mut head, Some(me));
            match api.create(&PostParams::default(), &head).await {
                Ok(head) => return Ok((head, true)),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    return Err(StoreError::Kube {
                        store: location.clone(),
                        action: "creating the store's head".into(),
                        reason: format!(
                            "there is no namespace `{}`: aptc does not create it (kubectl create namespace {})",
                            api_namespace(location),
                            api_namespace(location)
                        ),
                    });
                }
                Err(error) => return Err(failed("creating the store's head", &error)),
            }
        };
        check_schema(location, &head)?;
        if let Some(other) = holder(&head).filter(|h| !h.lapsed()) {
            return Err(StoreError::Held {
                store: location.clone(),
                holder: other.describe(),
                lapse: other.lapse_seconds,
            });
        }
        if let Some(old) = holder(&head) {
            tracing::info!(holder = %old.describe(), "taking over the lock of a stopped aptc");
        }
        set_holder(&mut head, Some(me));
        match api.replace(HEAD, &PostParams::default(), &head).await {
            Ok(head) => return Ok((head, false)),
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => continue,
            Err(error) => return Err(failed("taking the store's lock", &error)),
        }
    }
    let holder = api.get_opt(HEAD).await.ok().flatten().and_then(|h| holder(&h));
    Err(StoreError::Held {
        store: location.clone(),
        holder: holder.map_or("others kept taking it".into(), |h| h.describe()),
        lapse: LAPSE.as_secs(),
    })
}

impl Drop for KubeStore {
    /// Stops renewing and releases the lock (when this writer still holds it).
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else { return };
        writer.renewal.abort();
        let shared = writer.shared;
        self.runtime.block_on(async move {
            let mut head = shared.head.lock().await;
            let Ok(current) = &*head else { return };
            let mut released = current.clone();
            set_holder(&mut released, None);
            if let Err(error) = shared.api.replace(HEAD, &PostParams::default(), &released).await {
                tracing::warn!(error = %reason(&error), "releasing the store's lock (it lapses by itself)");
            }
            *head = Err("released".into());
        });
    }
}

impl Store for KubeStore {
    fn location(&self) -> &Location {
        &self.location
    }

    fn is_writable(&self) -> bool {
        self.writer.is_some()
    }

    fn created(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| w.created)
    }

    fn discard(self: Box<Self>) -> Result<(), StoreError> {
        if !self.created() || !self.is_empty()? || self.pending()?.is_some() {
            return Ok(());
        }
        let shared = self.shared()?;
        let version = self.runtime.block_on(async { shared.head.lock().await.as_ref().ok().cloned() });
        let Some(version) = version.and_then(|h| h.metadata.resource_version) else { return Ok(()) };
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions { resource_version: Some(version), uid: None }),
            ..kube::api::DeleteParams::default()
        };
        self.runtime
            .block_on(self.api.delete(HEAD, &params))
            .map_err(|e| self.error("removing the store's head", &e))?;
        // Nothing left to release.
        self.runtime.block_on(async { *shared.head.lock().await = Err("removed".into()) });
        Ok(())
    }

    fn policy_root(&self) -> Result<Option<PathBuf>, StoreError> {
        Ok(self.head()?.and_then(|head| head.data?.get("policyRoot").map(PathBuf::from)))
    }

    fn set_policy_root(&self, root: &Path) -> Result<(), StoreError> {
        let root = root.to_string_lossy().into_owned();
        self.update(|head| {
            head.data.get_or_insert_default().insert("policyRoot".into(), root);
            Ok(())
        })
    }

    fn list(&self) -> Result<Vec<Revision>, StoreError> {
        self.revisions()?.iter().map(|(number, object)| self.decode_revision(*number, object)).collect()
    }

    fn get(&self, number: u64) -> Result<Option<Revision>, StoreError> {
        self.revision_object(number)?.map(|object| self.decode_revision(number, &object)).transpose()
    }

    fn last(&self) -> Result<Option<Revision>, StoreError> {
        let Some(number) = self.revision_numbers()?.last().copied() else { return Ok(None) };
        // Gone between the list and the get: only `discard` deletes revisions.
        let object = self.revision_object(number)?.ok_or_else(|| self.corrupt(format!("revision {number} is gone")))?;
        self.decode_revision(number, &object).map(Some)
    }

    fn next_number(&self) -> Result<u64, StoreError> {
        Ok(self.revision_numbers()?.last().map_or(1, |number| number + 1))
    }

    fn len(&self) -> Result<u64, StoreError> {
        Ok(self.revision_numbers()?.len() as u64)
    }

    fn recorded_state(&self, number: u64) -> Result<Option<serde_json::Value>, StoreError> {
        let Some(object) = self.revision_object(number)? else { return Ok(None) };
        self.record(&object, DESIRED, &format!("the desired state of revision {number}"))
    }

    fn program(&self, number: u64) -> Result<Option<aptc_core::ir::Program>, StoreError> {
        let Some(object) = self.revision_object(number)? else { return Ok(None) };
        let part = format!("the policy of revision {number}");
        let Some(bytes) =
            unzip(&object, PROGRAM).map_err(|why| self.corrupt(format!("{part} cannot be read ({why})")))?
        else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|e| self.corrupt(format!("{part} cannot be read ({e})")))?;
        aptc_core::ir::Program::from_json(&text)
            .map(Some)
            .map_err(|e| self.corrupt(format!("{part} cannot be read ({e})")))
    }

    fn record_with_program(
        &self,
        revision: &Revision,
        desired_state: &serde_json::Value,
        program: Option<&aptc_core::ir::Program>,
    ) -> Result<(), StoreError> {
        self.shared()?;
        let number = revision.number;
        let next = self.next_number()?;
        if number != next {
            return Err(StoreError::OutOfOrder { store: self.location.clone(), number, next });
        }
        let mut data = BTreeMap::from([
            (REVISION.to_string(), self.zip(revision, "a revision")?),
            (DESIRED.to_string(), self.zip(desired_state, "a revision")?),
        ]);
        if let Some(program) = program {
            data.insert(PROGRAM.to_string(), ByteString(gzip(program.to_json().as_bytes())));
        }
        let size: usize = data.values().map(|b| b.0.len()).sum();
        if size > LIMIT {
            return Err(StoreError::TooLarge {
                store: self.location.clone(),
                what: format!("revision {number}"),
                size,
                limit: LIMIT,
            });
        }
        let mut labels = labels("revision");
        labels.insert(LABEL_REVISION.into(), number.to_string());
        let annotations = BTreeMap::from([
            ("aptc.dev/user".to_string(), revision.user.clone()),
            ("aptc.dev/time".to_string(), revision.time.clone()),
            ("aptc.dev/cause".to_string(), revision.cause_text()),
        ]);
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some(revision_name(number)),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            immutable: Some(true),
            binary_data: Some(data),
            ..ConfigMap::default()
        };
        // Renewing first proves the lock is still this writer's: one taken over records nothing.
        self.update(|_| Ok(()))?;
        match self.runtime.block_on(self.api.create(&PostParams::default(), &object)) {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {
                return Err(StoreError::Conflict { store: self.location.clone(), number });
            }
            Err(error) => return Err(self.error(&format!("recording revision {number}"), &error)),
        }
        self.forget_journal(number)
    }

    fn write_journal(&self, journal: &Journal) -> Result<(), StoreError> {
        let number = journal.revision.number;
        let bytes = self.zip(journal, "a journal")?;
        if bytes.0.len() > LIMIT {
            return Err(StoreError::TooLarge {
                store: self.location.clone(),
                what: format!("the journal of revision {number}"),
                size: bytes.0.len(),
                limit: LIMIT,
            });
        }
        let reports = self.zip(&Reports { number, by_index: BTreeMap::new() }, "a journal")?;
        // Renewing first proves the lock is still this writer's, then the journal, then the mark
        // that puts it in force (a journal without the mark is stale: no action ran under it).
        self.update(|_| Ok(()))?;
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some(JOURNAL_OBJECT.into()),
                labels: Some(labels("journal")),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(JOURNAL.to_string(), bytes)])),
            ..ConfigMap::default()
        };
        let written = match self.runtime.block_on(self.api.create(&PostParams::default(), &object)) {
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.runtime.block_on(self.api.replace(JOURNAL_OBJECT, &PostParams::default(), &object))
            }
            other => other,
        };
        written.map_err(|e| self.error(&format!("writing the journal of revision {number}"), &e))?;
        self.update(|head| {
            head.data.get_or_insert_default().insert(JOURNAL_MARK.into(), number.to_string());
            let data = head.binary_data.get_or_insert_default();
            data.remove(JOURNAL);
            data.insert(REPORTS.into(), reports);
            Ok(())
        })
    }

    fn journal_report(&self, number: u64, index: usize, report: &ActionReport) -> Result<(), StoreError> {
        let location = self.location.clone();
        self.update(|head| {
            let corrupt = |why: String| StoreError::Corrupt {
                store: location.clone(),
                part: format!("the journal's reports cannot be read ({why})"),
            };
            let mut reports: Reports = decode(head, REPORTS).map_err(corrupt)?.unwrap_or_default();
            if reports.number != number {
                reports = Reports { number, by_index: BTreeMap::new() };
            }
            reports.by_index.insert(index, report.clone());
            let bytes = serde_json::to_vec(&reports).map_err(|source| StoreError::Encode {
                what: "a journal",
                store: location.clone(),
                source,
            })?;
            head.binary_data.get_or_insert_default().insert(REPORTS.into(), ByteString(gzip(&bytes)));
            Ok(())
        })
    }

    fn record_drift(&self, record: &DriftRecord) -> Result<(), StoreError> {
        let bytes = self.zip(record, "a drift check")?;
        self.update(|head| {
            head.binary_data.get_or_insert_default().insert(DRIFT.into(), bytes);
            Ok(())
        })
    }

    fn last_drift(&self) -> Result<Option<DriftRecord>, StoreError> {
        let Some(head) = self.head()? else { return Ok(None) };
        self.record(&head, DRIFT, "the last drift check")
    }

    fn pending(&self) -> Result<Option<Journal>, StoreError> {
        let Some(head) = self.head()? else { return Ok(None) };
        let Some(mark) = journal_mark(&head) else {
            // A journal in the head itself, as stores written before the journal's own object.
            return self.record(&head, JOURNAL, "the journal");
        };
        let number = mark.map_err(|why| self.corrupt(why))?;
        let object = self
            .runtime
            .block_on(self.api.get_opt(JOURNAL_OBJECT))
            .map_err(|e| self.error("reading the journal", &e))?
            .ok_or_else(|| self.corrupt(format!("the journal of revision {number} is gone ({JOURNAL_OBJECT})")))?;
        let journal: Journal = self
            .record(&object, JOURNAL, "the journal")?
            .ok_or_else(|| self.corrupt(format!("{JOURNAL_OBJECT} holds no journal")))?;
        if journal.revision.number != number {
            return Err(self.corrupt(format!(
                "{JOURNAL_OBJECT} holds the journal of revision {}, the head names revision {number}",
                journal.revision.number
            )));
        }
        Ok(Some(journal))
    }

    fn journaled_reports(&self, journal: &Journal) -> Result<Vec<Option<ActionReport>>, StoreError> {
        let mut out: Vec<Option<ActionReport>> = vec![None; journal.plan.actions.len()];
        let Some(head) = self.head()? else { return Ok(out) };
        let Some(reports) = self.record::<Reports>(&head, REPORTS, "the journal's reports")? else { return Ok(out) };
        if reports.number == journal.revision.number {
            for (index, report) in reports.by_index {
                if let Some(slot) = out.get_mut(index) {
                    *slot = Some(report);
                }
            }
        }
        Ok(out)
    }

    fn forget_journal(&self, number: u64) -> Result<(), StoreError> {
        let location = self.location.clone();
        self.update(|head| {
            let journaled = match journal_mark(head) {
                Some(Ok(marked)) => Some(marked),
                Some(Err(_)) => None,
                // A journal in the head itself (an older store's): only its revision number; the
                // whole journal (its desired state, the policy) was a tenth of the controller's
                // peak memory at 10,000 claims.
                None => decode::<JournaledNumber>(head, JOURNAL)
                    .map_err(|why| StoreError::Corrupt {
                        store: location.clone(),
                        part: format!("the journal cannot be read ({why})"),
                    })?
                    .map(|j| j.revision.number),
            };
            if journaled == Some(number) {
                if let Some(data) = head.data.as_mut() {
                    data.remove(JOURNAL_MARK);
                }
                if let Some(data) = head.binary_data.as_mut() {
                    data.remove(JOURNAL);
                    data.remove(REPORTS);
                }
            }
            Ok(())
        })
        // The journal's object stays, stale without the mark, until the next deploy replaces it.
        // (Removing it would cost the writer's role `delete` on ConfigMaps, for no gain.)
    }
}

/// The part of a [`Journal`] that says which revision it is.
#[derive(Deserialize)]
pub(super) struct JournaledNumber {
    pub(super) revision: RevisionNumber,
}

/// A revision's number, the rest of it skipped.
#[derive(Deserialize)]
pub(super) struct RevisionNumber {
    pub(super) number: u64,
}

impl KubeStore {
    fn zip(&self, value: &impl Serialize, what: &'static str) -> Result<ByteString, StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            what,
            store: self.location.clone(),
            source,
        })?;
        Ok(ByteString(gzip(&bytes)))
    }
}

/// A stamp of the store's objects (see [`Location::stamp`]): their number and newest
/// `resourceVersion`.
pub(super) fn stamp(location: &Location, kube: &KubeLocation) -> Result<String, StoreError> {
    let (runtime, api) = connect(location, kube)?;
    let list = runtime
        .block_on(api.list_metadata(&ListParams::default().labels(LABEL_STORE)))
        .map_err(|e| kube_error(location, "listing the store", &e))?;
    let newest = list
        .items
        .iter()
        .filter_map(|o| o.metadata.resource_version.as_deref()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    Ok(format!("{}:{newest}", list.items.len()))
}

/// The namespace of a Kubernetes location.
fn api_namespace(location: &Location) -> &str {
    match location {
        Location::Kube(kube) => &kube.namespace,
        Location::File(_) => "",
    }
}

/// The labels of every object of the store.
fn labels(what: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_string(), "aptc".to_string()),
        (LABEL_STORE.to_string(), what.to_string()),
    ])
}

/// The revision whose journal is in force, as the head's mark names it; `None` without a mark
/// (no deploy running, or an older store's journal in the head itself).
pub(super) fn journal_mark(head: &ConfigMap) -> Option<Result<u64, String>> {
    let mark = head.data.as_ref()?.get(JOURNAL_MARK)?;
    Some(mark.parse().map_err(|_| format!("the journal's mark in {HEAD}, `{mark}`, is no revision number")))
}

pub(super) fn holder(head: &ConfigMap) -> Option<Holder> {
    serde_json::from_str(head.data.as_ref()?.get("holder")?).ok()
}

fn set_holder(head: &mut ConfigMap, holder: Option<&Holder>) {
    let data = head.data.get_or_insert_default();
    match holder.and_then(|h| serde_json::to_string(h).ok()) {
        Some(text) => data.insert("holder".into(), text),
        None => data.remove("holder"),
    };
}

pub(super) fn check_schema(location: &Location, head: &ConfigMap) -> Result<(), StoreError> {
    let found = head.data.as_ref().and_then(|d| d.get("schema")).cloned().unwrap_or_default();
    match found.parse::<u64>() {
        Ok(schema) if schema <= SCHEMA => Ok(()),
        _ => Err(StoreError::KubeSchema { store: location.clone(), found }),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// `binaryData[key]` of `object`, decompressed; `None` when absent.
fn unzip(object: &ConfigMap, key: &str) -> Result<Option<Vec<u8>>, String> {
    let Some(bytes) = object.binary_data.as_ref().and_then(|d| d.get(key)) else { return Ok(None) };
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes.0.as_slice()).read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(Some(out))
}

/// `binaryData[key]` of `object`, decompressed and decoded from JSON; `None` when absent.
pub(super) fn decode<T: serde::de::DeserializeOwned>(object: &ConfigMap, key: &str) -> Result<Option<T>, String> {
    match unzip(object, key)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

pub(super) fn kube_error(location: &Location, action: &str, error: &kube::Error) -> StoreError {
    StoreError::Kube { store: location.clone(), action: action.to_string(), reason: reason(error) }
}

/// A runtime and the ConfigMaps of `kube`'s namespace: the kubeconfig and context it names, else
/// the ambient kubeconfig, else (none, and no context named) the in-cluster service account.
pub(super) fn connect(
    location: &Location,
    kube: &KubeLocation,
) -> Result<(tokio::runtime::Runtime, Api<ConfigMap>), StoreError> {
    let failed =
        |action: &str, reason: String| StoreError::Kube { store: location.clone(), action: action.into(), reason };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("aptc-store")
        .enable_all()
        .build()
        .map_err(|e| failed("starting the Kubernetes client", e.to_string()))?;
    let connection = Connection {
        cluster: location.to_string(),
        kubeconfig: kube.kubeconfig.clone(),
        context: kube.context.clone(),
        origin: None,
    };
    let path = connection.kubeconfig_path();
    let api = runtime.block_on(async {
        let config = if kube.kubeconfig.is_none() && kube.context.is_none() && !path.is_file() {
            Config::incluster().map_err(|e| {
                failed("finding the cluster", format!("no kubeconfig at {} and not in a cluster ({e})", path.display()))
            })?
        } else {
            let reading = format!("reading the kubeconfig {}", path.display());
            let kubeconfig = Kubeconfig::read_from(&path).map_err(|e| failed(&reading, crate::k8s::ops::chain(&e)))?;
            let options = KubeConfigOptions { context: kube.context.clone(), ..KubeConfigOptions::default() };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| failed(&reading, crate::k8s::ops::chain(&e)))?
        };
        let client =
            kube::Client::try_from(config).map_err(|e| failed("making a client", crate::k8s::ops::chain(&e)))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
            Err(_) => Err(failed("connecting", format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
            Ok(Err(error)) => Err(failed("connecting", reason(&error))),
            Ok(Ok(_)) => Ok(Api::namespaced(client, &kube.namespace)),
        }
    })?;
    Ok((runtime, api))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_compressed_and_damage_is_reported() {
        let value = serde_json::json!({ "a": "x".repeat(10_000) });
        let mut object = ConfigMap::default();
        object
            .binary_data
            .get_or_insert_default()
            .insert(DESIRED.into(), ByteString(gzip(&serde_json::to_vec(&value).unwrap())));
        assert!(object.binary_data.as_ref().unwrap()[DESIRED].0.len() < 1_000, "compressed");
        assert_eq!(decode::<serde_json::Value>(&object, DESIRED).unwrap().unwrap(), value);
        assert!(decode::<serde_json::Value>(&object, REVISION).unwrap().is_none());
        object.binary_data.get_or_insert_default().insert(REVISION.into(), ByteString(b"not gzip".to_vec()));
        assert!(decode::<serde_json::Value>(&object, REVISION).is_err());
    }

    #[test]
    fn a_lock_lapses_without_renewal_or_when_its_process_is_gone() {
        let mut holder = Holder::me();
        assert!(!holder.lapsed(), "this process holds it");
        holder.pid = 99_999_999;
        assert!(holder.lapsed(), "a process of this machine that no longer runs");
        let mut elsewhere = Holder::me();
        elsewhere.host = "another-machine".into();
        elsewhere.pid = 99_999_999;
        assert!(!elsewhere.lapsed(), "another machine's process is not looked for");
        elsewhere.renewed = "2020-01-01T00:00:00Z".into();
        assert!(elsewhere.lapsed(), "not renewed for longer than its lifetime");
    }
}
