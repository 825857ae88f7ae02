//! The `terraform-apply` saga: the Terraform executor. `terraform.plan` prepares a
//! working directory of this operation's own (the module and `terraform.tfvars.json`
//! from the ledger's blobs, the workspace's last state snapshot), runs `terraform plan
//! -out` and stores the saved plan and its `terraform show -json` as immutable blobs;
//! `terraform.check` evaluates the guardrails (built-in rules and Rego) on that plan
//! JSON; `terraform.apply` (behind an approval gate where the environment needs one)
//! applies exactly the saved plan — a plan that no longer applies is planned and checked
//! again, never applied blind — and records the state snapshot, the apply log and what
//! changed. Transient failures are retried; a permanent one rolls back by applying the
//! last known-good configuration, and reports exactly which resources changed. Skiff's
//! lease on the workspace replaces Terraform's lock (`-lock=false`), so a dead executor
//! leaves nothing locked; a Terraform it left running is stopped before a resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;
use skiff_state::docs::{TerraformConfig, TerraformCurrent, TerraformExecution};
use skiff_terraform::exec::{ExecError, Failure, Workdir};

use crate::{ledger_error, step_plan};

/// `terraform-apply` in the catalog: started by `skiff terraform apply`.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "terraform-apply",
    description: "plan a Terraform module with its variables, check the plan against every guardrail, and apply exactly that plan (`skiff terraform apply --module DIR`)",
    params: &[],
    build: |_| Err(crate::deploy::needs_command("terraform-apply", "skiff terraform apply --module DIR --yes")),
};

/// Everything an execution needs, decided before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecPlan {
    /// The workspace (one state, one lease).
    pub workspace: String,
    /// The module and variables, as blobs.
    pub config: TerraformConfig,
    /// Where this machine keeps working directories (`<root>/<op>`).
    pub root: String,
    /// The `terraform` binary.
    pub bin: String,
    /// What the guardrails see besides the plan: action, environment, actor.
    pub policy_input: skiff_policy::PlanInput,
    /// The user policies (`policies/*.rego`, `limits.json`): file name → text.
    pub policies: BTreeMap<String, String>,
}

/// The executor's graph.
pub fn exec_graph(p: &ExecPlan, approval: bool) -> Result<SagaGraph, SagaError> {
    let params = serde_json::to_value(p).unwrap_or_default();
    let b = SagaBuilder::new("terraform-apply")
        .step("plan", "terraform.plan", params.clone())
        .timeout_ms(30 * 60 * 1000)
        .step("check", "terraform.check", params.clone())
        .step("apply", "terraform.apply", params)
        .timeout_ms(60 * 60 * 1000)
        .retry(3, 2_000);
    let b = if approval { b.require_approval() } else { b };
    b.build()
}

/// Registers the executor's step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Plan).with(Check).with(Apply)
}

fn plan_of(req: &StepRequest) -> Result<ExecPlan, StepError> {
    req.params_as()
}

fn exec_error(e: ExecError) -> StepError {
    let message = e.to_string();
    match e.failure {
        Failure::Transient => StepError::retryable(StepCode::ProviderError, message),
        Failure::StalePlan | Failure::Permanent => StepError::terminal(StepCode::ProviderError, message),
    }
}

fn io_error(what: &str, e: &std::io::Error) -> StepError {
    StepError::terminal(StepCode::Internal, format!("{what}: {e}"))
}

async fn blob(ledger: &Ledger, digest: &str) -> Result<Vec<u8>, StepError> {
    ledger.get_blob(digest).await.map_err(ledger_error)
}

async fn config_files(ledger: &Ledger, c: &TerraformConfig) -> Result<(BTreeMap<String, Vec<u8>>, Vec<u8>), StepError> {
    let mut files = BTreeMap::new();
    for (name, digest) in &c.files {
        files.insert(name.clone(), blob(ledger, digest).await?);
    }
    Ok((files, blob(ledger, &c.vars).await?))
}

