//! What a unit does on a cluster: apply its objects and prune what left it, delete it, find its
//! inventory, fingerprint its live objects. The inventory is always rewritten before an error is
//! returned, so no object aptc made is ever left untracked.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::object::{ObjectError, ObjectRef, in_apply_order, with_refs};
use super::ops::{Cluster, Located};
use super::{ApplySummary, K8sError, fingerprint, inventory};
use crate::plan::Unit;

impl Cluster {
    /// Applies `objects` for `unit` at `revision`, then prunes what the previous inventory lists
    /// but `objects` no longer has, then writes the new inventory.
    pub async fn apply_unit(&self, unit: &Unit, revision: u64, objects: &[Value]) -> Result<ApplySummary, K8sError> {
        let desired = in_apply_order(objects).map_err(|reason| self.invalid(unit, reason))?;
        let old = self.inventory(unit).await?.unwrap_or_default();
        let mut ensured = HashSet::new();
        let mut applied = Vec::new();
        if let Err(error) = self.apply_all(unit, &desired, &mut applied, &mut ensured).await {
            // Nothing applied: the old inventory (if any) still tells the truth.
            if !applied.is_empty() {
                let keep = inventory::union(&old, &applied);
                self.write_inventory_after_error(unit, revision, &keep, &mut ensured).await;
            }
            return Err(error);
        }
        let inventory_namespace = ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: unit.k8s_namespace.clone(),
        };
        // The namespace holding the inventory stays while the unit exists (untracked from now on).
        let stale: Vec<&ObjectRef> = old
            .iter()
            .filter(|o| !applied.iter().any(|a| a.same_object(o)) && !o.same_object(&inventory_namespace))
            .collect();
        let mut pruned = 0;
        for (i, object) in stale.iter().enumerate().rev() {
            match self.delete_ref(object, &unit.k8s_namespace).await {
                Ok(true) => {
                    tracing::info!(cluster = %self.name, %object, "pruned");
                    pruned += 1;
                }
                Ok(false) => tracing::debug!(cluster = %self.name, %object, "gone already"),
                Err(error) => {
                    let left: Vec<ObjectRef> = stale[..=i].iter().map(|o| (*o).clone()).collect();
                    let keep = inventory::union(&applied, &left);
                    self.write_inventory_after_error(unit, revision, &keep, &mut ensured).await;
                    return Err(error);
                }
            }
        }
        self.write_inventory(unit, revision, &applied, &mut ensured).await?;
        let count = applied.len();
        let mut detail = format!("{count} object{} applied", if count == 1 { "" } else { "s" });
        if pruned > 0 {
            detail.push_str(&format!(", {pruned} pruned"));
        }
        Ok(ApplySummary { applied: count, pruned, detail })
    }

    /// Applies the objects in order, adding each applied one to `applied`. After the last CRD,
    /// discovery is refreshed, and a kind still unknown is looked up again with backoff (a new
    /// CRD takes a moment to be served).
    async fn apply_all(
        &self,
        unit: &Unit,
        desired: &[(ObjectRef, &Value)],
        applied: &mut Vec<ObjectRef>,
        ensured: &mut HashSet<String>,
    ) -> Result<(), K8sError> {
        let mut crds_applied = false;
        let mut refreshed = false;
        for (object, value) in desired {
            if crds_applied && !refreshed && !object.is_crd() {
                self.forget_discovery();
                refreshed = true;
            }
            let located = if crds_applied {
                let what = format!("finding the kind of {object}");
                let unknown = |e: &K8sError| matches!(e, K8sError::UnknownKind { .. });
                let namespace = unit.k8s_namespace.as_str();
                self.backoff
                    .retry_async_if(&what, unknown, move || async move {
                        let found = self.locate(object, namespace).await;
                        if found.is_err() {
                            self.forget_discovery();
                        }
                        found
                    })
                    .await?
            } else {
                self.locate(object, &unit.k8s_namespace).await?
            };
            if let Some(namespace) = &located.object.namespace
                && ensured.insert(namespace.clone())
            {
                self.ensure_namespace(namespace).await?;
            }
            self.apply(&located, &body(value, &located)).await?;
            tracing::info!(cluster = %self.name, object = %located.object, "applied");
            if !applied.iter().any(|a: &ObjectRef| a.same_object(&located.object)) {
                applied.push(located.object);
            }
            crds_applied |= object.is_crd();
        }
        Ok(())
    }

    /// Deletes every object of the unit's inventory, last applied first, then the inventory.
    pub async fn delete_unit(&self, unit: &Unit) -> Result<ApplySummary, K8sError> {
        let listed = self.inventory(unit).await?.unwrap_or_default();
        let mut deleted = 0;
        for object in listed.iter().rev() {
            if self.delete_ref(object, &unit.k8s_namespace).await? {
                tracing::info!(cluster = %self.name, %object, "deleted");
                deleted += 1;
            }
        }
        self.delete_ref(&inventory::reference(unit), &unit.k8s_namespace).await?;
        let detail = format!("{deleted} object{} deleted", if deleted == 1 { "" } else { "s" });
        Ok(ApplySummary { applied: 0, pruned: deleted, detail })
    }

    /// The objects the unit's inventory lists; `None` if there is no inventory.
    pub async fn inventory(&self, unit: &Unit) -> Result<Option<Vec<ObjectRef>>, K8sError> {
        let reference = inventory::reference(unit);
        let Some(config_map) = self.config_map(&reference).await? else {
            return Ok(None);
        };
        inventory::objects(config_map.data.as_ref()).map(Some).map_err(|reason| K8sError::Inventory {
            object: reference.to_string(),
            cluster: self.name.clone(),
            reason,
        })
    }

    /// For each desired object that exists live: its key → the hash of the live object projected
    /// onto the desired object's fields.
    pub async fn fingerprint_objects(
        &self,
        unit: &Unit,
        objects: &[Value],
    ) -> Result<(BTreeMap<String, String>, Vec<String>), K8sError> {
        let mut prints = BTreeMap::new();
        let mut conflicts = Vec::new();
        for (object, value) in with_refs(objects).map_err(|reason| self.invalid(unit, reason))? {
            let located = match self.locate(&object, &unit.k8s_namespace).await {
                Ok(located) => located,
                // A kind the cluster does not serve has no live objects.
                Err(K8sError::UnknownKind { .. }) => continue,
                Err(error) => return Err(error),
            };
            if let Some(live) = self.get(&located).await? {
                let (hash, owned) = fingerprint::hash(value, &live);
                conflicts.extend(owned.iter().map(|field| {
                    format!(
                        "conflict with \"{}\": {} of {} is managed by that controller; aptc leaves it to it",
                        field.manager,
                        field.field(),
                        located.object.key()
                    )
                }));
                prints.insert(located.object.key(), hash);
            }
        }
        Ok((prints, conflicts))
    }

    async fn write_inventory(
        &self,
        unit: &Unit,
        revision: u64,
        objects: &[ObjectRef],
        ensured: &mut HashSet<String>,
    ) -> Result<(), K8sError> {
        if ensured.insert(unit.k8s_namespace.clone()) {
            self.ensure_namespace(&unit.k8s_namespace).await?;
        }
        let located = self.locate(&inventory::reference(unit), &unit.k8s_namespace).await?;
        self.apply(&located, &inventory::config_map(unit, revision, objects)).await
    }

    /// Writes the inventory on the way out of a failure; a failure to do so is logged, the first
    /// error is the one reported.
    async fn write_inventory_after_error(
        &self,
        unit: &Unit,
        revision: u64,
        objects: &[ObjectRef],
        ensured: &mut HashSet<String>,
    ) {
        if let Err(error) = self.write_inventory(unit, revision, objects, ensured).await {
            tracing::warn!(cluster = %self.name, unit = %unit.key, %error, "could not record the inventory");
        }
    }

    fn invalid(&self, unit: &Unit, reason: ObjectError) -> K8sError {
        K8sError::InvalidObject { unit: unit.key.clone(), cluster: self.name.clone(), reason }
    }
}

/// The object as sent: in the namespace it was located in, none for a cluster-scoped kind.
fn body(value: &Value, located: &Located) -> Value {
    let mut body = value.clone();
    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        match &located.object.namespace {
            Some(namespace) => metadata.insert("namespace".into(), Value::String(namespace.clone())),
            None => metadata.remove("namespace"),
        };
    }
    body
}
