//! Past the enumeration budget: path enumeration guided by a SAT solver (docs/verification.md §3).
//!
//! A space's possible claims are its combinations of label classes, one boolean variable per
//! (label, class) with exactly one class per label. The solver proposes a combination; its
//! representative is judged by the caller (an assertion's claim resolved by the real resolver,
//! a claim resolved by two versions of a policy, a lint's criteria evaluated for every consumer)
//! with an observer ([`Path::observer`]) that records what each run learns of each label: an
//! atomic test's result (a set of classes giving the same result) or a read as a value (the class
//! itself). Every combination whose labels fall in those sets takes the same path in every run,
//! so is judged the same: the solver is told "not this path", and asked again, until no
//! combination is left (covered), the judge stops on a finding, or the path budget is spent.
//! [`explore`] is that loop, shared by `verify`, `compare` and the lints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use batsat::{BasicSolver, Lit, SolverInterface, Var, lbool};

use crate::eval::{Atomic, EvalError, Observer, Subject};
use crate::ir::{BinaryOp, Program, Value};

/// How many paths (resolutions) one (consumer, contract) space may take before the assertion is
/// `Unknown` (and the comparison of `aptc diff --all-claims`).
pub const PATH_BUDGET: usize = 10_000;

/// What exploring one space found.
pub(super) enum Explored<T> {
    /// Every combination of classes is on a path the judge went on from.
    Covered { paths: usize },
    /// The judge stopped on a path with this finding.
    Found { found: T, paths: usize },
    /// The path budget ran out first.
    Budget { paths: usize },
}

impl<T> Explored<T> {
    /// How many paths were taken.
    pub(super) fn paths(&self) -> usize {
        match self {
            Explored::Covered { paths } | Explored::Found { paths, .. } | Explored::Budget { paths } => *paths,
        }
    }
}

/// Labels with the representatives of their classes, in the space's order.
pub(super) type Labels = [(String, Vec<Option<Value>>)];

/// An atomic test, by the program and consumer it was met for, where it is written in the program
/// (every expression evaluated is the program's, borrowed for the whole exploration, so its
/// address names it) and its label.
type TestKey = (usize, usize, usize, usize, usize, u8);

/// What each class of a label gives each atomic test met so far in a space.
type Tests = Mutex<HashMap<TestKey, Vec<Result<bool, EvalError>>>>;

/// Explores the combinations of `labels`' classes path by path: `judge` is given each path (the
/// combination chosen, and observers for the runs it makes) and stops the exploration with a
/// finding, or lets it go on. Deterministic: one solver, one thread, the same proposals; at most
/// `budget` paths.
pub(super) fn explore<T>(labels: &Labels, budget: usize, mut judge: impl FnMut(&Path<'_>) -> Option<T>) -> Explored<T> {
    let mut solver = BasicSolver::default();
    // The first class ("not set" where there is one) is tried first, so examples set little.
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
        let path = Path {
            index: &index,
            labels,
            chosen: &chosen,
            tests: &tests,
            allowed: Mutex::new(vec![None; labels.len()]),
        };
        if let Some(found) = judge(&path) {
            return Explored::Found { found, paths };
        }
        let mut clause = path.blocking(&vars);
        if clause.is_empty() || !solver.add_clause_reuse(&mut clause) {
            // The path looked at no label (or its negation contradicts the rest): all covered.
            return Explored::Covered { paths };
        }
    }
}

/// A finding's combination with as few labels set as one pass can make it: each label in order
/// is put back to its first class ("not set" where there is one) while `still` finds something
/// (it is given the candidate combination). The solver's choice of the other labels is
/// arbitrary; an example should show what matters.
pub(super) fn simplest<F>(
    mut chosen: Vec<usize>,
    mut found: F,
    mut still: impl FnMut(&[usize]) -> Option<F>,
) -> (Vec<usize>, F) {
    for i in 0..chosen.len() {
        if chosen[i] == 0 {
            continue;
        }
        let mut fewer = chosen.clone();
        fewer[i] = 0;
        if let Some(again) = still(&fewer) {
            (chosen, found) = (fewer, again);
        }
    }
    (chosen, found)
}

/// One path: the combination chosen and, for each label, the classes that agree with what the
/// runs on it learnt.
pub(super) struct Path<'s> {
    index: &'s BTreeMap<&'s str, usize>,
    labels: &'s Labels,
    chosen: &'s [usize],
    tests: &'s Tests,
    /// Per label: `None` while no run learnt anything of it, else the classes still alike.
    allowed: Mutex<Vec<Option<Vec<bool>>>>,
}

impl<'s> Path<'s> {
    /// The class of each label on this path, in the space's order.
    pub(super) fn chosen(&self) -> &[usize] {
        self.chosen
    }

    /// An observer for one run on this path, evaluated in `program` for `subject`: what it learns
    /// narrows the path condition (the conjunction over every run on the path).
    pub(super) fn observer<'o>(&'o self, program: &'o Program, subject: &'o Subject) -> Run<'o, 's> {
        Run { path: self, program, subject }
    }

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

/// The observer of one run on a path: one program (a version of the policy) and one consumer.
pub(super) struct Run<'o, 's> {
    path: &'o Path<'s>,
    program: &'o Program,
    subject: &'o Subject,
}

impl Observer for Run<'_, '_> {
    fn read(&self, label: &str, value: Option<&Value>) {
        if let Some((i, own)) = self.path.own(label, value) {
            self.path.restrict(i, |c| c == own);
        }
    }

    fn test(&self, label: &str, value: Option<&Value>, test: Atomic<'_>, result: &Result<bool, EvalError>) {
        let path = self.path;
        let Some((i, own)) = path.own(label, value) else { return };
        let key: TestKey = (
            self.program as *const _ as usize,
            self.subject as *const _ as usize,
            i,
            test.lhs as *const _ as usize,
            test.rhs as *const _ as usize,
            op_code(test.op),
        );
        let mut tests = path.tests.lock().unwrap_or_else(|e| e.into_inner());
        let results = tests.entry(key).or_insert_with(|| {
            path.labels[i].1.iter().map(|rep| test.on(self.program, self.subject, label, rep.as_ref())).collect()
        });
        let same: Vec<bool> = results.iter().map(|r| r == result).collect();
        drop(tests);
        if same.get(own) == Some(&true) {
            path.restrict(i, |c| same[c]);
        } else {
            // Never expected (the claim's own class gave this result); the class alone is sound.
            path.restrict(i, |c| c == own);
        }
    }
}

fn op_code(op: BinaryOp) -> u8 {
    op as u8
}
