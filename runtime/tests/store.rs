//! The revision store's behaviour, one suite run against both backends: a redb file, and a
//! namespace of a cluster (`aptc-kube-fake`, the API-server double, served over HTTP and reached
//! through a kubeconfig as a real cluster is). Then what only the Kubernetes backend has: its
//! lock taken over, the POST of a revision losing to another writer's, records past an object's
//! size.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aptc_core::ir::Program;
use aptc_kube_fake::{FakeApi, write_kubeconfig};
use aptc_runtime::apply::{ActionReport, Applied, Outcome};
use aptc_runtime::plan::{Plan, Unit, plan};
use aptc_runtime::source::Source;
use aptc_runtime::store::{
    self, ActionRecord, Cause, Journal, KubeLocation, Location, NOT_REPORTED, Revision, StoreError, UNFINISHED,
};

const NAMESPACE: &str = "aptc-state";

/// A store's place and what keeps it alive (a temporary directory; the fake).
struct Place {
    location: Location,
    _dir: tempfile::TempDir,
    fake: Option<FakeApi>,
}

fn file() -> Place {
    let dir = tempfile::tempdir().unwrap();
    Place { location: Location::File(dir.path().join("nested/state.db")), _dir: dir, fake: None }
}

fn kube() -> Place {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApi::new();
    fake.insert_namespace(NAMESPACE);
    let kubeconfig = dir.path().join("kubeconfig");
    fake.serve_to(&kubeconfig, "fake").expect("serving the fake API server");
    let location = Location::Kube(KubeLocation {
        kubeconfig: Some(kubeconfig),
        context: Some("fake".into()),
        namespace: NAMESPACE.into(),
    });
    Place { location, _dir: dir, fake: Some(fake) }
}

/// Each behaviour as one test per backend.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod file {
            $(#[test] fn $name() { super::$name(&super::file()) })*
        }
        mod kube {
            $(#[test] fn $name() { super::$name(&super::kube()) })*
        }
    };
}

suite!(
    revisions_are_recorded_read_back_and_listed,
    one_writer_at_a_time_and_readers_see_its_journal,
    two_writers_racing_for_revision_numbers_lose_nothing,
    a_killed_deploy_is_recovered_from_its_journal,
    a_refused_first_deploy_leaves_no_store,
    the_last_drift_check_is_kept_replaced_and_read_by_readers,
);

fn unit(key: &str) -> Unit {
    Unit {
        key: key.into(),
        name: format!("{key}-name"),
        id: format!("{key}-id"),
        source: Source::Chart { chart: "./c".into(), repo: None, version: None, base_dir: "/policy".into() },
        cluster: "system.local".into(),
        k8s_namespace: "default".into(),
        namespace: "team".into(),
        service: "team.svc".into(),
        contract: "team.svc".into(),
        context: "dev".into(),
        component: key.into(),
        claims: vec!["team.a".into()],
        values: serde_json::json!({ "quote": "\"--- \n" }),
        discovery: serde_json::json!({}),
        depends_on: Vec::new(),
        content: None,
        files: Vec::new(),
        secrets: None,
    }
}

fn units(keys: &[&str]) -> BTreeMap<String, Unit> {
    keys.iter().map(|k| (k.to_string(), unit(k))).collect()
}

fn revision(number: u64, user: &str, keys: &[&str]) -> Revision {
    let desired = units(keys);
    let applied = desired
        .iter()
        .map(|(k, u)| (k.clone(), Applied { revision: number, unit: u.clone(), fingerprint: None }))
        .collect();
    let actions = keys
        .iter()
        .map(|k| ActionRecord {
            op: aptc_runtime::plan::Op::Create,
            key: k.to_string(),
            name: format!("{k}-name"),
            place: "local/default".into(),
            source: "chart ./c".into(),
            why: "new".into(),
            report: ActionReport { outcome: Outcome::Succeeded { detail: "ok".into() }, started_ms: 0, duration_ms: 5 },
        })
        .collect();
    Revision {
        number,
        time: store::now_rfc3339(),
        user: user.into(),
        cause: Cause::Deploy { paths: vec!["policy".into()] },
        policy: aptc_core::digest::sha256("policy"),
        target: "render:/out".into(),
        duration_ms: 7,
        actions,
        desired,
        applied,
        kept: Vec::new(),
    }
}

