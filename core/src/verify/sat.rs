//! Past the enumeration budget: path enumeration guided by a SAT solver (docs/verification.md §3).
//!
//! A space's possible claims are its combinations of label classes, one boolean variable per
//! (label, class) with exactly one class per label. The solver proposes a combination; its
//! representative claim is resolved by the real resolver (`resolve::Alone`) with an observer that
//! records what the run learns of each label: an atomic test's result (a set of classes giving the
//! same result) or a read as a value (the class itself). Every combination whose labels fall in
//! those sets takes the same path, so has the same verdict: the solver is told "not this path",
//! and asked again, until no combination is left (proved), one violates (its representative is the
//! counterexample), or the path budget is spent (unknown).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use batsat::{BasicSolver, Lit, SolverInterface, Var, lbool};

use crate::eval::{Atomic, EvalError, Observer, Subject};
use crate::ir::{Assertion, BinaryOp, Claim, Program, Value};

use super::{Shared, Space, judge};

/// How many paths (resolutions) one (consumer, contract) space may take before the assertion is
/// `Unknown`.
pub const PATH_BUDGET: usize = 10_000;

/// What exploring one space found.
pub(super) enum Explored {
    /// Every combination of classes is on a path that satisfies the assertion.
    Covered { paths: usize },
    /// A representative claim violates expectation `index`, for `why`.
    Violated { claim: Claim, index: usize, why: String, paths: usize },
    /// The path budget ran out first.
    Budget { paths: usize },
}

/// An atomic test, by where it is written in the program (every expression evaluated is the
/// program's, borrowed for the whole exploration, so its address names it) and its label.
type TestKey = (usize, usize, usize, u8);

/// What each class of a label gives each atomic test met so far in a space.
type Tests = Mutex<HashMap<TestKey, Vec<Result<bool, EvalError>>>>;

/// Explores one space until every combination of its classes is covered, one violates, or
/// `budget` paths were taken. Deterministic: one solver, one thread, the same proposals.
pub(super) fn explore(shared: &Shared, assertion: &Assertion, space: &Space, budget: usize) -> Explored {
    let labels = &space.classes.labels;
    let mut solver = BasicSolver::default();
    // The first class ("not set" where there is one) is tried first, so counterexamples set little.
    let vars: Vec<Vec<Var>> = labels
        .iter()
        .map(|(_, reps)| {
            (0..reps.len()).map(|c| solver.new_var(if c == 0 { lbool::TRUE } else { lbool::FALSE }, true)).collect()
        })
        .collect();
    for classes in &vars {
        solver.add_clause_reuse(&mut classes.iter().map(|v| Lit::new(*v, true)).collect());
        for (i, a) in classes.iter().enumerate() {
            for b in &classes[i + 1..] {
                solver.add_clause_reuse(&mut vec![Lit::new(*a, false), Lit::new(*b, false)]);
            }
        }
    }
    let index: BTreeMap<&str, usize> = labels.iter().enumerate().map(|(i, (label, _))| (label.as_str(), i)).collect();
    let tests: Tests = Mutex::new(HashMap::new());
    let mut paths = 0;
    loop {
        let answer = solver.solve_limited(&[]);
        if answer == lbool::FALSE {
            return Explored::Covered { paths };
        }
        if answer != lbool::TRUE {
            // No limit is set, so the solver always answers; if it did not, nothing is proved.
            return Explored::Budget { paths };
        }
        if paths >= budget {
            return Explored::Budget { paths };
        }
        paths += 1;
        let chosen: Vec<usize> =
            vars.iter().map(|vs| vs.iter().position(|v| solver.value_var(*v) == lbool::TRUE).unwrap_or(0)).collect();
        let claim = claim_of(assertion, space, &chosen);
        let path = Path {
            program: shared.program,
            subject: &space.subject,
            index: &index,
            labels,
            chosen: &chosen,
            tests: &tests,
            allowed: Mutex::new(vec![None; labels.len()]),
        };
        if let Some(found) = judge(shared, assertion, &claim, &space.subject, Some(&path)) {
            let (claim, (index, why)) = simplest(shared, assertion, space, chosen, claim, found);
            return Explored::Violated { claim, index, why, paths };
        }
        let mut clause = path.blocking(&vars);
        if clause.is_empty() || !solver.add_clause_reuse(&mut clause) {
            // The path looked at no label (or its negation contradicts the rest): all covered.
            return Explored::Covered { paths };
        }
    }
}

