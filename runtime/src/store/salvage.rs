//! A damaged store: what can still be read from it ([`FileStore::check`]) and a fresh store holding
//! every readable revision ([`FileStore::repair`]).
//!
//! A damaged file cannot be trusted to redb's integrity check (it fails), so it is read without
//! one, from a private copy: each table, then each record on its own, so that a damaged page loses
//! only what it holds. redb may panic on such a page rather than return an error; [`guarded`] is
//! the one place that turns such a panic into an error.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{FileStore, JOURNAL_REPORTS, META, NUMBERED, POLICY_ROOT, Revision, SETTINGS, StoreError};

/// Serialises [`guarded`] calls across threads: each swaps the process's panic hook.
static HOOK: Mutex<()> = Mutex::new(());

thread_local! {
    /// Whether this thread is inside [`guarded`] (a nested call only catches).
    static GUARDING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err` with its message.
///
/// Why: redb trusts the pages it reads, and on a page damaged on disk it can panic (an
/// `unreachable!`, a slice out of bounds, a `&str` that is not UTF-8) instead of returning an
/// error. A store in use is verified first (redb's integrity check, [`super::open_verified`]), so
/// this is needed only around that check and where a damaged store is salvaged. While `f` runs,
/// panics on this thread are not printed (the damage is reported as such, not as a crash); other
/// threads' panics still go to the previous hook, which is restored afterwards.
pub(super) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    if GUARDING.with(Cell::get) {
        return std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(panic_message);
    }
    let _lock = HOOK.lock().unwrap_or_else(PoisonError::into_inner);
    let previous: Arc<dyn Fn(&PanicHookInfo<'_>) + Send + Sync> = Arc::from(std::panic::take_hook());
    let here = std::thread::current().id();
    let others = Arc::clone(&previous);
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != here {
            others(info);
        }
    }));
    GUARDING.with(|g| g.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    GUARDING.with(|g| g.set(false));
    std::panic::set_hook(Box::new(move |info| previous(info)));
    result.map_err(panic_message)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string());
    format!("redb failed on a damaged page: {text}")
}

/// What [`FileStore::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// What is damaged, one line each; empty when nothing is.
    pub damage: Vec<String>,
    /// The revisions that can be read in full.
    pub readable: Vec<u64>,
    /// Whether the journal of a deploy that has not finished can be read.
    pub journal: bool,
}

impl Health {
    pub fn is_damaged(&self) -> bool {
        !self.damage.is_empty()
    }
}

/// What [`FileStore::repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repaired {
    /// What the fresh store holds and what was lost ([`Health`] of the damaged file).
    pub health: Health,
    /// Where the damaged file was moved (`state.db.damaged-<time>`).
    pub damaged: PathBuf,
}

/// Everything that could be read from a store's file, as bytes in schema 2's form.
#[derive(Default)]
struct Salvage {
    /// Table name → number → value (`revisions`, `desired`, `programs`, `journal`).
    numbered: BTreeMap<&'static str, BTreeMap<u64, Vec<u8>>>,
    reports: BTreeMap<(u64, u64), Vec<u8>>,
    policy_root: Option<Vec<u8>>,
    damage: Vec<String>,
}

/// Numbers past the last one found that are still tried when a table cannot be walked (its
/// last entries may sit in a damaged page).
const PROBE_PAST: u64 = 64;