/// A working directory for `config` at `dir`, starting from `state`, initialized.
async fn workdir(
    ledger: &Ledger,
    p: &ExecPlan,
    dir: &Path,
    config: &TerraformConfig,
    state: Option<&str>,
    log: &mut String,
) -> Result<Workdir, StepError> {
    let (files, vars) = config_files(ledger, config).await?;
    let state = match state {
        Some(d) => Some(blob(ledger, d).await?),
        None => None,
    };
    let wd = Workdir::prepare(dir, Path::new(&p.bin), &files, &vars, state.as_deref())
        .map_err(|e| io_error(&format!("prepare {}", dir.display()), &e))?;
    wd.reap().await;
    wd.init(log).await.map_err(exec_error)?;
    Ok(wd)
}

fn dir_of(p: &ExecPlan, op: &str) -> PathBuf {
    Path::new(&p.root).join(op)
}

async fn current(ledger: &Ledger, workspace: &str) -> Result<Option<TerraformCurrent>, StepError> {
    ledger.read(&skiff_state::keys::terraform_current(workspace)).await.map_err(ledger_error)
}

/// What a plan changes: `(address, actions)` per resource change that is not a no-op.
fn changes(plan: &Value) -> Vec<(String, Vec<String>)> {
    plan["resource_changes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let actions: Vec<String> =
                c["change"]["actions"].as_array()?.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect();
            (actions != ["no-op"] && actions != ["read"])
                .then(|| (c["address"].as_str().unwrap_or("?").to_owned(), actions))
        })
        .collect()
}

fn describe(changes: &[(String, Vec<String>)]) -> String {
    if changes.is_empty() {
        return "no changes".to_owned();
    }
    changes.iter().map(|(a, act)| format!("{a} ({})", act.join("+"))).collect::<Vec<_>>().join(", ")
}

/// Plans in `wd` and stores the saved plan and its JSON: (plan JSON, its blob, the saved plan's blob).
async fn plan_in(ledger: &Ledger, wd: &Workdir, log: &mut String) -> Result<(Value, String, String), StepError> {
    wd.plan(log).await.map_err(exec_error)?;
    let json = wd.show_plan(log).await.map_err(exec_error)?;
    let plan_blob = ledger.put_blob(serde_json::to_vec(&json).unwrap_or_default()).await.map_err(ledger_error)?;
    let saved = std::fs::read(wd.dir.join(skiff_terraform::exec::PLAN_FILE))
        .map_err(|e| io_error("read the saved plan", &e))?;
    let saved_blob = ledger.put_blob(saved).await.map_err(ledger_error)?;
    Ok((json, plan_blob, saved_blob))
}

struct Plan;