fn program() -> Program {
    let mut analysis =
        aptc_compiler::host::Analysis::of_texts([("system.apt", "namespace system\n\nuser \"ada\" {}\n")]);
    analysis.lower().expect("the policy checks clean")
}

fn revisions_are_recorded_read_back_and_listed(place: &Place) {
    let at = &place.location;
    assert!(store::open_read(at).unwrap().is_none(), "nothing there yet");
    let writer = store::open(at).unwrap();
    assert!(writer.created());
    assert!(writer.is_empty().unwrap());
    assert_eq!(writer.next_number().unwrap(), 1);
    assert!(writer.policy_root().unwrap().is_none());
    writer.set_policy_root(&PathBuf::from("/policies/shop")).unwrap();
    let first = revision(1, "ada", &["a", "b"]);
    writer.record(&first, &serde_json::json!({ "instances": {} })).unwrap();
    let second = revision(2, "bob \"the builder\"\n---", &["a"]);
    let policy = program();
    writer.record_with_program(&second, &serde_json::json!({ "instances": { "a": 1 } }), Some(&policy)).unwrap();
    let error = writer.record(&first, &serde_json::json!({})).unwrap_err();
    assert!(matches!(error, StoreError::OutOfOrder { number: 1, next: 3, .. }), "{error}");
    assert!(error.to_string().contains("the next revision is 3"), "{error}");

    let reader = store::open_read(at).unwrap().expect("a store");
    assert!(!reader.is_writable() && !reader.created());
    assert_eq!(reader.list().unwrap(), [first.clone(), second.clone()]);
    assert_eq!(reader.get(1).unwrap().unwrap(), first);
    assert!(reader.get(9).unwrap().is_none());
    assert_eq!(reader.last().unwrap().unwrap(), second);
    assert_eq!(reader.len().unwrap(), 2);
    assert_eq!(reader.desired_state(2).unwrap().unwrap()["instances"]["a"], 1);
    assert!(reader.desired_state(9).unwrap().is_none());
    assert!(reader.program(1).unwrap().is_none(), "recorded without its policy");
    assert_eq!(reader.program(2).unwrap().unwrap(), policy);
    assert_eq!(reader.policy_root().unwrap().unwrap(), PathBuf::from("/policies/shop"));
    let error = reader.record(&revision(3, "ada", &[]), &serde_json::json!({})).unwrap_err();
    assert!(matches!(error, StoreError::ReadOnly { .. }), "{error}");
    drop(writer);
    let again = store::open(at).unwrap();
    assert!(!again.created(), "opened, not created");
    assert_eq!(again.next_number().unwrap(), 3);
}

/// What `deploy --refresh` and `watch` found last, for the dashboard's drift page: none until one
/// is kept, replaced by the next, read by readers, refused to them, kept across a new writer.
fn the_last_drift_check_is_kept_replaced_and_read_by_readers(place: &Place) {
    use aptc_runtime::drift::{Drift, DriftKind};
    use aptc_runtime::store::{DriftCause, DriftRecord, now_rfc3339};
    let at = &place.location;
    let writer = store::open(at).unwrap();
    writer.record(&revision(1, "ada", &["a"]), &serde_json::json!({})).unwrap();
    assert_eq!(writer.last_drift().unwrap(), None);
    let modified = Drift {
        key: "local/web/a".into(),
        name: "a \"quoted\"\n---".into(),
        place: "local/web".into(),
        kind: DriftKind::Modified { changed: vec!["manifest.yaml".into()], added: vec![], removed: vec![] },
    };
    let first = DriftRecord {
        time: now_rfc3339(),
        user: Some("ada".into()),
        cause: DriftCause::Deploy,
        revision: 1,
        target: "render:/out".into(),
        drift: vec![modified.clone(), Drift { kind: DriftKind::Missing, ..modified }],
    };
    writer.record_drift(&first).unwrap();
    assert_eq!(store::open_read(at).unwrap().unwrap().last_drift().unwrap().as_ref(), Some(&first));
    let second = DriftRecord { user: None, cause: DriftCause::Reconcile, drift: Vec::new(), ..first.clone() };
    writer.record_drift(&second).unwrap();
    drop(writer);
    let reader = store::open_read(at).unwrap().unwrap();
    assert_eq!(reader.last_drift().unwrap().as_ref(), Some(&second));
    assert!(matches!(reader.record_drift(&first).unwrap_err(), StoreError::ReadOnly { .. }));
    assert_eq!(store::open(at).unwrap().last_drift().unwrap(), Some(second), "kept for the next writer");
}