impl Salvage {
    /// Reads what it can of the store at `path` from a private copy, without trusting it.
    fn read(path: &Path) -> Result<Salvage, StoreError> {
        let (_copy, file) = super::private_copy(path, "salvage")?;
        let mut salvage = Salvage::default();
        // Opened as a writer: a file not closed cleanly is repaired (in the copy) on opening.
        let mut builder = redb::Database::builder();
        builder.set_cache_size(16 << 20);
        let db = match guarded(|| builder.open(&file)) {
            Ok(Ok(db)) => db,
            Ok(Err(error)) => {
                salvage.damage.push(format!("the file cannot be opened at all ({error})"));
                return Ok(salvage);
            }
            Err(panic) => {
                salvage.damage.push(format!("the file cannot be opened at all ({panic})"));
                return Ok(salvage);
            }
        };
        let txn = match guarded(|| db.begin_read()) {
            Ok(Ok(txn)) => txn,
            Ok(Err(error)) => {
                salvage.damage.push(format!("the file cannot be read ({error})"));
                return Ok(salvage);
            }
            Err(panic) => {
                salvage.damage.push(format!("the file cannot be read ({panic})"));
                return Ok(salvage);
            }
        };
        let schema = match guarded(|| -> Result<Option<u64>, redb::Error> {
            let meta = txn.open_table(META)?;
            Ok(meta.get("schema")?.map(|v| v.value()))
        }) {
            Ok(Ok(schema)) => schema.unwrap_or(1),
            Ok(Err(error)) => {
                salvage.damage.push(format!("the schema mark cannot be read ({error}); reading it as schema 2"));
                super::SCHEMA
            }
            Err(panic) => {
                salvage.damage.push(format!("the schema mark cannot be read ({panic}); reading it as schema 2"));
                super::SCHEMA
            }
        };
        if schema > super::SCHEMA {
            return Err(StoreError::Schema { path: path.to_path_buf(), found: schema });
        }
        for name in NUMBERED {
            let rows = salvage.numbered_table(&txn, name, schema);
            salvage.numbered.insert(name, rows);
        }
        salvage.read_reports(&txn, schema);
        if schema >= 2 {
            match guarded(|| -> Result<Option<Vec<u8>>, redb::Error> {
                match txn.open_table(SETTINGS) {
                    Ok(table) => Ok(table.get(POLICY_ROOT)?.map(|v| v.value().to_vec())),
                    Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }) {
                Ok(Ok(root)) => salvage.policy_root = root,
                Ok(Err(error)) => salvage.damage.push(format!("the policy root cannot be read ({error})")),
                Err(panic) => salvage.damage.push(format!("the policy root cannot be read ({panic})")),
            }
        }
        salvage.validate();
        Ok(salvage)
    }

    /// The rows of a table keyed by revision number: walked if it can be, and every number up to
    /// past the last one found read on its own (a damaged page then loses only its rows).
    fn numbered_table(
        &mut self,
        txn: &redb::ReadTransaction,
        name: &'static str,
        schema: u64,
    ) -> BTreeMap<u64, Vec<u8>> {
        let mut keys = Vec::new();
        let walked = guarded(|| -> Result<(), redb::Error> {
            if schema >= 2 {
                let table = match txn.open_table(TableDefinition::<u64, &[u8]>::new(name)) {
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                    other => other?,
                };
                for row in table.iter()? {
                    keys.push(row?.0.value());
                }
            } else {
                let table = match txn.open_table(TableDefinition::<u64, &str>::new(name)) {
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                    other => other?,
                };
                for row in table.iter()? {
                    keys.push(row?.0.value());
                }
            }
            Ok(())
        });
        let complete = matches!(walked, Ok(Ok(())));
        let last = keys.iter().copied().max().unwrap_or(0);
        let until = if complete { last } else { last + PROBE_PAST };
        if !complete {
            let why = match walked {
                Ok(Err(error)) => error.to_string(),
                Err(panic) => panic,
                Ok(Ok(())) => String::new(),
            };
            self.damage.push(format!("the table `{name}` cannot be read whole ({why}); reading it entry by entry"));
        }
        let mut rows = BTreeMap::new();
        for number in 1..=until {
            let value = guarded(|| -> Result<Option<Vec<u8>>, redb::Error> {
                if schema >= 2 {
                    let table = txn.open_table(TableDefinition::<u64, &[u8]>::new(name))?;
                    Ok(table.get(number)?.map(|v| v.value().to_vec()))
                } else {
                    let table = txn.open_table(TableDefinition::<u64, &str>::new(name))?;
                    Ok(table.get(number)?.map(|v| v.value().as_bytes().to_vec()))
                }
            });
            match value {
                Ok(Ok(Some(bytes))) => {
                    rows.insert(number, bytes);
                }
                Ok(Ok(None)) => {}
                Ok(Err(redb::Error::TableDoesNotExist(_))) => break,
                Ok(Err(error)) => self.damage.push(format!("entry {number} of `{name}` cannot be read ({error})")),
                Err(panic) => self.damage.push(format!("entry {number} of `{name}` cannot be read ({panic})")),
            }
        }
        rows
    }

    fn read_reports(&mut self, txn: &redb::ReadTransaction, schema: u64) {
        let mut rows = BTreeMap::new();
        let read = guarded(|| -> Result<(), redb::Error> {
            if schema >= 2 {
                let table = match txn.open_table(JOURNAL_REPORTS) {
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                    other => other?,
                };
                for row in table.iter()? {
                    let (key, value) = row?;
                    rows.insert(key.value(), value.value().to_vec());
                }
            } else {
                let table = match txn.open_table(TableDefinition::<(u64, u64), &str>::new("journal_reports")) {
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                    other => other?,
                };
                for row in table.iter()? {
                    let (key, value) = row?;
                    rows.insert(key.value(), value.value().as_bytes().to_vec());
                }
            }
            Ok(())
        });
        match read {
            Ok(Ok(())) => self.reports = rows,
            Ok(Err(error)) => self.damage.push(format!(
                "the journal's reports cannot be read ({error}); the unfinished deploy's actions count as not done"
            )),
            Err(panic) => self.damage.push(format!(
                "the journal's reports cannot be read ({panic}); the unfinished deploy's actions count as not done"
            )),
        }
    }

    /// Drops what does not decode, saying so: a revision that is not one; a desired state or a
    /// policy that is not one (its revision is kept without it).
    fn validate(&mut self) {
        let mut damage = Vec::new();
        if let Some(revisions) = self.numbered.get_mut("revisions") {
            revisions.retain(|number, bytes| match serde_json::from_slice::<Revision>(bytes) {
                Ok(revision) if revision.number == *number => true,
                Ok(revision) => {
                    damage.push(format!("revision {number} holds revision {} instead", revision.number));
                    false
                }
                Err(error) => {
                    damage.push(format!("revision {number} cannot be read ({error})"));
                    false
                }
            });
        }
        if let Some(desired) = self.numbered.get_mut("desired") {
            desired.retain(|number, bytes| match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(_) => true,
                Err(error) => {
                    damage.push(format!("the desired state of revision {number} cannot be read ({error})"));
                    false
                }
            });
        }
        if let Some(programs) = self.numbered.get_mut("programs") {
            programs.retain(|number, bytes| {
                match std::str::from_utf8(bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|text| aptc_core::ir::Program::from_json(text).map(|_| ()).map_err(|e| e.to_string()))
                {
                    Ok(()) => true,
                    Err(error) => {
                        damage.push(format!(
                            "the policy of revision {number} cannot be read ({error}); without it the next deploy \
takes its roles from the policy it deploys"
                        ));
                        false
                    }
                }
            });
        }
        if let Some(journal) = self.numbered.get_mut("journal") {
            journal.retain(|number, bytes| match serde_json::from_slice::<super::Journal>(bytes) {
                Ok(_) => true,
                Err(error) => {
                    damage.push(format!("the journal of the unfinished revision {number} cannot be read ({error})"));
                    false
                }
            });
        }
        self.damage.extend(damage);
    }

