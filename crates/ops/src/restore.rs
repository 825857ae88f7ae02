//! `skiff restore database DB --to latest|TIME|POINT`: everything the restore saga
//! needs is decided here from the ledger — the backup to start from, where to stop,
//! the new instance, the consumers' secret reference and instance group — and bad
//! input (an unknown database, a time outside the retention window, a restore point
//! that does not exist) is refused before anything is recorded.

use skiff_pluginapi::{BackupInfo, RestoreTarget, TableManifest};
use skiff_saga::ServiceScope;
use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_state::docs::BackupRecord;
use skiff_steps::restore::{RestorePlan, Shadow};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::pipeline::{Launch, launch};

/// How long a replaced instance is kept after a restore's cutover.
const RETAIN_MS: u64 = 7 * 86_400_000;

/// `skiff restore database`.
pub(crate) async fn database(
    ctx: &Context,
    database: &str,
    to: &str,
    shadow_read: Option<&str>,
    dry_run: bool,
) -> Result<Answer> {
    let (resolved, ledger) = ctx.ledger()?;
    let service = crate::lookup::database(&ledger, database).await?;
    let (state, ir) = ledger
        .recorded(&service)
        .await
        .map_err(|e| crate::error::state(&e))?
        .ok_or_else(|| crate::lookup::no_service(&ledger, &service))?;
    let ir = ir.ok_or_else(|| crate::lookup::no_service(&ledger, &service))?;
    let consumer_ref = ir
        .secrets
        .values()
        .map(ToString::to_string)
        .find(|r| r.starts_with(&format!("secret://{database}/")))
        .ok_or_else(|| {
            Error::from(
                Envelope::failure(Code::Usage, format!("{service} reads no secret of {database}"))
                    .fact(format!(
                        "a restore cuts consumers over through secret://{database}/url; no `secrets:` entry names it"
                    ))
                    .action("validate", "skiff validate -f skiff.yaml", false, Safety::ReadOnly, 0.5),
            )
        })?;
    let retired = skiff_steps::retire::retired(&ledger, database).await.map_err(|e| crate::error::state(&e))?;
    let (gone, backups): (Vec<BackupRecord>, Vec<BackupRecord>) =
        crate::database::records(&ledger, database).await?.into_iter().partition(|b| retired.contains(&b.instance));
    if let Some(b) = gone.iter().find(|b| b.restore_point == to) {
        return Err(Envelope::failure(Code::NotFound, format!("restore point {to} is gone with its instance"))
            .fact(format!("it was taken of {}, which `skiff database retire` deleted", b.instance))
            .action("list", format!("skiff database list-backups {database}"), false, Safety::ReadOnly, 0.8)
            .into());
    }
    let now = ledger.clock().now_ms();
    let (backup, target) = choose(database, &backups, to, now, &ir)?;
    let source =
        skiff_steps::database::current_instance(&ledger, database).await.map_err(|e| crate::error::state(&e))?;
    let stamp = skiff_clock::Utc::from_ms(now).compact().to_ascii_lowercase();
    let mut instance =
        skiff_steps::deploy::database_spec(&ir).ok_or_else(|| crate::lookup::no_service(&ledger, &service))?;
    // Instance ids are at most 63 characters on every provider: the stamp takes 19.
    let prefix: String = database.chars().take(44).collect();
    instance.id = format!("{}-r{}", prefix.trim_end_matches('-'), stamp.trim_end_matches('z').replace('t', ""));
    let group =
        state.current_release.as_ref().map(|r| (skiff_steps::deploy::group_name(&service, r), ir.capacity.desired));
    let shadow = match (&state.current_release, resolved.provider.value.as_str()) {
        // AWS instances sit in private subnets the control plane does not reach.
        (Some(release), "local") => {
            Some(shadow(ctx, &resolved, &ir, release, &consumer_ref, &instance.id, shadow_read)?)
        }
        _ => None,
    };
    let plan = RestorePlan {
        database: database.to_owned(),
        service: service.clone(),
        source,
        instance,
        backup: info(backup),
        target,
        target_shown: to.to_owned(),
        consumer_ref,
        group,
        retention_ms: RETAIN_MS,
        shadow,
    };
    let graph = skiff_steps::restore::restore_graph(&plan).map_err(|e| crate::error::saga(&e))?;
    let command = format!("skiff restore database {database} --to {to}");
    if dry_run {
        return crate::saga::planned(
            ctx,
            &graph,
            Some(&service),
            &format!("restore of {database}"),
            command + " --yes",
        )
        .await;
    }
    ctx.confirm(&format!("restore {database} to {to}"), &command)?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = Launch {
        graph,
        service: Some(service.clone()),
        scope: Some(ServiceScope::service(service)),
        key: None,
        reason: format!("restore {database} to {to}"),
        params: serde_json::json!({"database": database, "to": to, "backup": plan.backup.id, "instance": plan.instance.id}),
        audit: ("database.restore".to_owned(), serde_json::json!({"database": database, "to": to})),
        audit_existing: false,
        release: String::new(),
    };
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}