#[async_trait::async_trait]
impl Step for Plan {
    fn kind(&self) -> &str {
        "terraform.plan"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "`terraform plan` of {} files with terraform.tfvars.json ({}) in a working directory of this operation; store the saved plan and its JSON",
                p.config.files.len(),
                &p.config.vars[..12.min(p.config.vars.len())]
            ),
            Safety::ReadOnly,
            Risk::None,
            20_000,
            vec![format!("terraform/{}", p.workspace)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let ledger = req.extensions.require::<Ledger>()?;
        let base = current(ledger, &p.workspace).await?.and_then(|c| c.state);
        let mut log = String::new();
        let wd = workdir(ledger, &p, &dir_of(&p, &req.op_id), &p.config, base.as_deref(), &mut log).await?;
        let (json, plan_blob, saved_blob) = plan_in(ledger, &wd, &mut log).await?;
        let changes = changes(&json);
        let log_blob = ledger.put_blob(log.into_bytes()).await.map_err(ledger_error)?;
        Ok(StepResult::new(
            format!("planned {}: {}", p.workspace, describe(&changes)),
            json!({"plan": plan_blob, "saved": saved_blob, "base_state": base, "changes": changes, "log": log_blob}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo: a plan changes nothing", json!({})))
    }
}

/// The guardrails' input for a plan JSON: ingress it opens, databases it deletes, and
/// every resource change (for Rego policies, as `input.resources`).
pub fn policy_input(base: &skiff_policy::PlanInput, plan: &Value) -> skiff_policy::PlanInput {
    let mut input = base.clone();
    let all = plan["resource_changes"].as_array().cloned().unwrap_or_default();
    for c in &all {
        let address = c["address"].as_str().unwrap_or("?");
        let actions: Vec<&str> =
            c["change"]["actions"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let after = &c["change"]["after"];
        if c["type"] == "aws_db_instance" && actions.contains(&"delete") {
            input
                .database_deletions
                .push(skiff_policy::DatabaseDeletion { id: address.to_owned(), snapshot_age_ms: None });
        }
        let rules: Vec<&Value> = match c["type"].as_str() {
            Some("aws_security_group") => after["ingress"].as_array().map(|v| v.iter().collect()).unwrap_or_default(),
            Some("aws_security_group_rule" | "aws_vpc_security_group_ingress_rule") => vec![after],
            _ => Vec::new(),
        };
        for r in rules {
            let (from, to) = (r["from_port"].as_u64().unwrap_or(0), r["to_port"].as_u64().unwrap_or(0));
            if from <= 22 && 22 <= to && r["type"].as_str().is_none_or(|t| t == "ingress") {
                let cidrs = r["cidr_blocks"]
                    .as_array()
                    .map(|v| v.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "));
                let cidr = cidrs.or_else(|| r["cidr_ipv4"].as_str().map(str::to_owned)).unwrap_or_default();
                input.ingress.push(skiff_policy::Ingress { port: 22, from: format!("{cidr} ({address})") });
            }
        }
    }
    input.resources = Value::Array(all);
    input
}

/// The guardrails on a plan JSON: Ok, or POLICY_DENIED naming each rule and reason.
fn enforce(p: &ExecPlan, dir: &Path, plan: &Value) -> Result<skiff_policy::Report, StepError> {
    let policies = dir.join(".skiff-policies");
    std::fs::create_dir_all(&policies).map_err(|e| io_error("write the policies", &e))?;
    for (name, text) in &p.policies {
        std::fs::write(policies.join(name), text).map_err(|e| io_error("write the policies", &e))?;
    }
    let policy = skiff_policy::Policy::load(&policies)
        .map_err(|e| StepError::terminal(StepCode::PolicyDenied, format!("a policy does not load: {e}")))?;
    let report = policy
        .check(&policy_input(&p.policy_input, plan))
        .map_err(|e| StepError::terminal(StepCode::PolicyDenied, format!("a policy failed while evaluating: {e}")))?;
    if report.allowed {
        return Ok(report);
    }
    let denials: Vec<_> = report.denials().cloned().collect();
    let first = &denials[0];
    let mut e = StepError::terminal(
        StepCode::PolicyDenied,
        format!("policy {} denied the Terraform plan: {}", first.rule, first.reason),
    );
    for d in &denials {
        e = e.fact(format!("rule {} ({}): {}", d.rule, d.source, d.reason));
        if let Some(fix) = &d.fix {
            e = e.fact(format!("fix: {fix}"));
        }
    }
    Err(e.fact("nothing was applied"))
}

struct Check;

#[async_trait::async_trait]
impl Step for Check {
    fn kind(&self) -> &str {
        "terraform.check"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "check the plan JSON against the built-in guardrails and {}",
                if p.policies.is_empty() {
                    "no user policies".to_owned()
                } else {
                    p.policies.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
            Safety::ReadOnly,
            Risk::None,
            500,
            vec![format!("terraform/{}", p.workspace)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let ledger = req.extensions.require::<Ledger>()?;
        let planned: Value = req.input("plan")?;
        let plan: Value = serde_json::from_slice(&blob(ledger, planned["plan"].as_str().unwrap_or_default()).await?)
            .map_err(|e| StepError::terminal(StepCode::Internal, format!("the stored plan is not JSON: {e}")))?;
        let report = enforce(&p, &dir_of(&p, &req.op_id), &plan)?;
        let passed = report.results.iter().filter(|r| r.verdict == skiff_policy::Verdict::Pass).count();
        Ok(StepResult::new(
            format!("the plan passes every guardrail ({passed} rules passed)"),
            json!({"report": report}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct Apply;

impl Apply {
    /// Applies, planning and checking again when the saved plan no longer applies.
    async fn apply(
        p: &ExecPlan,
        wd: &Workdir,
        ledger: &Ledger,
        plan_blob: &mut String,
        log: &mut String,
    ) -> Result<(), StepError> {
        match wd.apply(log).await {
            Ok(()) => Ok(()),
            Err(e) if e.failure == Failure::StalePlan => {
                log.push_str("# the saved plan no longer applies: planning and checking again\n");
                let (json, blob, _) = plan_in(ledger, wd, log).await?;
                enforce(p, &wd.dir, &json)?;
                *plan_blob = blob;
                wd.apply(log).await.map_err(exec_error)
            }
            Err(e) => Err(exec_error(e)),
        }
    }

    /// After a permanent failure: the last known-good configuration applied over what
    /// the failed apply left (or, with none, everything it created destroyed).
    async fn roll_back(
        p: &ExecPlan,
        req: &StepRequest,
        ledger: &Ledger,
        failed: &Workdir,
        log: &mut String,
    ) -> Result<Option<Vec<u8>>, StepError> {
        let left = failed.state();
        let good = current(ledger, &p.workspace).await?.and_then(|c| c.good);
        let dir = dir_of(p, &format!("{}-rollback", req.op_id));
        let left_blob = match &left {
            Some(s) => Some(ledger.put_blob(s.clone()).await.map_err(ledger_error)?),
            None => None,
        };
        log.push_str("# rolling back to the last known-good configuration\n");
        let wd = match &good {
            Some((config, _)) => workdir(ledger, p, &dir, config, left_blob.as_deref(), log).await?,
            None => {
                // Nothing was ever applied completely: the same module, destroying.
                let wd = workdir(ledger, p, &dir, &p.config, left_blob.as_deref(), log).await?;
                let args = [
                    "plan",
                    "-destroy",
                    "-input=false",
                    "-no-color",
                    "-lock=false",
                    "-var-file",
                    skiff_terraform::exec::VARS_FILE,
                    "-out",
                    skiff_terraform::exec::PLAN_FILE,
                ];
                let (code, text) = wd.run(&args, log).await.map_err(|e| io_error("terraform plan -destroy", &e))?;
                if code != 0 {
                    return Err(StepError::terminal(
                        StepCode::ProviderError,
                        format!("the rollback could not plan: {text}"),
                    ));
                }
                wd.apply(log).await.map_err(exec_error)?;
                return Ok(wd.state());
            }
        };
        wd.plan(log).await.map_err(exec_error)?;
        wd.apply(log).await.map_err(exec_error)?;
        Ok(wd.state())
    }

    async fn record(
        req: &StepRequest,
        p: &ExecPlan,
        ledger: &Ledger,
        record: TerraformExecution,
        good: bool,
    ) -> Result<(), StepError> {
        let key = skiff_state::keys::terraform_execution(&p.workspace, &req.op_id);
        if ledger.read::<TerraformExecution>(&key).await.map_err(ledger_error)?.is_none() {
            ledger.create(&key, &record).await.map_err(ledger_error)?;
        }
        let now = ledger.clock().now_ms();
        ledger
            .update::<TerraformCurrent, _>(&skiff_state::keys::terraform_current(&p.workspace), |cur| {
                let mut c = cur
                    .cloned()
                    .unwrap_or_else(|| TerraformCurrent { workspace: p.workspace.clone(), ..Default::default() });
                c.state.clone_from(&record.state);
                if good {
                    c.good = Some((p.config.clone(), req.op_id.clone()));
                }
                c.updated_at_ms = now;
                Ok(skiff_state::Update::Write(c))
            })
            .await
            .map_err(ledger_error)?;
        Ok(())
    }

    async fn run_apply(&self, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let ledger = req.extensions.require::<Ledger>()?;
        let planned: Value = req.input("plan")?;
        let mut plan_blob = planned["plan"].as_str().unwrap_or_default().to_owned();
        let base = planned["base_state"].as_str().map(str::to_owned);
        let dir = dir_of(&p, &req.op_id);
        let mut log =
            String::from_utf8_lossy(&blob(ledger, planned["log"].as_str().unwrap_or_default()).await?).into_owned();
        // The working directory of the plan step, or (on another machine, or after a
        // kill) one rebuilt from the ledger with the saved plan.
        let fresh = !dir.join(".terraform").is_dir();
        let wd = if fresh {
            let wd = workdir(ledger, &p, &dir, &p.config, base.as_deref(), &mut log).await?;
            let saved = blob(ledger, planned["saved"].as_str().unwrap_or_default()).await?;
            std::fs::write(dir.join(skiff_terraform::exec::PLAN_FILE), saved)
                .map_err(|e| io_error("restore the saved plan", &e))?;
            wd
        } else {
            let wd = Workdir { dir: dir.clone(), bin: PathBuf::from(&p.bin) };
            wd.reap().await;
            wd
        };
        let before = match &base {
            Some(d) => blob(ledger, d).await?,
            None => b"{}".to_vec(),
        };
        let outcome = Self::apply(&p, &wd, ledger, &mut plan_blob, &mut log).await;
        match outcome {
            Ok(()) => {
                let after = wd.state().unwrap_or_default();
                let (created, updated, destroyed) = skiff_terraform::exec::changed(&before, &after);
                let state = ledger.put_blob(after).await.map_err(ledger_error)?;
                let log_blob = ledger.put_blob(log.into_bytes()).await.map_err(ledger_error)?;
                let record = TerraformExecution {
                    op_id: req.op_id.clone(),
                    workspace: p.workspace.clone(),
                    config: p.config.clone(),
                    plan: plan_blob,
                    outcome: "applied".to_owned(),
                    created: created.clone(),
                    updated: updated.clone(),
                    destroyed: destroyed.clone(),
                    state: Some(state.clone()),
                    log: log_blob.clone(),
                    at_ms: ledger.clock().now_ms(),
                };
                Self::record(req, &p, ledger, record, true).await?;
                Ok(StepResult::new(
                    format!(
                        "applied {}: {} created, {} changed, {} destroyed",
                        p.workspace,
                        created.len(),
                        updated.len(),
                        destroyed.len()
                    ),
                    json!({"created": created, "updated": updated, "destroyed": destroyed, "state": state, "log": log_blob}),
                ))
            }
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => {
                // Permanent: put back the last known-good configuration, then say exactly
                // what the failed apply changed and what the rollback restored.
                let left = wd.state().unwrap_or_else(|| before.clone());
                let (created, updated, destroyed) = skiff_terraform::exec::changed(&before, &left);
                let rolled = Self::roll_back(&p, req, ledger, &wd, &mut log).await;
                let final_state = match &rolled {
                    Ok(Some(s)) => s.clone(),
                    _ => left.clone(),
                };
                let state = ledger.put_blob(final_state.clone()).await.map_err(ledger_error)?;
                let log_blob = ledger.put_blob(log.into_bytes()).await.map_err(ledger_error)?;
                let record = TerraformExecution {
                    op_id: req.op_id.clone(),
                    workspace: p.workspace.clone(),
                    config: p.config.clone(),
                    plan: plan_blob,
                    outcome: if rolled.is_ok() { "rolled-back".to_owned() } else { "failed".to_owned() },
                    created: created.clone(),
                    updated: updated.clone(),
                    destroyed: destroyed.clone(),
                    state: Some(state),
                    log: log_blob,
                    at_ms: ledger.clock().now_ms(),
                };
                Self::record(req, &p, ledger, record, false).await?;
                let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
                let mut err = e.fact(format!(
                    "the failed apply created {}; changed {}; destroyed {}",
                    list(&created),
                    list(&updated),
                    list(&destroyed)
                ));
                err = match rolled {
                    Ok(_) => {
                        let (c, u, d) = skiff_terraform::exec::changed(&before, &final_state);
                        err.fact(format!(
                            "rolled back to the last known-good configuration: {}",
                            if c.is_empty() && u.is_empty() && d.is_empty() {
                                "the state is as before".to_owned()
                            } else {
                                format!(
                                    "still differs: created {}, changed {}, destroyed {}",
                                    list(&c),
                                    list(&u),
                                    list(&d)
                                )
                            }
                        ))
                    }
                    Err(r) => err
                        .fact(format!("the rollback failed too: {}", r.message))
                        .fact("run `terraform plan` on the last known-good variables and fix by hand"),
                };
                Err(err)
            }
        }
    }
}

#[async_trait::async_trait]
impl Step for Apply {
    fn kind(&self) -> &str {
        "terraform.apply"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "`terraform apply` of exactly the saved plan to {} (re-planned and re-checked if it no longer applies); a permanent failure rolls back to the last known-good configuration",
                p.workspace
            ),
            Safety::Reversible,
            Risk::High,
            60_000,
            vec![format!("terraform/{}", p.workspace)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run_apply(req).await
    }

    async fn resume(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // A killed apply left a partial state in the working directory: the saved plan
        // is stale then, and is planned and checked again.
        self.run_apply(req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        Ok(StepResult::new(
            format!("kept {}'s applied state: apply the previous configuration to undo it", p.workspace),
            json!({}),
        ))
    }
}