fn one_writer_at_a_time_and_readers_see_its_journal(place: &Place) {
    let at = &place.location;
    let writer = store::open(at).unwrap();
    writer.record(&revision(1, "ada", &[]), &serde_json::json!({})).unwrap();
    let (journal, _) = journal(2);
    writer.begin(&journal).unwrap();
    writer.journal_report(2, 0, &succeeded()).unwrap();

    let error = store::open(at).err().expect("a second writer is refused");
    assert!(matches!(error, StoreError::Busy { .. } | StoreError::Held { .. }), "{error}");
    assert!(error.to_string().contains("in use by another aptc"), "{error}");

    let reader = store::open_read(at).unwrap().unwrap();
    assert_eq!(reader.last().unwrap().unwrap().number, 1);
    assert_eq!(reader.pending().unwrap().unwrap(), journal);
    let unfinished = reader.unfinished().unwrap().unwrap();
    assert_eq!(unfinished.number, 2);
    assert!(unfinished.actions[0].report.outcome.succeeded());
    assert_eq!(unfinished.actions[1].report.outcome, Outcome::Skipped { reason: NOT_REPORTED.into() });
    assert_eq!(reader.desired_state(2).unwrap().unwrap()["planned"], true, "from the journal");
    assert!(matches!(reader.recover().unwrap_err(), StoreError::ReadOnly { .. }), "a reader records nothing");

    writer.journal_report(2, 1, &succeeded()).unwrap();
    let recorded = Revision { actions: Vec::new(), ..journal.revision.clone() };
    writer.record(&recorded, &serde_json::json!({ "recorded": true })).unwrap();
    assert!(writer.pending().unwrap().is_none(), "recording removes the journal");
    drop(writer);
    let next = store::open(at).expect("the lock is released with the writer");
    assert_eq!(next.next_number().unwrap(), 3);
    assert_eq!(next.desired_state(2).unwrap().unwrap()["recorded"], true);
}

