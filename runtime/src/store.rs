//! The revision store: every deploy is a revision. [`Store`] is what deploys, rollbacks,
//! `history` and the dashboard ask of a store, with two backends chosen by [`Location`]
//! (`--state`): [`FileStore`], one embedded, transactional file (redb; `.aptc/state.db` under the
//! policy root by default), described below, and [`KubeStore`], ConfigMaps in a namespace of a
//! cluster (`kube://CONTEXT/NAMESPACE`; see `store::kube`).
//!
//! A revision records who deployed what and when (number, RFC 3339 UTC time, identity, a hash of
//! the policy), the desired state, the plan with each action's outcome and timing, the instances
//! failed claims kept, and what the target holds afterwards (`applied`): the next deploy plans
//! against that, so whatever failed is tried again. Writing a revision is one ACID transaction.
//! While a store is open for writing, no other process can open it for writing (redb locks the
//! file), so two deploys never interleave.
//!
//! Tables (schema 2): `meta` (`schema` → [`SCHEMA`]), `settings` (`policy_root` → the policy root
//! the store belongs to), `revisions` (number → the [`Revision`] as JSON), `desired` (number → the
//! full desired state as JSON, kept apart because only `history show` reads it) and `programs`
//! (number → the policy's resolution IR as JSON, from which the next deploy computes who may
//! change what, docs/language.md §11.3; absent for revisions recorded before it was kept). Every
//! value is stored as bytes and decoded here, errors handled: a value that does not decode is
//! [`StoreError::Damaged`], never a panic. Schema 1 (the same tables with values as `&str`, which
//! redb itself decodes and panics on when they are not UTF-8) is migrated when opened.
//!
//! A damaged file (bytes changed on disk) is found before it is used: every open runs redb's
//! integrity check, which verifies the checksum of every page the store uses, because redb trusts
//! the pages it reads and can panic on a damaged one. A reader ([`FileStore::open_read`]: `history`,
//! dry runs, rollbacks' lookups) reads a private copy of the file, checked and migrated the same
//! way, so it needs no lock: `history` works while a deploy runs and sees its journal. An empty or
//! foreign file is refused, never replaced by a new store. [`FileStore::check`] says what is damaged
//! and [`FileStore::repair`] copies every readable revision into a fresh store, keeping the damaged
//! file beside it (`state.db.damaged-<time>`).
//!
//! A deploy is journaled while it runs, so that killing aptc (or a crash, or a power cut) loses
//! nothing: before the first action, `journal` gets the revision as planned ([`Journal`]); as each
//! action ends, `journal_reports` gets its report, in its own transaction. Recording the revision
//! removes both in the same transaction. A journal found later means the deploy that wrote it
//! stopped, or still runs: [`FileStore::recover`] records it as a revision with what its reports say,
//! and every action without a report as failed (the next deploy does it again; drivers' actions are
//! idempotent), so the store always says what was done; [`FileStore::unfinished`] shows it as it is.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::apply::{ActionReport, Applied, Outcome};
use crate::plan::{Op, Plan, Unit};
use crate::private_dir::{self, PrivateDir};

mod kube;
mod kube_salvage;
mod salvage;

pub use kube::KubeStore;
pub use kube_salvage::KubeHealth;
pub use salvage::{Health, Repaired};

/// The layout of the store; a store written by a newer aptc is refused, one written in an older
/// layout is migrated when opened for writing (a reader migrates its private copy).
pub const SCHEMA: u64 = 2;

/// The schema mark. Its type is schema 1's, so that an older aptc still reads it and refuses a
/// newer store rather than failing on the table's type.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SETTINGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("settings");
const REVISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("revisions");
const DESIRED: TableDefinition<u64, &[u8]> = TableDefinition::new("desired");
const PROGRAMS: TableDefinition<u64, &[u8]> = TableDefinition::new("programs");
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
const JOURNAL_REPORTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("journal_reports");
/// The last drift check ([`DriftRecord`]) under [`LAST_DRIFT`]. Written by the first check, so a
/// store from before drift checks were kept has no such table, which reads as none recorded; an
/// older aptc ignores it.
const DRIFT: TableDefinition<&str, &[u8]> = TableDefinition::new("drift");
const LAST_DRIFT: &str = "last";

/// The tables keyed by revision number, by name (schema 1 had them too, with `&str` values).
const NUMBERED: [&str; 4] = ["revisions", "desired", "programs", "journal"];

/// The `settings` key of the policy root the store belongs to.
const POLICY_ROOT: &[u8] = b"policy_root";

/// The first bytes of every redb file (redb's `MAGICNUMBER`, which it does not export): a file
/// that does not start with them is not a store, and is never overwritten.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// What recovering a damaged store takes, appended to [`StoreError::Damaged`].
fn how_to_recover(file: &Path) -> String {
    let file = file.display();
    format!(
        "`aptc store check --state {file}` says what can still be read; `aptc store repair --state {file}` copies \
every readable revision into a fresh store and keeps the damaged file beside it"
    )
}

/// What [`FileStore::recover`] records for an action a stopped deploy did not report on.
pub const UNFINISHED: &str =
    "aptc stopped (killed or crashed) before this action reported how it ended; the next deploy does it again";

/// What [`FileStore::unfinished`] shows for an action of a deploy that has not finished and that has
/// not reported yet.
pub const NOT_REPORTED: &str = "not reported yet: the deploy is still running, or was killed before this action ended";

/// What started a drift check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftCause {
    /// `aptc deploy --refresh` (or `aptc rollback --refresh`).
    Deploy,
    /// The same with `--dry-run`: checked and kept, nothing applied.
    DryRun,
    /// An unattended step: `aptc watch`, or the controller.
    Reconcile,
}

/// What the last drift check found: the target against revision `revision`. The store keeps only
/// the last, so that the dashboard can say what was found, when and by whom, without asking the
/// target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftRecord {
    /// RFC 3339, UTC.
    pub time: String,
    /// Who ran it (the deploying user); `None` for an unattended check before a policy loaded.
    pub user: Option<String>,
    pub cause: DriftCause,
    /// The revision compared with.
    pub revision: u64,
    /// The target compared (a driver's `target`).
    pub target: String,
    /// The drifted units, in key order (empty: as deployed).
    pub drift: Vec<crate::drift::Drift>,
}

/// A revision being applied, as journaled before its first action (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// The revision as it will be recorded, without actions; its `applied` is what the target
    /// held before it.
    pub revision: Revision,
    pub plan: Plan,
    pub desired_state: std::sync::Arc<serde_json::Value>,
    /// The policy deployed, as [`aptc_core::ir::Program::to_json`] writes it.
    pub program: Option<String>,
}

