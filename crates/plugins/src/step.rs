//! A plugin's step kind as an engine step.

use std::sync::Arc;

use async_trait::async_trait;
use skiff_plugin::proto::Reply;
use skiff_plugin::wire::{self, Method};
use skiff_sagaapi::{Finding, Step, StepContext, StepError, StepPlan, StepRequest, StepResult};

use crate::Host;

/// One step kind a plugin serves. Every call goes to the plugin's process under the
/// manifest's deadline; whatever goes wrong there is this step's failure, never the
/// engine's.
#[derive(Debug)]
pub struct PluginStep {
    kind: String,
    host: Arc<Host>,
}

impl PluginStep {
    /// Step kind `kind`, served by `host`'s plugin.
    pub fn new(kind: String, host: Arc<Host>) -> Self {
        PluginStep { kind, host }
    }

    /// The host running its plugin.
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        ctx: &StepContext,
        req: &StepRequest,
        result: Option<&StepResult>,
    ) -> Result<T, StepError> {
        let call = wire::step_call(&self.kind, req, ctx.now_ms(), result);
        let what = format!("`{}` of step kind {}", method.name(), self.kind);
        let reply: Reply = self
            .host
            .call(&what, move |mut c| async move {
                match method {
                    Method::Plan => c.plan_step(call).await,
                    Method::Run => c.run_step(call).await,
                    Method::Resume => c.resume_step(call).await,
                    Method::Compensate => c.compensate_step(call).await,
                    Method::Doctor => c.doctor_step(call).await,
                }
            })
            .await
            .map_err(crate::PluginError::into_step_error)?;
        match wire::decode::<T>(reply) {
            Ok(answer) => answer,
            Err(why) => Err(self.host.garbage(&what, why).await.into_step_error()),
        }
    }
}

#[async_trait]
impl Step for PluginStep {
    fn kind(&self) -> &str {
        &self.kind
    }

    async fn plan(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        self.call(Method::Plan, ctx, req, None).await
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.call(Method::Run, ctx, req, None).await
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.call(Method::Resume, ctx, req, None).await
    }

    async fn compensate(
        &self,
        ctx: &StepContext,
        req: &StepRequest,
        result: &StepResult,
    ) -> Result<StepResult, StepError> {
        self.call(Method::Compensate, ctx, req, Some(result)).await
    }

    async fn doctor(&self, ctx: &StepContext, req: &StepRequest) -> Vec<Finding> {
        match self.call::<Vec<Finding>>(Method::Doctor, ctx, req, None).await {
            Ok(findings) => findings,
            Err(e) => vec![Finding {
                code: e.code.as_str().to_owned(),
                message: e.message,
                facts: e.facts,
                fix: Some(format!("skiff plugin validate {}", self.host.installed().manifest.plugin)),
            }],
        }
    }
}