    fn rows(&self, name: &str) -> impl Iterator<Item = (&u64, &Vec<u8>)> {
        self.numbered.get(name).into_iter().flatten()
    }

    fn health(&self, verified: Option<String>) -> Health {
        let mut damage: Vec<String> = verified.into_iter().collect();
        damage.extend(self.damage.iter().cloned());
        Health {
            damage,
            readable: self.rows("revisions").map(|(n, _)| *n).collect(),
            journal: self.rows("journal").next().is_some(),
        }
    }
}

impl FileStore {
    /// What is damaged in the store at `path` (redb's integrity check, then every record decoded)
    /// and what can still be read.
    pub fn check(path: &Path) -> Result<Health, StoreError> {
        let verified = match FileStore::open_read(path) {
            Ok(Some(store)) => {
                drop(store);
                None
            }
            Ok(None) => return Err(StoreError::NotFound { path: path.to_path_buf() }),
            Err(StoreError::Damaged { part, .. }) => Some(part),
            Err(error) => return Err(error),
        };
        Ok(Salvage::read(path)?.health(verified))
    }

    /// Copies every readable revision (with its desired state and policy), the journal of an
    /// unfinished deploy and the policy root of the store at `path` into a fresh store, which
    /// takes its place; the damaged file is kept beside it as `<name>.damaged-<time>`. `None`
    /// when the store is not damaged (nothing is changed).
    pub fn repair(path: &Path) -> Result<Option<Repaired>, StoreError> {
        let health = FileStore::check(path)?;
        if !health.is_damaged() {
            return Ok(None);
        }
        let salvage = Salvage::read(path)?;
        let name = path.file_name().map_or_else(|| "state.db".into(), |n| n.to_string_lossy().into_owned());
        let fresh = path.with_file_name(format!(".{name}.repairing-{}", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        {
            let store = FileStore::open(&fresh)?;
            let db = store.writer()?;
            let write = |e: redb::Error| store.db("writing", e);
            let txn = db.begin_write().map_err(|e| write(e.into()))?;
            for table in super::NUMBERED {
                let mut out = txn.open_table(TableDefinition::<u64, &[u8]>::new(table)).map_err(|e| write(e.into()))?;
                for (number, bytes) in salvage.rows(table) {
                    out.insert(*number, bytes.as_slice()).map_err(|e| write(e.into()))?;
                }
            }
            {
                let mut reports = txn.open_table(JOURNAL_REPORTS).map_err(|e| write(e.into()))?;
                for (key, bytes) in &salvage.reports {
                    reports.insert(*key, bytes.as_slice()).map_err(|e| write(e.into()))?;
                }
            }
            if let Some(root) = &salvage.policy_root {
                txn.open_table(SETTINGS)
                    .map_err(|e| write(e.into()))?
                    .insert(POLICY_ROOT, root.as_slice())
                    .map_err(|e| write(e.into()))?;
            }
            txn.commit().map_err(|e| write(e.into()))?;
        }
        let time = super::now_rfc3339().replace([':', '-'], "");
        let damaged = path.with_file_name(format!("{name}.damaged-{time}"));
        let moved = |what, source| StoreError::File { what, path: path.to_path_buf(), source };
        std::fs::rename(path, &damaged).map_err(|e| moved("moving the damaged store away from", e))?;
        std::fs::rename(&fresh, path).map_err(|e| moved("putting the repaired store in place of", e))?;
        Ok(Some(Repaired { health, damaged }))
    }
}
