//! Sub-resolutions shared across claims (issue #11).
//!
//! Below the claimed contract, a contract's resolution (its subtree of `uses`) is a function of
//! the contract, its depth (a use records it), its placement, the values of the labels it reads
//! among those it receives, and what it reads of the consumer and the claim (`user.*`, `claim.*`,
//! the access checks). Every other label it receives only passes through to the label maps of its
//! uses. So a subtree one claim resolved is kept, with the labels and the rest it read; a later
//! claim reaching the contract with the same inputs and giving the same values to those reads
//! replays its instances (staged as resolving it would stage them, in the same order, with the
//! claim's own uses and labels) instead of resolving it again.
//!
//! Like [`super::classes`], only resolutions keeping no decision chain go through here.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::access::Access;
use crate::eval::{Placement, Subject};
use crate::ir::{Claim, Value};
use crate::{FastMap, FastSet};

use super::classes::{Mark, Read, Recorder};
use super::{Instance, Resolved};

/// Labels by name, as an instance's uses hold them.
type LabelJson = Arc<BTreeMap<String, serde_json::Value>>;

/// The subtrees resolved so far in one resolution.
#[derive(Default)]
pub(super) struct Subtrees {
    kept: Mutex<Kept>,
    /// The subtrees resolved once, as a hash of their inputs and of what they read: a subtree's
    /// instances are kept the second time it resolves. Most subtrees are reached once, and keeping
    /// every one's instances tripled the peak memory of a debug build at 10,000 claims of the
    /// engine shape. Two subtrees sharing a hash only keep the second's instances early.
    seen: Mutex<FastSet<u64>>,
    /// Hashes the inputs the same way in every run.
    hasher: foldhash::fast::FixedState,
}

#[derive(Default)]
struct Kept {
    /// By contract, depth and placement: the sets of labels its kept subtrees read (a few: one per
    /// path through its contexts and rules).
    shapes: FastMap<u64, Vec<Arc<[String]>>>,
    /// By contract, depth, placement and the values of the labels read.
    subtrees: FastMap<u64, Vec<Arc<Subtree>>>,
}

/// One contract's resolution below the claimed one, kept for the claims that reach it again.
pub(super) struct Subtree {
    contract: String,
    depth: usize,
    placement: Option<Placement>,
    /// The labels it read, with the values it received them with.
    labels: Vec<(String, Option<Value>)>,
    /// What it read of the consumer and the claim, and what it found.
    reads: Vec<(Read, Option<Value>)>,
    pub(super) resolved: Resolved,
    /// Every contract of the subtree (a path whose stack holds one must resolve it, to report the
    /// cycle).
    pub(super) entered: Vec<Arc<str>>,
    /// Its instances as it staged them, in order.
    pub(super) staged: Vec<Stage>,
    /// The labels it received: the label maps of `staged` are these with the subtree's writes.
    received: BTreeMap<String, serde_json::Value>,
}

/// One instance staged: what [`super::ClaimRun::stage`] was given, and the contract that staged it
/// (a failure to stage is located there).
#[derive(Clone)]
pub(super) struct Stage {
    pub(super) instance: Arc<Instance>,
    pub(super) depth: usize,
    pub(super) labels: LabelJson,
    pub(super) contract: Arc<str>,
}

/// A contract's inputs, as a subtree is looked up by.
pub(super) struct Inputs<'i> {
    pub(super) contract: &'i str,
    pub(super) depth: usize,
    pub(super) labels: &'i BTreeMap<String, Value>,
    pub(super) placement: Option<&'i Placement>,
}

/// What one claim's run needs to share subtrees: the resolution's subtrees, the claim, and what
/// the run records while it resolves.
pub(super) struct Sharing<'a> {
    pub(super) subtrees: &'a Subtrees,
    claim: &'a Claim,
    pub(super) recorder: &'a Recorder,
    /// Every instance the run staged or replayed below its claimed contract, in order (a
    /// subtree's are a range of it).
    pub(super) log: Vec<Stage>,
}

