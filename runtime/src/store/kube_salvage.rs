//! `aptc store check` and `aptc store repair` for a Kubernetes store (`--state
//! kube://CONTEXT/NAMESPACE`): what its objects hold and what of it cannot be read
//! ([`KubeStore::check`]), and putting aside what cannot be read so that the rest is usable again
//! ([`KubeStore::repair`]). The API server keeps the objects whole, so the damage here is of
//! another kind than a file's: a record that does not decode (an object edited by hand, written
//! by a newer aptc), an object without its number, a revision deleted from the middle, a journal
//! an interrupted deploy left in force.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

use super::kube::{
    DESIRED, HEAD, JOURNAL, JOURNAL_MARK, JOURNAL_OBJECT, JournaledNumber, KubeStore, LABEL_REVISION, LABEL_STORE,
    REPORTS, REVISION, check_schema, connect, decode, holder, journal_mark, kube_error, revision_name,
};
use super::{KubeLocation, Location, Revision, Store, StoreError};

/// What a Kubernetes store holds, and what of it cannot be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeHealth {
    /// The revisions whose records all read, by number.
    pub readable: Vec<u64>,
    /// What cannot be read or is missing, one sentence each.
    pub damage: Vec<String>,
    /// The revision a journal left in the head is of (an interrupted deploy; the next writer, or
    /// `repair`, records it).
    pub unfinished: Option<u64>,
}

impl KubeHealth {
    /// Whether anything cannot be read.
    pub fn is_damaged(&self) -> bool {
        !self.damage.is_empty()
    }
}

/// What was found, with what `repair` needs to act on it.
#[derive(Default)]
struct Findings {
    health: KubeHealth,
    /// Revision objects (by name) with a record that cannot be read, or no number.
    unreadable: Vec<String>,
    /// Whether the head's journal (or its reports) cannot be read.
    bad_journal: bool,
}

async fn inspect(location: &Location, api: &Api<ConfigMap>) -> Result<Findings, StoreError> {
    let mut found = Findings::default();
    let head = api.get_opt(HEAD).await.map_err(|e| kube_error(location, "reading the store's head", &e))?;
    let list = api
        .list(&ListParams::default().labels(&format!("{LABEL_STORE}=revision")))
        .await
        .map_err(|e| kube_error(location, "listing the revisions", &e))?;
    match &head {
        Some(head) => {
            check_schema(location, head)?;
            match journaled(location, api, head).await? {
                Ok(number) => found.health.unfinished = number,
                Err(why) => {
                    found.health.damage.push(why);
                    found.bad_journal = true;
                }
            }
            if let Err(why) = decode::<serde_json::Value>(head, REPORTS) {
                found.health.damage.push(format!("the journal's reports in {HEAD} cannot be read ({why})"));
                found.bad_journal = true;
            }
        }
        None if !list.items.is_empty() => found
            .health
            .damage
            .push(format!("there is no head object {HEAD} (the lock and the journal); the next writer creates it")),
        None => {}
    }
    let mut numbers = Vec::new();
    for object in &list.items {
        let name = object.metadata.name.clone().unwrap_or_default();
        let number = object.metadata.labels.as_ref().and_then(|l| l.get(LABEL_REVISION)).and_then(|n| n.parse().ok());
        let Some(number) = number else {
            found.health.damage.push(format!("{name} has no revision number ({LABEL_REVISION})"));
            found.unreadable.push(name);
            continue;
        };
        numbers.push(number);
        let mut problems = Vec::new();
        if name != revision_name(number) {
            problems.push(format!("{name} is labelled revision {number}"));
        }
        match decode::<Revision>(object, REVISION) {
            Ok(Some(revision)) if revision.number == number => {}
            Ok(Some(revision)) => problems.push(format!("{name} holds the record of revision {}", revision.number)),
            Ok(None) => problems.push(format!("{name} has no revision record")),
            Err(why) => problems.push(format!("the record of revision {number} cannot be read ({why})")),
        }
        if let Err(why) = decode::<serde_json::Value>(object, DESIRED) {
            problems.push(format!("the desired state of revision {number} cannot be read ({why})"));
        }
        if problems.is_empty() {
            found.health.readable.push(number);
        } else {
            found.health.damage.extend(problems);
            found.unreadable.push(name);
        }
    }
    numbers.sort_unstable();
    if let Some(&last) = numbers.last() {
        let missing: Vec<String> =
            (1..last).filter(|n| numbers.binary_search(n).is_err()).map(|n| n.to_string()).collect();
        if !missing.is_empty() {
            found.health.damage.push(format!(
                "revisions missing: {} (their objects were deleted; they cannot be had back)",
                missing.join(", ")
            ));
        }
    }
    found.health.readable.sort_unstable();
    Ok(found)
}