/// The shadow check's instance: one of `release`, its database secret resolving to the copy's.
fn shadow(
    ctx: &Context,
    resolved: &skiff_sdk::config::Resolved,
    ir: &skiff_ir::ServiceIr,
    release: &str,
    consumer_ref: &str,
    copy: &str,
    read: Option<&str>,
) -> Result<Shadow> {
    let public_pem = crate::keys::public_key(ctx)?;
    let runner = skiff_pluginapi::RunnerConfig {
        bucket: resolved.state.value.clone(),
        public_key_pem: public_pem,
        heartbeat_ms: 2_000,
    };
    let mut group = skiff_steps::deploy::group_spec(ir, release, runner);
    group.name = format!("{}-shadow-{}", ir.service, copy.rsplit('-').next().unwrap_or(copy));
    group.desired = 1;
    group.zones.truncate(1);
    let copy_ref = format!("secret://{copy}/url");
    group.launch.env.insert("SKIFF_SECRET_MAP".to_owned(), format!("{consumer_ref}={copy_ref}"));
    for v in group.launch.secrets.values_mut() {
        if v == consumer_ref {
            v.clone_from(&copy_ref);
        }
    }
    let health_path = ir.network.as_ref().map_or_else(|| "/".to_owned(), |n| n.health.path.clone());
    let read_path = read.map_or_else(|| health_path.clone(), str::to_owned);
    Ok(Shadow { group, health_path, read_path })
}

/// The backup to start from and where to stop, for `--to`.
fn choose<'a>(
    database: &str,
    backups: &'a [BackupRecord],
    to: &str,
    now: u64,
    ir: &skiff_ir::ServiceIr,
) -> Result<(&'a BackupRecord, RestoreTarget)> {
    let Some(oldest) = backups.first() else {
        return Err(Envelope::failure(Code::NotFound, format!("{database} has no backup to restore from"))
            .fact("a restore starts from a base backup and replays the log after it")
            .action("backup", format!("skiff database backup {database} --yes"), true, Safety::Reversible, 0.7)
            .into());
    };
    if to == "latest" {
        let newest = backups.last().unwrap_or(oldest);
        return Ok((newest, RestoreTarget::Latest));
    }
    if let Some(b) = backups.iter().find(|b| b.restore_point == to) {
        return Ok((b, RestoreTarget::Point(to.to_owned())));
    }
    let Some(at) = parse_time(to) else {
        let points: Vec<&str> = backups.iter().rev().take(5).map(|b| b.restore_point.as_str()).collect();
        return Err(Envelope::failure(Code::NotFound, format!("{database} has no restore point {to}"))
            .fact(format!("restore points: {}", points.join(", ")))
            .fact("--to takes `latest`, a restore point, or a time such as 2026-12-03T13:00:00Z")
            .action("list", format!("skiff database list-backups {database}"), false, Safety::ReadOnly, 0.8)
            .into());
    };
    let retention = ir.database.as_ref().map_or(0, |d| d.backup_retention.as_millis());
    let window_start = oldest.at_ms.max(now.saturating_sub(retention));
    if at < window_start || at > now {
        let shown = |ms: u64| skiff_clock::Utc::from_ms(ms).rfc3339();
        return Err(Envelope::failure(Code::Usage, format!("{to} is outside {database}'s restore window"))
            .fact(format!("{database} can be restored to any time from {} to {}", shown(window_start), shown(now)))
            .fact("the window starts at the oldest backup still within `database.backups.retention`")
            .action("list", format!("skiff database list-backups {database}"), false, Safety::ReadOnly, 0.7)
            .into());
    }
    let base = backups.iter().rev().find(|b| b.at_ms <= at).unwrap_or(oldest);
    Ok((base, RestoreTarget::Time(at)))
}

/// `2026-12-03T13:00:00Z`, with optional fractions and a `+00:00` offset.
fn parse_time(text: &str) -> Option<u64> {
    let t = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = t.split_once('T')?;
    let d: Vec<&str> = date.split('-').collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<&str> = hms.split(':').collect();
    if d.len() != 3 || h.len() != 3 {
        return None;
    }
    let milli: u32 = format!("{frac:0<3}")[..3].parse().ok()?;
    let utc = skiff_clock::Utc {
        year: d[0].parse().ok()?,
        month: d[1].parse().ok().filter(|m| (1..=12).contains(m))?,
        day: d[2].parse().ok().filter(|d| (1..=31).contains(d))?,
        hour: h[0].parse().ok().filter(|h| *h < 24)?,
        minute: h[1].parse().ok().filter(|m| *m < 60)?,
        second: h[2].parse().ok().filter(|s| *s < 60)?,
        milli,
    };
    Some(utc.to_ms())
}

/// The provider's view of a recorded backup.
fn info(b: &BackupRecord) -> BackupInfo {
    BackupInfo {
        id: b.id.clone(),
        database: if b.instance.is_empty() { b.database.clone() } else { b.instance.clone() },
        provider_ref: b.provider_ref.clone(),
        restore_point: b.restore_point.clone(),
        at_ms: b.at_ms,
        lsn: b.lsn.clone(),
        size_bytes: b.size_bytes,
        tables: b
            .tables
            .iter()
            .map(|t| TableManifest { table: t.table.clone(), rows: t.rows, checksum: t.checksum.clone() })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time("2026-12-03T13:00:00.5+00:00"), Some(parse_time("2026-12-03T13:00:00Z").unwrap() + 500));
        assert_eq!(parse_time("2026-13-03T13:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
    }
}
