//! The aptc runtime: brings targets to the desired state that `aptc_core` resolves.
//!
//! Deploying: [`plan`] turns a desired state into deployable units and plans the actions from
//! what is applied to what is desired; [`apply`] carries a plan out with a [`driver`] (the
//! [`render`] driver writes into a directory; `helm` runs the real Helm binary; [`release`] runs
//! Helm releases on a cluster; `manifest` stamps the objects); [`store`] keeps the revisions; [`report`] is what a deploy did, as data for tools; [`deploy`] holds the steps, refusing changes the
//! deploying user may not make (roles from `aptc_core::access`), and [`deployer`] runs them in order
//! (deploy, rollback, and one [`deployer::Reconciler::reconcile`] step of a watch loop), stopped by
//! a [`cancel::Cancel`]. Errors are typed per part, never strings.
//! It depends on the pure core only, never on the compiler: the IR is its input.

pub mod apply;
pub mod cancel;
pub mod cluster;
pub mod connection;
pub mod credentials;
pub mod deploy;
pub mod deployer;
pub mod drift;
pub mod driver;
pub mod helm;
pub mod k8s;
pub mod manifest;
pub mod owners;
pub mod plan;
pub mod private_dir;
pub mod release;
pub mod render;
pub mod report;
pub mod retry;
pub mod secrets;
pub mod source;
pub mod store;
pub mod watch;

/// Policies for the unit tests, lowered by the real compiler.
#[cfg(test)]
pub(crate) mod test_policy {
    use aptc_core::ir::Program;

    /// Lowers a policy of `(name, text)` files, panicking with the rendered errors if it does
    /// not check clean.
    pub fn compile(files: &[(&str, &str)]) -> Program {
        let mut analysis = aptc_compiler::host::Analysis::of_texts(files.iter().copied());
        match analysis.lower() {
            Ok(program) => program,
            Err(errors) => panic!("{}", analysis.render(&errors, false)),
        }
    }
}
