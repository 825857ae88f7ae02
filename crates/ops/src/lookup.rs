//! Finding what the user named — a service, a release, an operation — first, before a
//! request needs keys, providers or the network, so the first error is one the user
//! can act on. Every NOT_FOUND names the thing and says how to list what exists.

use skiff_release::ReleaseManifest;
use skiff_sdk::{Code, Envelope, Safety};
use skiff_state::Ledger;
use skiff_state::docs::ServiceState;

use crate::error::{Error, Result};

/// NOT_FOUND for a service nothing was recorded for.
pub(crate) fn no_service(ledger: &Ledger, service: &str) -> Error {
    Envelope::failure(Code::NotFound, format!("{service} has never been deployed"))
        .fact(format!("no service `{service}` is recorded in {}", ledger.url()))
        .action("deploy", "skiff deploy -f skiff.yaml --yes", true, Safety::Reversible, 0.6)
        .action("list", "skiff status", false, Safety::ReadOnly, 0.5)
        .into()
}

/// The service's pointer document, or NOT_FOUND.
pub(crate) async fn service(ledger: &Ledger, service: &str) -> Result<ServiceState> {
    skiff_state::keys::check_name("service", service).map_err(|e| crate::error::state(&e))?;
    ledger
        .read::<ServiceState>(&skiff_state::keys::service_state(service))
        .await
        .map_err(|e| crate::error::state(&e))?
        .ok_or_else(|| no_service(ledger, service))
}

/// Whether anything at all is recorded for the service: its pointer or a release.
pub(crate) async fn service_known(ledger: &Ledger, service: &str) -> Result<bool> {
    if ledger
        .read::<ServiceState>(&skiff_state::keys::service_state(service))
        .await
        .map_err(|e| crate::error::state(&e))?
        .is_some()
    {
        return Ok(true);
    }
    let releases = skiff_release::list(ledger, service).await.map_err(|e| crate::error::release(&e))?;
    Ok(!releases.is_empty())
}

/// NOT_FOUND for a release of a known service.
pub(crate) fn no_release(service: &str, release: &str) -> Error {
    Envelope::failure(Code::NotFound, format!("{service} has no release {release}"))
        .fact(format!("release ids look like 2026.11.22.1; `{release}` is not one of {service}'s"))
        .action("releases", format!("skiff release list {service}"), false, Safety::ReadOnly, 0.7)
        .into()
}

/// The manifest of `service`'s `release`, or NOT_FOUND naming what is missing.
pub(crate) async fn release(ledger: &Ledger, service: &str, release: &str) -> Result<ReleaseManifest> {
    let key = skiff_state::keys::release(service, release);
    match ledger.read::<ReleaseManifest>(&key).await.map_err(|e| crate::error::state(&e))? {
        Some(m) => Ok(m),
        None if !service_known(ledger, service).await? => Err(no_service(ledger, service)),
        None => Err(no_release(service, release)),
    }
}

/// NOT_FOUND unless the operation has an intent or events in this bucket.
pub(crate) async fn operation(ledger: &Ledger, op: &str) -> Result<()> {
    let missing = || {
        Error::from(
            Envelope::failure(Code::NotFound, format!("no operation `{op}`"))
                .fact("it has no intent and no events in this bucket")
                .fact(format!("bucket: {}", ledger.url()))
                .action("list", "skiff saga list", false, Safety::ReadOnly, 0.7)
                .action("config", "skiff config show", false, Safety::ReadOnly, 0.4),
        )
    };
    if skiff_state::keys::check_name("operation", op).is_err() {
        return Err(missing());
    }
    let intent =
        ledger.store().get(&skiff_state::keys::op_intent(op)).await.map_err(|e| crate::error::state(&e.into()))?;
    if intent.is_some() {
        return Ok(());
    }
    let first =
        ledger.store().get(&skiff_state::keys::op_event(op, 1)).await.map_err(|e| crate::error::state(&e.into()))?;
    first.map(drop).ok_or_else(missing)
}

/// The service whose spec declares `database`, or NOT_FOUND naming it and the
/// databases that exist.
pub(crate) async fn database(ledger: &Ledger, database: &str) -> Result<String> {
    skiff_state::keys::check_name("database", database).map_err(|e| crate::error::state(&e))?;
    let listed =
        ledger.store().list(&skiff_state::keys::services()).await.map_err(|e| crate::error::state(&e.into()))?;
    let mut known = Vec::new();
    for l in &listed {
        let skiff_state::keys::KeyKind::ServiceState { service } = skiff_state::keys::classify(&l.key) else {
            continue;
        };
        let recorded = ledger.recorded(&service).await.map_err(|e| crate::error::state(&e))?;
        if let Some(db) = recorded.and_then(|(_, ir)| ir).and_then(|ir| ir.database) {
            if db.name == database {
                return Ok(service);
            }
            known.push(db.name);
        }
    }
    let mut e = Envelope::failure(Code::NotFound, format!("no deployed service has a database called {database}"));
    e = if known.is_empty() {
        e.fact("no deployed spec declares a `database`")
    } else {
        e.fact(format!("databases: {}", known.join(", ")))
    };
    Err(e
        .action("deploy", "skiff deploy -f skiff.yaml --yes", true, Safety::Reversible, 0.5)
        .action("status", "skiff status", false, Safety::ReadOnly, 0.5)
        .into())
}