/// Why the revision store cannot be opened, read or written; every message names the store's path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's directory cannot be made.
    #[error("creating {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be read or copied (permissions, disk full, …).
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// There is no store at `path` (for commands that need one).
    #[error("there is no store at {}", path.display())]
    NotFound { path: PathBuf },
    /// Another aptc holds the store (a running deploy locks it): try again later.
    #[error("{} is in use by another aptc (a deploy or rollback is running); try again when it has finished", path.display())]
    Busy { path: PathBuf },
    /// The file is empty: not a store (aptc never leaves one empty), and not replaced by one.
    #[error(
        "{} is empty, so it is not a revision store (aptc never writes an empty one); it is not replaced by a new \
store: if no revisions are meant to be kept, remove it, else restore it from a backup",
        path.display()
    )]
    Empty { path: PathBuf },
    /// The file is not a redb file at all: not replaced by a store.
    #[error(
        "{} is not a revision store (it is not a redb file); it is not replaced by one: give another --state, or \
move the file away",
        path.display()
    )]
    NotAStore { path: PathBuf },
    /// The file cannot be opened as a store for another reason.
    #[error("opening the state {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::DatabaseError>,
    },
    /// A newer aptc wrote it, in a schema this one does not know.
    #[error("{} was written by a newer aptc (store schema {found}, this aptc knows {SCHEMA}); use that aptc", path.display())]
    Schema { path: PathBuf, found: u64 },
    /// The database failed while `op` (`reading`, `writing`).
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    /// The file is damaged: `part` says what (its pages, `revision 3`, `the journal`) and why.
    #[error("{} is damaged: {part}. {}", file.display(), how_to_recover(file))]
    Damaged { file: PathBuf, part: String },
    /// A record cannot be encoded (`what`: `a revision`, `a journal`).
    #[error("encoding {what} for {store}: {source}")]
    Encode {
        what: &'static str,
        store: Location,
        #[source]
        source: serde_json::Error,
    },
    /// A write to a store opened for reading only ([`open_read`]; a bug in the caller).
    #[error("{store} is open for reading only")]
    ReadOnly { store: Location },
    /// A revision recorded out of turn: another deploy recorded one since.
    #[error("revision {number} cannot be recorded in {store}: the next revision is {next}")]
    OutOfOrder { store: Location, number: u64, next: u64 },
    /// A deploy that stopped left its journal, which must be recovered before another begins.
    #[error("{store} holds the unfinished revision {number}: recover it first")]
    Unfinished { store: Location, number: u64 },
    /// `--state` names a Kubernetes store in a form that is not `kube://CONTEXT/NAMESPACE`.
    #[error("--state {text}: {reason} (the form is kube://CONTEXT/NAMESPACE; an empty CONTEXT is the current one)")]
    BadLocation { text: String, reason: String },
    /// The cluster of a Kubernetes store cannot be reached or refused a request (`action`:
    /// `listing the revisions`, …); the API's reason.
    #[error("{store}: {action}: {reason}")]
    Kube { store: Location, action: String, reason: String },
    /// Another writer holds a Kubernetes store (a deploy or rollback is running, or one was killed
    /// on another machine less than the lock's lifetime ago).
    #[error(
        "{store} is in use by another aptc ({holder}); try again when it has finished (the lock of an aptc killed on \
another machine lapses {lapse} s after its last renewal)"
    )]
    Held { store: Location, holder: String, lapse: u64 },
    /// This writer's lock on a Kubernetes store was taken over (it was not renewed in time), so it
    /// writes nothing more.
    #[error("{store}: another aptc took over the lock of this deploy ({why}); this one writes nothing more")]
    LockLost { store: Location, why: String },
    /// Another writer recorded revision `number` first: this one is not recorded, nothing is merged.
    #[error(
        "{store}: revision {number} was recorded by another aptc at the same time; this one is not recorded: plan again"
    )]
    Conflict { store: Location, number: u64 },
    /// A record of a Kubernetes store does not decode: `part` says which and why.
    #[error("{store} is damaged: {part}")]
    Corrupt { store: Location, part: String },
    /// A record is larger, compressed, than one Kubernetes object holds.
    #[error(
        "{store}: {what} takes {size} bytes compressed, more than the {limit} bytes one Kubernetes object holds; keep \
this policy's revisions in a file (--state PATH)"
    )]
    TooLarge { store: Location, what: String, size: usize, limit: usize },
    /// A newer aptc wrote this Kubernetes store.
    #[error(
        "{store} was written by a newer aptc (store schema {found}, this aptc knows {}); use that aptc",
        kube::SCHEMA
    )]
    KubeSchema { store: Location, found: String },
}

/// Why a revision was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Cause {
    /// `aptc deploy PATHS`.
    Deploy { paths: Vec<String> },
    /// `aptc rollback N`: revision N's desired state applied again.
    Rollback { to: u64 },
}

/// One action of a revision's plan and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub op: Op,
    pub key: String,
    pub name: String,
    pub place: String,
    pub source: String,
    pub why: String,
    #[serde(flatten)]
    pub report: ActionReport,
}

/// One deploy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub number: u64,
    /// When it started, RFC 3339 in UTC.
    pub time: String,
    /// Who ran it (`--as`, `APTC_USER` or `USER`).
    pub user: String,
    pub cause: Cause,
    /// `sha256:` of the policy's resolution IR.
    pub policy: String,
    /// The driver's target (`render:/abs/dir`).
    pub target: String,
    pub duration_ms: u64,
    pub actions: Vec<ActionRecord>,
    /// The deployable units of the desired state (what a rollback to this revision applies).
    pub desired: BTreeMap<String, Unit>,
    /// What the target holds after this revision.
    pub applied: BTreeMap<String, Applied>,
    /// The instances failed claims kept as an earlier revision applied them (not applied again,
    /// not deleted; see [`crate::plan::Kept`]). Empty in revisions recorded before they were.
    #[serde(default)]
    pub kept: Vec<KeptRecord>,
}

/// An instance a revision kept because the claims that need it failed (a fault of the policy,
/// not a decision): which, where, from what, and why (`claim failed: …`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRecord {
    pub key: String,
    pub name: String,
    pub place: String,
    pub source: String,
    pub why: String,
}

impl KeptRecord {
    /// The record of what a plan keeps.
    pub fn of(kept: &crate::plan::Kept) -> KeptRecord {
        KeptRecord {
            key: kept.unit.key.clone(),
            name: kept.unit.name.clone(),
            place: kept.unit.place(),
            source: kept.unit.source.describe(),
            why: kept.why.clone(),
        }
    }
}

/// Counts of a revision's actions by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn of(actions: &[ActionRecord]) -> Counts {
        let mut counts = Counts::default();
        for action in actions {
            match (&action.report.outcome, action.op) {
                (Outcome::Succeeded { .. }, Op::Create) => counts.created += 1,
                (Outcome::Succeeded { .. }, Op::Update) => counts.updated += 1,
                (Outcome::Succeeded { .. }, Op::Delete) => counts.deleted += 1,
                (Outcome::Failed { .. }, _) => counts.failed += 1,
                (Outcome::Skipped { .. } | Outcome::Interrupted, _) => counts.skipped += 1,
            }
        }
        counts
    }

    /// `2 created, 1 updated, 0 deleted` and, when there are any, `, 1 failed, 2 skipped`; `no
    /// changes` for a revision without actions.
    pub fn summary(&self) -> String {
        if *self == Counts::default() {
            return "no changes".to_string();
        }
        let mut text = format!("{} created, {} updated, {} deleted", self.created, self.updated, self.deleted);
        if self.failed > 0 || self.skipped > 0 {
            text.push_str(&format!(", {} failed, {} skipped", self.failed, self.skipped));
        }
        text
    }
}

impl Revision {
    pub fn counts(&self) -> Counts {
        Counts::of(&self.actions)
    }

    /// What the target holds after it, as units by key.
    pub fn applied_units(&self) -> BTreeMap<String, Unit> {
        self.applied.iter().map(|(k, a)| (k.clone(), a.unit.clone())).collect()
    }

    /// `deploy examples/quickstart` or `rollback to 3`.
    pub fn cause_text(&self) -> String {
        match &self.cause {
            Cause::Deploy { paths } => format!("deploy {}", paths.join(" ")),
            Cause::Rollback { to } => format!("rollback to {to}"),
        }
    }
}

/// The records of a plan's actions with their reports.
pub fn action_records(plan: &Plan, reports: &[ActionReport]) -> Vec<ActionRecord> {
    plan.actions
        .iter()
        .zip(reports)
        .map(|(action, report)| ActionRecord {
            op: action.op,
            key: action.unit.key.clone(),
            name: action.unit.name.clone(),
            place: action.unit.place(),
            source: action.unit.source.describe(),
            why: action.why.clone(),
            report: report.clone(),
        })
        .collect()
}

