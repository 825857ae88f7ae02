//! The plugin side: [`Plugin`] collects steps and checks and serves them.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use skiff_sagaapi::{
    Cancellation, Extensions, Finding, Progress, Step, StepCode, StepContext, StepError, StepRequest, StepResult, Timer,
};
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status};

use crate::proto::plugin_server::{Plugin as Service, PluginServer};
use crate::proto::{AddonCall, CheckCall, DescribeRequest, Description, RecipeCall, Reply, StepCall};
use crate::wire::{self, Method};

/// A doctor check a plugin offers: `skiff doctor` shows its findings beside Skiff's own.
#[async_trait]
pub trait Check: Send + Sync {
    /// What is wrong now (nothing: an empty list).
    async fn check(&self, ctx: &CheckContext) -> Vec<Finding>;
}

/// A runtime addon: it reads the spec a service is deployed from and either names
/// its problems with it or says what it adds — environment variables and secret
/// references, merged into the spec before it is compiled (so the compiled service,
/// its digest and its releases carry them).
#[async_trait]
pub trait Addon: Send + Sync {
    /// The spec as written (JSON) and the spec's `with` for this addon.
    async fn apply(&self, spec: &serde_json::Value, with: &BTreeMap<String, String>) -> AddonAnswer;
}

/// What an addon answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddonAnswer {
    /// What is wrong with the spec for this addon (refuses it when not empty).
    pub problems: Vec<String>,
    /// Environment variables to add (`NAME: value`); the spec's own win nothing: a
    /// variable the spec sets already is a problem.
    pub env: BTreeMap<String, String>,
    /// Secret references to add (`NAME: secret://name/key`).
    pub secrets: BTreeMap<String, String>,
    /// Plugin steps every deploy of the service runs, added to its `rollout.hooks`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<AddonHook>,
}

/// A deploy hook an addon adds: a step kind, when it runs, and its parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddonHook {
    /// The step kind, `PLUGIN.NAME`.
    pub step: String,
    /// `before_start`, `before_traffic` or `after_promote`.
    pub at: String,
    /// Its parameters.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, String>,
}

/// A recipe: the commented skiff.yaml `skiff init plugin RECIPE NAME` writes (Skiff
/// checks it parses before writing it).
#[async_trait]
pub trait Recipe: Send + Sync {
    /// The spec text for service `name` on `port`.
    async fn write(&self, name: &str, port: u16) -> RecipeAnswer;
}

/// What a recipe answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecipeAnswer {
    /// The skiff.yaml text.
    pub spec: String,
    /// What is wrong with the arguments (nothing is written when not empty).
    pub problems: Vec<String>,
}

/// What the host tells a check.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct CheckContext {
    /// The engine's clock, ms since the epoch.
    #[serde(skip)]
    pub now_ms: u64,
    /// Services the state bucket holds.
    pub services: Vec<String>,
    /// The state bucket's URL.
    pub state: Option<String>,
}

/// A plugin: its name, version, steps and checks. [`Plugin::serve`] runs it.
#[derive(Clone)]
pub struct Plugin {
    name: String,
    version: String,
    steps: BTreeMap<String, Arc<dyn Step>>,
    checks: BTreeMap<String, Arc<dyn Check>>,
    addons: BTreeMap<String, Arc<dyn Addon>>,
    recipes: BTreeMap<String, Arc<dyn Recipe>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("steps", &self.steps.keys().collect::<Vec<_>>())
            .field("checks", &self.checks.keys().collect::<Vec<_>>())
            .field("addons", &self.addons.keys().collect::<Vec<_>>())
            .field("recipes", &self.recipes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Plugin {
    /// A plugin called `name` (the prefix of its kinds) at `version`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Plugin {
            name: name.into(),
            version: version.into(),
            steps: BTreeMap::new(),
            checks: BTreeMap::new(),
            addons: BTreeMap::new(),
            recipes: BTreeMap::new(),
        }
    }

    /// Serves a step kind (its `kind()` must be `NAME.something`).
    #[must_use]
    pub fn step(mut self, step: impl Step + 'static) -> Self {
        self.steps.insert(step.kind().to_owned(), Arc::new(step));
        self
    }

    /// Serves a doctor check under `name` (`NAME.something`).
    #[must_use]
    pub fn check(mut self, name: impl Into<String>, check: impl Check + 'static) -> Self {
        self.checks.insert(name.into(), Arc::new(check));
        self
    }