/// Two writers, each recording revisions as fast as it can, taking turns as the store lets
/// them: every revision either recorded is there, under a number of its own, in order.
fn two_writers_racing_for_revision_numbers_lose_nothing(place: &Place) {
    const EACH: usize = 4;
    let recorded: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["ada", "bob"]
            .into_iter()
            .map(|user| {
                let at = place.location.clone();
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    while mine.len() < EACH {
                        let writer = match store::open(&at) {
                            Ok(writer) => writer,
                            Err(StoreError::Busy { .. } | StoreError::Held { .. }) => {
                                std::thread::yield_now();
                                continue;
                            }
                            Err(error) => panic!("{error}"),
                        };
                        let number = writer.next_number().unwrap();
                        match writer.record(&revision(number, user, &[user]), &serde_json::json!({ "by": user })) {
                            Ok(()) => mine.push(number),
                            Err(error @ StoreError::Conflict { .. }) => panic!("the lock let two writers in: {error}"),
                            Err(error) => panic!("{error}"),
                        }
                    }
                    mine
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let reader = store::open_read(&place.location).unwrap().unwrap();
    let all = reader.list().unwrap();
    assert_eq!(all.iter().map(|r| r.number).collect::<Vec<_>>(), (1..=2 * EACH as u64).collect::<Vec<_>>());
    for (user, numbers) in ["ada", "bob"].iter().zip(&recorded) {
        for number in numbers {
            let revision = &all[*number as usize - 1];
            assert_eq!(&revision.user, user, "revision {number} is the one {user} recorded");
            assert_eq!(reader.desired_state(*number).unwrap().unwrap()["by"], *user);
        }
    }
}

/// A journal of revision `number` planning two creates, as written before its first action.
fn journal(number: u64) -> (Journal, Plan) {
    let desired = units(&["a", "b"]);
    let plan = plan(&BTreeMap::new(), &desired, None, &|_| true);
    let mut planned = revision(number, "ada", &[]);
    planned.desired = desired;
    let journal = Journal {
        revision: planned,
        plan: plan.clone(),
        desired_state: serde_json::json!({ "planned": true }).into(),
        program: Some(program().to_json()),
    };
    (journal, plan)
}

fn succeeded() -> ActionReport {
    ActionReport { outcome: Outcome::Succeeded { detail: "ok".into() }, started_ms: 1, duration_ms: 2 }
}

fn a_killed_deploy_is_recovered_from_its_journal(place: &Place) {
    let at = &place.location;
    let (journal, plan) = journal(1);
    {
        let writer = store::open(at).unwrap();
        writer.begin(&journal).unwrap();
        let error = writer.begin(&journal).unwrap_err();
        assert!(error.to_string().contains("unfinished revision 1"), "{error}");
        writer.journal_report(1, 0, &succeeded()).unwrap();
        // The process dies here: the revision is never recorded (the lock goes with it: a file's
        // with the process, a cluster's as the module docs say, tested below and in tests/cli.rs).
    }
    let reader = store::open_read(at).unwrap().unwrap();
    assert!(reader.last().unwrap().is_none());
    assert_eq!(reader.pending().unwrap().unwrap().revision.number, 1);

    let writer = store::open(at).unwrap();
    let recovered = writer.recover().unwrap().expect("the journal becomes a revision");
    assert_eq!(recovered.number, 1);
    assert!(recovered.actions[0].report.outcome.succeeded());
    assert_eq!(recovered.actions[1].report.outcome, Outcome::Failed { error: UNFINISHED.into(), retryable: true });
    assert_eq!(recovered.applied.keys().collect::<Vec<_>>(), [&plan.actions[0].unit.key]);
    assert_eq!(writer.last().unwrap().unwrap(), recovered);
    assert_eq!(writer.program(1).unwrap().unwrap(), program(), "the journal's policy is recorded");
    assert!(writer.pending().unwrap().is_none(), "the journal goes with the recorded revision");
    assert!(writer.recover().unwrap().is_none());
    // The next deploy plans the unfinished action again, and only it.
    let next = aptc_runtime::plan::plan(&recovered.applied_units(), &units(&["a", "b"]), None, &|_| true);
    assert_eq!(
        next.actions.iter().map(|a| a.unit.key.as_str()).collect::<Vec<_>>(),
        [plan.actions[1].unit.key.as_str()]
    );
}

fn a_refused_first_deploy_leaves_no_store(place: &Place) {
    let at = &place.location;
    let writer = store::open(at).unwrap();
    assert!(writer.created());
    writer.discard().unwrap();
    assert!(store::open_read(at).unwrap().is_none(), "nothing left");
    if let Some(fake) = &place.fake {
        assert!(fake.paths().iter().all(|p| !p.contains("/configmaps/")), "{:?}", fake.paths());
    }
    // A store with revisions is never discarded.
    let writer = store::open(at).unwrap();
    writer.record(&revision(1, "ada", &[]), &serde_json::json!({})).unwrap();
    drop(writer);
    let writer = store::open(at).unwrap();
    assert!(!writer.created());
    writer.discard().unwrap();
    assert_eq!(store::open_read(at).unwrap().unwrap().len().unwrap(), 1);
}

/// What only the Kubernetes backend has.
mod kube_only {
    use super::*;
    use serde_json::json;

    fn head_path() -> String {
        format!("/api/v1/namespaces/{NAMESPACE}/configmaps/aptc-store")
    }

    /// The objects are what `kubectl` shows: ConfigMaps labelled as aptc's, a revision immutable
    /// and compressed.
    #[test]
    fn revisions_are_labelled_immutable_config_maps() {
        let place = kube();
        let writer = store::open(&place.location).unwrap();
        writer.record(&revision(1, "ada", &["a"]), &json!({ "big": "x".repeat(100_000) })).unwrap();
        let fake = place.fake.as_ref().unwrap();
        let object = fake.object(&format!("/api/v1/namespaces/{NAMESPACE}/configmaps/aptc-revision-1")).unwrap();
        assert_eq!(object["metadata"]["labels"]["aptc.dev/store"], "revision");
        assert_eq!(object["metadata"]["labels"]["aptc.dev/revision"], "1");
        assert_eq!(object["metadata"]["labels"]["app.kubernetes.io/managed-by"], "aptc");
        assert_eq!(object["metadata"]["annotations"]["aptc.dev/user"], "ada");
        assert_eq!(object["immutable"], true);
        let size = serde_json::to_string(&object["binaryData"]).unwrap().len();
        assert!(size < 10_000, "compressed: {size} bytes");
        let head = fake.object(&head_path()).unwrap();
        assert!(head["data"]["holder"].as_str().unwrap().contains(&format!("\"pid\":{}", std::process::id())));
        drop(writer);
        assert!(fake.object(&head_path()).unwrap()["data"].get("holder").is_none(), "released");
    }

    /// The last revision and the next number come from the revisions' metadata and one get: a
    /// deploy's cost must not grow with the history (each revision holds a whole desired state).
    #[test]
    fn the_last_revision_is_read_without_the_others() {
        let place = kube();
        let writer = store::open(&place.location).unwrap();
        for number in 1..=5 {
            writer.record(&revision(number, "ada", &["a"]), &json!({ "n": number })).unwrap();
        }
        let fake = place.fake.as_ref().unwrap();
        let before = fake.requests().len();
        assert_eq!(writer.last().unwrap().unwrap().number, 5);
        assert_eq!(writer.next_number().unwrap(), 6);
        assert_eq!(writer.len().unwrap(), 5);
        let requests = fake.requests().split_off(before);
        let lists: Vec<_> = requests.iter().filter(|r| r.method == "GET" && r.path.ends_with("/configmaps")).collect();
        assert_eq!(lists.len(), 3, "one list each: {requests:?}");
        assert!(lists.iter().all(|r| r.accept.contains("as=PartialObjectMetadataList")), "metadata only: {lists:?}");
        let gets: Vec<_> = requests.iter().filter(|r| r.path.contains("aptc-revision-")).map(|r| &r.path).collect();
        assert_eq!(gets, [&format!("/api/v1/namespaces/{NAMESPACE}/configmaps/aptc-revision-5")]);
        // The whole history still lists in full.
        assert_eq!(writer.list().unwrap().iter().map(|r| r.number).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    }

    /// The journal (a whole desired state) is an object of its own, in force while the head
    /// names it: the head that every action's report and every renewal rewrites stays small; a
    /// journal left without the mark is stale; a journal in the head (an older store's) still
    /// counts and is forgotten when its revision is recorded.
    #[test]
    fn the_journal_is_its_own_object_and_the_head_stays_small() {
        let place = kube();
        let fake = place.fake.as_ref().unwrap();
        let journal_path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps/aptc-journal");
        let (mut journal, _) = journal(1);
        journal.desired_state = json!({ "big": (0..20_000).map(|i| i.to_string()).collect::<Vec<_>>() }).into();
        let writer = store::open(&place.location).unwrap();
        writer.begin(&journal).unwrap();
        writer.journal_report(1, 0, &succeeded()).unwrap();
        let head = fake.object(&head_path()).unwrap();
        assert_eq!(head["data"]["journal"], "1");
        let head_size = serde_json::to_string(&head).unwrap().len();
        let journal_size = serde_json::to_string(&fake.object(&journal_path).unwrap()).unwrap().len();
        assert!(head_size * 10 < journal_size, "head {head_size} bytes, journal {journal_size} bytes");
        assert_eq!(writer.pending().unwrap().unwrap(), journal);
        writer.record(&Revision { actions: Vec::new(), ..journal.revision.clone() }, &json!({})).unwrap();
        assert!(writer.pending().unwrap().is_none());
        assert!(fake.object(&head_path()).unwrap()["data"].get("journal").is_none());
        assert!(fake.object(&journal_path).is_some(), "stale, and ignored without the mark");

        // The next deploy replaces it.
        let (next, _) = super::journal(2);
        writer.begin(&next).unwrap();
        assert_eq!(writer.pending().unwrap().unwrap(), next);
        writer.record(&Revision { actions: Vec::new(), ..next.revision.clone() }, &json!({})).unwrap();
        drop(writer);

        // An older store's journal, in the head.
        let (old, _) = super::journal(3);
        fake.edit(&head_path(), |head| {
            let zipped = {
                use std::io::Write;
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&serde_json::to_vec(&old).unwrap()).unwrap();
                encoder.finish().unwrap()
            };
            head["binaryData"]["journal.json.gz"] = serde_json::to_value(k8s_openapi::ByteString(zipped)).unwrap();
        });
        let writer = store::open(&place.location).unwrap();
        assert_eq!(writer.pending().unwrap().unwrap(), old);
        assert_eq!(writer.recover().unwrap().unwrap().number, 3);
        assert!(writer.pending().unwrap().is_none());
        assert!(fake.object(&head_path()).unwrap()["binaryData"].get("journal.json.gz").is_none());
    }

    /// A killed deploy's lock: taken at once when its process ran on this machine, else only
    /// once its renewal has lapsed; the journal it left is recovered either way.
    #[test]
    fn the_lock_of_a_killed_deploy_is_taken_over_and_its_journal_recovered() {
        let place = kube();
        let fake = place.fake.as_ref().unwrap();
        let (journal, _) = journal(1);
        let writer = store::open(&place.location).unwrap();
        writer.begin(&journal).unwrap();
        writer.journal_report(1, 0, &succeeded()).unwrap();
        let left = fake.object(&head_path()).unwrap();
        drop(writer);
        // As a deploy killed on another machine leaves the head: its lock fresh.
        let holder = |host: &str, pid: u32, renewed: &str| {
            let mut head = left.clone();
            let mut holder: serde_json::Value = serde_json::from_str(head["data"]["holder"].as_str().unwrap()).unwrap();
            holder["host"] = json!(host);
            holder["pid"] = json!(pid);
            holder["renewed"] = json!(renewed);
            head["data"]["holder"] = json!(holder.to_string());
            head["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            head
        };
        fake.insert(&head_path(), holder("elsewhere", 4242, &store::now_rfc3339()));
        let error = store::open(&place.location).err().expect("held by the other machine");
        assert!(matches!(error, StoreError::Held { lapse: 60, .. }), "{error}");
        assert!(error.to_string().contains("pid 4242 on host elsewhere"), "{error}");
        // Its renewal lapsed: taken over.
        fake.insert(&head_path(), holder("elsewhere", 4242, "2020-01-01T00:00:00Z"));
        let writer = store::open(&place.location).unwrap();
        assert_eq!(writer.recover().unwrap().unwrap().number, 1);
        drop(writer);
        // A process of this machine that no longer runs: taken over at once.
        let (journal, _) = super::journal(2);
        let writer = store::open(&place.location).unwrap();
        writer.begin(&journal).unwrap();
        let left = fake.object(&head_path()).unwrap();
        drop(writer);
        let here = hostname::get().unwrap().to_string_lossy().into_owned();
        let mut dead = left.clone();
        let mut holder: serde_json::Value = serde_json::from_str(left["data"]["holder"].as_str().unwrap()).unwrap();
        holder["host"] = json!(here);
        holder["pid"] = json!(99_999_999);
        dead["data"]["holder"] = json!(holder.to_string());
        dead["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        fake.insert(&head_path(), dead);
        let writer = store::open(&place.location).unwrap();
        assert_eq!(writer.recover().unwrap().unwrap().number, 2);
    }

    /// A writer whose lock another took over writes nothing more; and a revision whose number
    /// another writer recorded first is refused by the API server (POST), never replaced.
    #[test]
    fn a_writer_that_lost_its_lock_or_the_race_records_nothing() {
        let place = kube();
        let fake = place.fake.as_ref().unwrap();
        let slow = store::open(&place.location).unwrap();
        // Its lock is taken over (as if it had not renewed in time).
        fake.edit(&head_path(), |head| {
            head["data"]["holder"] = json!(
                json!({ "host": "elsewhere", "pid": 1, "since": "2020-01-01T00:00:00Z",
                "renewed": "2020-01-01T00:00:00Z", "lapse_seconds": 60 })
                .to_string()
            );
        });
        let fast = store::open(&place.location).unwrap();
        fast.record(&revision(1, "fast", &[]), &json!({})).unwrap();
        let error = slow.record(&revision(1, "slow", &[]), &json!({})).unwrap_err();
        assert!(matches!(error, StoreError::LockLost { .. } | StoreError::OutOfOrder { .. }), "{error}");
        let error = slow.record(&revision(2, "slow", &[]), &json!({})).unwrap_err();
        assert!(matches!(error, StoreError::LockLost { .. }), "{error}");
        assert!(error.to_string().contains("another aptc took over the lock"), "{error}");
        drop(slow);
        assert!(fake.object(&head_path()).unwrap()["data"]["holder"].as_str().unwrap().contains("since"), "kept");

        // The race itself: `fast` POSTs revision 2 while another writer's revision 2 lands first.
        fake.hold("POST", "/configmaps");
        let posts = || fake.requests().iter().filter(|r| r.method == "POST").count();
        let posted = posts();
        let racing = std::thread::scope(|scope| {
            let recording = scope.spawn(|| fast.record(&revision(2, "fast", &[]), &json!({})));
            // Until `fast`'s own POST of revision 2 is held (it chose its number before).
            while posts() == posted {
                std::thread::yield_now();
            }
            let mut theirs =
                fake.object(&format!("/api/v1/namespaces/{NAMESPACE}/configmaps/aptc-revision-1")).unwrap();
            theirs["metadata"]["name"] = json!("aptc-revision-2");
            theirs["metadata"]["labels"]["aptc.dev/revision"] = json!("2");
            theirs["metadata"]["annotations"]["aptc.dev/user"] = json!("theirs");
            theirs["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            fake.insert(&format!("/api/v1/namespaces/{NAMESPACE}/configmaps/aptc-revision-2"), theirs);
            fake.come_back();
            recording.join().unwrap()
        });
        let error = racing.unwrap_err();
        assert!(matches!(error, StoreError::Conflict { number: 2, .. }), "{error}");
        assert!(error.to_string().contains("revision 2 was recorded by another aptc at the same time"), "{error}");
        let object = fake.object(&format!("/api/v1/namespaces/{NAMESPACE}/configmaps/aptc-revision-2")).unwrap();
        assert_eq!(object["metadata"]["annotations"]["aptc.dev/user"], "theirs", "never replaced");
    }

    #[test]
    fn a_revision_larger_than_an_object_is_refused_clearly() {
        let place = kube();
        let writer = store::open(&place.location).unwrap();
        // Incompressible: a chain of digests.
        let mut noise = String::new();
        let mut last = String::from("seed");
        while noise.len() < 2_500_000 {
            last = aptc_core::digest::sha256(&last);
            noise.push_str(&last);
        }
        let error = writer.record(&revision(1, "ada", &[]), &json!({ "noise": noise })).unwrap_err();
        assert!(matches!(error, StoreError::TooLarge { .. }), "{error}");
        assert!(error.to_string().contains("more than the 1000000 bytes one Kubernetes object holds"), "{error}");
        assert!(error.to_string().contains("--state PATH"), "{error}");
        assert!(writer.is_empty().unwrap(), "nothing recorded");
    }

    #[test]
    fn state_urls_name_a_context_and_a_namespace() {
        let parse = |text: &str| Location::from_arg(std::path::Path::new(text));
        let kube = |context: Option<&str>, namespace: &str| {
            Location::Kube(KubeLocation {
                kubeconfig: None,
                context: context.map(Into::into),
                namespace: namespace.into(),
            })
        };
        assert_eq!(parse("kube://prod/aptc").unwrap(), kube(Some("prod"), "aptc"));
        assert_eq!(parse("kube:///aptc").unwrap(), kube(None, "aptc"), "the current context");
        let eks = "arn:aws:eks:eu-west-1:1:cluster/prod";
        assert_eq!(parse(&format!("kube://{eks}/team-a")).unwrap(), kube(Some(eks), "team-a"));
        assert_eq!(parse("out/state.db").unwrap(), Location::File("out/state.db".into()));
        assert_eq!(parse("kube://prod/aptc").unwrap().to_string(), "kube://prod/aptc");
        for bad in ["kube://prod", "kube://prod/", "kube://prod/Team", "kube://prod/-a", "kube://prod/a_b"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("kube://CONTEXT/NAMESPACE"), "{bad}: {error}");
        }
    }

    #[test]
    fn an_unreachable_cluster_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        // Nothing listens on port 1.
        write_kubeconfig(&kubeconfig, "http://127.0.0.1:1", "gone").unwrap();
        let at = Location::Kube(KubeLocation { kubeconfig: Some(kubeconfig), context: None, namespace: "x".into() });
        let error = store::open_read(&at).err().unwrap().to_string();
        assert!(error.starts_with("kube:///x (kubeconfig "), "{error}");
        assert!(error.contains("connecting"), "{error}");
        let missing = Location::Kube(KubeLocation {
            kubeconfig: Some(dir.path().join("none")),
            context: Some("c".into()),
            namespace: "x".into(),
        });
        let error = store::open(&missing).err().unwrap().to_string();
        assert!(error.contains("reading the kubeconfig"), "{error}");
    }

    fn revision_path(number: u64) -> String {
        format!("/api/v1/namespaces/{NAMESPACE}/configmaps/aptc-revision-{number}")
    }

    /// `aptc store check`/`repair` of a Kubernetes store: a revision whose record does not decode
    /// is found and moved aside, an interrupted deploy's journal recorded, and what cannot be had
    /// back (a missing revision) still said.
    #[test]
    fn check_finds_what_cannot_be_read_and_repair_moves_it_aside_and_records_the_journal() {
        let place = kube();
        let fake = place.fake.as_ref().unwrap();
        let Location::Kube(kube) = &place.location else { unreachable!() };
        let writer = store::open(&place.location).unwrap();
        for number in 1..=3 {
            writer.record(&revision(number, "ada", &["a"]), &json!({ "n": number })).unwrap();
        }
        writer.begin(&journal(4).0).unwrap();
        drop(writer);
        let healthy = store::KubeStore::check(&place.location, kube).unwrap();
        assert_eq!((healthy.readable.clone(), healthy.unfinished), (vec![1, 2, 3], Some(4)));
        assert!(!healthy.is_damaged(), "{healthy:?}");

        // Revision 2 edited by hand: its record no longer decodes, and every listing failed on it.
        fake.edit(&revision_path(2), |o| o["binaryData"]["revision.json.gz"] = json!("bm90IGd6aXA="));
        assert!(store::open_read(&place.location).unwrap().unwrap().list().is_err(), "history fails on it");
        let damaged = store::KubeStore::check(&place.location, kube).unwrap();
        assert_eq!(damaged.readable, [1, 3]);
        assert_eq!(damaged.damage.len(), 1, "{damaged:?}");
        assert!(damaged.damage[0].starts_with("the record of revision 2 cannot be read"), "{damaged:?}");
        assert!(fake.object(&revision_path(2)).is_some(), "check changes nothing");

        let (done, after) = store::KubeStore::repair(&place.location, kube).unwrap();
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(
            done[0].starts_with("moved aptc-revision-2, which cannot be read, aside as aptc-revision-2-damaged-"),
            "{done:?}"
        );
        assert!(done[1].starts_with("recorded the journal of the interrupted deploy as revision 4"), "{done:?}");
        assert_eq!((after.readable.clone(), after.unfinished), (vec![1, 3, 4], None));
        assert_eq!(after.damage, ["revisions missing: 2 (their objects were deleted; they cannot be had back)"]);
        let aside = fake.paths().into_iter().find(|p| p.contains("aptc-revision-2-damaged-")).expect("kept aside");
        assert!(fake.object(&aside).unwrap()["metadata"]["labels"].is_null(), "not part of the store");
        let numbers: Vec<u64> =
            store::open_read(&place.location).unwrap().unwrap().list().unwrap().iter().map(|r| r.number).collect();
        assert_eq!(numbers, [1, 3, 4], "history reads again");
        let (again, _) = store::KubeStore::repair(&place.location, kube).unwrap();
        assert!(again.is_empty(), "nothing more to do: {again:?}");
    }

    #[test]
    fn a_journal_that_cannot_be_read_leaves_the_head_and_the_head_is_kept_aside() {
        let place = kube();
        let fake = place.fake.as_ref().unwrap();
        let Location::Kube(kube) = &place.location else { unreachable!() };
        let writer = store::open(&place.location).unwrap();
        writer.record(&revision(1, "ada", &["a"]), &json!({})).unwrap();
        writer.begin(&journal(2).0).unwrap();
        drop(writer);
        let journal_path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps/aptc-journal");
        fake.edit(&journal_path, |o| o["binaryData"]["journal.json.gz"] = json!("bm90IGd6aXA="));
        let damaged = store::KubeStore::check(&place.location, kube).unwrap();
        assert!(
            damaged.damage.iter().any(|d| d.starts_with("the journal in aptc-journal cannot be read")),
            "{damaged:?}"
        );
        // Held by a live writer: refused.
        let holding = store::open(&place.location);
        if let Ok(holding) = holding {
            let error = store::KubeStore::repair(&place.location, kube).unwrap_err();
            assert!(matches!(error, StoreError::Held { .. }), "{error}");
            drop(holding);
        }
        let (done, after) = store::KubeStore::repair(&place.location, kube).unwrap();
        assert!(
            done.len() == 1 && done[0].starts_with("removed the journal, which cannot be read, from aptc-store"),
            "{done:?}"
        );
        assert!(!after.is_damaged() && after.unfinished.is_none() && after.readable == [1], "{after:?}");
        assert!(fake.object(&head_path()).unwrap()["data"]["journal"].is_null(), "the mark is gone");
        assert!(fake.paths().iter().any(|p| p.contains("aptc-store-damaged-")), "the head as it was is kept");
        assert!(store::open(&place.location).is_ok(), "writable again");
    }
}
