//! The cluster driver: what `aptc deploy` applies to real Kubernetes clusters.
//!
//! Chart units become Helm releases through the real `helm` binary ([`crate::release`]);
//! manifests units are server-side applied through the Kubernetes API ([`crate::k8s`]). Each unit
//! goes to the cluster the policy placed it on, reached through that cluster's kubeconfig and
//! context ([`Connection`]); connections are opened on first use, once per cluster, and checked in
//! the preflight so that an unreachable cluster stops a deploy before anything is applied.
//!
//! Secrets are revealed here and nowhere else, just before they are handed to Helm (on its
//! standard input: no file holds them) or to the API server; what Helm says is scrubbed of them
//! and of their encodings ([`Secrets::scrub`]) before it is logged, stored or shown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aptc_core::ir::Program;

use crate::connection::Connection;
use crate::credentials::{Connected, Credentials, CredentialsError, Home};
use crate::driver::{ActionResult, Driver, DriverError};
use crate::helm::HelmError;
use crate::k8s::Applier;
use crate::manifest::{parse_stream, unit_documents};
use crate::plan::{Action, Op, Plan, Unit};
use crate::release::{Guard, ReleaseOutcome, Releases};
use crate::secrets::Secrets;
use crate::source::Source;

/// The name under which a cluster driver's revisions are kept (one store per fleet of clusters).
pub const TARGET: &str = "kubernetes";

/// Applies units to the clusters of a policy.
pub struct ClusterDriver {
    /// By `system.NAME`; a cluster the policy no longer declares is reached as
    /// [`Connection::ambient`] (to delete what was deployed there).
    connections: BTreeMap<String, Connection>,
    /// The clusters whose kubeconfig comes from a Secret or is the home cluster, by `system.NAME`
    /// (their contexts are in `connections`).
    declared: BTreeMap<String, aptc_core::ir::Credentials>,
    /// How those are reached, and their connections once made (with the kubeconfig read, so a
    /// rotated Secret is noticed at the next preflight).
    credentials: Credentials,
    connected: Mutex<HashMap<String, Connected>>,
    /// `Err`: helm is missing (only chart units need it).
    releases: Result<Releases, HelmError>,
    appliers: Mutex<HashMap<String, Arc<Applier>>>,
    /// How long a cluster may not answer while Helm runs before Helm is stopped.
    lost_after: Duration,
    /// Clusters that stopped answering during this deploy, with why: nothing more is tried there.
    lost: Mutex<BTreeMap<String, String>>,
    /// Conflicts with controllers already reported (each is reported once).
    reported: Mutex<BTreeSet<String>>,
}

/// How long a cluster may not answer while Helm runs before Helm is stopped and the cluster
/// counts as lost, unless `APTC_CLUSTER_LOST_AFTER` (seconds) says otherwise: a deploy that loses
/// its API server ends within a minute, not after Helm's whole `--wait` timeout.
pub const LOST_AFTER: Duration = Duration::from_secs(45);

/// How often the watchdog asks the API server at most.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The connections of the clusters `program` declares, by `system.NAME`.
pub fn connections(program: &Program) -> BTreeMap<String, Connection> {
    program.clusters.iter().map(|(key, cluster)| (key.clone(), Connection::for_cluster(key, cluster))).collect()
}

/// The clusters of `program` whose kubeconfig is a Secret's or the home cluster's, by
/// `system.NAME`.
pub fn credentials(program: &Program) -> BTreeMap<String, aptc_core::ir::Credentials> {
    program.clusters.iter().filter_map(|(key, cluster)| Some((key.clone(), cluster.credentials.clone()?))).collect()
}

impl ClusterDriver {
    /// A driver for the declared clusters `connections`, with Helm releases from `releases`.
    pub fn new(connections: BTreeMap<String, Connection>, releases: Result<Releases, HelmError>) -> ClusterDriver {
        let lost_after = std::env::var("APTC_CLUSTER_LOST_AFTER")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(LOST_AFTER, |secs| Duration::from_secs(secs.max(1)));
        ClusterDriver {
            connections,
            declared: BTreeMap::new(),
            credentials: Credentials::new(Home::default()),
            connected: Mutex::new(HashMap::new()),
            releases,
            appliers: Mutex::new(HashMap::new()),
            lost_after,
            lost: Mutex::new(BTreeMap::new()),
            reported: Mutex::new(BTreeSet::new()),
        }
    }

