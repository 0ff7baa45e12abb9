//! Deploy benchmark: aptc's own planning and bookkeeping per deploy, without Helm.
//!
//! `cargo bench --bench deploy`. The policy is generated into a temporary directory and loaded
//! as `aptc deploy` loads it (checked and lowered once per size, outside the measurement): one
//! service whose only component is `manifests "k8s/*.yaml"` (a small ConfigMap template named
//! `${instance.name}`), one contract with `allocate per labels.slot`, and N = 20 or 200 claims
//! with distinct slots, so N manifests instances. Measured:
//!
//! - `resolve_units`: `resolve` + `units` (the desired state → deployable units);
//! - `plan_first`: `plan` of those units against an empty applied state;
//! - `first_deploy`: a whole first deploy as `aptc deploy --target render --parallel 1` makes it
//!   after resolving: opening a new store, `deploy::prepare`, the render driver's preflight, the
//!   request (policy hash, desired state as JSON), `deploy::apply` (the journal, one journal record
//!   per action, rendering and writing each instance directory, fingerprints, the revision).
//!   Every iteration gets a fresh output directory and store, made and removed outside the
//!   measurement. It is mostly file system work (an instance directory, its files and a store
//!   commit with an fsync per instance), so it depends on the disk under the temporary directory:
//!   `TMPDIR=/dev/shm cargo bench --bench deploy` takes the disk out.
//!
//! The counter is instances: divan's `item/s` column is instances per second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use aptc_compiler::db::Settings;
use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;
use aptc_core::resolve::resolve;
use aptc_runtime::apply::Quiet;
use aptc_runtime::cancel::Cancel;
use aptc_runtime::deploy::{Refresh, Request, apply, policy_hash, prepare};
use aptc_runtime::driver::Driver;
use aptc_runtime::helm::HelmError;
use aptc_runtime::plan::{plan, units};
use aptc_runtime::render::RenderDriver;
use aptc_runtime::store::{Cause, FileStore};
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

const INSTANCES: [usize; 2] = [20, 200];

/// A directory of its own under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("aptc-bench-deploy-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `system` namespace of the generated policy, shared with `tools/measure-deploy.sh`.
const SYSTEM_APT: &str = include_str!("fixtures/deploy-system.apt");

const PERF_APT: &str = r#"namespace perf owned_by perf_team

label slot: string = ""

service config {
    component config manifests "k8s/*.yaml"
}

contract config {
    context each {
        allocate per labels.slot
        use config
    }
}
"#;

const CONFIGMAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: ${instance.name}
data:
  slot: "${labels.slot}"
"#;

/// Writes the policy of `claims` claims into `dir` and loads it as the CLI does
/// (src/cli/policy.rs): the `.apt` files and the manifest files they name, checked and lowered.
fn program(dir: &Path, claims: usize) -> Program {
    let mut perf = PERF_APT.to_string();
    for i in 1..=claims {
        perf.push_str(&format!(
            "\nclaim c{i} {{\n    user \"perf@example.com\"\n    contract config\n    labels {{ slot = \"s{i}\" }}\n}}\n"
        ));
    }
    std::fs::create_dir_all(dir.join("k8s")).expect("creating the policy directory");
    for (path, text) in [("system.apt", SYSTEM_APT), ("perf.apt", perf.as_str()), ("k8s/config.yaml", CONFIGMAP)] {
        std::fs::write(dir.join(path), text).expect("writing the policy");
    }
    let mut analysis = Analysis::open(&[dir.to_path_buf()], Settings::default()).expect("reading the policy files");
    analysis.lower().expect("the generated policy checks clean")
}

#[divan::bench(args = INSTANCES, sample_count = 30)]
fn resolve_units(bencher: Bencher, instances: usize) {
    let policy = Scratch::new();
    let program = program(&policy.0, instances);
    assert_eq!(units(&resolve(&program), &aptc_runtime::secrets::Secrets::local()).len(), instances);
    bencher
        .counter(ItemsCount::new(instances))
        .bench(|| black_box(units(&resolve(black_box(&program)), &aptc_runtime::secrets::Secrets::local())));
}

#[divan::bench(args = INSTANCES, sample_count = 30)]
fn plan_first(bencher: Bencher, instances: usize) {
    let policy = Scratch::new();
    let desired = units(&resolve(&program(&policy.0, instances)), &aptc_runtime::secrets::Secrets::local());
    let applied = BTreeMap::new();
    bencher
        .counter(ItemsCount::new(instances))
        .bench(|| black_box(plan(black_box(&applied), black_box(&desired), None, &|_| true)));
}

#[divan::bench(args = INSTANCES, sample_count = 10, sample_size = 1)]
fn first_deploy(bencher: Bencher, instances: usize) {
    let policy = Scratch::new();
    let program = program(&policy.0, instances);
    let state = resolve(&program);
    let desired = units(&state, &aptc_runtime::secrets::Secrets::local());
    assert_eq!(desired.len(), instances);
    bencher.counter(ItemsCount::new(instances)).with_inputs(Scratch::new).bench_local_refs(|scratch| {
        let store = FileStore::open(&scratch.0.join("state.db")).expect("opening a new store");
        // Manifests instances need no Helm.
        let driver = RenderDriver::new(
            &scratch.0.join("out"),
            Err(HelmError::NotFound { place: "(not needed: manifests only)".into() }),
        );
        let prepared = prepare(Some(&store), &driver, &desired, None, Refresh::Presence).expect("planning");
        driver.preflight(&prepared.plan).expect("preflight");
        let request = Request {
            user: "perf@example.com".to_string(),
            cause: Cause::Deploy { paths: vec![policy.0.display().to_string()] },
            policy: policy_hash(&program),
            program: Some(program.clone()),
            desired: desired.clone(),
            claims: None,
            desired_state: serde_json::to_value(&state).expect("encoding the desired state").into(),
            parallel: 1,
        };
        let revision = apply(&store, &driver, prepared, &request, &Quiet, &Cancel::new()).expect("deploying");
        assert_eq!(revision.counts().created, instances);
        revision
    });
}
