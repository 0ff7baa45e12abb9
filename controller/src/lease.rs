//! Leader election with a `coordination.k8s.io/v1` Lease: the leader renews it every third of
//! its duration ([`Election`]); a standby that finds it not renewed for the duration takes it over
//! (an update carrying the Lease's `resourceVersion`, so of two standbys only one wins). A standby
//! therefore leads at most `duration + renew_every` (20 s by default) after the leader's last
//! renewal; a leader whose renewal fails stops leading at once, well before the Lease expires. A
//! leader that shuts down releases the Lease, so the standby takes over at its next try.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

/// How long a Lease not renewed still belongs to its holder, by default.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

/// The timing of an election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Election {
    /// How long a Lease not renewed still belongs to its holder (written into the Lease).
    pub duration: Duration,
    /// How often the leader renews, and a standby tries: a third of the duration, so two
    /// renewals can fail before the Lease expires.
    pub renew_every: Duration,
}

impl Election {
    /// An election whose Lease lasts `duration` (whole seconds, at least 3).
    pub fn lasting(duration: Duration) -> Election {
        let duration = Duration::from_secs(duration.as_secs().max(3));
        Election { duration, renew_every: duration / 3 }
    }

    /// The longest a standby waits after the leader's last renewal before it leads.
    pub fn takeover_bound(&self) -> Duration {
        self.duration + self.renew_every
    }
}

impl Default for Election {
    fn default() -> Election {
        Election::lasting(LEASE_DURATION)
    }
}

/// What to do about the Lease as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Move {
    /// There is none: create it, holding it.
    Create,
    /// It is ours: renew it.
    Renew,
    /// Its holder let it expire (or released it): take it over.
    TakeOver,
    /// Someone else holds it.
    Wait { holder: String },
}

/// What `me` should do about `lease` at `now`.
pub fn decide(lease: Option<&Lease>, me: &str, now: Timestamp) -> Move {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else { return Move::Create };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Move::Renew;
    }
    let duration = spec.lease_duration_seconds.map_or(LEASE_DURATION.as_secs() as i64, i64::from);
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    // In milliseconds: whole seconds would let a standby take over up to a second early.
    let expired = match renewed {
        Some(renewed) => now.as_millisecond() >= renewed.as_millisecond().saturating_add(duration * 1000),
        None => true,
    };
    if holder.is_empty() || expired { Move::TakeOver } else { Move::Wait { holder } }
}

/// One round of the election: whether `me` leads afterwards. Conflicts (someone else wrote the
/// Lease first) and API errors mean not leading this round.
pub async fn round(api: &Api<Lease>, name: &str, me: &str, election: Election) -> bool {
    let now = Timestamp::now();
    let current = match api.get_opt(name).await {
        Ok(current) => current,
        Err(error) => {
            tracing::warn!(%error, "reading the leader Lease");
            return false;
        }
    };
    let spec = |acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(i32::try_from(election.duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        ..LeaseSpec::default()
    };
    let result = match decide(current.as_ref(), me, now) {
        Move::Wait { .. } => return false,
        Move::Create => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.to_string()), ..ObjectMeta::default() },
                spec: Some(spec(None)),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Move::Renew | Move::TakeOver => {
            let mut lease = current.expect("a Lease to renew or take over");
            let renewing = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(me);
            let acquired = if renewing { lease.spec.as_ref().and_then(|s| s.acquire_time.clone()) } else { None };
            let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
            let mut next = spec(acquired);
            next.lease_transitions = Some(if renewing { transitions } else { transitions + 1 });
            lease.spec = Some(next);
            // `replace` sends the resourceVersion read above: a concurrent writer makes it a 409.
            api.replace(name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => true,
        Err(kube::Error::Api(status)) if status.code == 409 => false,
        Err(error) => {
            tracing::warn!(%error, "writing the leader Lease");
            false
        }
    }
}

/// Gives the Lease up if `me` holds it (on shutdown), so a standby need not wait for it to expire.
pub async fn release(api: &Api<Lease>, name: &str, me: &str) {
    let Ok(Some(mut lease)) = api.get_opt(name).await else { return };
    let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(me)) else { return };
    spec.holder_identity = None;
    if let Err(error) = api.replace(name, &PostParams::default(), &lease).await {
        tracing::warn!(%error, "releasing the leader Lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_at: i64) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(String::from),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed_at).unwrap())),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn an_election_renews_three_times_per_duration() {
        let election = Election::default();
        assert_eq!((election.duration.as_secs(), election.renew_every.as_secs()), (15, 5));
        assert_eq!(election.takeover_bound(), Duration::from_secs(20));
        assert_eq!(Election::lasting(Duration::from_secs(1)).duration, Duration::from_secs(3), "at least 3 s");
    }

    #[test]
    fn the_moves_of_an_election() {
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        assert_eq!(decide(None, "a", at(100)), Move::Create);
        assert_eq!(decide(Some(&lease(Some("a"), 90)), "a", at(100)), Move::Renew);
        assert_eq!(decide(Some(&lease(Some("b"), 90)), "a", at(100)), Move::Wait { holder: "b".into() });
        // Expired exactly at renewal + duration, not a millisecond before.
        assert_eq!(decide(Some(&lease(Some("b"), 85)), "a", at(100)), Move::TakeOver);
        let just_before = Timestamp::from_millisecond(99_999).unwrap();
        assert_eq!(decide(Some(&lease(Some("b"), 85)), "a", just_before), Move::Wait { holder: "b".into() });
        assert_eq!(decide(Some(&lease(None, 99)), "a", at(100)), Move::TakeOver, "released");
        let never = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec { holder_identity: Some("b".into()), ..LeaseSpec::default() }),
        };
        assert_eq!(decide(Some(&never), "a", at(100)), Move::TakeOver);
    }
}
