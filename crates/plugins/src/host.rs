//! One plugin's process: started on first use (digest checked, handshake read, the
//! description compared with the manifest), called with a deadline, stopped when it
//! misbehaves or the host goes away.

use std::collections::VecDeque;
use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use skiff_clock::Clock;
use skiff_plugin::proto::plugin_client::PluginClient;
use skiff_plugin::proto::{AddonCall, CheckCall, DescribeRequest, Description, RecipeCall, Reply};
use skiff_sagaapi::StepCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{Installed, PluginError};

/// "Text file busy": an executable still open for writing somewhere.
const ETXTBSY: i32 = 26;

/// How many of a plugin's last stderr lines a failure quotes.
const STDERR_LINES: usize = 20;

/// How long a plugin whose call failed gets to finish exiting, so the failure can say
/// how it ended.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A plugin's process, started on first use and shared by every call.
#[derive(Debug)]
pub struct Host {
    plugin: Installed,
    clock: Arc<dyn Clock>,
    running: tokio::sync::Mutex<Option<Running>>,
    env: Vec<(String, String)>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    // Held open: the plugin exits when it closes.
    _stdin: ChildStdin,
    client: PluginClient<Channel>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    description: Description,
    _dir: tempfile::TempDir,
}

impl Running {
    fn tail(&self) -> Vec<String> {
        tail(&self.stderr)
    }
}

fn tail(lines: &Mutex<VecDeque<String>>) -> Vec<String> {
    let lines = lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    lines.iter().map(|l| format!("plugin stderr: {l}")).collect()
}

impl Host {
    /// A host for `plugin`; nothing starts until the first call.
    pub fn new(plugin: Installed, clock: Arc<dyn Clock>) -> Self {
        Host { plugin, clock, running: tokio::sync::Mutex::new(None), env: Vec::new() }
    }

    /// The same host, starting its plugin with these variables added to its environment
    /// (what Skiff tells plugins: the local secret store).
    #[must_use]
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// The plugin it runs.
    pub fn installed(&self) -> &Installed {
        &self.plugin
    }

    fn name(&self) -> &str {
        &self.plugin.manifest.plugin
    }

    fn deadline(&self) -> Duration {
        Duration::from_millis(self.plugin.manifest.deadline_ms())
    }

    /// What the running plugin says it offers (starting it if needed).
    pub async fn describe(&self) -> Result<Description, PluginError> {
        let mut running = self.running.lock().await;
        self.ensure(&mut running).await?;
        Ok(running.as_ref().map(|r| r.description.clone()).unwrap_or_default())
    }

    /// Stops the process (the next call starts it again).
    pub async fn stop(&self) {
        if let Some(mut r) = self.running.lock().await.take() {
            let _ = r.child.start_kill();
            let _ = skiff_clock::timeout(self.clock.as_ref(), EXIT_GRACE, r.child.wait()).await;
        }
    }

