//! The command layer for skiffd and skiff-worker: the same code a terminal's `skiff`
//! runs, with the server's bucket, provider, keys and caller in an [`Invocation`]
//! instead of a terminal's environment. Servers call it on blocking threads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use skiff_saga::Engine;
use skiff_sdk::{Code, Envelope, Safety};
use skiff_state::docs::{OpStatus, OperationState};
use skiff_state::keys::{self, KeyKind};

use crate::cli::Command;
use crate::{Ctx, Format, Outcome};

/// Who runs a command, where, and with which settings (`SKIFF_STATE`,
/// `SKIFF_PROVIDER`, `SKIFF_ACTOR`, `SKIFF_ROLES`, `SKIFF_KEY`, ...). Nothing is read
/// from the process environment: what is not in `env` is unset.
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    /// The directory relative paths (specs, `policies/`, keys) start from.
    pub cwd: PathBuf,
    /// The environment the command sees.
    pub env: BTreeMap<String, String>,
    /// Submit operations instead of running them (skiffd): a worker runs them.
    pub detach: bool,
}

impl Invocation {
    fn ctx(&self) -> Ctx {
        let env = self.env.clone();
        Ctx {
            format: Format::Json,
            quiet: true,
            flags: skiff_sdk::config::Flags::default(),
            cwd: self.cwd.clone(),
            env: Box::new(move |k| env.get(k).cloned()),
            yes: true,
            interactive: false,
            detach: self.detach,
        }
    }

    /// Runs one command and returns what it answered.
    pub fn execute(&self, command: Command) -> Outcome {
        crate::cmd::run(&self.ctx(), command)
    }

    /// Operations a worker should run: submitted and not started, started by an
    /// engine whose lease may have lapsed, approved, or asked to resume or cancel.
    pub fn runnable_operations(&self) -> Result<Vec<String>, Box<Outcome>> {
        let ctx = &self.ctx();
        crate::cmd::with_ledger(ctx, |ledger, _| async move {
            let fail = |e: skiff_state::StateError| Box::new(crate::cmd::state_error(&e));
            let engine = crate::cmd::saga::engine(ctx, &ledger);
            let mut out = Vec::new();
            // Only the operations' state documents are read, not the whole bucket.
            for listed in ledger.store().list(&keys::operations()).await.map_err(|e| fail(e.into()))? {
                let KeyKind::OpState { op } = keys::classify(&listed.key) else { continue };
                let Some(state) = ledger.read::<OperationState>(&listed.key).await.map_err(fail)? else { continue };
                let (op, status) = (&op, state.status);
                if status.is_terminal() {
                    continue;
                }
                let wanted = match status {
                    OpStatus::Planned | OpStatus::Running | OpStatus::Compensating => true,
                    OpStatus::AwaitingApproval | OpStatus::Paused => {
                        let Ok((_, d)) = engine.load(op).await else { continue };
                        let steered = d.rejected || d.cancel_requested;
                        let approved = status == OpStatus::AwaitingApproval && d.awaiting.is_none();
                        let resumed = status == OpStatus::Paused
                            && event_is(&ledger, op, d.applied_seq, "resume_requested").await;
                        steered || approved || resumed
                    }
                    _ => false,
                };
                if wanted && !matches!(engine.lease_holder(op).await, Ok(Some(_))) {
                    out.push(op.clone());
                }
            }
            Ok(out)
        })?
    }

    /// Claims `op` through its lease and runs it to its end (or its next gate). `None`
    /// when there was nothing to do: another engine holds the lease or already finished
    /// it. Nothing runs twice.
    pub fn run_operation(&self, op: &str) -> Option<Outcome> {
        let ctx = &self.ctx();
        let ran = crate::cmd::with_ledger(ctx, |ledger, _| async move {
            let engine = crate::cmd::saga::engine(ctx, &ledger).with_lease_wait_ms(0);
            let before = engine.load(op).await.map(|(_, d)| d.applied_seq).unwrap_or(0);
            let result = engine.run(op).await;
            if let Err(skiff_saga::SagaError::State(skiff_state::StateError::LeaseHeld { .. })) = &result {
                return None;
            }
            // Did this engine start or resume it, or did it find it finished by another?
            let events = ledger.events_from(op, before + 1).await.unwrap_or_default();
            let mine = events.iter().any(|e| {
                matches!(e.event_type.as_str(), "operation_started" | "operation_resumed")
                    && e.data["holder"].as_str() == Some(engine.holder())
            });
            if result.is_ok() && !mine {
                return None;
            }
            Some(finish(&ledger, op, result).await)
        });
        match ran {
            Ok(r) => r,
            Err(o) => Some(*o),
        }
    }

