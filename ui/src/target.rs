//! What the dashboard asks of the deploy target: drift (the target against the last revision) and
//! rollback. Both go through the runtime exactly as the CLI does: the same driver choice
//! ([`Targets`]), the same [`Deployer::rollback`] with its refusals (the roles of the last
//! revision's policy, docs/language.md §11.3), mass-delete guard and journal. A rollback takes
//! two requests: the plan (a dry run, with the digest of its actions), then the confirmation,
//! which applies only if the plan made again has the same digest.

use std::path::PathBuf;

use aptc_core::digest::sha256;
use aptc_runtime::cancel::Cancel;
use aptc_runtime::deploy::Prepared;
use aptc_runtime::deployer::{Deployer, Ended, Options, Supervisor, Targets};
use aptc_runtime::drift::detect;
use aptc_runtime::driver::Driver;
use aptc_runtime::report::Report;
use aptc_runtime::store::{self, Journal, Location};
use serde_json::{Value, json};

use crate::UiError;
use crate::api::drift_json;

/// Where deploys of this policy go, and who may roll back.
#[derive(Clone, Debug)]
pub struct Deploys {
    /// The driver choice (`--target`, `--out`, `--helm`), as `aptc deploy` takes it.
    pub targets: Targets,
    /// The policy root, which the store must belong to (see [`Deployer::with_policy_root`]).
    pub policy_root: PathBuf,
    /// The store was given explicitly (`--state`): used as it is.
    pub explicit_state: bool,
    /// `--as USER --allow-rollback`: the user rollbacks run as; `None`: read-only.
    pub rollback_as: Option<String>,
    /// At most this many instances applied at once.
    pub parallel: usize,
}

impl Deploys {
    fn deployer(&self, state: &Location) -> Deployer {
        Deployer::new(state, self.targets.clone(), Cancel::new())
            .with_policy_root(self.policy_root.clone(), self.explicit_state)
    }
}

/// `GET /api/v1/drift/now`: each unit of the last revision whose state on the target differs from
/// what was applied (missing, or files changed, added, removed), asked of the target now. The
/// dashboard is read-only: this check is shown, not kept in the store.
pub fn drift(state: &Location, deploys: &Deploys) -> Result<Value, UiError> {
    let Some(store) = store::open_read(state)? else {
        return Ok(json!({ "revision": null, "target": null, "drift": [] }));
    };
    let Some(last) = store.last()? else { return Ok(json!({ "revision": null, "target": null, "drift": [] })) };
    let program = store.program(last.number)?;
    let (driver, target) = deploys.targets.driver(program.as_ref())?;
    let found: Vec<Value> = detect(&last.applied, driver.as_ref()).iter().map(drift_json).collect();
    Ok(json!({ "revision": last.number, "target": target, "drift": found }))
}

/// Shows the plan to the dashboard instead of a terminal, and confirms only the plan the user saw.
struct Page {
    /// The digest the user confirmed (`None`: only planning).
    confirmed: Option<String>,
    digest: Option<String>,
    report: Option<Report>,
    dry_run: bool,
}

/// The digest a confirmation names: of the plan's actions and what they keep, as JSON.
fn plan_digest(prepared: &Prepared) -> String {
    sha256(&serde_json::to_string(&prepared.plan).unwrap_or_default())
}

impl Supervisor for Page {
    fn planned(&mut self, prepared: &Prepared, _pending: Option<&Journal>, driver: &dyn Driver) {
        self.digest = Some(plan_digest(prepared));
        self.report = Some(Report::planned("rollback", self.dry_run, &driver.describe(), prepared));
    }

    fn confirm(&mut self, prepared: &Prepared) -> bool {
        self.confirmed.as_deref() == Some(plan_digest(prepared).as_str())
    }
}

/// `POST /api/v1/rollback/{to}` without a digest: the plan of rolling back to revision `to` (as
/// `aptc rollback --dry-run --format json`), with the digest to confirm it by; with `confirm`:
/// applies it if the plan is still the same.
pub fn rollback(state: &Location, deploys: &Deploys, to: u64, confirm: Option<String>) -> Result<Value, UiError> {
    let Some(user) = &deploys.rollback_as else {
        return Err(UiError::Forbidden(
            "the dashboard is read-only: start it with `--as USER --allow-rollback` to roll back".to_string(),
        ));
    };
    let dry_run = confirm.is_none();
    let mut page = Page { confirmed: confirm, digest: None, report: None, dry_run };
    let options = Options { dry_run, refresh: false, allow_mass_delete: false };
    let deployment = deploys.deployer(state).rollback(to, user.clone(), deploys.parallel, options, &mut page)?;
    let report = page.report.take().map(|r| r.ended(&deployment.target, &deployment.ended));
    match &deployment.ended {
        Ended::Refused { user, refusals } => {
            Err(UiError::Forbidden(format!("{user} may not make this rollback:\n{}", refusals.join("\n"))))
        }
        Ended::MassDelete { deletes, deployed } => Err(UiError::Forbidden(format!(
            "this rollback deletes {} of the {deployed} deployed instances; only `aptc rollback --allow-mass-delete` \
applies it:\n{}",
            deletes.len(),
            deletes.join("\n")
        ))),
        Ended::Declined => Err(UiError::Conflict(
            "the plan changed since it was shown (another deploy ran, or the target changed): look at it again"
                .to_string(),
        )),
        _ => Ok(json!({ "digest": page.digest, "applied": !dry_run, "report": report })),
    }
}
