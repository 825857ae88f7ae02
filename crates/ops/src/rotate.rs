//! `skiff rotate secret NAME`: the rotation saga is planned here from the ledger — the
//! database whose login the secret holds, the instance serving it now, and every
//! service that reads it — and a secret no database uses is refused before anything
//! is recorded.

use skiff_saga::ServiceScope;
use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_state::Ledger;
use skiff_steps::consumers::Consumer;
use skiff_steps::rotate::RotationPlan;

use crate::context::Context;
use crate::error::Result;
use crate::pipeline::{Launch, launch};

/// How long the old login stays enabled after the new one is promoted, by default.
pub(crate) const DISABLE_AFTER_MS: u64 = 60_000;

/// The database called `secret` and the services that read `secret://SECRET/…`.
async fn consumers(ledger: &Ledger, secret: &str) -> Result<(String, Vec<Consumer>)> {
    skiff_state::keys::check_name("secret", secret).map_err(|e| crate::error::state(&e))?;
    let listed =
        ledger.store().list(&skiff_state::keys::services()).await.map_err(|e| crate::error::state(&e.into()))?;
    let (mut owner, mut consumers, mut databases) = (None, Vec::new(), Vec::new());
    for l in &listed {
        let skiff_state::keys::KeyKind::ServiceState { service } = skiff_state::keys::classify(&l.key) else {
            continue;
        };
        let Some((state, Some(ir))) = ledger.recorded(&service).await.map_err(|e| crate::error::state(&e))? else {
            continue;
        };
        if let Some(db) = &ir.database {
            if db.name == secret {
                owner = Some(service.clone());
            }
            databases.push(db.name.clone());
        }
        if ir.secrets.values().any(|r| r.to_string().starts_with(&format!("secret://{secret}/"))) {
            let group = state
                .current_release
                .as_ref()
                .map(|r| (skiff_steps::deploy::group_name(&service, r), ir.capacity.desired));
            consumers.push(Consumer { service: service.clone(), group });
        }
    }
    let Some(owner) = owner else {
        let mut e = Envelope::failure(Code::NotFound, format!("no database uses secret {secret}"))
            .fact("`skiff rotate secret` rotates a managed database's login: the secret is named as the database");
        e = if databases.is_empty() {
            e.fact("no deployed spec declares a `database`")
        } else {
            e.fact(format!("databases: {}", databases.join(", ")))
        };
        return Err(e
            .fact(format!("to change another secret's value, use `skiff secrets set secret://{secret}/KEY`"))
            .action("status", "skiff status", false, Safety::ReadOnly, 0.5)
            .into());
    };
    Ok((owner, consumers))
}

/// `skiff rotate secret`.
pub(crate) async fn secret(
    ctx: &Context,
    secret: &str,
    disable_after_ms: Option<u64>,
    dry_run: bool,
) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let (service, consumers) = consumers(&ledger, secret).await?;
    let instance =
        skiff_steps::database::current_instance(&ledger, secret).await.map_err(|e| crate::error::state(&e))?;
    let plan = RotationPlan {
        secret: secret.to_owned(),
        reference: format!("secret://{secret}/url"),
        database: secret.to_owned(),
        instance,
        consumers,
        disable_after_ms: disable_after_ms.unwrap_or(DISABLE_AFTER_MS),
    };
    let graph = skiff_steps::rotate::rotation_graph(&plan).map_err(|e| crate::error::saga(&e))?;
    let command = format!("skiff rotate secret {secret}");
    if dry_run {
        return crate::saga::planned(ctx, &graph, Some(&service), &format!("rotation of {secret}"), command + " --yes")
            .await;
    }
    ctx.confirm(&format!("rotate {}", plan.reference), &command)?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = Launch {
        graph,
        service: Some(service.clone()),
        scope: Some(ServiceScope::service(service)),
        key: None,
        reason: format!("rotate {}", plan.reference),
        params: serde_json::json!({"secret": secret, "instance": plan.instance, "disable_after_ms": plan.disable_after_ms}),
        audit: ("secret.rotate".to_owned(), serde_json::json!({"secret": secret})),
        audit_existing: false,
        release: String::new(),
    };
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}
