//! The reconciler: keeps the node's built-in Kubernetes objects present and correct.
//!
//! A fixed declaration ([`builtin_objects`]: the RBAC the node needs, Pod Security
//! labels) is compared with the cluster on start and every [`PERIOD`]. An object that
//! is missing, or whose declared fields drifted, is written back by server-side apply
//! as [`FIELD_MANAGER`] with `force`; an object that matches is left alone, so a pass
//! over an unchanged cluster performs no write at all (the seed's reconciler once
//! rewrote forever because it listed by a label its objects lacked; every object here
//! carries [`MANAGED_BY`], and the tests prove a second pass is silent). "Matches"
//! means every declared field has the declared value ([`drift::contains`]): fields the
//! server or other managers add are not ours to judge.
//!
//! The condition `builtin-objects` is true after a pass in which every object matched
//! or was restored, false with the first failure otherwise. Failures (apiserver down,
//! a rejected write) are retried on the next tick; nothing here panics, because the
//! reconciler runs inside PID 1.

mod drift;
mod objects;
mod pod_security;
mod store;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::conditions::Conditions;
use cairn_api::error_chain;

pub use drift::{contains, first_difference};
pub use objects::{
    builtin_objects, Declared, APISERVER_KUBELET_CLIENT, KUBELET_API_BINDING, MANAGED_BY,
};
pub(crate) use objects::{declare, metadata, RBAC_GROUP};
pub use pod_security::{namespace_labels, pod_security_admission_config};
pub use store::{KubeStore, Store, StoreError, FIELD_MANAGER};

/// The condition this module publishes.
pub const CONDITION: &str = cairn_api::names::condition::BUILTIN_OBJECTS;
/// Time between passes (the seed's and Metropolis' period).
pub const PERIOD: Duration = Duration::from_secs(10);

/// Why one object could not be checked or restored.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot read {object}")]
    Get {
        object: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot apply {object}")]
    Apply {
        object: String,
        #[source]
        source: StoreError,
    },
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassOutcome {
    /// Objects that matched their declaration or were restored.
    pub in_place: usize,
    /// Objects written in this pass, with why (`missing`, or the first drifted field).
    pub applied: Vec<(String, String)>,
    /// Objects that could not be checked or written.
    pub failed: Vec<ReconcileError>,
}

/// The reconciler against the apiserver `client` reaches, keeping `objects` (the
/// [`builtin_objects`] and what the node's components add) and publishing
/// `builtin-objects` in `conditions`. Never returns; spawn it once `kube-apiserver` is
/// ready (a pass before that only fails and is retried).
pub fn run(
    client: ::kube::Client,
    conditions: Conditions,
    objects: Vec<Declared>,
) -> impl Future<Output = ()> + Send {
    run_with(KubeStore::new(client), conditions, objects, PERIOD)
}

/// [`run`] over any store, declaration and period (the unit tests' entry).
pub async fn run_with<S: Store>(
    store: S,
    conditions: Conditions,
    objects: Vec<Declared>,
    period: Duration,
) {
    conditions.set(CONDITION, false, "the first pass has not finished");
    let mut ticker = tokio::time::interval(period);
    // A slow pass (apiserver timeouts) must not be followed by a burst of catch-up passes.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_failure = None;
    loop {
        ticker.tick().await;
        let outcome = pass(&store, &objects).await;
        report(&conditions, &outcome, &mut last_failure);
    }
}

/// One pass: every object checked, the drifted or missing ones applied.
pub async fn pass<S: Store>(store: &S, objects: &[Declared]) -> PassOutcome {
    let mut outcome = PassOutcome::default();
    for object in objects {
        match reconcile_one(store, object).await {
            Ok(None) => outcome.in_place += 1,
            Ok(Some(why)) => {
                outcome.in_place += 1;
                outcome.applied.push((object.describe(), why));
            }
            Err(err) => outcome.failed.push(err),
        }
    }
    outcome
}

/// Applies `object` if it is missing or drifted; returns why it did, `None` if it did not.
async fn reconcile_one<S: Store>(
    store: &S,
    object: &Declared,
) -> Result<Option<String>, ReconcileError> {
    let actual = store
        .get(object)
        .await
        .map_err(|source| ReconcileError::Get {
            object: object.describe(),
            source,
        })?;
    let why = match &actual {
        None => "missing".to_owned(),
        Some(actual) => match first_difference(actual, &object.body) {
            None => return Ok(None),
            Some(path) => format!("{path} differs"),
        },
    };
    store
        .apply(object)
        .await
        .map_err(|source| ReconcileError::Apply {
            object: object.describe(),
            source,
        })?;
    Ok(Some(why))
}

/// Sets the condition and logs what changed. A failure is logged when it first appears
/// or changes, not every period, so a long apiserver outage does not flood the log.
fn report(conditions: &Conditions, outcome: &PassOutcome, last_failure: &mut Option<String>) {
    for (object, why) in &outcome.applied {
        tracing::info!("reconciler: applied {object} ({why})");
    }
    let Some(first) = outcome.failed.first() else {
        if last_failure.take().is_some() {
            tracing::info!("reconciler: every built-in object is in place again");
        }
        let reason = format!(
            "{} built-in objects match their declaration",
            outcome.in_place
        );
        conditions.set(CONDITION, true, reason);
        return;
    };
    let mut reason = error_chain(first);
    if outcome.failed.len() > 1 {
        reason.push_str(&format!(
            " (and {} more failures)",
            outcome.failed.len() - 1
        ));
    }
    if last_failure.as_deref() != Some(reason.as_str()) {
        tracing::warn!("reconciler: {reason}");
        *last_failure = Some(reason.clone());
    }
    conditions.set(CONDITION, false, reason);
}