/// Where a revision store is, as `--state` names it: a file (redb), or a namespace of a
/// Kubernetes cluster (`kube://CONTEXT/NAMESPACE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A redb file ([`FileStore`]).
    File(PathBuf),
    /// ConfigMaps in a namespace of a cluster ([`KubeStore`]).
    Kube(KubeLocation),
}

/// A Kubernetes store's cluster and namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeLocation {
    /// The kubeconfig (`None`: `$KUBECONFIG`, else `~/.kube/config`, else the in-cluster service
    /// account when there is neither and no context is named).
    pub kubeconfig: Option<PathBuf>,
    /// The context in it (`None`: its current context).
    pub context: Option<String>,
    /// The namespace holding the store's objects.
    pub namespace: String,
}

/// The scheme of a Kubernetes store in `--state`.
pub const KUBE_SCHEME: &str = "kube://";

impl Location {
    /// `--state` as given: `kube://CONTEXT/NAMESPACE` (CONTEXT is everything before the last `/`,
    /// since context names may hold slashes and namespaces cannot; empty: the current context),
    /// else a file's path.
    pub fn from_arg(arg: &Path) -> Result<Location, StoreError> {
        let Some(rest) = arg.to_str().and_then(|text| text.strip_prefix(KUBE_SCHEME)) else {
            return Ok(Location::File(arg.to_path_buf()));
        };
        let bad = |reason: &str| StoreError::BadLocation { text: arg.display().to_string(), reason: reason.into() };
        let Some((context, namespace)) = rest.rsplit_once('/') else {
            return Err(bad("there is no namespace after the context"));
        };
        let valid = !namespace.is_empty()
            && namespace.len() <= 63
            && namespace.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !namespace.starts_with('-')
            && !namespace.ends_with('-');
        if !valid {
            return Err(bad(&format!(
                "`{namespace}` is not a namespace name (lowercase letters, digits and `-`, at most 63, not at either end)"
            )));
        }
        Ok(Location::Kube(KubeLocation {
            kubeconfig: None,
            context: (!context.is_empty()).then(|| context.to_string()),
            namespace: namespace.to_string(),
        }))
    }

    /// The file of a file store.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::File(path) => Some(path),
            Location::Kube(_) => None,
        }
    }

    /// A stamp that changes whenever the store changes (the dashboard's live updates poll it);
    /// `none` when there is no store, `unreadable` when it cannot be asked.
    pub fn stamp(&self) -> String {
        match self {
            Location::File(path) => match std::fs::metadata(path) {
                Ok(meta) => {
                    let time = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                    format!("{}:{}", meta.len(), time.map_or(0, |t| t.as_nanos()))
                }
                Err(_) => "none".to_string(),
            },
            Location::Kube(location) => kube::stamp(self, location).unwrap_or_else(|error| {
                tracing::debug!(%error, "the store's stamp");
                "unreadable".to_string()
            }),
        }
    }
}

