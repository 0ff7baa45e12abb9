//! Incremental resolution (issue #11): a resolved policy held in memory (the language server, a
//! controller) takes an edit of one claim without resolving the others again.
//!
//! A claim's own resolution reads no other claim (the program, its consumer and labels only), so
//! each claim's run (its root or failure, its staged instances) is kept as it was. What claims
//! share is the merge (§15.5), in claim order: the first claim to reach an instance fixes it, a
//! later one that disagrees fails (naming that first claim, with a note on its outcome), and a new
//! instance takes its Kubernetes name (§5.8). What a claim's merge reads of the others is, for
//! each instance it stages, which claim merged it first before its place (its *fixer*: that
//! claim's instance is the one it must agree with), and for a new instance who holds its name.
//!
//! So an edit resolves the edited claim again and judges its merge at its place; claims before it
//! read nothing of it and keep their outcomes. After it, a claim's merge can only come out
//! differently if the fixer of one of its instances (or the holder of a name) changed before its
//! place: an instance's fixer changes where a claim that is (or was) the first to merge it starts
//! or stops merging (the edited one, or a claim whose outcome flips), and then only the claims
//! after that point that stage the instance (or another of its name) are judged again, in claim
//! order, which may flip more (the transitive step). A judged claim whose outcome is the same
//! touches nothing; one whose outcome changes has its outcome rewritten and its note moved; the
//! instances whose merging claims changed are rebuilt from those claims' staged instances. Claims
//! are judged against the claims' staged instances, never by merging into a copy of the state, so
//! an edit costs the claims judged again and the instances rebuilt, not the claims sharing
//! instances with the edited one. The result is the state [`super::resolve_with`] gives for the
//! edited program, byte for byte (`core/tests/resolve_incremental.rs` checks it after random
//! edits, and counts the claims judged and the instances rebuilt).
//!
//! Claims are kept in resolution order, (namespace, name), the order `lower` gives them. An
//! instance's key determines its cluster, Kubernetes namespace and name (they are made from it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use rayon::prelude::*;

use super::{
    Chains, ClaimOutcome, ConflictNote, DeployedNames, DesiredState, Failure, Instance, LabelSets, Names, Staged,
    Status, TakenNames, conflict, resolve_claim, union_edges,
};
use crate::access::Access;
use crate::ir::{Claim, Program};

/// A claim's place in resolution order.
type Order = (String, String);

/// One claim and its own resolution, kept for judging its merge again.
struct Entry {
    claim: Claim,
    id: String,
    /// Its root, or why its own resolution failed (it then never reaches the merge).
    result: Result<String, Failure>,
    /// Its instances as its own resolution staged them (none if it failed).
    staged: Staged,
    /// Whether it merged: its uses of its instances are in the state.
    merged: bool,
    /// The earlier claim whose outcome holds the note of its conflict.
    noted_on: Option<Order>,
    /// The later claims whose conflicts left the notes on its outcome, in the notes' order.
    noted_by: Vec<Order>,
}

/// The claims whose own resolution staged an instance (whether each merged), and the name the
/// instance takes.
struct Users {
    claims: BTreeMap<Order, bool>,
    cluster: Arc<str>,
    k8s_namespace: Arc<str>,
    name: String,
}

impl Users {
    fn named(&self, instance: &Instance) -> bool {
        (&*self.cluster, &*self.k8s_namespace, self.name.as_str())
            == (&*instance.cluster, &*instance.k8s_namespace, instance.name.as_str())
    }
}

/// What merging a claim at its place gives.
enum Judged {
    /// Its root.
    Merged(String),
    /// Why not, and the claim its conflict leaves a note on.
    Failed(Failure, Option<Order>),
}

/// What an edit did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Claims resolved again: 1 for a claim set, 0 for one removed.
    pub resolved: usize,
    /// The claims whose merge was judged again, by id, in claim order: the edited one (unless
    /// removed) and those after it that stage an instance whose first merging claim changed
    /// before their place (or another instance of that one's name).
    pub merged: Vec<String>,
    /// The instances rebuilt (by key): those the edited claim and the claims whose outcome flipped
    /// merge or merged; any of them may have changed, been added or gone; no other instance did.
    pub instances: BTreeSet<String>,
}