    /// Serves a runtime addon under `name` (`NAME.something`).
    #[must_use]
    pub fn addon(mut self, name: impl Into<String>, addon: impl Addon + 'static) -> Self {
        self.addons.insert(name.into(), Arc::new(addon));
        self
    }

    /// Serves a recipe under `name` (`NAME.something`).
    #[must_use]
    pub fn recipe(mut self, name: impl Into<String>, recipe: impl Recipe + 'static) -> Self {
        self.recipes.insert(name.into(), Arc::new(recipe));
        self
    }

    /// Runs the plugin as the host asks: listens on the host's socket, prints the
    /// handshake, serves until the host closes stdin. Started by hand (without the
    /// host's cookie) it explains itself and exits 2.
    pub async fn serve(self) -> ExitCode {
        if std::env::var(crate::COOKIE_VAR).ok().as_deref() != Some(crate::COOKIE) {
            let _ = writeln!(
                std::io::stderr(),
                "{} {} is a Skiff plugin: Skiff starts it when a saga or `skiff doctor` needs it. \
                 Put its plugin.yaml under .skiff/plugins/{}/ and run `skiff plugin validate`.",
                self.name,
                self.version,
                self.name
            );
            return ExitCode::from(2);
        }
        let Some(socket) = std::env::var_os(crate::SOCKET_VAR) else {
            let _ =
                writeln!(std::io::stderr(), "{} is not set: the host names the socket to listen on", crate::SOCKET_VAR);
            return ExitCode::from(2);
        };
        let listener = match tokio::net::UnixListener::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "cannot listen on {}: {e}", socket.to_string_lossy());
                return ExitCode::from(1);
            }
        };
        let mut out = std::io::stdout();
        if writeln!(out, "{}", crate::handshake::line(&socket.to_string_lossy())).and_then(|()| out.flush()).is_err() {
            return ExitCode::from(1);
        }
        // The host holds our stdin: when it goes away, so do we (even mid-call).
        tokio::spawn(async {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            std::process::exit(0);
        });
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let served = tonic::transport::Server::builder()
            .add_service(PluginServer::new(self))
            .serve_with_incoming(incoming)
            .await;
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "the plugin's server stopped: {e}");
                ExitCode::from(1)
            }
        }
    }

    fn step_of(&self, kind: &str) -> Result<&Arc<dyn Step>, StepError> {
        self.steps.get(kind).ok_or_else(|| {
            StepError::terminal(StepCode::NotFound, format!("plugin {} serves no step kind `{kind}`", self.name))
        })
    }

    async fn step_call(&self, call: &StepCall, method: Method) -> Reply {
        let step = match self.step_of(&call.kind) {
            Ok(s) => s.clone(),
            Err(e) => return wire::failed(&e),
        };
        let (params, inputs) = match wire::call_payload(call) {
            Ok(p) => p,
            Err(why) => return wire::failed(&StepError::terminal(StepCode::Internal, why)),
        };
        let timer: Arc<dyn Timer> = Arc::new(HostTime { host_ms: call.now_ms, since: Instant::now() });
        let req = StepRequest {
            op_id: call.op_id.clone(),
            step_id: call.step_id.clone(),
            attempt: call.attempt,
            idempotency_key: call.idempotency_key.clone(),
            params,
            inputs,
            extensions: Arc::new(Extensions::default()),
            cancel: Cancellation::never(timer.clone()),
        };
        let ctx = StepContext::new(Arc::new(Quiet), timer);
        let answer = match method {
            Method::Plan => step.plan(&ctx, &req).await.map(|v| wire::ok(&v)),
            Method::Run => step.run(&ctx, &req).await.map(|v| wire::ok(&v)),
            Method::Resume => step.resume(&ctx, &req).await.map(|v| wire::ok(&v)),
            Method::Compensate => match serde_json::from_str::<StepResult>(&call.result_json) {
                Ok(result) => step.compensate(&ctx, &req, &result).await.map(|v| wire::ok(&v)),
                Err(e) => {
                    Err(StepError::terminal(StepCode::Internal, format!("result_json is not a step result: {e}")))
                }
            },
            Method::Doctor => Ok(wire::ok(&step.doctor(&ctx, &req).await)),
        };
        answer.unwrap_or_else(|e| wire::failed(&e))
    }
}