impl std::fmt::Display for Location {
    /// A file's path; `kube://CONTEXT/NAMESPACE` (with the kubeconfig when one is named).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Kube(KubeLocation { kubeconfig, context, namespace }) => {
                write!(f, "{KUBE_SCHEME}{}/{namespace}", context.as_deref().unwrap_or_default())?;
                match kubeconfig {
                    Some(path) => write!(f, " (kubeconfig {})", path.display()),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Opens the store at `location` for writing, creating it if there is none; one writer at a time
/// (a file is locked; a Kubernetes store's lock object is taken).
pub fn open(location: &Location) -> Result<Box<dyn Store>, StoreError> {
    Ok(match location {
        Location::File(path) => Box::new(FileStore::open(path)?),
        Location::Kube(kube) => Box::new(KubeStore::open(location, kube)?),
    })
}

/// Opens the store at `location` for reading only (no lock: it works while a deploy runs);
/// `None` when there is none.
pub fn open_read(location: &Location) -> Result<Option<Box<dyn Store>>, StoreError> {
    Ok(match location {
        Location::File(path) => FileStore::open_read(path)?.map(|s| Box::new(s) as Box<dyn Store>),
        Location::Kube(kube) => KubeStore::open_read(location, kube)?.map(|s| Box::new(s) as Box<dyn Store>),
    })
}

/// A revision store: what deploys, rollbacks, `history` and the dashboard ask of one, whichever
/// backend keeps it ([`FileStore`]: a redb file; [`KubeStore`]: objects in a cluster). The
/// required methods are each backend's reads and writes; what follows from them (numbering,
/// recovering a stopped deploy, showing an unfinished one) is written once, here.
///
/// `Sync`: the actions of a deploy journal their reports from several threads at once.
pub trait Store: Send + Sync {
    /// Where it is (what messages name).
    fn location(&self) -> &Location;

    /// Whether it was opened for writing ([`open`]).
    fn is_writable(&self) -> bool;

    /// Whether opening it for writing created it (nothing was there before).
    fn created(&self) -> bool;

    /// Removes a store this run created and left empty (a first deploy that was refused leaves no
    /// trace).
    fn discard(self: Box<Self>) -> Result<(), StoreError>;

    /// The policy root the store belongs to (docs/language.md §3.1: the directory holding
    /// `aptc.toml`, else the directory deployed); `None` until a deploy records one.
    fn policy_root(&self) -> Result<Option<PathBuf>, StoreError>;

    /// Records the policy root the store belongs to (see [`Store::policy_root`]).
    fn set_policy_root(&self, root: &Path) -> Result<(), StoreError>;

    /// Every revision, oldest first.
    fn list(&self) -> Result<Vec<Revision>, StoreError>;

    /// Revision `number`.
    fn get(&self, number: u64) -> Result<Option<Revision>, StoreError>;

    /// The latest revision.
    fn last(&self) -> Result<Option<Revision>, StoreError>;

    /// How many revisions there are.
    fn len(&self) -> Result<u64, StoreError>;

    /// The full desired state recorded with revision `number` (see [`Store::desired_state`]).
    fn recorded_state(&self, number: u64) -> Result<Option<serde_json::Value>, StoreError>;

    /// The policy (resolution IR) revision `number` deployed; `None` for a revision recorded
    /// without one (by an older aptc, or by a rollback to such a revision).
    fn program(&self, number: u64) -> Result<Option<aptc_core::ir::Program>, StoreError>;

    /// Records a new revision with its full desired state and the policy deployed, at once, and
    /// removes its journal. Its number must be the next one; a revision of that number recorded
    /// by another writer meanwhile is never replaced.
    fn record_with_program(
        &self,
        revision: &Revision,
        desired_state: &serde_json::Value,
        program: Option<&aptc_core::ir::Program>,
    ) -> Result<(), StoreError>;

    /// Writes the journal of a deploy about to apply (see [`Store::begin`]).
    fn write_journal(&self, journal: &Journal) -> Result<(), StoreError>;

    /// Journals how action `index` of the running revision `number` ended, durably.
    fn journal_report(&self, number: u64, index: usize, report: &ActionReport) -> Result<(), StoreError>;

    /// The journal of a deploy that has not been recorded (running now in another process, or
    /// stopped), if any.
    fn pending(&self) -> Result<Option<Journal>, StoreError>;

    /// The reports a running (or stopped) deploy journaled, by action index.
    fn journaled_reports(&self, journal: &Journal) -> Result<Vec<Option<ActionReport>>, StoreError>;

    /// Removes the journal of revision `number`, which is recorded already (a writer stopped
    /// between recording it and removing its journal, which a file store does at once).
    fn forget_journal(&self, number: u64) -> Result<(), StoreError>;

    /// Keeps `record` as the last drift check, replacing the one before (needs a writer).
    fn record_drift(&self, record: &DriftRecord) -> Result<(), StoreError>;

    /// The last drift check kept ([`Store::record_drift`]); `None` when none was recorded (also in
    /// a store from before they were kept, or one rebuilt by `store repair`, which copies
    /// revisions only).
    fn last_drift(&self) -> Result<Option<DriftRecord>, StoreError>;

    /// The number the next revision gets.
    fn next_number(&self) -> Result<u64, StoreError> {
        Ok(self.last()?.map_or(1, |r| r.number + 1))
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Records a new revision with its full desired state. Its number must be the next one.
    fn record(&self, revision: &Revision, desired_state: &serde_json::Value) -> Result<(), StoreError> {
        self.record_with_program(revision, desired_state, None)
    }

    /// The full desired state revision `number` deployed (as JSON); for the revision of a deploy
    /// that has not finished, the one its journal holds.
    fn desired_state(&self, number: u64) -> Result<Option<serde_json::Value>, StoreError> {
        if let Some(state) = self.recorded_state(number)? {
            return Ok(Some(state));
        }
        Ok(self
            .pending()?
            .filter(|j| j.revision.number == number)
            .map(|j| std::sync::Arc::unwrap_or_clone(j.desired_state)))
    }

    /// Journals a revision before its first action (see the module docs). A journal left by a
    /// stopped deploy must be recovered first.
    fn begin(&self, journal: &Journal) -> Result<(), StoreError> {
        if let Some(old) = self.pending()? {
            return Err(StoreError::Unfinished { store: self.location().clone(), number: old.revision.number });
        }
        self.write_journal(journal)
    }

    /// The revision of a deploy that has not finished (it runs now, or was killed), as its
    /// journal says so far: the actions that reported with their outcome, the others
    /// [`Outcome::Skipped`] with [`NOT_REPORTED`]. Nothing is recorded: `history` shows it.
    fn unfinished(&self) -> Result<Option<Revision>, StoreError> {
        let Some(journal) = self.pending()? else { return Ok(None) };
        let reports: Vec<ActionReport> = self
            .journaled_reports(&journal)?
            .into_iter()
            .map(|r| {
                r.unwrap_or(ActionReport {
                    outcome: Outcome::Skipped { reason: NOT_REPORTED.to_string() },
                    started_ms: 0,
                    duration_ms: 0,
                })
            })
            .collect();
        let mut revision = journal.revision;
        revision.actions = action_records(&journal.plan, &reports);
        Ok(Some(revision))
    }

    /// Records the revision of a deploy that stopped before recording it (see the module docs);
    /// `None` when there is none. Only a store open for writing can hold a stopped deploy's
    /// journal, since a running deploy holds the store.
    fn recover(&self) -> Result<Option<Revision>, StoreError> {
        if !self.is_writable() {
            return Err(StoreError::ReadOnly { store: self.location().clone() });
        }
        let Some(journal) = self.pending()? else { return Ok(None) };
        let number = journal.revision.number;
        if number < self.next_number()? {
            self.forget_journal(number)?;
            return Ok(None);
        }
        let reports: Vec<ActionReport> = self
            .journaled_reports(&journal)?
            .into_iter()
            .map(|r| {
                r.unwrap_or(ActionReport {
                    outcome: Outcome::Failed { error: UNFINISHED.to_string(), retryable: true },
                    started_ms: 0,
                    duration_ms: 0,
                })
            })
            .collect();
        let mut revision = journal.revision;
        revision.applied = crate::apply::applied_after(&revision.applied, &journal.plan, &reports, number);
        revision.actions = action_records(&journal.plan, &reports);
        let program = journal.program.as_deref().map(aptc_core::ir::Program::from_json).transpose().map_err(|e| {
            StoreError::Corrupt { store: self.location().clone(), part: format!("the journal's policy ({e})") }
        })?;
        self.record_with_program(&revision, &journal.desired_state, program.as_ref())?;
        Ok(Some(revision))
    }
}

/// A store in one redb file (see the module docs).
pub struct FileStore {
    /// The store's file, or (a reader's) its private copy.
    db: Database,
    /// The store's file (what messages name).
    path: PathBuf,
    location: Location,
    writable: bool,
    /// Opening it for writing created the file.
    created: bool,
    /// The directory of a reader's private copy, removed with the store (after `db` is closed:
    /// fields drop in order).
    _copy: Option<PrivateDir>,
}

/// How often [`FileStore::open_read`] copies the file again when the copy does not verify: a deploy
/// committing while the file is copied can tear the copy's newest commit.
const COPY_ATTEMPTS: u32 = 4;

impl FileStore {
    /// Opens the store at `path` for writing, creating it (and its directory) if there is no file.
    /// An existing file is verified first (redb's integrity check); an empty or foreign file is
    /// refused, never replaced. Fails if another process has it open for writing.
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| StoreError::CreateDir { dir: parent.to_path_buf(), source })?;
        }
        let created = !refuse_foreign(path)? && create_whole(path)?;
        let db = open_verified(path, path, true)?;
        let location = Location::File(path.to_path_buf());
        let store = FileStore { db, path: path.to_path_buf(), location, writable: true, created, _copy: None };
        store.initialise()?;
        Ok(store)
    }

    /// Opens an existing store for reading only; `None` if there is no file at `path`.
    ///
    /// It reads a private copy of the file (verified and, for an older schema, migrated), so it
    /// takes no lock: it works while a deploy runs, and sees that deploy's journal as it was when
    /// copied. A store left unclean by a killed deploy is repaired in the copy; the file itself is
    /// never written.
    pub fn open_read(path: &Path) -> Result<Option<FileStore>, StoreError> {
        if !refuse_foreign(path)? {
            return Ok(None);
        }
        let mut attempt = 1;
        loop {
            let (copy, file) = private_copy(path, "store")?;
            match open_verified(&file, path, true) {
                Ok(db) => {
                    let location = Location::File(path.to_path_buf());
                    let store = FileStore {
                        db,
                        path: path.to_path_buf(),
                        location,
                        writable: false,
                        created: false,
                        _copy: Some(copy),
                    };
                    store.initialise()?;
                    return Ok(Some(store));
                }
                Err(StoreError::Damaged { .. }) if attempt < COPY_ATTEMPTS => {
                    tracing::debug!(path = %path.display(), attempt, "the copy of the store did not verify; copying again");
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)));
                }
                Err(error) => return Err(error),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database failed while `op` (`reading`, `writing`).
    fn db(&self, op: &'static str, error: impl Into<redb::Error>) -> StoreError {
        StoreError::Io { op, path: self.path.clone(), source: Box::new(error.into()) }
    }

    /// `part` (`revision 3`) does not decode.
    fn damaged(&self, part: impl std::fmt::Display, error: impl std::fmt::Display) -> StoreError {
        StoreError::Damaged { file: self.path.clone(), part: format!("{part} cannot be read ({error})") }
    }

    /// `what` (`a revision`) does not encode.
    fn encode(&self, what: &'static str, source: serde_json::Error) -> StoreError {
        StoreError::Encode { what, store: self.location.clone(), source }
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.db.begin_read().map_err(|e| self.db("reading", e))
    }

    fn writer(&self) -> Result<&Database, StoreError> {
        if self.writable { Ok(&self.db) } else { Err(StoreError::ReadOnly { store: self.location.clone() }) }
    }

