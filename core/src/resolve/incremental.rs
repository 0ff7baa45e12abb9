//! Incremental resolution (issue #11): a resolved policy held in memory (the language server, a
//! controller) takes an edit of one claim without resolving the others again.
//!
//! A claim's own resolution reads no other claim (the program, its consumer and labels only), so
//! each claim's run (its root or failure, staged instances, decisions) is kept as it was. What
//! claims share is the merge (§15.5): in claim order, the first claim to reach an instance fixes
//! it, a later one that disagrees fails, and a new instance takes its Kubernetes name (§5.8). So
//! an edit resolves the edited claim again, then takes out of the state everything the claims
//! *connected* to it made (claims linked by a shared instance key or name, transitively: a claim
//! whose outcome flips changes what the next one sharing with it sees) and merges those claims
//! again in claim order. Every other instance and outcome is untouched; the result is the state
//! [`super::resolve_with`] gives for the edited program, byte for byte
//! (`core/tests/resolve_incremental.rs` checks it after random edits, and counts the claims
//! resolved and merged).
//!
//! Claims are kept in resolution order, (namespace, name), the order `lower` gives them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::{
    Chains, Decision, DeployedNames, DesiredState, Failure, Interner, Merging, Names, TakenNames, resolve_claim,
};
use crate::access::Access;
use crate::ir::{Claim, Program};

/// A claim's place in resolution order.
type Order = (String, String);

/// What a claim's merge reads and writes: an instance (by key) or a Kubernetes name
/// (`cluster`, `k8s_namespace`, `name`) an instance takes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Resource {
    Instance(String),
    Name(Arc<str>, Arc<str>, String),
}

/// One claim and its own resolution, kept for merging again.
struct Entry {
    claim: Claim,
    id: String,
    result: Result<String, Failure>,
    staged: super::Staged,
    decisions: Vec<Decision>,
    /// What its merge touches: nothing when its own resolution failed (it never reaches the merge).
    resources: Vec<Resource>,
}

impl Entry {
    fn merge_into(&self, merging: &mut Merging) {
        merging.claim(
            &self.claim,
            self.id.clone(),
            self.result.clone(),
            self.staged.clone(),
            self.decisions.clone(),
            None,
        );
    }
}

/// What an edit did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Claims resolved again: 1 for a claim set, 0 for one removed.
    pub resolved: usize,
    /// The claims merged again, by id, in claim order: the edited one (unless removed) and those
    /// connected to it by shared instances.
    pub merged: Vec<String>,
    /// The instances taken out and merged again (by key): any of them may have changed, been
    /// added or gone; no other instance did.
    pub instances: BTreeSet<String>,
}

/// A resolved policy that takes edits of single claims (see the module's documentation).
pub struct Incremental {
    /// The program without its claims (they are in `entries`).
    program: Program,
    deployed: DeployedNames,
    keep_chains: bool,
    entries: BTreeMap<Order, Entry>,
    /// Which claims touch each resource.
    users: HashMap<Resource, BTreeSet<Order>>,
    merging: Merging,
}

impl Incremental {
    /// Resolves every claim of `program` (as [`super::resolve_with`] does), keeping each claim's
    /// run for later edits; decision chains are kept for every claim if `keep_chains`.
    pub fn new(mut program: Program, deployed: DeployedNames, keep_chains: bool) -> Incremental {
        let mut claims = std::mem::take(&mut program.claims);
        claims.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let entries: Vec<Entry> = {
            let access = Access::new(&program);
            let names = Names::new(&program);
            let chains = if keep_chains { Chains::All } else { Chains::None };
            claims
                .into_par_iter()
                .map(|claim| {
                    let run = resolve_claim(&program, &access, &names, &deployed, chains, &claim, None);
                    entry(claim, run)
                })
                .collect()
        };
        let merging =
            Merging { state: DesiredState::default(), labels: Interner::default(), taken: TakenNames::of(&deployed) };
        let mut incremental =
            Incremental { program, deployed, keep_chains, entries: BTreeMap::new(), users: HashMap::new(), merging };
        for entry in entries {
            entry.merge_into(&mut incremental.merging);
            incremental.index(&entry, true);
            incremental.entries.insert((entry.claim.namespace.clone(), entry.claim.name.clone()), entry);
        }
        incremental
    }