/// The work of one edit after the edited claim's own resolution.
#[derive(Default)]
struct Pass {
    /// Claims to judge again, taken in claim order.
    pending: BTreeSet<Order>,
    /// Instances whose fixer changed (from the place of the claim that changed it).
    dirty: HashSet<String>,
    update: Update,
}

/// A resolved policy that takes edits of single claims (see the module's documentation).
pub struct Incremental {
    /// The program without its claims (they are in `entries`).
    program: Program,
    deployed: DeployedNames,
    keep_chains: bool,
    /// The names deployed instances hold before any claim merges (§5.8).
    reserved: TakenNames,
    entries: BTreeMap<Order, Entry>,
    /// By instance key.
    users: HashMap<String, Users>,
    /// By Kubernetes name: the keys of the instances taking it.
    names: HashMap<String, BTreeSet<String>>,
    /// Equal label maps of the claims' uses, shared (as the full resolution's merge shares them).
    labels: LabelSets,
    state: DesiredState,
}

impl Incremental {
    /// Resolves every claim of `program` (as [`super::resolve_with`] does), keeping each claim's
    /// run for later edits; decision chains are kept for every claim if `keep_chains`.
    pub fn new(mut program: Program, deployed: DeployedNames, keep_chains: bool) -> Incremental {
        let mut claims = std::mem::take(&mut program.claims);
        claims.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let runs: Vec<(Entry, Box<ClaimOutcome>)> = {
            let access = Access::new(&program);
            let names = Names::new(&program);
            let chains = if keep_chains { Chains::All } else { Chains::None };
            claims
                .into_par_iter()
                .map(|claim| {
                    let run = resolve_claim(&program, &access, &names, &deployed, chains, &claim, None, None);
                    entry(claim, run, Vec::new())
                })
                .collect()
        };
        let reserved = TakenNames::of(&deployed);
        let mut incremental = Incremental {
            program,
            deployed,
            keep_chains,
            reserved,
            entries: BTreeMap::new(),
            users: HashMap::new(),
            names: HashMap::new(),
            labels: LabelSets::default(),
            state: DesiredState::default(),
        };
        let mut orders = Vec::with_capacity(runs.len());
        for (mut entry, outcome) in runs {
            incremental.labels.share_uses(&mut entry.staged);
            let order = (entry.claim.namespace.to_string(), entry.claim.name.clone());
            incremental.index(&order, &entry.staged);
            incremental.state.claims.insert(entry.id.clone(), outcome);
            incremental.entries.insert(order.clone(), entry);
            orders.push(order);
        }
        // Every claim merges once, in claim order; then every instance is built.
        for order in &orders {
            let judged = incremental.judge(order);
            incremental.set_merged(order, matches!(judged, Judged::Merged(_)));
            incremental.write(order, judged);
        }
        let keys: Vec<String> = incremental.users.keys().cloned().collect();
        for key in &keys {
            incremental.rebuild(key);
        }
        incremental
    }

    /// The desired state, as a full resolution of the current claims gives it.
    pub fn state(&self) -> &DesiredState {
        &self.state
    }

    /// The claim `namespace.name`, if there is one.
    pub fn claim(&self, namespace: &str, name: &str) -> Option<&Claim> {
        self.entries.get(&(namespace.to_string(), name.to_string())).map(|entry| &entry.claim)
    }