    /// The services the bucket knows.
    pub fn services(&self) -> Result<Vec<String>, Box<Outcome>> {
        let ctx = self.ctx();
        crate::cmd::with_ledger(&ctx, |ledger, _| async move {
            let listed = ledger
                .store()
                .list(&keys::services())
                .await
                .map_err(|e| Box::new(crate::cmd::state_error(&e.into())))?;
            Ok(listed
                .iter()
                .filter_map(|l| match keys::classify(&l.key) {
                    KeyKind::ServiceState { service } => Some(service),
                    _ => None,
                })
                .collect())
        })?
    }

    /// Records an intent: compiles it, checks every policy with the caller's roles, and
    /// submits an `intent` operation keyed by `idempotency_key` (the same key answers
    /// the same operation and records nothing twice).
    pub fn submit_intent(&self, intent: &Intent, idempotency_key: &str) -> Outcome {
        crate::cmd::intent::submit(&self.ctx(), intent, idempotency_key).unwrap_or_else(|o| *o)
    }
}

async fn finish(
    ledger: &skiff_state::Ledger,
    op: &str,
    result: Result<skiff_saga::RunReport, skiff_saga::SagaError>,
) -> Outcome {
    match result {
        Ok(report) => {
            if report.status.is_terminal()
                && let Some(service) = &report.plan.service
            {
                crate::cmd::deploy::release_claim(ledger, service, op).await;
            }
            crate::cmd::saga::report_outcome(&report, None)
        }
        Err(e) => crate::cmd::saga::saga_error(&e),
    }
}

/// What a server or worker passes from its own environment to the commands it runs:
/// cloud credentials and endpoints, local-provider and runner settings, lease TTL,
/// key password, `HOME` and `PATH`; nothing else leaks in.
pub fn inherited_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_")
                || k.starts_with("SKIFF_AWS_")
                || k.starts_with("SKIFF_LOCAL")
                || matches!(
                    k.as_str(),
                    "SKIFF_LEASE_TTL_MS"
                        | "SKIFF_KEY_PASSWORD"
                        | "SKIFF_REGION"
                        | "SKIFF_BIN"
                        | "SKIFF_RUNNER_BIN"
                        | "SKIFF_PG_BIN"
                        | "SKIFF_PG_USER"
                        | "HOME"
                        | "PATH"
                )
        })
        .collect()
}

/// Whether event `seq` of `op` is of type `kind` (one read; `load` folded every event,
/// so its `applied_seq` is the last one).
async fn event_is(ledger: &skiff_state::Ledger, op: &str, seq: u64, kind: &str) -> bool {
    let event = ledger.read::<skiff_state::docs::Event>(&keys::op_event(op, seq)).await;
    event.ok().flatten().is_some_and(|e| e.event_type == kind)
}

/// `POST /v1/intents`: knobs for a service, or a whole spec.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// The service; with only knobs, its recorded spec (or a new service's defaults)
    /// gets the knobs.
    #[serde(default)]
    pub service_name: Option<String>,
    /// `production`, `staging`, ...
    #[serde(default)]
    pub environment: Option<String>,
    /// `high`, `standard` or `low`.
    #[serde(default)]
    pub availability: Option<String>,
    /// `low`, `balanced` or `performance`.
    #[serde(default)]
    pub cost: Option<String>,
    /// A whole spec, as skiff.yaml text or as a JSON object.
    #[serde(default)]
    pub spec: Option<serde_json::Value>,
}

/// The answer for a request body that is not an intent.
pub fn bad_intent(why: &str) -> Outcome {
    Envelope::failure(Code::Usage, "the request body is not an intent")
        .fact(why.to_owned())
        .fact(
            r#"send {"service_name": "orders-api", "environment": "production", "availability": "high", "cost": "low"} or {"spec": "<skiff.yaml text>"}"#,
        )
        .action("schema", "skiff schema", false, Safety::ReadOnly, 0.4)
        .into()
}

/// The operation id an intent with `key` gets.
pub fn intent_op(key: &str) -> String {
    Engine::op_id_for("intent", key)
}
