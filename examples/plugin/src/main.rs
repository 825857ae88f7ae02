//! `skiff-plugin-changelog`: an example Skiff plugin, the whole of it in one file.
//!
//! It keeps a deploy changelog — a Markdown file a team reads to see what shipped —
//! as a saga step kind and a doctor check:
//!
//! - **`changelog.append`** (step): appends one line per operation, e.g.
//!   `- 2026-12-07T10:00:00Z hello r-3f2a… deployed (op-…) [key]`. It happens exactly
//!   once per idempotency key: `run` and `resume` look for the key before writing, so a
//!   resume after a crash never writes the line twice. `compensate` appends a
//!   "reverted" line (a changelog is append-only; the undo of a notice is a notice).
//! - **`changelog.writable`** (doctor check): the file can be written.
//! - **`changelog.env`** (runtime addon): tells the program where the changelog is,
//!   in `DEPLOY_CHANGELOG` (or the variable `with: {variable: NAME}` names), so it can
//!   show its own history.
//! - **`changelog.service`** (recipe): `skiff init plugin changelog.service NAME`
//!   writes an HTTP service's skiff.yaml with the hook and the addon in place.
//!
//! Its manifest (`plugin.yaml` in this directory) passes `--file PATH`. Install it by
//! copying the manifest to `.skiff/plugins/changelog/plugin.yaml` with `executable`
//! pointing at the built binary and `sha256` set to its digest (`sha256sum`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use async_trait::async_trait;
use serde::Deserialize;
use skiff_plugin::{Addon, AddonAnswer, Check, CheckContext, Plugin, Recipe, RecipeAnswer};
use skiff_sagaapi::{Finding, Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let file = match args.iter().position(|a| a == "--file").and_then(|i| args.get(i + 1)) {
        Some(f) => PathBuf::from(f),
        None => PathBuf::from("CHANGELOG.deploys.md"),
    };
    Plugin::new("changelog", env!("CARGO_PKG_VERSION"))
        .step(Append { file: file.clone() })
        .check("changelog.writable", Writable { file: file.clone() })
        .addon("changelog.env", Env { file })
        .recipe("changelog.service", ServiceRecipe)
        .serve()
        .await
}

/// What a deploy's hook passes (the host adds `service` and `release`; `with` is the
/// spec's own parameters).
#[derive(Deserialize)]
struct Params {
    service: String,
    #[serde(default)]
    release: Option<String>,
    #[serde(default)]
    with: With,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct With {
    /// The words after the release (default `deployed`).
    message: Option<String>,
}

struct Append {
    file: PathBuf,
}

impl Append {
    fn params(req: &StepRequest) -> Result<Params, StepError> {
        req.params_as::<Params>()
    }

    fn line(&self, ctx: &StepContext, req: &StepRequest, what: &str, key: &str) -> Result<StepResult, StepError> {
        let io =
            |e: std::io::Error| StepError::retryable(StepCode::ProviderError, format!("{}: {e}", self.file.display()));
        let existing = match std::fs::read_to_string(&self.file) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let marker = format!("[{key}]");
        let outputs = serde_json::json!({"file": self.file, "key": key});
        if let Some(line) = existing.lines().find(|l| l.ends_with(&marker)) {
            return Ok(StepResult::new(format!("already in the changelog: {line}"), outputs));
        }
        let line = format!("- {} {what} ({}) {marker}\n", rfc3339(ctx.now_ms()), req.op_id);
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.file).map_err(io)?;
        f.write_all(line.as_bytes()).and_then(|()| f.sync_all()).map_err(io)?;
        Ok(StepResult::new(format!("appended to {}", self.file.display()), outputs))
    }

    fn what(p: &Params) -> String {
        let release = p.release.as_deref().unwrap_or("(no release)");
        format!("{} {release} {}", p.service, p.with.message.as_deref().unwrap_or("deployed"))
    }
}

#[async_trait]
impl Step for Append {
    fn kind(&self) -> &str {
        "changelog.append"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = Self::params(req)?;
        Ok(StepPlan {
            description: format!("append \"{}\" to {}", Self::what(&p), self.file.display()),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 10,
            affected_resources: vec![self.file.display().to_string()],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = Self::params(req)?;
        self.line(ctx, req, &Self::what(&p), &req.idempotency_key)
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // The key is the record: found, the earlier attempt wrote it; not found, write it.
        self.run(ctx, req).await
    }

    async fn compensate(&self, ctx: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p = Self::params(req)?;
        let what = format!("{} reverted", Self::what(&p));
        self.line(ctx, req, &what, &format!("{}-reverted", req.idempotency_key))
    }
}

struct Writable {
    file: PathBuf,
}

#[async_trait]
impl Check for Writable {
    async fn check(&self, _: &CheckContext) -> Vec<Finding> {
        match writable(&self.file) {
            Ok(()) => Vec::new(),
            Err(e) => vec![Finding {
                code: "IO_ERROR".to_owned(),
                message: format!(
                    "the deploy changelog {} cannot be written: deploys will fail at their changelog step",
                    self.file.display()
                ),
                facts: vec![e.to_string()],
                fix: Some(format!("create {} and let Skiff's user write it", self.file.display())),
            }],
        }
    }
}

struct Env {
    file: PathBuf,
}

#[async_trait]
impl Addon for Env {
    async fn apply(&self, _: &serde_json::Value, with: &std::collections::BTreeMap<String, String>) -> AddonAnswer {
        let mut answer = AddonAnswer::default();
        for key in with.keys().filter(|k| k.as_str() != "variable") {
            answer.problems.push(format!("changelog.env takes `variable` only, not `{key}`"));
        }
        let variable = with.get("variable").map_or("DEPLOY_CHANGELOG", String::as_str);
        answer.env.insert(variable.to_owned(), self.file.display().to_string());
        answer
    }
}

struct ServiceRecipe;

#[async_trait]
impl Recipe for ServiceRecipe {
    async fn write(&self, name: &str, port: u16) -> RecipeAnswer {
        let spec = format!(
            "# skiff.yaml for {name}, an HTTP service whose deploys are kept in the deploy changelog\n\
             # (the changelog plugin: `skiff plugin explain changelog`).\n\
             service: {name}\n\
             artifact:\n  build: cargo build --release -p {name}\n  path: target/release/{name}\n\
             run:\n  command: [{name}, --port, \"${{PORT}}\"]\n\
             port: {port}\n\
             health: {{path: /healthz, interval: 5s}}\n\
             addons:\n  - {{addon: changelog.env}}        # DEPLOY_CHANGELOG: where the changelog is\n\
             rollout:\n  hooks:\n    - {{step: changelog.append, at: after_promote}}   # one line per deploy\n"
        );
        RecipeAnswer { spec, problems: Vec::new() }
    }
}

fn writable(file: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new().create(true).append(true).open(file).map(drop)
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