    /// Runs runtime addon `addon` on a spec (JSON) with its `with`.
    pub async fn addon(
        &self,
        addon: &str,
        spec: &serde_json::Value,
        with: &std::collections::BTreeMap<String, String>,
    ) -> Result<skiff_plugin::AddonAnswer, PluginError> {
        let call = AddonCall {
            addon: addon.to_owned(),
            spec_json: spec.to_string(),
            with_json: serde_json::to_string(with).unwrap_or_else(|_| "{}".to_owned()),
        };
        let what = format!("addon {addon}");
        let reply = self.call(&what, move |mut c| async move { c.addon(call).await }).await?;
        match skiff_plugin::wire::decode::<skiff_plugin::AddonAnswer>(reply) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(PluginError { code: e.code, message: e.message, facts: e.facts }),
            Err(why) => Err(self.garbage(&what, why).await),
        }
    }

    /// Runs recipe `recipe` for service `name` on `port`.
    pub async fn recipe(&self, recipe: &str, name: &str, port: u16) -> Result<skiff_plugin::RecipeAnswer, PluginError> {
        let call = RecipeCall { recipe: recipe.to_owned(), name: name.to_owned(), port: u32::from(port) };
        let what = format!("recipe {recipe}");
        let reply = self.call(&what, move |mut c| async move { c.recipe(call).await }).await?;
        match skiff_plugin::wire::decode::<skiff_plugin::RecipeAnswer>(reply) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(PluginError { code: e.code, message: e.message, facts: e.facts }),
            Err(why) => Err(self.garbage(&what, why).await),
        }
    }

    /// Runs doctor check `check` with the host's context.
    pub async fn check(&self, check: &str, context: serde_json::Value) -> Result<Reply, PluginError> {
        let call =
            CheckCall { check: check.to_owned(), now_ms: self.clock.now_ms(), context_json: context.to_string() };
        self.call(&format!("check {check}"), move |mut c| async move { c.check(call).await }).await
    }

    /// Calls the plugin with `f` under the deadline, turning every way it can go wrong
    /// into a [`PluginError`] (and stopping a plugin that hung or broke).
    pub(crate) async fn call<F, Fut, T>(&self, what: &str, f: F) -> Result<T, PluginError>
    where
        F: FnOnce(PluginClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (client, pid) = {
            let mut running = self.running.lock().await;
            self.ensure(&mut running).await?;
            let r = running.as_ref().ok_or_else(|| self.failed("did not start", Vec::new()))?;
            (r.client.clone(), r.child.id())
        };
        let deadline = self.deadline();
        match skiff_clock::timeout(self.clock.as_ref(), deadline, f(client)).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(self.broke(what, pid, status).await),
            Err(_) => {
                let facts = self.stop_if(pid).await;
                Err(PluginError::new(
                    StepCode::DeadlineExceeded,
                    format!(
                        "plugin {} did not answer {what} within {}ms and was stopped (the next call starts it \
                         again); raise `deadline` in its manifest only if it is slow rather than stuck",
                        self.name(),
                        deadline.as_millis()
                    ),
                )
                .facts(facts))
            }
        }
    }

    /// A reply that is not an answer: the plugin is broken, so it is stopped.
    pub(crate) async fn garbage(&self, what: &str, why: String) -> PluginError {
        let facts = self.stop_if(None).await;
        self.failed(&format!("answered {what} with garbage: {why}"), facts)
    }

    fn failed(&self, what: &str, facts: Vec<String>) -> PluginError {
        PluginError::new(StepCode::PluginFailed, format!("plugin {} {what}", self.name())).facts(facts)
    }

    /// A call failed at the transport: say whether the process died, and how.
    async fn broke(&self, what: &str, pid: Option<u32>, status: tonic::Status) -> PluginError {
        let mut running = self.running.lock().await;
        let Some(r) = running.as_mut().filter(|r| r.child.id() == pid) else {
            return self.failed(&format!("failed {what}: {}", status.message()), Vec::new());
        };
        let exited = skiff_clock::timeout(self.clock.as_ref(), EXIT_GRACE, r.child.wait()).await;
        let mut facts = r.tail();
        let message = match exited {
            Ok(Ok(code)) => format!("exited during {what} ({code})"),
            _ => {
                let _ = r.child.start_kill();
                facts.push(format!("transport: {}", status.message()));
                format!("failed {what} and was stopped")
            }
        };
        *running = None;
        self.failed(&message, facts)
    }

    async fn stop_if(&self, pid: Option<u32>) -> Vec<String> {
        let mut running = self.running.lock().await;
        let Some(r) = running.as_mut().filter(|r| pid.is_none() || r.child.id() == pid) else { return Vec::new() };
        let facts = r.tail();
        let _ = r.child.start_kill();
        let _ = skiff_clock::timeout(self.clock.as_ref(), EXIT_GRACE, r.child.wait()).await;
        *running = None;
        facts
    }

    /// Starts the plugin unless a live process is there.
    async fn ensure(&self, running: &mut Option<Running>) -> Result<(), PluginError> {
        if let Some(r) = running.as_mut() {
            if matches!(r.child.try_wait(), Ok(None)) {
                return Ok(());
            }
            *running = None;
        }
        let started = skiff_clock::timeout(self.clock.as_ref(), self.deadline(), self.start()).await;
        match started {
            Ok(r) => {
                *running = Some(r?);
                Ok(())
            }
            Err(_) => Err(PluginError::new(
                StepCode::DeadlineExceeded,
                format!(
                    "plugin {} did not complete its handshake within {}ms and was stopped",
                    self.name(),
                    self.deadline().as_millis()
                ),
            )),
        }
    }

    async fn start(&self) -> Result<Running, PluginError> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-plugin-")
            .tempdir()
            .map_err(|e| self.failed(&format!("cannot have a private directory: {e}"), Vec::new()))?;
        let executable = self.plugin.verified_copy(dir.path())?;
        let socket = dir.path().join("plugin.sock");
        let mut child = self.spawn(&executable, &socket).await?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let lines = stderr.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(err).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let mut l = lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if l.len() == STDERR_LINES {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(self.failed("has no pipes to talk over", Vec::new())),
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = stdout.read_line(&mut line).await;
        if matches!(read, Ok(0) | Err(_)) {
            let status = skiff_clock::timeout(self.clock.as_ref(), EXIT_GRACE, child.wait()).await;
            let how = match status {
                Ok(Ok(s)) => format!(" ({s})"),
                _ => String::new(),
            };
            return Err(self.failed(&format!("exited before its handshake{how}"), tail(&stderr)));
        }
        let path = match skiff_plugin::handshake::parse(&line) {
            Ok(p) => p,
            Err(why) => return Err(self.failed(&format!("failed its handshake: {why}"), tail(&stderr))),
        };
        // Keep reading what it prints, so a chatty plugin never blocks on a full pipe.
        tokio::spawn(async move {
            let mut lines = stdout.lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        });
        let channel = Endpoint::from_static("http://plugin.invalid")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|e| self.failed(&format!("cannot be reached on its socket: {e}"), tail(&stderr)))?;
        let mut client = PluginClient::new(channel);
        let description = client
            .describe(DescribeRequest { protocol: skiff_plugin::PROTOCOL })
            .await
            .map_err(|e| self.failed(&format!("did not describe itself: {}", e.message()), tail(&stderr)))?
            .into_inner();
        self.matches_manifest(&description)?;
        Ok(Running { child, _stdin: stdin, client, stderr, description, _dir: dir })
    }

    /// Starts the verified copy. A copy that cannot run — `noexec` temporary
    /// directories — falls back to the installed file, checked again just before; a
    /// copy still held open by a concurrent fork (`ETXTBSY`) is tried again.
    async fn spawn(&self, copy: &std::path::Path, socket: &std::path::Path) -> Result<Child, PluginError> {
        let command = |exe: &std::path::Path| {
            let mut c = Command::new(exe);
            c.args(&self.plugin.manifest.args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env(skiff_plugin::COOKIE_VAR, skiff_plugin::COOKIE)
                .env(skiff_plugin::SOCKET_VAR, socket)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            c
        };
        let mut tries = 0;
        let err = loop {
            match command(copy).spawn() {
                Ok(child) => return Ok(child),
                Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 5 => {
                    tries += 1;
                    self.clock.sleep(Duration::from_millis(20)).await;
                }
                Err(e) => break e,
            }
        };
        let started = if err.kind() == std::io::ErrorKind::PermissionDenied {
            self.plugin.verify()?;
            command(&self.plugin.executable).spawn()
        } else {
            Err(err)
        };
        started.map_err(|e| {
            self.failed(&format!("could not be started ({}): {e}", self.plugin.executable.display()), Vec::new())
        })
    }

    fn matches_manifest(&self, d: &Description) -> Result<(), PluginError> {
        let m = &self.plugin.manifest;
        let offered =
            |k: &String| d.steps.contains(k) || d.checks.contains(k) || d.addons.contains(k) || d.recipes.contains(k);
        let declared = m.steps.iter().chain(&m.checks).chain(&m.addons).chain(&m.recipes);
        let missing: Vec<&String> = declared.filter(|k| !offered(k)).collect();
        if d.name != m.plugin || d.protocol != skiff_plugin::PROTOCOL || !missing.is_empty() {
            return Err(self.failed(
                &format!(
                    "is not what its manifest says: it calls itself {} {} (protocol {}) and serves {:?}; \
                     the manifest {} expects {} (protocol {}) serving {:?}",
                    d.name,
                    d.version,
                    d.protocol,
                    [&d.steps, &d.checks, &d.addons, &d.recipes],
                    self.plugin.manifest_path.display(),
                    m.plugin,
                    m.protocol,
                    [&m.steps, &m.checks, &m.addons, &m.recipes],
                ),
                Vec::new(),
            ));
        }
        Ok(())
    }
}