    /// Creates the tables and the schema mark of a new store; checks the mark of an old one, and
    /// migrates a schema-1 store (values as `&str`) to bytes. A reader does this to its copy.
    fn initialise(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db("writing", e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.db("writing", e))?;
            let schema = meta.get("schema").map_err(|e| self.db("reading", e))?.map(|v| v.value());
            match schema {
                Some(found) if found > SCHEMA => return Err(self.newer(found)),
                Some(found) if found < SCHEMA => self.migrate(&txn)?,
                _ => {}
            }
            meta.insert("schema", SCHEMA).map_err(|e| self.db("writing", e))?;
            txn.open_table(SETTINGS).map_err(|e| self.db("writing", e))?;
            for name in NUMBERED {
                txn.open_table(TableDefinition::<u64, &[u8]>::new(name)).map_err(|e| self.db("writing", e))?;
            }
            txn.open_table(JOURNAL_REPORTS).map_err(|e| self.db("writing", e))?;
        }
        txn.commit().map_err(|e| self.db("writing", e))
    }

    /// Schema 1 → 2: each table's `&str` values become bytes (the same text).
    fn migrate(&self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        tracing::info!(path = %self.path.display(), "migrating the store to schema {SCHEMA}");
        for name in NUMBERED {
            text_to_bytes::<u64>(txn, name).map_err(|e| self.db("migrating", e))?;
        }
        text_to_bytes::<(u64, u64)>(txn, redb::TableHandle::name(&JOURNAL_REPORTS)).map_err(|e| self.db("migrating", e))
    }

    fn newer(&self, found: u64) -> StoreError {
        StoreError::Schema { path: self.path.clone(), found }
    }

    /// `table` in a read transaction; `None` when no aptc has written it into this store yet.
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &redb::ReadTransaction,
        table: TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
        match txn.open_table(table) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.db("reading", e)),
        }
    }

    fn read_bytes(&self, table: TableDefinition<u64, &[u8]>, number: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, table)? else { return Ok(None) };
        Ok(table.get(number).map_err(|e| self.db("reading", e))?.map(|v| v.value().to_vec()))
    }

    fn decode(&self, number: u64, bytes: &[u8]) -> Result<Revision, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.damaged(format!("revision {number}"), e))
    }
}

impl Store for FileStore {
    fn location(&self) -> &Location {
        &self.location
    }

    fn is_writable(&self) -> bool {
        self.writable
    }

    fn created(&self) -> bool {
        self.created
    }

    fn discard(self: Box<Self>) -> Result<(), StoreError> {
        if !self.created || !self.is_empty()? || self.pending()?.is_some() {
            return Ok(());
        }
        let path = self.path.clone();
        drop(self);
        std::fs::remove_file(&path).map_err(|source| StoreError::File { what: "removing", path, source })
    }

    fn policy_root(&self) -> Result<Option<PathBuf>, StoreError> {
        let txn = self.begin_read()?;
        let Some(settings) = self.table(&txn, SETTINGS)? else { return Ok(None) };
        let Some(value) = settings.get(POLICY_ROOT).map_err(|e| self.db("reading", e))? else { return Ok(None) };
        let text = std::str::from_utf8(value.value()).map_err(|e| self.damaged("the policy root", e))?;
        Ok(Some(PathBuf::from(text)))
    }

    fn set_policy_root(&self, root: &Path) -> Result<(), StoreError> {
        let text = root.to_string_lossy();
        let txn = self.writer()?.begin_write().map_err(|e| self.db("writing", e))?;
        txn.open_table(SETTINGS)
            .map_err(|e| self.db("writing", e))?
            .insert(POLICY_ROOT, text.as_bytes())
            .map_err(|e| self.db("writing", e))?;
        txn.commit().map_err(|e| self.db("writing", e))
    }

    fn record_drift(&self, record: &DriftRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| self.encode("a drift check", e))?;
        let txn = self.writer()?.begin_write().map_err(|e| self.db("writing", e))?;
        txn.open_table(DRIFT)
            .map_err(|e| self.db("writing", e))?
            .insert(LAST_DRIFT, bytes.as_slice())
            .map_err(|e| self.db("writing", e))?;
        txn.commit().map_err(|e| self.db("writing", e))
    }

    fn last_drift(&self) -> Result<Option<DriftRecord>, StoreError> {
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, DRIFT)? else { return Ok(None) };
        let Some(value) = table.get(LAST_DRIFT).map_err(|e| self.db("reading", e))? else { return Ok(None) };
        serde_json::from_slice(value.value()).map(Some).map_err(|e| self.damaged("the last drift check", e))
    }

    fn list(&self) -> Result<Vec<Revision>, StoreError> {
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, REVISIONS)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("reading", e))? {
            let (number, bytes) = entry.map_err(|e| self.db("reading", e))?;
            out.push(self.decode(number.value(), bytes.value())?);
        }
        Ok(out)
    }

    fn get(&self, number: u64) -> Result<Option<Revision>, StoreError> {
        self.read_bytes(REVISIONS, number)?.map(|bytes| self.decode(number, &bytes)).transpose()
    }

    fn last(&self) -> Result<Option<Revision>, StoreError> {
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, REVISIONS)? else { return Ok(None) };
        match table.last().map_err(|e| self.db("reading", e))? {
            Some((number, bytes)) => Ok(Some(self.decode(number.value(), bytes.value())?)),
            None => Ok(None),
        }
    }

    fn len(&self) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        match self.table(&txn, REVISIONS)? {
            Some(table) => table.len().map_err(|e| self.db("reading", e)),
            None => Ok(0),
        }
    }

    fn recorded_state(&self, number: u64) -> Result<Option<serde_json::Value>, StoreError> {
        self.read_bytes(DESIRED, number)?
            .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| self.damaged(format!("revision {number}"), e)))
            .transpose()
    }

    fn program(&self, number: u64) -> Result<Option<aptc_core::ir::Program>, StoreError> {
        self.read_bytes(PROGRAMS, number)?
            .map(|bytes| {
                let part = || format!("the policy of revision {number}");
                let text = std::str::from_utf8(&bytes).map_err(|e| self.damaged(part(), e))?;
                aptc_core::ir::Program::from_json(text).map_err(|e| self.damaged(part(), e))
            })
            .transpose()
    }

    fn record_with_program(
        &self,
        revision: &Revision,
        desired_state: &serde_json::Value,
        program: Option<&aptc_core::ir::Program>,
    ) -> Result<(), StoreError> {
        let db = self.writer()?;
        let next = self.next_number()?;
        if revision.number != next {
            return Err(StoreError::OutOfOrder { store: self.location.clone(), number: revision.number, next });
        }
        let record = serde_json::to_vec(revision).map_err(|e| self.encode("a revision", e))?;
        let desired = serde_json::to_vec(desired_state).map_err(|e| self.encode("a revision", e))?;
        let txn = db.begin_write().map_err(|e| self.db("writing", e))?;
        {
            txn.open_table(JOURNAL)
                .map_err(|e| self.db("writing", e))?
                .remove(revision.number)
                .map_err(|e| self.db("writing", e))?;
            let mut reports = txn.open_table(JOURNAL_REPORTS).map_err(|e| self.db("writing", e))?;
            reports
                .retain_in((revision.number, 0)..=(revision.number, u64::MAX), |_, _| false)
                .map_err(|e| self.db("writing", e))?;
            let mut revisions = txn.open_table(REVISIONS).map_err(|e| self.db("writing", e))?;
            revisions.insert(revision.number, record.as_slice()).map_err(|e| self.db("writing", e))?;
            let mut states = txn.open_table(DESIRED).map_err(|e| self.db("writing", e))?;
            states.insert(revision.number, desired.as_slice()).map_err(|e| self.db("writing", e))?;
            if let Some(program) = program {
                let mut programs = txn.open_table(PROGRAMS).map_err(|e| self.db("writing", e))?;
                programs.insert(revision.number, program.to_json().as_bytes()).map_err(|e| self.db("writing", e))?;
            }
        }
        txn.commit().map_err(|e| self.db("writing", e))
    }

    fn write_journal(&self, journal: &Journal) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(journal).map_err(|e| self.encode("a journal", e))?;
        let txn = self.writer()?.begin_write().map_err(|e| self.db("writing", e))?;
        txn.open_table(JOURNAL)
            .map_err(|e| self.db("writing", e))?
            .insert(journal.revision.number, bytes.as_slice())
            .map_err(|e| self.db("writing", e))?;
        txn.commit().map_err(|e| self.db("writing", e))
    }

    fn journal_report(&self, number: u64, index: usize, report: &ActionReport) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(report).map_err(|e| self.encode("a journal", e))?;
        let txn = self.writer()?.begin_write().map_err(|e| self.db("writing", e))?;
        txn.open_table(JOURNAL_REPORTS)
            .map_err(|e| self.db("writing", e))?
            .insert((number, index as u64), bytes.as_slice())
            .map_err(|e| self.db("writing", e))?;
        txn.commit().map_err(|e| self.db("writing", e))
    }

    fn pending(&self) -> Result<Option<Journal>, StoreError> {
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, JOURNAL)? else { return Ok(None) };
        match table.first().map_err(|e| self.db("reading", e))? {
            Some((_, bytes)) => {
                serde_json::from_slice(bytes.value()).map(Some).map_err(|e| self.damaged("the journal", e))
            }
            None => Ok(None),
        }
    }

    fn journaled_reports(&self, journal: &Journal) -> Result<Vec<Option<ActionReport>>, StoreError> {
        let number = journal.revision.number;
        let mut reports: Vec<Option<ActionReport>> = vec![None; journal.plan.actions.len()];
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, JOURNAL_REPORTS)? else { return Ok(reports) };
        for entry in table.range((number, 0)..=(number, u64::MAX)).map_err(|e| self.db("reading", e))? {
            let (key, bytes) = entry.map_err(|e| self.db("reading", e))?;
            let index = usize::try_from(key.value().1).unwrap_or(usize::MAX);
            let report = serde_json::from_slice(bytes.value()).map_err(|e| self.damaged("the journal", e))?;
            if let Some(slot) = reports.get_mut(index) {
                *slot = Some(report);
            }
        }
        Ok(reports)
    }

    fn forget_journal(&self, number: u64) -> Result<(), StoreError> {
        let txn = self.writer()?.begin_write().map_err(|e| self.db("writing", e))?;
        {
            txn.open_table(JOURNAL)
                .map_err(|e| self.db("writing", e))?
                .remove(number)
                .map_err(|e| self.db("writing", e))?;
            txn.open_table(JOURNAL_REPORTS)
                .map_err(|e| self.db("writing", e))?
                .retain_in((number, 0)..=(number, u64::MAX), |_, _| false)
                .map_err(|e| self.db("writing", e))?;
        }
        txn.commit().map_err(|e| self.db("writing", e))
    }
}