    /// The driver with `declared`, the clusters whose kubeconfig is a Secret's or the home
    /// cluster's (docs/language.md §8.1), found through `home`.
    pub fn with_credentials(
        mut self,
        declared: BTreeMap<String, aptc_core::ir::Credentials>,
        home: Home,
    ) -> ClusterDriver {
        self.declared = declared;
        self.credentials = Credentials::new(home);
        self
    }

    /// Where this driver reads secrets: `secret_k8s` from the home's Secrets, as the
    /// kubeconfigs of `kubeconfig secret` (docs/language.md §5.9, §8.1).
    pub fn secrets(&self) -> Secrets {
        Secrets::new(self.credentials.home().clone())
    }

    /// Whether any declared cluster has a kubeconfig to read (or, for those of a Secret or the
    /// home cluster, the home has one): without one, no cluster is configured and the embedded
    /// default (rendering) applies.
    pub fn is_configured(&self) -> bool {
        self.connections.iter().any(|(key, c)| !self.declared.contains_key(key) && c.is_configured())
            || (!self.declared.is_empty() && self.credentials.home().is_configured())
    }

    /// Connects to every declared cluster (kept for the deploy); the first that does not answer
    /// is the error.
    pub fn probe(&self) -> Result<(), DriverError> {
        for cluster in self.connections.keys() {
            self.applier(cluster)?;
        }
        Ok(())
    }

    /// The connection of `cluster`; for one of a Secret or the home cluster, made on first use.
    fn connection(&self, cluster: &str) -> Result<Connection, DriverError> {
        let Some(credentials) = self.declared.get(cluster) else {
            return Ok(self.connections.get(cluster).cloned().unwrap_or_else(|| Connection::ambient(cluster)));
        };
        if let Some(connected) = self.connected.lock().unwrap_or_else(|p| p.into_inner()).get(cluster) {
            return Ok(connected.connection.clone());
        }
        let connected = self.connect(cluster, credentials)?;
        let connection = connected.connection.clone();
        self.connected.lock().unwrap_or_else(|p| p.into_inner()).insert(cluster.to_string(), connected);
        Ok(connection)
    }

    fn connect(&self, cluster: &str, credentials: &aptc_core::ir::Credentials) -> Result<Connected, CredentialsError> {
        let context = self.connections.get(cluster).and_then(|c| c.context.as_deref());
        self.credentials.connect(cluster, context, credentials)
    }

    /// Reads the credentials of `cluster` (one of a Secret or the home cluster) again; when the
    /// kubeconfig changed (a rotated Secret), its connection is replaced and its client made anew.
    fn renew(&self, cluster: &str) -> Result<(), DriverError> {
        let Some(credentials) = self.declared.get(cluster) else { return Ok(()) };
        let fresh = match self.connect(cluster, credentials) {
            Ok(fresh) => fresh,
            Err(error) => {
                self.connected.lock().unwrap_or_else(|p| p.into_inner()).remove(cluster);
                self.appliers.lock().unwrap_or_else(|p| p.into_inner()).remove(cluster);
                return Err(error.into());
            }
        };
        let mut connected = self.connected.lock().unwrap_or_else(|p| p.into_inner());
        if connected.get(cluster) != Some(&fresh) {
            connected.insert(cluster.to_string(), fresh);
            self.appliers.lock().unwrap_or_else(|p| p.into_inner()).remove(cluster);
        }
        Ok(())
    }

    /// The applier of `cluster`, connecting on first use.
    fn applier(&self, cluster: &str) -> Result<Arc<Applier>, DriverError> {
        if let Some(applier) = self.appliers.lock().unwrap_or_else(|p| p.into_inner()).get(cluster) {
            return Ok(applier.clone());
        }
        let applier = Arc::new(Applier::connect(&self.connection(cluster)?)?);
        let mut appliers = self.appliers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(appliers.entry(cluster.to_string()).or_insert(applier).clone())
    }

    fn releases(&self) -> Result<&Releases, DriverError> {
        self.releases.as_ref().map_err(|e| DriverError::NeedsHelm(e.clone()))
    }

