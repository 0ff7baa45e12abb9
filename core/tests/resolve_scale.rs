//! The resolver at scale (issue #11): a claim that reaches one contract by exponentially many
//! `uses` paths resolves each distinct sub-resolution once.

#[path = "../../benches/synth.rs"]
mod synth;

use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;
use std::collections::HashMap;
use std::sync::Arc;

use aptc_core::eval::{Atomic, EvalError, Observer};
use aptc_core::ir::{ClaimField, Value};
use aptc_core::resolve::{Alone, ConflictNote, Status, resolve};
use std::sync::atomic::{AtomicUsize, Ordering};

fn diamond(depth: usize, claims: usize) -> Program {
    let files = synth::diamond(depth, claims).into_iter().map(|file| (file.path, file.text));
    let mut analysis = Analysis::of_texts(files);
    match analysis.lower() {
        Ok(program) => program,
        Err(errors) => panic!("{}", analysis.render(&errors, false)),
    }
}

/// Counts the reads of `claim.*`: each level of the diamond allocates per `claim.id`, so this is
/// the number of contracts a claim's resolution allocated in. Past `limit` it fails at once, so
/// that a resolution gone exponential (2^49 paths at depth 50) fails instead of running forever.
struct ClaimReads {
    count: AtomicUsize,
    limit: usize,
}

impl Observer for ClaimReads {
    fn read(&self, _label: &str, _value: Option<&Value>) {}
    fn test(&self, _label: &str, _value: Option<&Value>, _test: Atomic<'_>, _result: &Result<bool, EvalError>) {}
    fn claim(&self, _field: ClaimField) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        assert!(count <= self.limit, "more than {} contract resolutions for one claim", self.limit);
    }
}

#[test]
fn a_diamond_chain_of_depth_50_resolves_with_its_instances() {
    let program = diamond(50, 2);
    // 2^49 paths reach the last level: each of the 50 contracts is resolved once.
    let reads = ClaimReads { count: AtomicUsize::new(0), limit: 1_000 };
    Alone::new(&program).resolve_observed(&program.claims[0], false, Some(&reads));
    assert_eq!(reads.count.into_inner(), 50);
    let state = resolve(&program);
    for claim in state.claims.values() {
        assert_eq!(claim.status, Status::Resolved, "{:?}", claim.reason);
    }
    assert_eq!(state.instances.len(), 2 * synth::diamond_instances(50));
    // Each instance is used by its own claim, once per depth it is reached at.
    for instance in state.instances.values() {
        assert_eq!(instance.claims.len(), 1, "{}", instance.key);
    }
}

#[test]
fn diamond_resolution_is_the_same_on_any_number_of_threads() {
    let program = diamond(12, 3);
    let many = serde_json::to_string(&resolve(&program)).unwrap();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| resolve(&program));
    assert_eq!(many, serde_json::to_string(&one).unwrap());
}

fn engine(claims: usize) -> Program {
    let files = synth::engine(claims, 40, 3).into_iter().map(|file| (file.path, file.text));
    let mut analysis = Analysis::of_texts(files);
    match analysis.lower() {
        Ok(program) => program,
        Err(errors) => panic!("{}", analysis.render(&errors, false)),
    }
}

/// The state as bytes: the plan format, the notes it carries, and every decision chain.
fn bytes(state: &aptc_core::resolve::DesiredState) -> String {
    let chains: String = state.claims.values().map(|c| serde_json::to_string(&c.decisions).unwrap()).collect();
    serde_json::to_string(state).unwrap() + &chains
}

/// Aptomi's engine shape over several chunks of claims: most claims conflict on a shared
/// instance an earlier chunk fixed, which the worker that resolved them finds (`settle`); the
/// state is the one `Incremental` builds (which never settles: it judges each claim's whole run
/// against the first claim that merged each of its instances), with and without chains, on any
/// number of threads, and whether the resolver borrows the program or takes it (and frees each
/// chunk of claims once merged).
#[test]
fn conflicts_found_by_the_workers_give_the_state_of_a_plain_merge() {
    use aptc_core::resolve::{Chains, DeployedNames, Incremental, Options, resolve_taking, resolve_with};
    let mut program = engine(1_100);
    program.claims.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for (keep, chains) in [(false, Chains::None), (true, Chains::All)] {
        let options = Options { deployed: &DeployedNames::new(), chains };
        let state = resolve_with(&program, &options);
        let plain = Incremental::new(program.clone(), DeployedNames::new(), keep);
        assert_eq!(bytes(&state), bytes(plain.state()));
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(bytes(&state), bytes(&one.install(|| resolve_with(&program, &options))));
        assert_eq!(bytes(&state), bytes(&resolve_taking(program.clone(), &options)));
        // The path under test is taken: claims after the first chunk conflict with instances
        // fixed before it, and the first claims collect their notes.
        let late_conflicts = program.claims[256..]
            .iter()
            .filter(|claim| {
                state.claims[&claim.id()]
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("conflict on shared instance"))
            })
            .count();
        assert!(late_conflicts > 500, "{late_conflicts}");
        assert!(state.claims.values().any(|c| c.notes.len() > 50));
        assert!(state.claims.values().filter(|c| c.status == Status::Resolved).count() > 20);
    }
}

/// Claims that fail alike keep one reason between them (on the engine shape most claims conflict
/// on a few shared instances, for a few thousand distinct reasons at 100,000 claims), and the notes
/// their conflicts leave one text after the claim: every reason or note text equal to another is
/// the same allocation. A note still reads as the whole line.
#[test]
fn claims_that_fail_alike_share_their_reason_and_note() {
    let state = resolve(&engine(1_100));
    let reasons: Vec<&Arc<str>> = state.claims.values().filter_map(|c| c.reason.as_ref()).collect();
    let notes: Vec<&ConflictNote> = state.claims.values().flat_map(|c| &c.notes).collect();
    for (what, texts) in [("reason", reasons), ("note", notes.iter().map(|n| n.conflict()).collect())] {
        let mut first: HashMap<&str, &Arc<str>> = HashMap::new();
        for text in &texts {
            let shared = first.entry(&***text).or_insert(text);
            assert!(Arc::ptr_eq(shared, text), "an equal {what} held twice: {text}");
        }
        // The path under test is taken: many claims, few distinct texts.
        assert!(
            texts.len() > 500 && first.len() * 2 < texts.len(),
            "{} {what}s, {} distinct",
            texts.len(),
            first.len()
        );
    }
    let note = notes[0];
    assert_eq!(note.to_string(), format!("claim `{}` conflicts on shared instance `{}", note.claim, note.conflict()));
    assert_eq!(serde_json::to_value(note).unwrap(), serde_json::Value::String(note.to_string()));
}