/// Whether there is a store at `path` (`false`: no file); an empty file or one that is not a redb
/// file is refused, so that nothing ever replaces it with a new store.
fn refuse_foreign(path: &Path) -> Result<bool, StoreError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(StoreError::File { what: "reading", path: path.to_path_buf(), source }),
    };
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    (&mut file).take(REDB_MAGIC.len() as u64).read_to_end(&mut head).map_err(|source| StoreError::File {
        what: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    if head.is_empty() {
        return Err(StoreError::Empty { path: path.to_path_buf() });
    }
    if head != REDB_MAGIC {
        return Err(StoreError::NotAStore { path: path.to_path_buf() });
    }
    Ok(true)
}

/// Creates an empty redb file at `path` whole, so that another aptc creating it at the same time
/// never reads it half-written (and refuses it as foreign): made beside it, then linked into place,
/// which fails when the other was first. Whether this call created it.
fn create_whole(path: &Path) -> Result<bool, StoreError> {
    let failed = |source| StoreError::File { what: "creating", path: path.to_path_buf(), source };
    // Unique to this call: two threads of one process may create the same store at once.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".new-{}-{call}", std::process::id()));
    let fresh = path.with_file_name(name);
    drop(open_verified(&fresh, path, false)?);
    let linked = std::fs::hard_link(&fresh, path);
    std::fs::remove_file(&fresh).map_err(failed)?;
    match linked {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(failed(source)),
    }
}

/// Opens `file` for writing after redb's integrity check, which verifies the checksum of every
/// page the store uses (a damaged page is [`StoreError::Damaged`], where using it could panic);
/// `path` is the store messages name (`file` may be a reader's copy of it). `existing`: the file
/// exists (checked by [`refuse_foreign`]); else it is created.
fn open_verified(file: &Path, path: &Path, existing: bool) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder.set_cache_size(16 << 20).set_check_integrity_on_open(true);
    let opened = salvage::guarded(|| if existing { builder.open(file) } else { builder.create(file) });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => Err(open_error(path, error)),
        Err(panic) => Err(StoreError::Damaged { file: path.to_path_buf(), part: format!("its pages ({panic})") }),
    }
}

fn open_error(path: &Path, error: redb::DatabaseError) -> StoreError {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Busy { path: path.to_path_buf() },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => StoreError::Damaged {
            file: path.to_path_buf(),
            part: format!("its pages do not match their checksums ({why})"),
        },
        source => StoreError::Open { path: path.to_path_buf(), source: Box::new(source) },
    }
}

/// The time now, RFC 3339 in UTC, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A copy of the store at `path` in a new [`PrivateDir`] (the store holds every revision), which
/// goes away with the returned guard: readers and the salvager work on it, never on the file a
/// deploy may be writing. Copies a killed reader left are removed first.
pub(crate) fn private_copy(path: &Path, purpose: &str) -> Result<(PrivateDir, PathBuf), StoreError> {
    let failed = |source| StoreError::File { what: "copying", path: path.to_path_buf(), source };
    private_dir::sweep(&std::env::temp_dir());
    let copy = PrivateDir::create(purpose).map_err(failed)?;
    let file = copy.path().join("state.db");
    std::fs::copy(path, &file).map_err(failed)?;
    Ok((copy, file))
}