    /// Runs `helm` (Helm calls, or aptc's own applies, for a unit on `cluster`) under a
    /// watchdog: the API server is asked every few seconds whether it answers, and once it has
    /// not for `lost_after`, the work is stopped (Helm's `--wait` would go on for its whole
    /// timeout on a dead connection, a request for its client's) and the cluster counts as lost
    /// for the rest of the deploy.
    fn watched<T>(
        &self,
        cluster: &str,
        applier: &Arc<Applier>,
        helm: impl FnOnce(&(dyn Fn() -> Option<String> + Sync)) -> Result<T, DriverError>,
    ) -> Result<T, DriverError> {
        let lost: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let done = Arc::new(AtomicBool::new(false));
        let every = PROBE_EVERY.min(self.lost_after / 3).max(Duration::from_millis(500));
        let watchdog = {
            let (applier, lost, done, lost_after) = (applier.clone(), lost.clone(), done.clone(), self.lost_after);
            std::thread::spawn(move || {
                let mut answered = Instant::now();
                let mut asked = Instant::now();
                loop {
                    // First wait (most calls end before the first question is due).
                    let until = asked + every;
                    while !done.load(Ordering::Relaxed) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                    asked = Instant::now();
                    if applier.answers(every) {
                        answered = Instant::now();
                    } else if answered.elapsed() >= lost_after {
                        let reason = format!(
                            "its API server did not answer for {} s, so aptc stopped waiting for it (and stopped \
helm if it ran)",
                            answered.elapsed().as_secs()
                        );
                        *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                        return;
                    }
                }
            })
        };
        let stop = || lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let result = helm(&stop);
        done.store(true, Ordering::Relaxed);
        let _ = watchdog.join();
        match stop() {
            Some(reason) => {
                self.lost.lock().unwrap_or_else(|p| p.into_inner()).insert(cluster.to_string(), reason.clone());
                Err(DriverError::ClusterLost { cluster: cluster.to_string(), reason })
            }
            None => result,
        }
    }

    /// Applies or deletes one unit; errors are scrubbed of the unit's secrets by the caller.
    fn carry_out(&self, revision: u64, action: &Action, secrets: &Secrets) -> Result<String, DriverError> {
        let unit = &action.unit;
        if let Some(reason) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).get(&unit.cluster) {
            return Err(DriverError::ClusterLost { cluster: unit.cluster.clone(), reason: reason.clone() });
        }
        let connection = self.connection(&unit.cluster)?;
        match (&unit.source, action.op) {
            (Source::Chart { .. }, Op::Delete) => {
                let releases = self.releases()?;
                let applier = self.applier(&unit.cluster)?;
                self.watched(&unit.cluster, &applier, |stop| {
                    let guard = Guard { scrub: &|text: &str| text.to_string(), stop };
                    Ok(releases.uninstall_guarded(&connection, unit, &guard)?.to_string())
                })
            }
            (Source::Chart { .. }, _) => {
                let releases = self.releases()?;
                let values = secrets.reveal(&unit.values, base_dir(unit))?;
                // Created here rather than by Helm, so it carries aptc's label like every
                // namespace aptc makes.
                let applier = self.applier(&unit.cluster)?;
                applier.ensure_namespace(&unit.k8s_namespace)?;
                let base = base_dir(unit);
                let scrub = |text: &str| secrets.scrub(text, &unit.values, base);
                self.watched(&unit.cluster, &applier, |stop| {
                    let guard = Guard { scrub: &scrub, stop };
                    // A release an interrupted deploy left locked is unlocked first.
                    let recovered = releases.recover(&connection, unit, &guard)?;
                    let done = match releases.upgrade_guarded(&connection, unit, revision, &values, &guard)? {
                        ReleaseOutcome::Deployed(status) => {
                            format!("release {} {} (helm revision {})", unit.name, status.status, status.revision)
                        }
                        other => other.to_string(),
                    };
                    Ok(match recovered {
                        Some(recovered) => format!("{recovered}; {done}"),
                        None => done,
                    })
                })
            }
            (Source::Manifests { .. }, Op::Delete) => {
                let applier = self.applier(&unit.cluster)?;
                self.watched(&unit.cluster, &applier, |stop| Ok(applier.delete_until(unit, stop)?.detail))
            }
            (Source::Manifests { .. }, _) => {
                let applier = self.applier(&unit.cluster)?;
                let objects = objects(unit, revision, secrets)?;
                self.watched(&unit.cluster, &applier, |stop| {
                    Ok(applier.apply_until(unit, revision, &objects, stop)?.detail)
                })
            }
        }
    }
}

