//! Intents (`POST /v1/intents` on skiffd): knobs or a whole spec, compiled into a
//! decision and an execution plan, checked by every policy with the caller's roles,
//! and recorded as an `intent` operation keyed by the caller's idempotency key.

use skiff_saga::{Engine, ServiceScope};
use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::pipeline::{Launch, launch};

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
pub fn bad_intent(why: &str) -> Answer {
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

/// What a new service gets when an intent names only knobs: the `skiff init service`
/// defaults, to be completed by a deploy with a real spec.
fn starter(service: &str) -> serde_json::Value {
    serde_json::json!({
        "service": service,
        "artifact": {"path": format!("bin/{service}")},
        "run": {"command": [service]},
        "port": 8080,
    })
}

fn usage(why: impl Into<String>) -> Error {
    Error::from(bad_intent(&why.into()))
}

/// The spec the intent asks for, as JSON: the given spec, else the service's recorded
/// spec, else a starter; then the knobs on top.
async fn desired(ledger: &skiff_state::Ledger, intent: &Intent) -> Result<serde_json::Value> {
    let mut spec = match &intent.spec {
        Some(serde_json::Value::String(yaml)) => {
            let parsed =
                skiff_spec::parse("intent.spec", yaml.as_bytes()).map_err(|e| crate::error::spec("intent.spec", &e))?;
            serde_json::to_value(parsed).map_err(|e| usage(e.to_string()))?
        }
        Some(v @ serde_json::Value::Object(_)) => v.clone(),
        Some(_) => return Err(usage("`spec` must be skiff.yaml text or a JSON object")),
        None => {
            let Some(service) = &intent.service_name else {
                return Err(usage("name the service (`service_name`) or send a whole `spec`"));
            };
            skiff_state::keys::check_name("service_name", service).map_err(|e| usage(e.to_string()))?;
            match ledger.recorded(service).await.map_err(|e| crate::error::state(&e))? {
                Some((_, Some(ir))) => serde_json::to_value(&ir.source).map_err(|e| usage(e.to_string()))?,
                _ => starter(service),
            }
        }
    };
    let obj = spec.as_object_mut().ok_or_else(|| usage("`spec` must be an object"))?;
    if let (Some(name), Some(given)) = (&intent.service_name, obj.get("service").and_then(|s| s.as_str()))
        && name != given
    {
        return Err(usage(format!("service_name `{name}` and the spec's service `{given}` differ")));
    }
    if let Some(env) = &intent.environment {
        obj.insert("environment".into(), env.clone().into());
    }
    for (knob, value) in [("availability", &intent.availability), ("cost", &intent.cost)] {
        if let Some(v) = value {
            let knobs = obj.entry("intent").or_insert_with(|| serde_json::json!({}));
            if let Some(k) = knobs.as_object_mut() {
                k.insert(knob.into(), v.clone().into());
            }
        }
    }
    Ok(spec)
}

/// Records an intent: compiles it, checks every policy with the caller's roles, and
/// submits an `intent` operation keyed by `key` (the same key answers the same
/// operation and records nothing twice).
pub async fn submit(ctx: &Context, intent: &Intent, key: &str) -> Result<Answer> {
    if key.is_empty() || key.len() > 200 {
        return Err(usage("an intent needs an Idempotency-Key of 1 to 200 characters"));
    }
    let (_, resolved) = ctx.resolve()?;
    let provider_name = resolved.provider.value.as_str().to_owned();
    let rules = crate::policy::load(&ctx.cwd.join("skiff.yaml"))?;
    let actor = ctx.actor();
    let (_, ledger) = ctx.ledger()?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    ledger.init(&actor).await.map_err(|e| crate::error::state(&e))?;
    let json = desired(&ledger, intent).await?;
    // JSON is YAML: the spec goes through the same parser and validation as a file.
    let spec =
        skiff_spec::parse("intent", json.to_string().as_bytes()).map_err(|e| crate::error::spec("intent", &e))?;
    let spec = crate::plugin::apply_addons(ctx, "intent", spec).await?;
    let compiled = skiff_compiler::compile(&spec);
    let ir = compiled.ir;
    let before = match ledger.recorded(&ir.service).await.map_err(|e| crate::error::state(&e))? {
        Some((_, Some(old))) => skiff_compiler::plan(&old),
        _ => skiff_compiler::ResourcePlan { resources: Vec::new(), ..compiled.plan.clone() },
    };
    let diff = skiff_compiler::diff_plans(&before, &compiled.plan);
    let prospective = crate::policy::prospective_graph(&ir)?;
    let input = crate::policy::input(ctx, &ir, "intent", &provider_name, None, Some(&prospective));
    let (report, policy_facts) = crate::policy::enforce(&rules, &input)?;
    // Content-addressed and create-only: the index can show the decision at once.
    ledger.put_spec(&ir).await.map_err(|e| crate::error::state(&e))?;
    let graph = skiff_steps::intent::intent_graph(&ir).map_err(|e| crate::error::saga(&e))?;
    let environment = spec.environment.as_ref().map_or("production", |e| e.as_str()).to_owned();
    let l = Launch {
        graph,
        service: Some(ir.service.clone()),
        scope: None::<ServiceScope>,
        key: Some(key.to_owned()),
        reason: format!(
            "intent for {} in {environment}: availability {}, cost {}",
            ir.service, ir.decision.availability_plan.level, ir.decision.cost_plan.level
        ),
        params: serde_json::json!({"ir_digest": ir.digest(), "environment": environment}),
        audit: ("intent.submit".to_owned(), serde_json::json!({"key": key})),
        audit_existing: false,
        release: String::new(),
    };
    // An intent is recorded for a worker whatever the context says.
    let detached = Context { detach: true, ..ctx.clone() };
    let submitted = match launch(&detached, &engine, &ledger, l).await? {
        crate::pipeline::Launched::Submitted(s, _) | crate::pipeline::Launched::Ran(s, _) => s,
    };
    let op = submitted.op_id.clone();
    let status = match engine.load(&op).await {
        Ok((_, d)) => d.status.as_str().to_owned(),
        Err(_) => "planned".to_owned(),
    };
    let (risk, reasons) = crate::plan::risk(Some(&before), &diff);
    let verb = if submitted.created { "recorded" } else { "already recorded" };
    let mut env = Envelope::ok(format!("intent for {} {verb} as {op}", ir.service))
        .facts(crate::plan::facts(&ir))
        .fact(format!("{} to add, {} to change, {} to remove", diff.add, diff.change, diff.remove))
        .facts(policy_facts)
        .data(serde_json::json!({
            "op_id": op,
            "status": status,
            "created": submitted.created,
            "service_name": ir.service,
            "environment": environment,
            "ir_digest": ir.digest(),
            "decision": {
                "availability_plan": ir.decision.availability_plan,
                "cost_plan": ir.decision.cost_plan,
            },
            "execution_plan": {
                "resources": compiled.plan.resources.len(),
                "actions": diff.changes,
            },
            "policy": report,
        }))
        .risk(risk, reasons)
        .operation(op.clone())
        .action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.6)
        .action("status", format!("skiff status {}", ir.service), false, Safety::ReadOnly, 0.5);
    env.idempotency_key = Some(key.to_owned());
    Ok(env.into())
}
