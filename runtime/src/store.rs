//! The revision store: every deploy is a revision, kept in one embedded, transactional file
//! (redb; `.aptc/state.db` by default).
//!
//! A revision records who deployed what and when (number, RFC 3339 UTC time, identity, a hash of
//! the policy), the desired state, the plan with each action's outcome and timing, and what the
//! target holds afterwards (`applied`): the next deploy plans against that, so whatever failed is
//! tried again. Writing a revision is one ACID transaction. While a store is open for writing, no
//! other process can open it (redb locks the file), so two deploys never interleave.
//!
//! Tables: `meta` (`schema` → [`SCHEMA`]), `revisions` (number → the [`Revision`] as JSON) and
//! `desired` (number → the full desired state as JSON, kept apart because only `history show`
//! reads it) and `programs` (number → the policy's resolution IR as JSON, from which the next
//! deploy computes who may change what, docs/language.md §11.3). Revisions recorded before
//! `programs` existed simply have no program: [`Store::program`] gives `None` for them, and the
//! schema stays 1 (an older aptc ignores the table).
//!
//! A deploy is journaled while it runs, so that killing aptc (or a crash, or a power cut) loses
//! nothing: before the first action, `journal` gets the revision as planned ([`Journal`]); as each
//! action ends, `journal_reports` gets its report, in its own transaction. Recording the revision
//! removes both in the same transaction. A journal found later means the deploy that wrote it
//! stopped: [`Store::recover`] records it as a revision with what its reports say, and every
//! action without a report as failed (the next deploy does it again; drivers' actions are
//! idempotent), so the store always says what was done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::apply::{ActionReport, Applied, Outcome};
use crate::plan::{Op, Plan, Unit};

/// The layout of the store; a store written by a newer aptc is refused.
pub const SCHEMA: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISIONS: TableDefinition<u64, &str> = TableDefinition::new("revisions");
const DESIRED: TableDefinition<u64, &str> = TableDefinition::new("desired");
const PROGRAMS: TableDefinition<u64, &str> = TableDefinition::new("programs");
const JOURNAL: TableDefinition<u64, &str> = TableDefinition::new("journal");
const JOURNAL_REPORTS: TableDefinition<(u64, u64), &str> = TableDefinition::new("journal_reports");

/// What [`Store::recover`] records for an action a stopped deploy did not report on.
pub const UNFINISHED: &str =
    "aptc stopped (killed or crashed) before this action reported how it ended; the next deploy does it again";