    /// The claims, in resolution order.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.entries.values().map(|entry| &entry.claim)
    }

    /// Adds `claim`, or replaces the claim of its namespace and name.
    pub fn set_claim(&mut self, claim: Claim) -> Update {
        let order = (claim.namespace.to_string(), claim.name.clone());
        self.edit(order, Some(claim))
    }

    /// Removes the claim `namespace.name` (nothing happens if there is none).
    pub fn remove_claim(&mut self, namespace: &str, name: &str) -> Update {
        self.edit((namespace.to_string(), name.to_string()), None)
    }

    fn edit(&mut self, order: Order, claim: Option<Claim>) -> Update {
        let mut pass = Pass::default();
        // The claim as it was leaves: its place in the index, its note, its outcome (whose notes,
        // left by later claims, a claim of the same id keeps).
        let old = self.entries.remove(&order);
        let mut kept = (Vec::new(), Vec::new());
        if let Some(old) = &old {
            self.unindex(&order, &old.staged);
            if let Some(on) = &old.noted_on {
                self.unnote(on, &order);
            }
            if let Some(outcome) = self.state.claims.remove(&old.id) {
                kept = (outcome.notes, old.noted_by.clone());
            }
        }
        if let Some(claim) = claim {
            let run = {
                let access = Access::new(&self.program);
                let names = Names::new(&self.program);
                let chains = if self.keep_chains { Chains::All } else { Chains::None };
                resolve_claim(&self.program, &access, &names, &self.deployed, chains, &claim, None, None)
            };
            pass.update.resolved = 1;
            let (notes, noted_by) = kept;
            let (mut entry, mut outcome) = entry(claim, run, noted_by);
            self.labels.share_uses(&mut entry.staged);
            outcome.notes = notes;
            self.index(&order, &entry.staged);
            pass.update.merged.push(entry.id.clone());
            self.state.claims.insert(entry.id.clone(), outcome);
            self.entries.insert(order.clone(), entry);
            let judged = self.judge(&order);
            self.set_merged(&order, matches!(judged, Judged::Merged(_)));
            self.write(&order, judged);
        }
        // Its instances, as it merged them before and merges them now: the first claim to merge
        // one changes unless it merges the same instance where it merged it before.
        let before: Vec<&Instance> = match &old {
            Some(old) if old.merged => old.staged.values().map(|i| &**i).collect(),
            _ => Vec::new(),
        };
        let now: Vec<&Instance> = match self.entries.get(&order) {
            Some(entry) if entry.merged => entry.staged.values().map(|i| &**i).collect(),
            _ => Vec::new(),
        };
        for instance in before.iter().chain(&now) {
            pass.update.instances.insert(instance.key.clone());
            if self.fixer_before(&instance.key, &order).is_some() || pass.dirty.contains(&instance.key) {
                continue;
            }
            let was = before.iter().find(|i| i.key == instance.key);
            let is = now.iter().find(|i| i.key == instance.key);
            if !matches!((was, is), (Some(was), Some(is)) if fixes_alike(was, is)) {
                self.dirty(instance, &order, &mut pass);
            }
        }
        // Then the claims after it whose merge may read what changed, in claim order; a claim
        // whose outcome flips changes the fixer of the instances it is the first to merge.
        while let Some(next) = pass.pending.pop_first() {
            let judged = self.judge(&next);
            let Some(entry) = self.entries.get(&next) else { continue };
            pass.update.merged.push(entry.id.clone());
            let (was, is) = (entry.merged, matches!(judged, Judged::Merged(_)));
            if self.changes(&next, &judged) {
                self.write(&next, judged);
            }
            if was != is {
                self.set_merged(&next, is);
                let entry = &self.entries[&next];
                for instance in entry.staged.values() {
                    pass.update.instances.insert(instance.key.clone());
                    if self.fixer_before(&instance.key, &next).is_none() {
                        self.dirty(instance, &next, &mut pass);
                    }
                }
            }
        }
        for key in &pass.update.instances {
            self.rebuild(key);
        }
        pass.update
    }

    /// The first claim before `before` that merged instance `key`: the one that fixed it for `before`.
    fn fixer_before(&self, key: &str, before: &Order) -> Option<&Order> {
        let users = self.users.get(key)?;
        users.claims.range::<Order, _>(..before).find(|(_, merged)| **merged).map(|(order, _)| order)
    }

    /// The instance holding `instance`'s name at the place of `before`: a deployed instance's, else
    /// the first instance of that name merged before it.
    fn holder_before(&self, instance: &Instance, before: &Order) -> Option<&str> {
        if let Some(holder) = self.reserved.holder(&instance.cluster, &instance.k8s_namespace, &instance.name) {
            return Some(holder);
        }
        self.names
            .get(&instance.name)?
            .iter()
            .filter(|key| self.users.get(*key).is_some_and(|users| users.named(instance)))
            .filter_map(|key| self.fixer_before(key, before).map(|fixer| (fixer, key)))
            .min()
            .map(|(_, key)| key.as_str())
    }

    /// Merging claim `order` at its place, given the claims before it as they merge now: its own
    /// failure, else the first conflict (in key order) with an instance a claim before it fixed,
    /// else a name another instance holds (as [`super::Merging::claim`] checks them).
    fn judge(&self, order: &Order) -> Judged {
        let Some(entry) = self.entries.get(order) else {
            return Judged::Failed(Failure::failed("the claim is gone", None), None);
        };
        let root = match &entry.result {
            Ok(root) => root,
            Err(failure) => return Judged::Failed(failure.clone(), None),
        };
        let mut new = Vec::new();
        for (key, instance) in &entry.staged {
            match self.fixer_before(key, order) {
                Some(fixer) => {
                    let existing = self.entries.get(fixer).and_then(|fixer| fixer.staged.get(key));
                    if let Some(failure) = existing.and_then(|existing| conflict(existing, instance)) {
                        return Judged::Failed(failure, Some(fixer.clone()));
                    }
                }
                None => new.push((key, instance)),
            }
        }
        // The names its new instances take, as held at its place.
        let mut taken = TakenNames::default();
        for (_, instance) in &new {
            if let Some(holder) = self.holder_before(instance, order) {
                taken.insert(&instance.cluster, &instance.k8s_namespace, &instance.name, holder);
            }
        }
        match taken.take_new(new.into_iter(), &entry.id) {
            Ok(()) => Judged::Merged(root.clone()),
            Err(failure) => Judged::Failed(failure, None),
        }
    }

    /// Whether `judged` differs from claim `order`'s outcome in the state. The reason of a
    /// conflict names the instance, the earlier claim and the differences, so the same reason
    /// leaves the same note on the same claim.
    fn changes(&self, order: &Order, judged: &Judged) -> bool {
        let Some(outcome) = self.entries.get(order).and_then(|entry| self.state.claims.get(&entry.id)) else {
            return true;
        };
        match judged {
            Judged::Merged(root) => outcome.status != Status::Resolved || outcome.root.as_ref() != Some(root),
            Judged::Failed(failure, _) => {
                outcome.status != failure.status
                    || outcome.reason.as_deref() != Some(failure.reason.as_str())
                    || outcome.reason_origin.as_deref() != failure.origin.as_ref()
            }
        }
    }

    /// Writes claim `order`'s outcome as `judged`, moving the note its conflict leaves.
    fn write(&mut self, order: &Order, judged: Judged) {
        let Some(entry) = self.entries.get_mut(order) else { return };
        let on = entry.noted_on.take();
        let labels = match &judged {
            Judged::Merged(root) => entry.staged.get(root).and_then(|instance| {
                instance.claims.iter().rev().find(|u| u.claim == entry.id && u.depth == 0).map(|u| u.labels.clone())
            }),
            Judged::Failed(..) => None,
        };
        let id = entry.id.clone();
        if let Some(on) = on {
            self.unnote(&on, order);
        }
        let Some(outcome) = self.state.claims.get_mut(&id) else { return };
        match judged {
            Judged::Merged(root) => {
                outcome.status = Status::Resolved;
                outcome.reason = None;
                outcome.reason_origin = None;
                outcome.root = Some(root);
                outcome.labels = labels;
            }
            Judged::Failed(failure, on) => {
                outcome.status = failure.status;
                outcome.reason = Some(failure.reason.into());
                outcome.reason_origin = failure.origin.map(Box::new);
                outcome.root = None;
                outcome.labels = None;
                if let (Some(on), Some((_, about))) = (on, failure.conflict) {
                    self.note(&on, order, ConflictNote::new(id.clone(), about.into()));
                    if let Some(entry) = self.entries.get_mut(order) {
                        entry.noted_on = Some(on);
                    }
                }
            }
        }
    }

    /// Adds `note`, of claim `by`, to claim `on`'s outcome, in claim order.
    fn note(&mut self, on: &Order, by: &Order, note: ConflictNote) {
        let Some(entry) = self.entries.get_mut(on) else { return };
        let at = entry.noted_by.partition_point(|o| o < by);
        entry.noted_by.insert(at, by.clone());
        if let Some(outcome) = self.state.claims.get_mut(&entry.id) {
            outcome.notes.insert(at, note);
        }
    }

    /// Takes claim `by`'s note off claim `on`'s outcome.
    fn unnote(&mut self, on: &Order, by: &Order) {
        let Some(entry) = self.entries.get_mut(on) else { return };
        let Ok(at) = entry.noted_by.binary_search(by) else { return };
        entry.noted_by.remove(at);
        if let Some(outcome) = self.state.claims.get_mut(&entry.id) {
            outcome.notes.remove(at);
        }
    }

    /// Records whether claim `order` merged, for it and for each of its instances.
    fn set_merged(&mut self, order: &Order, merged: bool) {
        let Some(entry) = self.entries.get_mut(order) else { return };
        entry.merged = merged;
        for key in entry.staged.keys() {
            if let Some(flag) = self.users.get_mut(key).and_then(|users| users.claims.get_mut(order)) {
                *flag = merged;
            }
        }
    }

    /// The fixer of `instance` changed at claim `from`: the claims after it that stage it, or
    /// another instance of its name, are judged again.
    fn dirty(&self, instance: &Instance, from: &Order, pass: &mut Pass) {
        if !pass.dirty.insert(instance.key.clone()) {
            return;
        }
        let Some(keys) = self.names.get(&instance.name) else { return };
        for key in keys {
            let Some(users) = self.users.get(key).filter(|users| users.named(instance)) else { continue };
            let after = users.claims.range::<Order, _>((Bound::Excluded(from), Bound::Unbounded));
            pass.pending.extend(after.map(|(order, _)| order.clone()));
        }
    }

    /// Makes instance `key` again from the claims that merge it, in claim order: the first one's
    /// instance, with every one's uses and edges (as [`super::merge`] adds them).
    fn rebuild(&mut self, key: &str) {
        let mut merging = self
            .users
            .get(key)
            .into_iter()
            .flat_map(|users| users.claims.iter())
            .filter(|(_, merged)| **merged)
            .filter_map(|(order, _)| self.entries.get(order)?.staged.get(key));
        let Some(first) = merging.next() else {
            self.state.instances.remove(key);
            return;
        };
        let mut instance = first.clone();
        for staged in merging {
            instance.claims.extend(staged.claims.iter().cloned());
            if !staged.edges.iter().all(|edge| instance.edges.contains(edge)) {
                union_edges(&mut instance.edges, staged.edges.clone());
            }
        }
        self.state.instances.insert(key.to_string(), instance);
    }

    /// Records the instances claim `order` staged (it has not merged yet).
    fn index(&mut self, order: &Order, staged: &Staged) {
        for (key, instance) in staged {
            let users = self.users.entry(key.clone()).or_insert_with(|| Users {
                claims: BTreeMap::new(),
                cluster: instance.cluster.clone(),
                k8s_namespace: instance.k8s_namespace.clone(),
                name: instance.name.clone(),
            });
            if users.claims.is_empty() {
                self.names.entry(instance.name.clone()).or_default().insert(key.clone());
            }
            users.claims.insert(order.clone(), false);
        }
    }

    /// Forgets the instances claim `order` staged.
    fn unindex(&mut self, order: &Order, staged: &Staged) {
        for (key, instance) in staged {
            let Some(users) = self.users.get_mut(key) else { continue };
            users.claims.remove(order);
            if users.claims.is_empty() {
                self.users.remove(key);
                if let Some(keys) = self.names.get_mut(&instance.name) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.names.remove(&instance.name);
                    }
                }
            }
        }
    }
}

/// Whether claims after an instance's fixer see the same instance from `was` as from `is`: a
/// conflict compares values and discovery and names the fixer, a new instance takes the name.
fn fixes_alike(was: &Instance, is: &Instance) -> bool {
    was.values == is.values
        && was.discovery == is.discovery
        && (&was.cluster, &was.k8s_namespace, &was.name) == (&is.cluster, &is.k8s_namespace, &is.name)
}

/// A claim's entry, not merged yet, and its outcome before the merge (its decisions, no notes).
fn entry(
    claim: Claim,
    (id, result, mut staged, decisions): super::ClaimRunResult,
    noted_by: Vec<Order>,
) -> (Entry, Box<ClaimOutcome>) {
    if result.is_err() {
        staged = Staged::new();
    }
    let outcome = Box::new(ClaimOutcome {
        claim: id.clone(),
        origin: claim.origin.clone(),
        status: Status::Failed,
        reason: None,
        reason_origin: None,
        root: None,
        labels: None,
        decisions,
        notes: Vec::new(),
    });
    (Entry { claim, id, result, staged, merged: false, noted_on: None, noted_by }, outcome)
}
