//! Where providers and engines come from: the resolved provider (local or AWS) as the
//! capability traits, and an engine over the ledger with the step catalog, the
//! approval policy, the lease settings and live progress for the context's [`Ui`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use skiff_pluginapi::Provider;
use skiff_provider_local::LocalDir;
use skiff_saga::Engine;
use skiff_sagaapi::Extensions;
use skiff_sdk::config::ProviderKind;
use skiff_sdk::{Code, Envelope, Safety};
use skiff_state::Ledger;

use crate::context::Context;
use crate::error::{Error, Result};

/// How long a foreground run waits for a dead engine's lease to lapse.
const LEASE_WAIT_MS: u64 = 35_000;
/// The operation lease's default time to live.
const LEASE_TTL_MS: u64 = 30_000;

/// The resolved provider as the capability traits, for steps.
pub async fn provider(ctx: &Context, ledger: &Ledger) -> Result<Arc<dyn Provider>> {
    let (_, resolved) = ctx.resolve()?;
    match resolved.provider.value {
        ProviderKind::Local => Ok(Arc::new(skiff_provider_local::LocalProvider::new(local_dir(ctx)?, ledger.clone()))),
        ProviderKind::Aws => Ok(Arc::new(aws_provider(ctx).await?)),
        other => {
            Err(Envelope::failure(Code::ProviderError, format!("the {other:?} provider is not part of this build"))
                .fact("this build runs rollouts on the local and aws providers")
                .action("local", "skiff deploy --provider local --yes", true, Safety::Reversible, 0.5)
                .into())
        }
    }
}

/// The AWS provider for the resolved state bucket and region. Credentials come from
/// the usual chain (environment, profile, IMDS); `AWS_ENDPOINT_URL` is honoured.
pub async fn aws_provider(ctx: &Context) -> Result<skiff_provider_aws::AwsProvider> {
    let (_, resolved) = ctx.resolve()?;
    let region = resolved.region.map(|r| r.value);
    let failed = |e: skiff_pluginapi::ProviderError| {
        Error::from(Envelope::failure(Code::ProviderError, "cannot use the AWS provider").fact(e.message).action(
            "config",
            "skiff config show",
            false,
            Safety::ReadOnly,
            0.6,
        ))
    };
    let settings = skiff_provider_aws::AwsSettings::from_vars(&resolved.state.value, region, |k| ctx.env.get(k))
        .map_err(failed)?;
    skiff_provider_aws::AwsProvider::connect(settings).await.map_err(failed)
}

/// The local directory beside the resolved `file://` bucket (absolute).
pub fn local_dir(ctx: &Context) -> Result<LocalDir> {
    let (_, resolved) = ctx.resolve()?;
    Ok(LocalDir::for_state(&absolute_state(ctx, &resolved.state.value), &ctx.cwd))
}

/// A `file://` URL made absolute against the working directory; others as they are.
pub fn absolute_state(ctx: &Context, state: &str) -> String {
    match state.strip_prefix("file://") {
        Some(p) if !Path::new(p).is_absolute() => format!("file://{}", ctx.cwd.join(p).display()),
        _ => state.to_owned(),
    }
}

/// The operation lease's time to live: `$SKIFF_LEASE_TTL_MS`, default 30 s.
pub fn lease_ttl_ms(ctx: &Context) -> u64 {
    skiff_settings::LEASE_TTL_MS.parse(|k| ctx.env.get(k)).unwrap_or(LEASE_TTL_MS)
}

/// An engine for this context: the ledger, the resolved provider (when it can be
/// reached from here), the approval policy, and live progress when the UI wants it.
pub async fn engine(ctx: &Context, ledger: &Ledger) -> Engine {
    let mut ext = Extensions::default();
    ext.insert(ledger.clone());
    if let Ok(p) = provider(ctx, ledger).await {
        ext.insert(p);
    }
    let resumer: Arc<dyn skiff_steps::incident::Resumer> =
        Arc::new(EngineResumer { ctx: ctx.clone(), ledger: ledger.clone() });
    ext.insert(resumer);
    engine_with(ctx, ledger, ext)
}

/// Runs another operation with an engine of its own: an incident's `resume` step.
struct EngineResumer {
    ctx: Context,
    ledger: Ledger,
}

#[async_trait::async_trait]
impl skiff_steps::incident::Resumer for EngineResumer {
    async fn resume(&self, op: &str) -> std::result::Result<String, String> {
        let engine = engine(&self.ctx, &self.ledger).await;
        engine.run(op).await.map(|r| r.status.as_str().to_owned()).map_err(|e| e.to_string())
    }
}

/// A hook that freezes the process at `point` (after writing `marker`) until it is
/// killed: how tests SIGKILL a `skiff` at an exact step boundary.
fn freeze_at(point: String, marker: Option<String>) -> skiff_saga::Hook {
    Arc::new(move |p: &str| {
        if p == point {
            if let Some(m) = &marker {
                let _ = std::fs::write(m, p);
            }
            loop {
                skiff_clock::SystemClock::block_for(Duration::from_secs(1));
            }
        }
    })
}

/// [`engine`] with the extensions given (the simulation passes its own provider).
pub fn engine_with(ctx: &Context, ledger: &Ledger, ext: Extensions) -> Engine {
    let ttl = lease_ttl_ms(ctx);
    let mut registry = skiff_steps::registry();
    for step in crate::plugin::steps(ctx, ledger.clock()) {
        registry.insert(step);
    }
    let engine = Engine::new(ledger.clone(), registry)
        .with_extensions(ext)
        .with_policy(Arc::new(skiff_steps::deploy::RoutinePolicy))
        .with_lease_ttl_ms(ttl)
        .with_lease_wait_ms(LEASE_WAIT_MS.max(ttl + 5_000));
    let engine = match ctx.setting(&skiff_settings::FREEZE_AT) {
        Some(point) => engine.with_hook(freeze_at(point, ctx.setting(&skiff_settings::FREEZE_MARKER))),
        None => engine,
    };
    if !ctx.ui.wants_progress() {
        return engine;
    }
    let ui = ctx.ui.clone();
    engine.with_observer(Arc::new(move |stored, event| {
        if let Some(line) = crate::describe::event(event) {
            ui.progress(&format!("  {:>4}  {line}", stored.seq));
        }
    }))
}