    /// The desired state, as a full resolution of the current claims gives it.
    pub fn state(&self) -> &DesiredState {
        &self.merging.state
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
        let order = (claim.namespace.clone(), claim.name.clone());
        self.edit(order, Some(claim))
    }

    /// Removes the claim `namespace.name` (nothing happens if there is none).
    pub fn remove_claim(&mut self, namespace: &str, name: &str) -> Update {
        self.edit((namespace.to_string(), name.to_string()), None)
    }

    fn edit(&mut self, order: Order, claim: Option<Claim>) -> Update {
        let mut update = Update::default();
        let mut frontier: Vec<Resource> = Vec::new();
        if let Some(old) = self.entries.remove(&order) {
            self.index(&old, false);
            self.merging.state.claims.remove(&old.id);
            frontier.extend(old.resources);
        }
        if let Some(claim) = claim {
            let run = {
                let access = Access::new(&self.program);
                let names = Names::new(&self.program);
                let chains = if self.keep_chains { Chains::All } else { Chains::None };
                resolve_claim(&self.program, &access, &names, &self.deployed, chains, &claim, None)
            };
            update.resolved = 1;
            let entry = entry(claim, run);
            self.index(&entry, true);
            frontier.extend(entry.resources.iter().cloned());
            self.entries.insert(order.clone(), entry);
        }
        // The claims connected to the edited one through shared resources, transitively.
        let mut connected: BTreeSet<Order> = BTreeSet::new();
        if self.entries.contains_key(&order) {
            connected.insert(order);
        }
        let mut seen: HashSet<Resource> = frontier.iter().cloned().collect();
        while let Some(resource) = frontier.pop() {
            let Some(users) = self.users.get(&resource) else { continue };
            for user in users {
                if connected.insert(user.clone()) {
                    for more in &self.entries[user].resources {
                        if seen.insert(more.clone()) {
                            frontier.push(more.clone());
                        }
                    }
                }
            }
        }
        // Out of the state goes what they made: their instances (every use of which is theirs),
        // the names those took, and their outcomes (with the notes their conflicts left).
        let Merging { state, taken, .. } = &mut self.merging;
        for resource in &seen {
            let Resource::Instance(key) = resource else { continue };
            if let Some(instance) = state.instances.remove(key) {
                let (cluster, k8s_namespace, name) = (&*instance.cluster, &*instance.k8s_namespace, &*instance.name);
                let deployed_here = self.deployed.get(key).is_some_and(|d| {
                    (d.cluster.as_str(), d.k8s_namespace.as_str(), d.name.as_str()) == (cluster, k8s_namespace, name)
                });
                if !deployed_here && taken.holder(cluster, k8s_namespace, name) == Some(key.as_str()) {
                    taken.release(cluster, k8s_namespace, name);
                }
            }
            update.instances.insert(key.clone());
        }
        for order in &connected {
            state.claims.remove(&self.entries[order].id);
        }
        // And they merge again, in claim order.
        for order in &connected {
            let entry = &self.entries[order];
            entry.merge_into(&mut self.merging);
            update.merged.push(entry.id.clone());
        }
        update
    }

    /// Records (or forgets) which resources `entry` touches.
    fn index(&mut self, entry: &Entry, add: bool) {
        let order = (entry.claim.namespace.clone(), entry.claim.name.clone());
        for resource in &entry.resources {
            if add {
                self.users.entry(resource.clone()).or_default().insert(order.clone());
            } else if let Some(users) = self.users.get_mut(resource) {
                users.remove(&order);
                if users.is_empty() {
                    self.users.remove(resource);
                }
            }
        }
    }
}

fn entry(claim: Claim, (id, result, staged, decisions): super::ClaimRunResult) -> Entry {
    let resources = if result.is_ok() {
        staged
            .iter()
            .flat_map(|(key, instance)| {
                [
                    Resource::Instance(key.clone()),
                    Resource::Name(instance.cluster.clone(), instance.k8s_namespace.clone(), instance.name.clone()),
                ]
            })
            .collect()
    } else {
        Vec::new()
    };
    Entry { claim, id, result, staged, decisions, resources }
}