/// The representative claim of a combination of classes.
fn claim_of(assertion: &Assertion, space: &Space, chosen: &[usize]) -> Claim {
    Claim {
        namespace: assertion.namespace.clone(),
        name: format!("{}_counterexample", assertion.name),
        consumer: space.consumer.clone(),
        contract: space.contract.clone(),
        labels: space
            .classes
            .labels
            .iter()
            .zip(chosen)
            .filter_map(|((label, reps), &c)| Some((label.clone(), reps.get(c)?.clone()?)))
            .collect(),
        origin: assertion.origin.clone(),
    }
}

/// A violating claim with as few labels set as one pass can make it: each label in order is put
/// back to its first class ("not set" where there is one) while the claim still violates. The
/// solver's choice of the other labels is arbitrary; a counterexample should show what matters.
fn simplest(
    shared: &Shared,
    assertion: &Assertion,
    space: &Space,
    mut chosen: Vec<usize>,
    mut claim: Claim,
    mut found: (usize, String),
) -> (Claim, (usize, String)) {
    for i in 0..chosen.len() {
        if chosen[i] == 0 {
            continue;
        }
        let mut fewer = chosen.clone();
        fewer[i] = 0;
        let candidate = claim_of(assertion, space, &fewer);
        if let Some(still) = judge(shared, assertion, &candidate, &space.subject, None) {
            (chosen, claim, found) = (fewer, candidate, still);
        }
    }
    (claim, found)
}

/// The observer of one path: for each label, the classes that agree with what the run learnt.
struct Path<'s> {
    program: &'s Program,
    subject: &'s Subject,
    index: &'s BTreeMap<&'s str, usize>,
    labels: &'s [(String, Vec<Option<Value>>)],
    chosen: &'s [usize],
    tests: &'s Tests,
    /// Per label: `None` while the run learnt nothing of it, else the classes still alike.
    allowed: Mutex<Vec<Option<Vec<bool>>>>,
}

impl Path<'_> {
    /// Keeps only the classes `keep` says of label `i`.
    fn restrict(&self, i: usize, keep: impl Fn(usize) -> bool) {
        let size = self.labels[i].1.len();
        let mut allowed = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        let entry = allowed[i].get_or_insert_with(|| vec![true; size]);
        for (c, ok) in entry.iter_mut().enumerate() {
            *ok &= keep(c);
        }
    }

    /// "Not this path": some constrained label in a class the path ruled out.
    fn blocking(&self, vars: &[Vec<Var>]) -> Vec<Lit> {
        let allowed = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        let mut clause = Vec::new();
        for (i, classes) in allowed.iter().enumerate() {
            let Some(classes) = classes else { continue };
            for (c, ok) in classes.iter().enumerate() {
                if !ok {
                    clause.push(Lit::new(vars[i][c], true));
                }
            }
        }
        clause
    }
}

impl Path<'_> {
    /// The label's index in the space and its class on this path, when the labels still hold the
    /// claim's own value for it (`value`). A value resolution set is the same on every path
    /// that agrees with this one so far (what it was computed from is in the path condition),
    /// so whatever is made of it teaches nothing about the label's class.
    fn own(&self, label: &str, value: Option<&Value>) -> Option<(usize, usize)> {
        let &i = self.index.get(label)?;
        let own = self.chosen[i];
        (self.labels[i].1.get(own)?.as_ref() == value).then_some((i, own))
    }
}

impl Observer for Path<'_> {
    fn read(&self, label: &str, value: Option<&Value>) {
        if let Some((i, own)) = self.own(label, value) {
            self.restrict(i, |c| c == own);
        }
    }

    fn test(&self, label: &str, value: Option<&Value>, test: Atomic<'_>, result: &Result<bool, EvalError>) {
        let Some((i, own)) = self.own(label, value) else { return };
        let key: TestKey = (i, test.lhs as *const _ as usize, test.rhs as *const _ as usize, op_code(test.op));
        let mut tests = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        let results = tests.entry(key).or_insert_with(|| {
            self.labels[i].1.iter().map(|rep| test.on(self.program, self.subject, label, rep.as_ref())).collect()
        });
        let same: Vec<bool> = results.iter().map(|r| r == result).collect();
        drop(tests);
        if same.get(own) == Some(&true) {
            self.restrict(i, |c| same[c]);
        } else {
            // Never expected (the claim's own class gave this result); the class alone is sound.
            self.restrict(i, |c| c == own);
        }
    }
}

fn op_code(op: BinaryOp) -> u8 {
    op as u8
}