/// Moves table `name`'s `&str` values into a table of bytes of the same name (the same text,
/// the same keys): schema 1 stored text, which redb decodes with a panic when damaged.
fn text_to_bytes<K>(txn: &redb::WriteTransaction, name: &str) -> Result<(), redb::Error>
where
    K: redb::Key + for<'a> redb::Value<SelfType<'a> = K> + 'static,
{
    let old = TableDefinition::<K, &str>::new(name);
    let rows: Vec<(K, String)> = {
        let table = txn.open_table(old)?;
        let rows = table.iter()?;
        rows.map(|row| row.map(|(k, v)| (k.value(), v.value().to_string()))).collect::<Result<_, _>>()?
    };
    txn.delete_table(old)?;
    let mut new = txn.open_table(TableDefinition::<K, &[u8]>::new(name))?;
    for (key, value) in rows {
        new.insert(key, value.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::unit;

    fn revision(number: u64, cause: Cause, keys: &[&str]) -> Revision {
        let desired: BTreeMap<String, Unit> = keys.iter().map(|k| (k.to_string(), unit(k, &[]))).collect();
        let applied = desired
            .iter()
            .map(|(k, u)| (k.clone(), Applied { revision: number, unit: u.clone(), fingerprint: None }))
            .collect();
        let actions = keys
            .iter()
            .map(|k| ActionRecord {
                op: Op::Create,
                key: k.to_string(),
                name: format!("{k}-name"),
                place: "local/default".into(),
                source: "chart ./c".into(),
                why: "new".into(),
                report: ActionReport {
                    outcome: Outcome::Succeeded { detail: "ok".into() },
                    started_ms: 0,
                    duration_ms: 5,
                },
            })
            .collect();
        Revision {
            number,
            time: now_rfc3339(),
            user: "ada".into(),
            cause,
            policy: aptc_core::digest::sha256("policy"),
            target: "render:/out".into(),
            duration_ms: 7,
            actions,
            desired,
            applied,
            kept: Vec::new(),
        }
    }

    #[test]
    fn revisions_are_written_read_back_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.db");
        assert!(FileStore::open_read(&path).unwrap().is_none(), "reading creates nothing");
        assert!(!path.exists());
        let store = FileStore::open(&path).unwrap();
        assert!(store.is_empty().unwrap());
        assert_eq!(store.next_number().unwrap(), 1);
        let first = revision(1, Cause::Deploy { paths: vec!["p".into()] }, &["a", "b"]);
        store.record(&first, &serde_json::json!({ "instances": {} })).unwrap();
        let second = revision(2, Cause::Deploy { paths: vec!["p".into()] }, &["a"]);
        store.record(&second, &serde_json::json!({ "instances": { "a": 1 } })).unwrap();
        assert!(
            store.record(&first, &serde_json::json!({})).unwrap_err().to_string().contains("the next revision is 3")
        );
        assert_eq!(store.get(1).unwrap().unwrap(), first);
        assert_eq!(store.last().unwrap().unwrap(), second);
        assert_eq!(store.list().unwrap().iter().map(|r| r.number).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(store.desired_state(2).unwrap().unwrap()["instances"]["a"], 1);
        assert!(store.get(9).unwrap().is_none());
        assert_eq!(first.counts().summary(), "2 created, 0 updated, 0 deleted");
        drop(store);
        let again = FileStore::open_read(&path).unwrap().unwrap();
        assert_eq!(again.len().unwrap(), 2);
        assert!(again.record(&revision(3, Cause::Rollback { to: 1 }, &[]), &serde_json::json!({})).is_err());
    }

    /// A store from before drift checks were kept has no `drift` table: none recorded, no error.
    /// (Keeping and replacing one: runtime/tests/store.rs, on both backends.)
    #[test]
    fn a_store_without_a_drift_table_has_no_last_drift_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = FileStore::open(&path).unwrap();
        store.record(&revision(1, Cause::Deploy { paths: vec![] }, &["a"]), &serde_json::json!({})).unwrap();
        drop(store);
        let older = Database::open(&path).unwrap();
        let tables: Vec<String> = older
            .begin_read()
            .unwrap()
            .list_tables()
            .unwrap()
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect();
        assert!(!tables.contains(&"drift".to_string()), "{tables:?}");
        drop(older);
        assert_eq!(FileStore::open_read(&path).unwrap().unwrap().last_drift().unwrap(), None);
    }

    /// A reader killed while it read left its copy of the store (every revision) in the system's
    /// temporary directory: the next reader removes it, and its own copy goes when it is done.
    #[test]
    fn copies_of_the_store_never_outlive_their_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        FileStore::open(&path)
            .unwrap()
            .record(&revision(1, Cause::Rollback { to: 1 }, &["a"]), &serde_json::json!({}))
            .unwrap();
        // A pid above the kernel's maximum (2^22) runs nowhere.
        let left = tempfile::Builder::new().prefix("aptc-private-99999999-store-").tempdir().unwrap().keep();
        std::fs::copy(&path, left.join("state.db")).unwrap();
        let reader = FileStore::open_read(&path).unwrap().unwrap();
        assert!(!left.exists(), "the killed reader's copy is removed");
        let copy = reader._copy.as_ref().unwrap().path().to_path_buf();
        assert!(
            copy.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("aptc-private-{}-store-", std::process::id()))
        );
        assert_eq!(reader.len().unwrap(), 1);
        drop(reader);
        assert!(!copy.exists(), "a reader's own copy goes with it");
    }

    #[test]
    fn a_rollback_plans_back_to_the_old_desired_units() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(&dir.path().join("state.db")).unwrap();
        store.record(&revision(1, Cause::Deploy { paths: vec![] }, &["a", "b"]), &serde_json::json!({})).unwrap();
        store.record(&revision(2, Cause::Deploy { paths: vec![] }, &["a", "c"]), &serde_json::json!({})).unwrap();
        // Rolling back to 1 from what 2 left applied: create b, delete c, keep a.
        let target = store.get(1).unwrap().unwrap().desired;
        let current = store.last().unwrap().unwrap().applied_units();
        let plan = crate::plan::plan(&current, &target, None, &|_| true);
        let shown: Vec<String> = plan.actions.iter().map(|a| format!("{} {}", a.op.verb(), a.unit.key)).collect();
        assert_eq!(shown, ["create b", "delete c"]);
        assert_eq!(plan.unchanged, ["a"]);
    }

    #[test]
    fn a_store_in_use_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let _held = FileStore::open(&path).unwrap();
        let error = FileStore::open(&path).err().unwrap();
        assert!(matches!(error, StoreError::Busy { .. }));
        let error = error.to_string();
        assert!(error.contains("in use by another aptc"), "{error}");
    }

    #[test]
    fn a_newer_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("schema", SCHEMA + 1).unwrap();
            txn.commit().unwrap();
        }
        assert!(
            matches!(FileStore::open(&path).err().unwrap(), StoreError::Schema { found, .. } if found == SCHEMA + 1)
        );
        assert!(FileStore::open_read(&path).err().unwrap().to_string().contains("newer aptc"));
    }

    #[test]
    fn a_revision_keeps_its_policy_and_old_revisions_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        // A store as the aptc before `programs` wrote it (schema 1: values as `&str`): meta,
        // revisions and desired only.
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("schema", 1).unwrap();
            let old = serde_json::to_string(&revision(1, Cause::Deploy { paths: vec![] }, &["a"])).unwrap();
            txn.open_table(TableDefinition::<u64, &str>::new("revisions")).unwrap().insert(1, old.as_str()).unwrap();
            txn.open_table(TableDefinition::<u64, &str>::new("desired")).unwrap().insert(1, "{}").unwrap();
            txn.commit().unwrap();
        }
        {
            let old = FileStore::open_read(&path).unwrap().unwrap();
            assert_eq!(old.last().unwrap().unwrap().number, 1);
            assert!(old.program(1).unwrap().is_none(), "a revision without a policy reads as none");
        }
        let schema = |path: &Path| {
            let db = Database::open(path).unwrap();
            let txn = db.begin_read().unwrap();
            txn.open_table(META).unwrap().get("schema").unwrap().unwrap().value()
        };
        assert_eq!(schema(&path), 1, "a reader migrates its copy, never the file");
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.get(1).unwrap().unwrap().number, 1, "migrated to schema 2");
        assert!(store.program(1).unwrap().is_none());
        let program = crate::test_policy::compile(&[("system.apt", "namespace system\n\nuser \"ada\" {}\n")]);
        let second = revision(2, Cause::Deploy { paths: vec![] }, &["a"]);
        store.record_with_program(&second, &serde_json::json!({}), Some(&program)).unwrap();
        assert_eq!(store.program(2).unwrap().unwrap(), program);
        assert!(store.program(3).unwrap().is_none());
        drop(store);
        assert_eq!(schema(&path), SCHEMA);
    }

    #[test]
    fn a_deploy_killed_midway_is_recovered_with_what_it_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let desired: BTreeMap<String, Unit> = ["a", "b"].iter().map(|k| (k.to_string(), unit(k, &[]))).collect();
        let plan = crate::plan::plan(&BTreeMap::new(), &desired, None, &|_| true);
        {
            let store = FileStore::open(&path).unwrap();
            let mut planned = revision(1, Cause::Deploy { paths: vec!["p".into()] }, &[]);
            planned.desired = desired.clone();
            let journal = Journal {
                revision: planned,
                plan: plan.clone(),
                desired_state: serde_json::json!({}).into(),
                program: None,
            };
            store.begin(&journal).unwrap();
            assert!(store.begin(&journal).unwrap_err().to_string().contains("unfinished revision 1"));
            let done =
                ActionReport { outcome: Outcome::Succeeded { detail: "ok".into() }, started_ms: 1, duration_ms: 2 };
            store.journal_report(1, 0, &done).unwrap();
            // The process dies here: the store is dropped without recording the revision.
        }
        let read = FileStore::open_read(&path).unwrap().unwrap();
        assert!(read.last().unwrap().is_none());
        assert_eq!(read.pending().unwrap().unwrap().revision.number, 1);
        assert!(read.recover().is_err(), "only a writer recovers");
        drop(read);
        let store = FileStore::open(&path).unwrap();
        let recovered = store.recover().unwrap().unwrap();
        assert_eq!(recovered.number, 1);
        assert!(recovered.actions[0].report.outcome.succeeded());
        assert_eq!(recovered.actions[1].report.outcome, Outcome::Failed { error: UNFINISHED.into(), retryable: true });
        assert_eq!(recovered.applied.keys().collect::<Vec<_>>(), [&plan.actions[0].unit.key]);
        assert_eq!(store.last().unwrap().unwrap(), recovered);
        assert!(store.pending().unwrap().is_none(), "the journal goes with the recorded revision");
        assert!(store.recover().unwrap().is_none());
        // The next deploy plans the unfinished action again, and only it.
        let next = crate::plan::plan(&recovered.applied_units(), &desired, None, &|_| true);
        assert_eq!(
            next.actions.iter().map(|a| a.unit.key.as_str()).collect::<Vec<_>>(),
            [plan.actions[1].unit.key.as_str()]
        );
    }

    #[test]
    fn an_empty_or_foreign_file_is_refused_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        for error in [FileStore::open(&empty).err().unwrap(), FileStore::open_read(&empty).err().unwrap()] {
            assert!(matches!(error, StoreError::Empty { .. }), "{error}");
            assert!(error.to_string().contains("is empty, so it is not a revision store"), "{error}");
        }
        assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "not replaced by a new store");
        let foreign = dir.path().join("notes.db");
        std::fs::write(&foreign, "my notes, not a store").unwrap();
        assert!(matches!(FileStore::open(&foreign).err().unwrap(), StoreError::NotAStore { .. }));
        assert!(matches!(FileStore::open_read(&foreign).err().unwrap(), StoreError::NotAStore { .. }));
        assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "my notes, not a store");
        // What aptc writes starts as every redb file does, which is how a store is told apart.
        let store = dir.path().join("state.db");
        drop(FileStore::open(&store).unwrap());
        assert!(std::fs::read(&store).unwrap().starts_with(&REDB_MAGIC));
    }

    #[test]
    fn a_damaged_store_is_refused_checked_and_repaired_keeping_every_readable_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = FileStore::open(&path).unwrap();
            store.set_policy_root(Path::new("/policies/shop")).unwrap();
            for number in 1..=3 {
                let mut r = revision(number, Cause::Deploy { paths: vec!["p".into()] }, &["a"]);
                r.user = format!("user-of-revision-{number}");
                store.record(&r, &serde_json::json!({ "n": number })).unwrap();
            }
        }
        assert!(!FileStore::check(&path).unwrap().is_damaged());
        assert!(FileStore::repair(&path).unwrap().is_none(), "nothing to repair");
        // Revision 2's record no longer parses: the quote before its user is changed on disk.
        let mut bytes = std::fs::read(&path).unwrap();
        let needle = b"\"user-of-revision-2\"";
        let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the record is in the file");
        bytes[at] = b'!';
        std::fs::write(&path, &bytes).unwrap();

        for error in [FileStore::open(&path).err().unwrap(), FileStore::open_read(&path).err().unwrap()] {
            assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
            let text = error.to_string();
            assert!(text.contains("state.db is damaged: its pages do not match their checksums"), "{text}");
            assert!(text.contains("aptc store repair --state"), "{text}");
        }
        let health = FileStore::check(&path).unwrap();
        assert!(health.is_damaged());
        assert_eq!(health.readable, [1, 3], "{health:?}");
        assert!(health.damage.iter().any(|d| d.starts_with("revision 2 cannot be read")), "{health:?}");

        let repaired = FileStore::repair(&path).unwrap().unwrap();
        assert_eq!(repaired.health.readable, [1, 3]);
        assert_eq!(std::fs::read(&repaired.damaged).unwrap(), bytes, "the damaged file is kept as it was");
        assert!(repaired.damaged.file_name().unwrap().to_string_lossy().starts_with("state.db.damaged-"));
        let store = FileStore::open_read(&path).unwrap().unwrap();
        assert_eq!(store.list().unwrap().iter().map(|r| r.number).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(store.desired_state(3).unwrap().unwrap()["n"], 3);
        assert_eq!(store.policy_root().unwrap().unwrap(), Path::new("/policies/shop"));
        assert!(!FileStore::check(&path).unwrap().is_damaged());
        drop(store);
        assert_eq!(FileStore::open(&path).unwrap().next_number().unwrap(), 4);
    }

    #[test]
    fn readers_open_the_store_while_a_deploy_writes_and_see_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let desired: BTreeMap<String, Unit> = ["a", "b"].iter().map(|k| (k.to_string(), unit(k, &[]))).collect();
        let plan = crate::plan::plan(&BTreeMap::new(), &desired, None, &|_| true);
        let writer = FileStore::open(&path).unwrap();
        writer.record(&revision(1, Cause::Deploy { paths: vec![] }, &[]), &serde_json::json!({})).unwrap();
        let mut planned = revision(2, Cause::Deploy { paths: vec!["p".into()] }, &[]);
        planned.desired = desired.clone();
        let journal = Journal {
            revision: planned,
            plan: plan.clone(),
            desired_state: serde_json::json!({ "planned": true }).into(),
            program: None,
        };
        writer.begin(&journal).unwrap();
        let done = ActionReport { outcome: Outcome::Succeeded { detail: "ok".into() }, started_ms: 1, duration_ms: 2 };
        writer.journal_report(2, 0, &done).unwrap();

        // The deploy holds the store for writing: another writer is refused, readers are not.
        assert!(matches!(FileStore::open(&path).err().unwrap(), StoreError::Busy { .. }));
        let reader = FileStore::open_read(&path).unwrap().unwrap();
        assert_eq!(reader.last().unwrap().unwrap().number, 1);
        assert_eq!(reader.pending().unwrap().unwrap().revision.number, 2);
        let unfinished = reader.unfinished().unwrap().unwrap();
        assert_eq!(unfinished.number, 2);
        assert!(unfinished.actions[0].report.outcome.succeeded());
        assert_eq!(unfinished.actions[1].report.outcome, Outcome::Skipped { reason: NOT_REPORTED.into() });
        assert_eq!(reader.desired_state(2).unwrap().unwrap()["planned"], true, "from the journal");
        assert!(reader.recover().is_err(), "a reader records nothing");

        // The writer goes on; a reader opened later sees what it wrote since.
        writer.journal_report(2, 1, &done).unwrap();
        let later = FileStore::open_read(&path).unwrap().unwrap();
        assert!(later.unfinished().unwrap().unwrap().actions.iter().all(|a| a.report.outcome.succeeded()));
        assert!(reader.unfinished().unwrap().unwrap().actions[1].report.outcome != done.outcome, "a snapshot");
    }
}
