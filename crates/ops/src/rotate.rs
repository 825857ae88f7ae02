//! `skiff rotate secret NAME` and `skiff rotate key [ALIAS]`: the rotation sagas are
//! planned here — the database whose login the secret holds, the instance serving it
//! now, every service that reads it; the key an alias names — and what the provider
//! would refuse (a secret no database uses, an alias nobody made, a deletion window
//! KMS does not take) is refused before anything is recorded.

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

/// Every deployed service reading a secret that `wanted` takes, with its serving group;
/// and the service whose database is called `database`, with every database's name.
async fn readers(
    ledger: &Ledger,
    wanted: impl Fn(&str) -> bool,
    database: &str,
) -> Result<(Option<String>, Vec<Consumer>, Vec<String>)> {
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
            if db.name == database {
                owner = Some(service.clone());
            }
            databases.push(db.name.clone());
        }
        if ir.secrets.values().any(|r| wanted(&r.to_string())) {
            let group = state
                .current_release
                .as_ref()
                .map(|r| (skiff_steps::deploy::group_name(&service, r), ir.capacity.desired));
            let references = ir.secrets.values().map(ToString::to_string).collect();
            consumers.push(Consumer { service: service.clone(), group, references });
        }
    }
    Ok((owner, consumers, databases))
}

/// The database called `secret` and the services that read `secret://SECRET/…`.
async fn consumers(ledger: &Ledger, secret: &str) -> Result<(String, Vec<Consumer>)> {
    skiff_state::keys::check_name("secret", secret).map_err(|e| crate::error::state(&e))?;
    let prefix = format!("secret://{secret}/");
    let (owner, consumers, databases) = readers(ledger, |r| r.starts_with(&prefix), secret).await?;
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
        stale_wait_ms: skiff_settings::ROTATION_STALE_WAIT_MS
            .parse(|k| ctx.env.get(k))
            .unwrap_or(skiff_steps::rotate::STALE_WAIT_MS),
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

/// `skiff rotate key`.
pub(crate) async fn key(ctx: &Context, alias: &str, deletion_days: u32, dry_run: bool) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    skiff_state::keys::check_name("alias", alias).map_err(|e| crate::error::state(&e))?;
    let days = skiff_steps::rekey::DELETION_DAYS;
    if !days.contains(&deletion_days) {
        return Err(Envelope::failure(Code::Usage, format!("--delete-after {deletion_days}d is outside KMS's window"))
            .fact(format!("a key's deletion is scheduled {} to {} days out", days.start(), days.end()))
            .action(
                "rotate",
                format!("skiff rotate key {alias} --delete-after 30d --yes"),
                true,
                Safety::Irreversible,
                0.6,
            )
            .into());
    }
    let provider = crate::factory::provider(ctx, &ledger).await?;
    let key = provider.secrets().key_alias(alias).await;
    let key = key.map_err(|e| crate::error::provider(&format!("look up key alias {alias}"), &e))?;
    let Some(key) = key else {
        return Err(Envelope::failure(Code::NotFound, format!("no key has alias {alias}"))
            .fact("secrets are encrypted with the key alias `skiff` names (alias/skiff on AWS)")
            .action("rotate", "skiff rotate key skiff --yes", true, Safety::Reversible, 0.6)
            .into());
    };
    if key.deletion_at_ms.is_some() {
        return Err(Envelope::failure(Code::Usage, format!("the key alias {alias} names is scheduled for deletion"))
            .fact(format!("key {} cannot encrypt anything new; cancel its deletion with the provider first", key.id))
            .into());
    }
    let (_, consumers, _) = readers(&ledger, |_| true, "").await?;
    let plan = skiff_steps::rekey::KeyRotationPlan {
        alias: alias.to_owned(),
        old_key: key.id.clone(),
        consumers,
        deletion_days,
    };
    let graph = skiff_steps::rekey::key_rotation_graph(&plan).map_err(|e| crate::error::saga(&e))?;
    let command = format!("skiff rotate key {alias}");
    if dry_run {
        return crate::saga::planned(ctx, &graph, None, &format!("rotation of key {alias}"), command + " --yes").await;
    }
    ctx.confirm(&format!("rotate the key alias {alias} names ({})", key.id), &command)?;
    let actor = ctx.actor();
    ledger.init(&actor).await.map_err(|e| crate::error::state(&e))?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = Launch {
        graph,
        service: None,
        scope: None,
        key: None,
        reason: format!("rotate the key alias {alias} names"),
        params: serde_json::json!({"alias": alias, "old_key": key.id, "deletion_days": deletion_days}),
        audit: ("key.rotate".to_owned(), serde_json::json!({"alias": alias, "old_key": key.id})),
        audit_existing: false,
        release: String::new(),
    };
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}