/// A revision being applied, as journaled before its first action (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// The revision as it will be recorded, without actions; its `applied` is what the target
    /// held before it.
    pub revision: Revision,
    pub plan: Plan,
    pub desired_state: serde_json::Value,
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
    /// Another aptc holds the store (a running deploy locks it): try again later.
    #[error("{} is in use by another aptc (a deploy or rollback is running); try again when it has finished", path.display())]
    Busy { path: PathBuf },
    /// The file cannot be opened as a store (not one, unreadable, …).
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
    /// What the store holds does not decode: `what` says which part (`revision 3`, `the journal`).
    #[error("decoding {what} of {}: {source}", path.display())]
    Corrupt {
        what: String,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record cannot be encoded (`what`: `a revision`, `a journal`).
    #[error("encoding {what} for {}: {source}", path.display())]
    Encode {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A write to a store opened with [`Store::open_read`] (a bug in the caller).
    #[error("{} is open for reading only", path.display())]
    ReadOnly { path: PathBuf },
    /// A revision recorded out of turn: another deploy recorded one since.
    #[error("revision {number} cannot be recorded in {}: the next revision is {next}", path.display())]
    OutOfOrder { path: PathBuf, number: u64, next: u64 },
    /// A deploy that stopped left its journal, which must be recovered before another begins.
    #[error("{} holds the unfinished revision {number}: recover it first", path.display())]
    Unfinished { path: PathBuf, number: u64 },
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

enum Db {
    Write(Database),
    Read(ReadOnlyDatabase),
}

/// An open store.
pub struct Store {
    db: Db,
    path: PathBuf,
}

impl Store {
    /// Opens the store at `path` for writing, creating it (and its directory) if needed. Fails if
    /// another process has it open.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| StoreError::CreateDir { dir: parent.to_path_buf(), source })?;
        }
        let db = Database::builder().set_cache_size(16 << 20).create(path).map_err(|e| open_error(path, e))?;
        let store = Store { db: Db::Write(db), path: path.to_path_buf() };
        store.initialise()?;
        Ok(store)
    }

    /// Opens an existing store for reading only; `None` if there is no store at `path`.
    pub fn open_read(path: &Path) -> Result<Option<Store>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let open = || redb::Builder::new().set_cache_size(16 << 20).open_read_only(path);
        let db = match open() {
            // Not closed cleanly (aptc was killed): only a writer can repair it, which redb does on
            // opening; then it reads as usual.
            Err(redb::DatabaseError::RepairAborted) => {
                tracing::info!(path = %path.display(), "repairing a store that was not closed cleanly");
                drop(Store::open(path)?);
                open()
            }
            other => other,
        }
        .map_err(|e| open_error(path, e))?;
        let store = Store { db: Db::Read(db), path: path.to_path_buf() };
        store.check_schema()?;
        Ok(Some(store))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database failed while `op` (`reading`, `writing`).
    fn db(&self, op: &'static str, error: impl Into<redb::Error>) -> StoreError {
        StoreError::Io { op, path: self.path.clone(), source: Box::new(error.into()) }
    }

    /// `what` (`revision 3`) does not decode.
    fn corrupt(&self, what: impl Into<String>, error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Corrupt { what: what.into(), path: self.path.clone(), source: Box::new(error) }
    }

    /// `what` (`a revision`) does not encode.
    fn encode(&self, what: &'static str, source: serde_json::Error) -> StoreError {
        StoreError::Encode { what, path: self.path.clone(), source }
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        match &self.db {
            Db::Write(db) => db.begin_read(),
            Db::Read(db) => db.begin_read(),
        }
        .map_err(|e| self.db("reading", e))
    }

    /// Whether it was opened for writing ([`Store::open`]).
    pub fn is_writable(&self) -> bool {
        matches!(self.db, Db::Write(_))
    }

    fn writer(&self) -> Result<&Database, StoreError> {
        match &self.db {
            Db::Write(db) => Ok(db),
            Db::Read(_) => Err(StoreError::ReadOnly { path: self.path.clone() }),
        }
    }

    /// Creates the tables and the schema mark of a new store; checks the mark of an old one.
    fn initialise(&self) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write().map_err(|e| self.db("writing", e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.db("writing", e))?;
            let schema = meta.get("schema").map_err(|e| self.db("reading", e))?.map(|v| v.value());
            match schema {
                None => {
                    meta.insert("schema", SCHEMA).map_err(|e| self.db("writing", e))?;
                }
                Some(found) if found > SCHEMA => return Err(self.newer(found)),
                Some(_) => {}
            }
            txn.open_table(REVISIONS).map_err(|e| self.db("writing", e))?;
            txn.open_table(DESIRED).map_err(|e| self.db("writing", e))?;
            txn.open_table(PROGRAMS).map_err(|e| self.db("writing", e))?;
            txn.open_table(JOURNAL).map_err(|e| self.db("writing", e))?;
            txn.open_table(JOURNAL_REPORTS).map_err(|e| self.db("writing", e))?;
        }
        txn.commit().map_err(|e| self.db("writing", e))
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self.begin_read()?;
        let Some(meta) = self.table(&txn, META)? else { return Ok(()) };
        match meta.get("schema").map_err(|e| self.db("reading", e))?.map(|v| v.value()) {
            Some(found) if found > SCHEMA => Err(self.newer(found)),
            _ => Ok(()),
        }
    }

    fn newer(&self, found: u64) -> StoreError {
        StoreError::Schema { path: self.path.clone(), found }
    }

    /// Every revision, oldest first.
    pub fn list(&self) -> Result<Vec<Revision>, StoreError> {
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, REVISIONS)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("reading", e))? {
            let (number, text) = entry.map_err(|e| self.db("reading", e))?;
            out.push(self.decode(number.value(), text.value())?);
        }
        Ok(out)
    }

    /// Revision `number`.
    pub fn get(&self, number: u64) -> Result<Option<Revision>, StoreError> {
        self.read_text(REVISIONS, number)?.map(|text| self.decode(number, &text)).transpose()
    }

    /// The latest revision.
    pub fn last(&self) -> Result<Option<Revision>, StoreError> {
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, REVISIONS)? else { return Ok(None) };
        match table.last().map_err(|e| self.db("reading", e))? {
            Some((number, text)) => Ok(Some(self.decode(number.value(), text.value())?)),
            None => Ok(None),
        }
    }

    /// The number the next revision gets.
    pub fn next_number(&self) -> Result<u64, StoreError> {
        Ok(self.last()?.map_or(1, |r| r.number + 1))
    }

    /// How many revisions there are.
    pub fn len(&self) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        match self.table(&txn, REVISIONS)? {
            Some(table) => table.len().map_err(|e| self.db("reading", e)),
            None => Ok(0),
        }
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// The full desired state revision `number` deployed (as JSON).
    pub fn desired_state(&self, number: u64) -> Result<Option<serde_json::Value>, StoreError> {
        self.read_text(DESIRED, number)?
            .map(|text| serde_json::from_str(&text).map_err(|e| self.corrupt(format!("revision {number}"), e)))
            .transpose()
    }

    /// The policy (resolution IR) revision `number` deployed; `None` for a revision recorded
    /// without one (by an older aptc, or by a rollback to such a revision).
    pub fn program(&self, number: u64) -> Result<Option<aptc_core::ir::Program>, StoreError> {
        self.read_text(PROGRAMS, number)?
            .map(|text| {
                aptc_core::ir::Program::from_json(&text)
                    .map_err(|e| self.corrupt(format!("the policy of revision {number}"), e))
            })
            .transpose()
    }

    /// Records a new revision with its full desired state, in one transaction. Its number must
    /// be the next one.
    pub fn record(&self, revision: &Revision, desired_state: &serde_json::Value) -> Result<(), StoreError> {
        self.record_with_program(revision, desired_state, None)
    }

    /// [`Store::record`], keeping the policy deployed (see [`Store::program`]) too.
    pub fn record_with_program(
        &self,
        revision: &Revision,
        desired_state: &serde_json::Value,
        program: Option<&aptc_core::ir::Program>,
    ) -> Result<(), StoreError> {
        let db = self.writer()?;
        let next = self.next_number()?;
        if revision.number != next {
            return Err(StoreError::OutOfOrder { path: self.path.clone(), number: revision.number, next });
        }
        let record = serde_json::to_string(revision).map_err(|e| self.encode("a revision", e))?;
        let desired = serde_json::to_string(desired_state).map_err(|e| self.encode("a revision", e))?;
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
            revisions.insert(revision.number, record.as_str()).map_err(|e| self.db("writing", e))?;
            let mut states = txn.open_table(DESIRED).map_err(|e| self.db("writing", e))?;
            states.insert(revision.number, desired.as_str()).map_err(|e| self.db("writing", e))?;
            if let Some(program) = program {
                let mut programs = txn.open_table(PROGRAMS).map_err(|e| self.db("writing", e))?;
                programs.insert(revision.number, program.to_json().as_str()).map_err(|e| self.db("writing", e))?;
            }
        }
        txn.commit().map_err(|e| self.db("writing", e))
    }

    /// Journals a revision before its first action (see the module docs). A journal left by a
    /// stopped deploy must be recovered first.
    pub fn begin(&self, journal: &Journal) -> Result<(), StoreError> {
        if let Some(old) = self.pending()? {
            return Err(StoreError::Unfinished { path: self.path.clone(), number: old.revision.number });
        }
        let text = serde_json::to_string(journal).map_err(|e| self.encode("a journal", e))?;
        let txn = self.writer()?.begin_write().map_err(|e| self.db("writing", e))?;
        txn.open_table(JOURNAL)
            .map_err(|e| self.db("writing", e))?
            .insert(journal.revision.number, text.as_str())
            .map_err(|e| self.db("writing", e))?;
        txn.commit().map_err(|e| self.db("writing", e))
    }

    /// Journals how action `index` of the running revision `number` ended, durably.
    pub fn journal_report(&self, number: u64, index: usize, report: &ActionReport) -> Result<(), StoreError> {
        let text = serde_json::to_string(report).map_err(|e| self.encode("a journal", e))?;
        let txn = self.writer()?.begin_write().map_err(|e| self.db("writing", e))?;
        txn.open_table(JOURNAL_REPORTS)
            .map_err(|e| self.db("writing", e))?
            .insert((number, index as u64), text.as_str())
            .map_err(|e| self.db("writing", e))?;
        txn.commit().map_err(|e| self.db("writing", e))
    }

    /// The journal of a deploy that has not been recorded (running now in another process, or
    /// stopped), if any.
    pub fn pending(&self) -> Result<Option<Journal>, StoreError> {
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, JOURNAL)? else { return Ok(None) };
        match table.first().map_err(|e| self.db("reading", e))? {
            Some((_, text)) => serde_json::from_str(text.value()).map(Some).map_err(|e| self.corrupt("the journal", e)),
            None => Ok(None),
        }
    }

    /// Records the revision of a deploy that stopped before recording it (see the module docs);
    /// `None` when there is none. Only a store open for writing can hold a stopped deploy's
    /// journal, since a running deploy keeps the store locked.
    pub fn recover(&self) -> Result<Option<Revision>, StoreError> {
        self.writer()?;
        let Some(journal) = self.pending()? else { return Ok(None) };
        let number = journal.revision.number;
        let mut reports: Vec<Option<ActionReport>> = vec![None; journal.plan.actions.len()];
        {
            let txn = self.begin_read()?;
            let table = txn.open_table(JOURNAL_REPORTS).map_err(|e| self.db("reading", e))?;
            for entry in table.range((number, 0)..=(number, u64::MAX)).map_err(|e| self.db("reading", e))? {
                let (key, text) = entry.map_err(|e| self.db("reading", e))?;
                let index = usize::try_from(key.value().1).unwrap_or(usize::MAX);
                let report = serde_json::from_str(text.value()).map_err(|e| self.corrupt("the journal", e))?;
                if let Some(slot) = reports.get_mut(index) {
                    *slot = Some(report);
                }
            }
        }
        let reports: Vec<ActionReport> = reports
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
        let program = journal
            .program
            .as_deref()
            .map(aptc_core::ir::Program::from_json)
            .transpose()
            .map_err(|e| self.corrupt("the journal", e))?;
        self.record_with_program(&revision, &journal.desired_state, program.as_ref())?;
        Ok(Some(revision))
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

    fn read_text(&self, table: TableDefinition<u64, &str>, number: u64) -> Result<Option<String>, StoreError> {
        let txn = self.begin_read()?;
        let Some(table) = self.table(&txn, table)? else { return Ok(None) };
        Ok(table.get(number).map_err(|e| self.db("reading", e))?.map(|v| v.value().to_string()))
    }

    fn decode(&self, number: u64, text: &str) -> Result<Revision, StoreError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(format!("revision {number}"), e))
    }
}