impl ClusterDriver {
    /// The live fingerprint of `objects` of `unit`; each field a controller owns is left out and
    /// reported (a warning) the first time this driver sees it.
    fn fingerprint_reporting(
        &self,
        applier: &Applier,
        unit: &Unit,
        objects: &[serde_json::Value],
    ) -> Option<BTreeMap<String, String>> {
        let (prints, conflicts) = applier.fingerprint_with_conflicts(unit, objects).ok()?;
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        for conflict in conflicts {
            if reported.insert(format!("{}\0{conflict}", unit.key)) {
                tracing::warn!(instance = %unit.name, "{conflict}");
            }
        }
        Some(prints)
    }
}

/// For people: `system.prod (current context of the Secret prod key kubeconfig in namespace
/// aptc-system of context control of /k/config)`.
fn describe_credentials(
    key: &str,
    connection: &Connection,
    credentials: &aptc_core::ir::Credentials,
    home: &Home,
) -> String {
    let context = connection.context.as_deref().map_or("current context".to_string(), |c| format!("context {c}"));
    match credentials {
        aptc_core::ir::Credentials::Secret { name, key: entry } => {
            let namespace = home.namespace.as_deref().map_or("the namespace".to_string(), |n| format!("namespace {n}"));
            format!("{key} ({context} of the Secret {name} key {entry} in {namespace} of {})", home.describe())
        }
        aptc_core::ir::Credentials::InCluster => format!("{key} (in_cluster: {})", home.describe()),
    }
}

/// The directory a unit's relative secret files are read from (its policy file's).
fn base_dir(unit: &Unit) -> &Path {
    match &unit.source {
        Source::Chart { base_dir, .. } | Source::Manifests { base_dir, .. } => Path::new(base_dir),
    }
}

/// A manifests unit's objects, stamped for `revision`, with their secrets revealed.
fn objects(unit: &Unit, revision: u64, secrets: &Secrets) -> Result<Vec<serde_json::Value>, DriverError> {
    let base = base_dir(unit);
    unit_documents(unit, revision)?
        .into_iter()
        .map(|document| Ok(secrets.reveal_in_strings(document.value, base)?))
        .collect()
}

impl Driver for ClusterDriver {
    fn target(&self) -> String {
        TARGET.to_string()
    }

    fn describe(&self) -> String {
        let clusters: Vec<String> = self
            .connections
            .iter()
            .map(|(key, connection)| match self.declared.get(key) {
                Some(credentials) => describe_credentials(key, connection, credentials, self.credentials.home()),
                None => connection.describe(),
            })
            .collect();
        format!("applied to Kubernetes: {}", clusters.join(", "))
    }

    /// Every cluster the plan touches must answer, and helm must be there for charts.
    fn preflight(&self, plan: &Plan) -> Result<(), DriverError> {
        if plan.actions.iter().any(|a| matches!(a.unit.source, Source::Chart { .. })) {
            self.releases()?;
        }
        let clusters: BTreeSet<&str> = plan.actions.iter().map(|a| a.unit.cluster.as_str()).collect();
        for cluster in clusters {
            // A cluster whose Secret cannot be read fails its own actions (saying why), not the
            // deploy: the other clusters' instances go on.
            match self.renew(cluster).and_then(|()| self.applier(cluster).map(drop)) {
                Err(DriverError::Credentials(error)) => {
                    tracing::warn!(cluster, "{error}");
                }
                other => other?,
            }
        }
        Ok(())
    }

    fn is_present(&self, unit: &Unit) -> bool {
        match &unit.source {
            Source::Chart { .. } => self.releases().is_ok_and(|r| {
                self.connection(&unit.cluster).is_ok_and(|c| r.status(&c, unit).is_ok_and(|s| s.is_some()))
            }),
            Source::Manifests { .. } => self.applier(&unit.cluster).is_ok_and(|a| a.is_present(unit).unwrap_or(false)),
        }
    }

    fn apply(&self, revision: u64, action: &Action) -> Result<ActionResult, DriverError> {
        let unit = &action.unit;
        // Read once for this action: a rotated Secret is read again by the next.
        let secrets = self.secrets();
        self.carry_out(revision, action, &secrets).map(|detail| ActionResult { detail }).map_err(|error| {
            // Whatever a tool said, it never shows a secret: an error that would is kept as its
            // scrubbed text only.
            let message = error.to_string();
            let scrubbed = secrets.scrub(&message, &unit.values, base_dir(unit));
            if scrubbed == message {
                error
            } else {
                DriverError::Scrubbed { message: scrubbed, transient: error.is_transient() }
            }
        })
    }