impl<'a> Sharing<'a> {
    pub(super) fn new(subtrees: &'a Subtrees, claim: &'a Claim, recorder: &'a Recorder) -> Sharing<'a> {
        Sharing { subtrees, claim, recorder, log: Vec::new() }
    }

    /// Where the run's reads and instances stand, before a contract resolves.
    pub(super) fn mark(&self) -> (Mark, usize) {
        (self.recorder.mark(), self.log.len())
    }

    /// What the run read of the consumer and the claim since `mark`, and the labels it read or
    /// wrote (sorted).
    pub(super) fn since(&self, mark: Mark) -> (Vec<Read>, Vec<String>) {
        self.recorder.since(mark)
    }

    /// Notes reads of a subtree resolved before (for the subtrees around it).
    pub(super) fn note(&self, reads: impl IntoIterator<Item = Read>, labels: &[String]) {
        reads.into_iter().for_each(|read| self.recorder.note(read));
        labels.iter().for_each(|label| self.recorder.note_label(label));
    }

    /// The hash of a contract, depth and placement.
    fn site(&self, inputs: &Inputs) -> u64 {
        let mut hasher = self.subtrees.hasher.build_hasher();
        (inputs.contract, inputs.depth).hash(&mut hasher);
        inputs.placement.map(|p| (&p.cluster, &p.namespace)).hash(&mut hasher);
        hasher.finish()
    }

    /// The hash of `site` and the values `labels` give the labels of `shape`.
    fn key(&self, site: u64, shape: &[String], labels: &BTreeMap<String, Value>) -> u64 {
        let mut hasher = self.subtrees.hasher.build_hasher();
        site.hash(&mut hasher);
        for label in shape {
            (label, labels.get(label)).hash(&mut hasher);
        }
        hasher.finish()
    }

    /// A subtree resolved with these inputs that read of them, the consumer and the claim what
    /// this claim gives.
    pub(super) fn find(&self, access: &Access, subject: &Subject, inputs: &Inputs) -> Option<Arc<Subtree>> {
        let site = self.site(inputs);
        let candidates: Vec<Arc<Subtree>> = {
            let kept = self.subtrees.lock();
            let shapes = kept.shapes.get(&site)?;
            shapes
                .iter()
                .filter_map(|shape| kept.subtrees.get(&self.key(site, shape, inputs.labels)))
                .flatten()
                .cloned()
                .collect()
        };
        candidates.into_iter().find(|subtree| {
            subtree.contract == inputs.contract
                && subtree.depth == inputs.depth
                && subtree.placement.as_ref() == inputs.placement
                && subtree.labels.iter().all(|(label, value)| inputs.labels.get(label) == value.as_ref())
                && subtree.reads.iter().all(|(read, seen)| read.of(access, subject, self.claim) == *seen)
        })
    }

    /// Keeps a subtree this claim resolved (what it read of the consumer and the claim, `reads`,
    /// the labels it read or wrote, `shape`, sorted; what it gave and entered; what it staged,
    /// [`Sharing::log`] from `log` on) if it resolved once before with the same inputs and reads.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn keep(
        &self,
        access: &Access,
        subject: &Subject,
        inputs: &Inputs,
        (reads, shape): (&[Read], &[String]),
        log: usize,
        resolved: &Resolved,
        entered: &[Arc<str>],
    ) {
        let reads: Vec<(Read, Option<Value>)> =
            reads.iter().map(|read| (read.clone(), read.of(access, subject, self.claim))).collect();
        let site = self.site(inputs);
        let key = self.key(site, shape, inputs.labels);
        let mut seen = self.subtrees.hasher.build_hasher();
        key.hash(&mut seen);
        reads.iter().for_each(|(_, value)| value.hash(&mut seen));
        let first = self.subtrees.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(seen.finish());
        if first {
            return;
        }
        let subtree = Subtree {
            contract: inputs.contract.to_string(),
            depth: inputs.depth,
            placement: inputs.placement.cloned(),
            labels: shape.iter().map(|label| (label.clone(), inputs.labels.get(label).cloned())).collect(),
            reads,
            resolved: resolved.clone(),
            entered: entered.to_vec(),
            staged: self.log[log..].to_vec(),
            received: json(inputs.labels),
        };
        let mut kept = self.subtrees.lock();
        let shapes = kept.shapes.entry(site).or_default();
        if !shapes.iter().any(|known| **known == *shape) {
            shapes.push(Arc::from(shape));
        }
        kept.subtrees.entry(key).or_default().push(Arc::new(subtree));
    }
}

impl Subtree {
    /// What it read of the consumer and the claim, and the labels it read or wrote.
    pub(super) fn reads(&self) -> (impl Iterator<Item = Read> + '_, Vec<String>) {
        (self.reads.iter().map(|(read, _)| read.clone()), self.labels.iter().map(|(label, _)| label.clone()).collect())
    }

    /// The label maps of its instances for a claim that reaches it with `received`: those it
    /// staged with its own writes over `received` in place of the labels it received, each map
    /// made once.
    pub(super) fn relabeled(&self, received: &BTreeMap<String, Value>) -> Relabeled<'_> {
        let received = json(received);
        Relabeled { same: received == self.received, subtree: self, received, made: Vec::new() }
    }
}

/// A subtree's label maps for one claim: see [`Subtree::relabeled`].
pub(super) struct Relabeled<'s> {
    subtree: &'s Subtree,
    same: bool,
    received: BTreeMap<String, serde_json::Value>,
    /// Each label map of the subtree and the claim's.
    made: Vec<(*const BTreeMap<String, serde_json::Value>, LabelJson)>,
}

impl Relabeled<'_> {
    pub(super) fn labels(&mut self, stage: &Stage) -> LabelJson {
        if self.same {
            return stage.labels.clone();
        }
        if let Some((_, made)) = self.made.iter().find(|(of, _)| *of == Arc::as_ptr(&stage.labels)) {
            return made.clone();
        }
        let mut map = self.received.clone();
        // The labels the subtree wrote or removed.
        for label in self.subtree.received.keys() {
            if !stage.labels.contains_key(label) {
                map.remove(label);
            }
        }
        for (label, value) in stage.labels.iter() {
            if self.subtree.received.get(label) != Some(value) {
                map.insert(label.clone(), value.clone());
            }
        }
        let made = Arc::new(map);
        self.made.push((Arc::as_ptr(&stage.labels), made.clone()));
        made
    }
}

/// Labels as the uses of instances hold them.
fn json(labels: &BTreeMap<String, Value>) -> BTreeMap<String, serde_json::Value> {
    labels.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()
}

impl Subtrees {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