fn open_error(path: &Path, error: redb::DatabaseError) -> StoreError {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Busy { path: path.to_path_buf() },
        source => StoreError::Open { path: path.to_path_buf(), source: Box::new(source) },
    }
}

/// The time now, RFC 3339 in UTC, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
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
        }
    }

    #[test]
    fn revisions_are_written_read_back_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.db");
        assert!(Store::open_read(&path).unwrap().is_none(), "reading creates nothing");
        assert!(!path.exists());
        let store = Store::open(&path).unwrap();
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
        let again = Store::open_read(&path).unwrap().unwrap();
        assert_eq!(again.len().unwrap(), 2);
        assert!(again.record(&revision(3, Cause::Rollback { to: 1 }, &[]), &serde_json::json!({})).is_err());
    }

    #[test]
    fn a_rollback_plans_back_to_the_old_desired_units() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
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
        let _held = Store::open(&path).unwrap();
        let error = Store::open(&path).err().unwrap();
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
        assert!(matches!(Store::open(&path).err().unwrap(), StoreError::Schema { found, .. } if found == SCHEMA + 1));
        assert!(Store::open_read(&path).err().unwrap().to_string().contains("newer aptc"));
    }

    #[test]
    fn a_revision_keeps_its_policy_and_old_revisions_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        // A store as the aptc before `programs` wrote it: meta, revisions and desired only.
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("schema", 1).unwrap();
            let old = serde_json::to_string(&revision(1, Cause::Deploy { paths: vec![] }, &["a"])).unwrap();
            txn.open_table(REVISIONS).unwrap().insert(1, old.as_str()).unwrap();
            txn.open_table(DESIRED).unwrap().insert(1, "{}").unwrap();
            txn.commit().unwrap();
        }
        {
            let old = Store::open_read(&path).unwrap().unwrap();
            assert_eq!(old.last().unwrap().unwrap().number, 1);
            assert!(old.program(1).unwrap().is_none(), "a revision without a policy reads as none");
        }
        let store = Store::open(&path).unwrap();
        assert!(store.program(1).unwrap().is_none());
        let program = crate::test_policy::compile(&[("system.apt", "namespace system\n\nuser \"ada\" {}\n")]);
        let second = revision(2, Cause::Deploy { paths: vec![] }, &["a"]);
        store.record_with_program(&second, &serde_json::json!({}), Some(&program)).unwrap();
        assert_eq!(store.program(2).unwrap().unwrap(), program);
        assert!(store.program(3).unwrap().is_none());
    }

    #[test]
    fn a_deploy_killed_midway_is_recovered_with_what_it_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let desired: BTreeMap<String, Unit> = ["a", "b"].iter().map(|k| (k.to_string(), unit(k, &[]))).collect();
        let plan = crate::plan::plan(&BTreeMap::new(), &desired, None, &|_| true);
        {
            let store = Store::open(&path).unwrap();
            let mut planned = revision(1, Cause::Deploy { paths: vec!["p".into()] }, &[]);
            planned.desired = desired.clone();
            let journal =
                Journal { revision: planned, plan: plan.clone(), desired_state: serde_json::json!({}), program: None };
            store.begin(&journal).unwrap();
            assert!(store.begin(&journal).unwrap_err().to_string().contains("unfinished revision 1"));
            let done =
                ActionReport { outcome: Outcome::Succeeded { detail: "ok".into() }, started_ms: 1, duration_ms: 2 };
            store.journal_report(1, 0, &done).unwrap();
            // The process dies here: the store is dropped without recording the revision.
        }
        let read = Store::open_read(&path).unwrap().unwrap();
        assert!(read.last().unwrap().is_none());
        assert_eq!(read.pending().unwrap().unwrap().revision.number, 1);
        assert!(read.recover().is_err(), "only a writer recovers");
        drop(read);
        let store = Store::open(&path).unwrap();
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
}
