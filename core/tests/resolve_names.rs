//! Instance names across deploys (docs/language.md §5.8): a deployed instance keeps the name its
//! revision recorded, new instances get 120-bit names, and no instance ever takes a name another
//! instance holds in its Kubernetes namespace.

mod common;

use std::path::Path;

use aptc_core::resolve::{DeployedName, DeployedNames, DesiredState, Status, resolve, resolve_keeping};

/// What a deploy of `state` records: each instance's key, name, id and place.
fn recorded(state: &DesiredState) -> DeployedNames {
    state
        .instances
        .iter()
        .map(|(key, i)| {
            let name = DeployedName {
                name: i.name.clone(),
                id: i.id.clone(),
                cluster: i.cluster.to_string(),
                k8s_namespace: i.k8s_namespace.to_string(),
            };
            (key.clone(), name)
        })
        .collect()
}

#[test]
fn deployed_instances_keep_their_names_and_new_ones_get_long_names() {
    let program = common::lower_path(Path::new("examples/twitter-analytics"));
    let fresh = resolve(&program);
    assert!(fresh.instances.len() > 4, "the example has instances to name");
    // A store written by an older aptc: short names, whatever scheme made them.
    let mut deployed = recorded(&fresh);
    let old: Vec<String> = deployed.keys().take(deployed.len() / 2).cloned().collect();
    for (n, key) in old.iter().enumerate() {
        let name = deployed.get_mut(key).unwrap();
        name.name = format!("legacy-{n}-0123456789");
        name.id = "0123456789".into();
    }
    deployed.retain(|key, _| old.contains(key));
    let kept = resolve_keeping(&program, &deployed);
    assert!(kept.claims.values().all(|c| c.status == fresh.claims[&c.claim].status), "no outcome changes");
    for (key, instance) in &kept.instances {
        match deployed.get(key) {
            Some(d) => assert_eq!((&instance.name, &instance.id), (&d.name, &d.id), "{key} keeps its name"),
            None => {
                assert_eq!(instance.name, fresh.instances[key].name, "{key} gets the new name");
                assert_eq!(instance.id.len(), 24, "{key}: 120 bits in base32");
            }
        }
    }
    // What reads the name (discovery, values) reads the kept one: nothing refers to a name no
    // instance holds.
    let text =
        serde_json::to_string(&kept.instances.values().map(|i| (&i.values, &i.discovery)).collect::<Vec<_>>()).unwrap();
    for key in &old {
        let fresh_name = &fresh.instances[key].name;
        assert!(
            !text.contains(fresh_name.as_str()),
            "`{fresh_name}` of {key} is read nowhere once it keeps its old name"
        );
    }
}

#[test]
fn a_name_held_by_a_deployed_instance_is_never_taken() {
    let program = common::lower_path(Path::new("examples/twitter-analytics"));
    let fresh = resolve(&program);
    // A deployed instance (another key) already holds the name a claim's new instance would get.
    let (victim_key, victim) = fresh.instances.iter().find(|(_, i)| i.claims.len() == 1).expect("an unshared instance");
    let holder = DeployedName {
        name: victim.name.clone(),
        id: victim.id.clone(),
        cluster: victim.cluster.to_string(),
        k8s_namespace: victim.k8s_namespace.to_string(),
    };
    let deployed: DeployedNames = [("someone/else's/instance".to_string(), holder)].into();
    let state = resolve_keeping(&program, &deployed);
    let claim = &victim.claims[0].claim;
    let outcome = &state.claims[claim];
    assert_eq!(outcome.status, Status::Failed, "{outcome:?}");
    let reason = outcome.reason.as_deref().unwrap();
    assert!(reason.contains(victim_key) && reason.contains("someone/else's/instance"), "{reason}");
    assert!(state.instances.values().all(|i| i.name != victim.name), "nothing takes the held name");
    // Every other claim resolves as before: one collision never blocks the others.
    for (id, before) in fresh.claims.iter().filter(|(id, _)| *id != claim) {
        assert_eq!(state.claims[id].status, before.status, "{id}");
    }
}

#[test]
fn two_claims_never_share_a_name() {
    let program = common::lower_path(Path::new("examples/twitter-analytics"));
    let fresh = resolve(&program);
    let names: std::collections::BTreeSet<_> =
        fresh.instances.values().map(|i| (&i.cluster, &i.k8s_namespace, &i.name)).collect();
    assert_eq!(names.len(), fresh.instances.len(), "one name per instance");
}