#[async_trait]
impl Service for Plugin {
    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<Description>, Status> {
        Ok(Response::new(Description {
            name: self.name.clone(),
            version: self.version.clone(),
            protocol: crate::PROTOCOL,
            steps: self.steps.keys().cloned().collect(),
            checks: self.checks.keys().cloned().collect(),
            addons: self.addons.keys().cloned().collect(),
            recipes: self.recipes.keys().cloned().collect(),
        }))
    }

    async fn plan_step(&self, r: Request<StepCall>) -> Result<Response<Reply>, Status> {
        Ok(Response::new(self.step_call(r.get_ref(), Method::Plan).await))
    }

    async fn run_step(&self, r: Request<StepCall>) -> Result<Response<Reply>, Status> {
        Ok(Response::new(self.step_call(r.get_ref(), Method::Run).await))
    }

    async fn resume_step(&self, r: Request<StepCall>) -> Result<Response<Reply>, Status> {
        Ok(Response::new(self.step_call(r.get_ref(), Method::Resume).await))
    }

    async fn compensate_step(&self, r: Request<StepCall>) -> Result<Response<Reply>, Status> {
        Ok(Response::new(self.step_call(r.get_ref(), Method::Compensate).await))
    }

    async fn doctor_step(&self, r: Request<StepCall>) -> Result<Response<Reply>, Status> {
        Ok(Response::new(self.step_call(r.get_ref(), Method::Doctor).await))
    }

    async fn check(&self, r: Request<CheckCall>) -> Result<Response<Reply>, Status> {
        let call = r.into_inner();
        let Some(check) = self.checks.get(&call.check) else {
            let e = StepError::terminal(
                StepCode::NotFound,
                format!("plugin {} serves no check `{}`", self.name, call.check),
            );
            return Ok(Response::new(wire::failed(&e)));
        };
        let mut ctx: CheckContext = serde_json::from_str(&call.context_json).unwrap_or_default();
        ctx.now_ms = call.now_ms;
        Ok(Response::new(wire::ok(&check.check(&ctx).await)))
    }

    async fn addon(&self, r: Request<AddonCall>) -> Result<Response<Reply>, Status> {
        Ok(Response::new(self.addon_call(r.into_inner()).await))
    }

    async fn recipe(&self, r: Request<RecipeCall>) -> Result<Response<Reply>, Status> {
        let call = r.into_inner();
        let Some(recipe) = self.recipes.get(&call.recipe) else {
            let e = StepError::terminal(
                StepCode::NotFound,
                format!("plugin {} serves no recipe `{}`", self.name, call.recipe),
            );
            return Ok(Response::new(wire::failed(&e)));
        };
        let port = u16::try_from(call.port).unwrap_or(8080);
        Ok(Response::new(wire::ok(&recipe.write(&call.name, port).await)))
    }
}

impl Plugin {
    async fn addon_call(&self, call: AddonCall) -> Reply {
        let Some(addon) = self.addons.get(&call.addon) else {
            let e = StepError::terminal(
                StepCode::NotFound,
                format!("plugin {} serves no addon `{}`", self.name, call.addon),
            );
            return wire::failed(&e);
        };
        let parsed = serde_json::from_str::<serde_json::Value>(&call.spec_json)
            .and_then(|spec| Ok((spec, serde_json::from_str::<BTreeMap<String, String>>(&call.with_json)?)));
        match parsed {
            Ok((spec, with)) => wire::ok(&addon.apply(&spec, &with).await),
            Err(e) => {
                wire::failed(&StepError::terminal(StepCode::Internal, format!("the addon call is not JSON: {e}")))
            }
        }
    }
}

/// The host's time at the call, advanced by this process's monotonic clock.
#[derive(Debug)]
pub(crate) struct HostTime {
    host_ms: u64,
    since: Instant,
}

impl HostTime {
    /// The wall clock now (for the conformance suite, which runs without a host).
    #[expect(clippy::disallowed_methods, reason = "the suite runs in a plugin author's test, without a host's clock")]
    pub(crate) fn now() -> Self {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        HostTime { host_ms: u64::try_from(ms).unwrap_or(u64::MAX), since: Instant::now() }
    }
}

impl Timer for HostTime {
    fn now_ms(&self) -> u64 {
        self.host_ms + u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    #[expect(clippy::disallowed_methods, reason = "a plugin is its own program: its steps wait on its own timer")]
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Progress reports stay in the plugin (the protocol's calls are unary).
pub(crate) struct Quiet;

#[async_trait]
impl Progress for Quiet {
    async fn report(&self, _: &str, _: serde_json::Value) {}
}