/// The revision of the journal in force (`None`: no deploy was interrupted), or why it cannot be
/// read: the journal's own object, as the head's mark names it, or (an older store's) the
/// journal in the head.
async fn journaled(
    location: &Location,
    api: &Api<ConfigMap>,
    head: &ConfigMap,
) -> Result<Result<Option<u64>, String>, StoreError> {
    let number = match journal_mark(head) {
        None => {
            return Ok(decode::<JournaledNumber>(head, JOURNAL)
                .map(|journal| journal.map(|j| j.revision.number))
                .map_err(|why| format!("the journal in {HEAD} cannot be read ({why})")));
        }
        Some(Err(why)) => return Ok(Err(why)),
        Some(Ok(number)) => number,
    };
    let object = api
        .get_opt(JOURNAL_OBJECT)
        .await
        .map_err(|e| kube_error(location, &format!("reading {JOURNAL_OBJECT}"), &e))?;
    let Some(object) = object else {
        return Ok(Err(format!("the journal of revision {number} that {HEAD} names is gone ({JOURNAL_OBJECT})")));
    };
    Ok(match decode::<JournaledNumber>(&object, JOURNAL) {
        Ok(Some(journal)) if journal.revision.number == number => Ok(Some(number)),
        Ok(Some(journal)) => Err(format!(
            "{JOURNAL_OBJECT} holds the journal of revision {}, {HEAD} names revision {number}",
            journal.revision.number
        )),
        Ok(None) => Err(format!("{JOURNAL_OBJECT} holds no journal")),
        Err(why) => Err(format!("the journal in {JOURNAL_OBJECT} cannot be read ({why})")),
    })
}

/// A copy of `object` named `name`, without aptc's labels (so no reader takes it for part of the
/// store) and without what the API server sets.
fn set_aside(object: &ConfigMap, name: String) -> ConfigMap {
    let mut copy = object.clone();
    copy.metadata = ObjectMeta {
        name: Some(name),
        namespace: object.metadata.namespace.clone(),
        annotations: object.metadata.annotations.clone(),
        ..ObjectMeta::default()
    };
    copy
}

/// A suffix telling set-aside objects apart: the time, in seconds since the epoch.
fn now_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl KubeStore {
    /// What the store in `kube`'s namespace holds and what of it cannot be read; it changes
    /// nothing. A head of a newer schema is refused.
    pub fn check(location: &Location, kube: &KubeLocation) -> Result<KubeHealth, StoreError> {
        let (runtime, api) = connect(location, kube)?;
        Ok(runtime.block_on(inspect(location, &api))?.health)
    }

    /// Makes the store usable again and says what it did, one sentence each (empty: nothing to
    /// do): each revision object that cannot be read is copied aside (`NAME-damaged-TIME`, not
    /// part of the store) and removed, a journal that cannot be read likewise leaves the head
    /// (the head copied aside first), and a readable journal of an interrupted deploy is recorded
    /// as its revision (its unreported actions failed, so the next deploy does them again).
    /// Refused while another aptc holds the lock. Missing revisions cannot be had back: the
    /// health after the repair still names them.
    pub fn repair(location: &Location, kube: &KubeLocation) -> Result<(Vec<String>, KubeHealth), StoreError> {
        let (runtime, api) = connect(location, kube)?;
        let found = runtime.block_on(inspect(location, &api))?;
        let mut done = Vec::new();
        if let Some(head) =
            runtime.block_on(api.get_opt(HEAD)).map_err(|e| kube_error(location, "reading the head", &e))?
            && let Some(holder) = holder(&head).filter(|h| !h.lapsed())
        {
            return Err(StoreError::Held {
                store: location.clone(),
                holder: holder.describe(),
                lapse: holder.lapse_seconds,
            });
        }
        let suffix = now_suffix();
        runtime.block_on(async {
            for name in &found.unreadable {
                let Some(object) =
                    api.get_opt(name).await.map_err(|e| kube_error(location, &format!("reading {name}"), &e))?
                else {
                    continue;
                };
                let aside = format!("{name}-damaged-{suffix}");
                api.create(&PostParams::default(), &set_aside(&object, aside.clone()))
                    .await
                    .map_err(|e| kube_error(location, &format!("copying {name} aside"), &e))?;
                api.delete(name, &DeleteParams::default())
                    .await
                    .map_err(|e| kube_error(location, &format!("removing {name}"), &e))?;
                done.push(format!("moved {name}, which cannot be read, aside as {aside}"));
            }
            if found.bad_journal
                && let Some(mut head) =
                    api.get_opt(HEAD).await.map_err(|e| kube_error(location, "reading the head", &e))?
            {
                let aside = format!("{HEAD}-damaged-{suffix}");
                api.create(&PostParams::default(), &set_aside(&head, aside.clone()))
                    .await
                    .map_err(|e| kube_error(location, "copying the head aside", &e))?;
                if let Some(data) = head.binary_data.as_mut() {
                    data.remove(JOURNAL);
                    data.remove(REPORTS);
                }
                // Without the mark, the journal's object is stale: the next deploy replaces it.
                if let Some(data) = head.data.as_mut() {
                    data.remove(JOURNAL_MARK);
                }
                // The resourceVersion read is the precondition: a writer that came meanwhile wins.
                api.replace(HEAD, &PostParams::default(), &head)
                    .await
                    .map_err(|e| kube_error(location, "removing the journal from the head", &e))?;
                done.push(format!(
                    "removed the journal, which cannot be read, from {HEAD} (the head as it was is kept as {aside}); \
the interrupted deploy's actions are not recorded: deploy with --refresh"
                ));
            }
            Ok::<_, StoreError>(())
        })?;
        drop(runtime);
        if found.health.unfinished.is_some() && !found.bad_journal {
            let store = KubeStore::open(location, kube)?;
            if let Some(revision) = store.recover()? {
                done.push(format!(
                    "recorded the journal of the interrupted deploy as revision {} (its unreported actions failed: \
the next deploy does them again)",
                    revision.number
                ));
            }
        }
        let after = KubeStore::check(location, kube)?;
        Ok((done, after))
    }
}