    /// A chart: `release` → Helm's status, plus each object of the release's manifest that
    /// exists live → the hash of its live state; a manifests unit: each object's live hash.
    fn fingerprint(&self, unit: &Unit) -> Option<BTreeMap<String, String>> {
        let applier = self.applier(&unit.cluster).ok()?;
        match &unit.source {
            Source::Chart { .. } => {
                let releases = self.releases().ok()?;
                let connection = self.connection(&unit.cluster).ok()?;
                let status = releases.status(&connection, unit).ok()??;
                let manifest = releases.manifest(&connection, unit).ok()?;
                let objects: Vec<serde_json::Value> =
                    parse_stream(&manifest).ok()?.into_iter().map(|d| d.value).collect();
                let mut live = self.fingerprint_reporting(&applier, unit, &objects)?;
                live.insert("release".to_string(), status.status);
                Some(live)
            }
            Source::Manifests { .. } => {
                let revision = 0; // the revision label is left out of fingerprints
                let objects = objects(unit, revision, &self.secrets()).ok()?;
                self.fingerprint_reporting(&applier, unit, &objects)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aptc_kube_fake::FakeApi;

    use super::*;
    use crate::retry::Backoff;
    use aptc_core::resolve::RenderedFile;

    /// A driver whose cluster `system.local` is the fake API server (no helm).
    fn driver(fake: &FakeApi) -> ClusterDriver {
        let driver = ClusterDriver::new(BTreeMap::new(), Err(HelmError::NotFound { place: "in this test".into() }));
        let make = fake.clone();
        let applier = Applier::with_client("system.local", move || make.client(), Backoff::immediate(2)).unwrap();
        driver.appliers.lock().unwrap().insert("system.local".into(), Arc::new(applier));
        driver
    }

    fn manifests_unit(text: &str) -> Unit {
        let mut unit = crate::plan::tests::unit("local/apps/team.svc/dev/config", &[]);
        unit.id = "0123456789".into();
        unit.k8s_namespace = "apps".into();
        unit.source = Source::Manifests { glob: "k8s/*.yaml".into(), base_dir: "/policy".into() };
        unit.files = vec![RenderedFile { path: "k8s/config.yaml".into(), text: text.into() }];
        unit
    }

    fn action(op: Op, unit: &Unit) -> Action {
        Action { op, unit: unit.clone(), why: "new".into(), after: vec![] }
    }

    #[test]
    fn manifests_are_applied_with_their_secrets_revealed_and_deleted_with_their_inventory() {
        let policy = tempfile::tempdir().unwrap();
        std::fs::write(policy.path().join("token.txt"), "s3cr3t\n").unwrap();
        let secret = aptc_core::secret::placeholder(&aptc_core::secret::SecretRef::File("token.txt".into()));
        let mut unit = manifests_unit(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\ndata:\n  token: \"{secret}\"\n"
        ));
        let base_dir = policy.path().to_string_lossy().into_owned();
        unit.source = Source::Manifests { glob: "k8s/*.yaml".into(), base_dir };
        let fake = FakeApi::new();
        let driver = driver(&fake);
        assert!(!driver.is_present(&unit));
        let result = driver.apply(3, &action(Op::Create, &unit)).unwrap();
        assert!(result.detail.contains("1 object"), "{}", result.detail);
        let applied = fake.object("/api/v1/namespaces/apps/configmaps/config").unwrap();
        assert_eq!(applied["data"]["token"], "s3cr3t", "the cluster gets the secret");
        assert_eq!(applied["metadata"]["labels"]["aptc.dev/revision"], "3");
        assert!(driver.is_present(&unit));
        let fingerprint = driver.fingerprint(&unit).unwrap();
        assert_eq!(fingerprint.keys().collect::<Vec<_>>(), ["ConfigMap/apps/config"]);
        fake.edit("/api/v1/namespaces/apps/configmaps/config", |o| o["data"]["token"] = "changed".into());
        assert_ne!(driver.fingerprint(&unit).unwrap(), fingerprint, "a hand edit is drift");

        driver.apply(4, &action(Op::Delete, &unit)).unwrap();
        assert!(fake.object("/api/v1/namespaces/apps/configmaps/config").is_none());
        assert!(!driver.is_present(&unit));
    }

    #[test]
    fn a_missing_secret_fails_the_instance_and_charts_need_helm() {
        let secret =
            aptc_core::secret::placeholder(&aptc_core::secret::SecretRef::Env("APTC_CLUSTER_TEST_UNSET".into()));
        let unit = manifests_unit(&format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{secret}\"\n"));
        let fake = FakeApi::new();
        let driver = driver(&fake);
        let error = driver.apply(1, &action(Op::Create, &unit)).unwrap_err().to_string();
        assert!(error.contains("APTC_CLUSTER_TEST_UNSET"), "{error}");
        assert!(fake.paths_of("PATCH").is_empty(), "nothing was applied");

        let chart = crate::plan::tests::unit("local/apps/team.svc/dev/web", &[]);
        let plan = Plan { actions: vec![action(Op::Create, &chart)], unchanged: vec![], kept: vec![] };
        assert!(driver.preflight(&plan).unwrap_err().to_string().contains("chart instances need helm"));
        assert!(driver.apply(1, &plan.actions[0]).unwrap_err().to_string().contains("helm was not found in this test"));
        assert!(!driver.is_present(&chart));
    }

    #[test]
    fn clusters_are_described_by_their_connections() {
        let cluster = aptc_core::ir::Cluster {
            name: "prod".into(),
            context: Some("prod-ctx".into()),
            kubeconfig: Some("/k/config".into()),
            credentials: None,
            namespace: None,
            labels: Default::default(),
            base_dir: "/policy".into(),
        };
        let connections =
            BTreeMap::from([("system.prod".to_string(), Connection::for_cluster("system.prod", &cluster))]);
        let driver = ClusterDriver::new(connections, Err(HelmError::NotFound { place: "in this test".into() }));
        assert_eq!(driver.target(), "kubernetes");
        assert_eq!(driver.describe(), "applied to Kubernetes: system.prod (context prod-ctx in /k/config)");
        assert!(!driver.is_configured(), "no kubeconfig file at /k/config");
        assert!(driver.probe().unwrap_err().to_string().contains("/k/config"));
    }

    #[test]
    fn a_rotated_kubeconfig_secret_is_read_again_and_a_deleted_one_fails_its_cluster() {
        let fake = aptc_kube_fake::FakeApi::new();
        let dir = tempfile::tempdir().unwrap();
        let home_kubeconfig = dir.path().join("home");
        fake.serve_to(&home_kubeconfig, "control").unwrap();
        let path = "/api/v1/namespaces/aptc-system/secrets/prod";
        let put = |server: &str| {
            let target = dir.path().join("target");
            aptc_kube_fake::write_kubeconfig(&target, server, "prod").unwrap();
            let contents = std::fs::read(&target).unwrap();
            fake.insert(
                path,
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": { "name": "prod", "namespace": "aptc-system" },
                    "data": { "kubeconfig": serde_json::to_value(k8s_openapi::ByteString(contents)).unwrap() }
                }),
            );
        };
        put("https://one.example");
        let credentials = aptc_core::ir::Credentials::Secret { name: "prod".into(), key: "kubeconfig".into() };
        let home = Home { kubeconfig: Some(home_kubeconfig), context: None, namespace: Some("aptc-system".into()) };
        let driver = ClusterDriver::new(
            BTreeMap::from([("system.prod".to_string(), Connection::ambient("system.prod"))]),
            Err(HelmError::NotFound { place: "in this test".into() }),
        )
        .with_credentials(BTreeMap::from([("system.prod".to_string(), credentials)]), home);
        assert!(driver.is_configured(), "the home has a kubeconfig");
        let read = |driver: &ClusterDriver| {
            std::fs::read_to_string(driver.connection("system.prod").unwrap().kubeconfig.unwrap()).unwrap()
        };
        assert!(read(&driver).contains("https://one.example"));
        put("https://two.example");
        assert!(read(&driver).contains("https://one.example"), "kept until the next preflight");
        driver.renew("system.prod").unwrap();
        assert!(read(&driver).contains("https://two.example"), "read again");
        fake.remove(path);
        let error = driver.renew("system.prod").unwrap_err();
        assert!(error.is_transient() && error.to_string().contains("no Secret `prod`"), "{error}");
        assert!(driver.connection("system.prod").is_err(), "not kept once it is gone");
    }
}
