//! The supervisor: the local provider's "cloud". A long-running process (`skiff local
//! serve`, started by `skiff local up`) that keeps instance groups at their desired
//! size — each instance a `skiff-runner` process in its own process group, replaced
//! when it dies — and runs one L7 load balancer per service ([`lb`]). Its state is
//! persisted, so a restarted supervisor re-adopts live instances; it answers a JSON
//! control API on 127.0.0.1 ([`routes`]).

pub(crate) mod lb;
mod mirror;
mod routes;
mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use skiff_clock::{Clock, IdGen, SystemClock};
use skiff_pluginapi::{
    GroupInfo, GroupSpec, InstanceInfo, InstanceState, LoadBalancerSpec, Target, TargetGroupSpec, Weight,
};

use crate::LocalDir;
use crate::api::Endpoint;

/// How to run a supervisor.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// The local provider's directory.
    pub dir: LocalDir,
    /// The `skiff-runner` binary instances run.
    pub runner: PathBuf,
    /// Arguments before the runner's own (e.g. `__runner` when `skiff` itself runs it).
    pub runner_args: Vec<String>,
    /// Control port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// Stop instances when this process exits (tests), instead of letting them run on.
    pub instances_exit_with: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Instance {
    id: String,
    port: u16,
    runner_pid: u32,
    zone: String,
    state: InstanceState,
    launched_at_ms: u64,
    exit: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Group {
    spec: GroupSpec,
    instances: Vec<Instance>,
    /// Consecutive instances that died within a minute (slows replacement).
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    next_launch_ms: u64,
}

/// What the supervisor persists (`supervisor/state.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Persisted {
    groups: BTreeMap<String, Group>,
    load_balancers: BTreeMap<String, (LoadBalancerSpec, Vec<Weight>)>,
    target_groups: BTreeMap<String, (TargetGroupSpec, Vec<skiff_pluginapi::Target>)>,
}

/// Shared by the control API, the reconcile loop and the load balancers.
pub(crate) struct Shared {
    config: SupervisorConfig,
    groups: Mutex<BTreeMap<String, Group>>,
    pub(crate) lbs: lb::Balancers,
    ids: IdGen,
    started_at_ms: u64,
    port: Mutex<u16>,
    shutdown: tokio::sync::Notify,
}

fn now() -> u64 {
    SystemClock.now_ms()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

/// Whether `pid` is still the runner of instance `id` and not an unrelated process that
/// reused the pid (after a reboot, say): its environment names the instance. An
/// environment that cannot be read does not disprove it.
fn runs_instance(pid: u32, id: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(env) => {
            let wanted = format!("SKIFF_INSTANCE={id}");
            env.split(|b| *b == 0).any(|var| var == wanted.as_bytes())
        }
        Err(_) => true,
    }
}

/// Kills what a dead runner left behind: processes of its process group that carry
/// its instance (the program it ran), as a machine that dies takes its processes with
/// it. Matching on the instance id guards against a reused process-group id.
fn kill_leftovers(runner_pid: u32, id: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the parenthesised name: state, ppid, pgrp, ...
        let pgrp = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok());
        let carries = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == format!("SKIFF_INSTANCE={id}").as_bytes()))
                || std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.to_string_lossy().contains(id))
        };
        if pgrp == Some(runner_pid)
            && carries(pid)
            && let Ok(raw) = i32::try_from(pid)
        {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

impl Shared {
    fn persist(&self) {
        let persisted = Persisted {
            groups: self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            load_balancers: self.lbs.persisted_lbs(),
            target_groups: self.lbs.persisted_tgs(),
        };
        let path = self.config.dir.supervisor_state();
        let tmp = path.with_extension("json.tmp");
        if let Ok(bytes) = serde_json::to_vec_pretty(&persisted)
            && std::fs::write(&tmp, bytes).is_ok()
        {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    pub(crate) fn group_info(&self, name: &str) -> Option<GroupInfo> {
        self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).map(info)
    }

    pub(crate) fn groups_of(&self, service: Option<&str>) -> Vec<GroupInfo> {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|g| service.is_none_or(|s| g.spec.service == s))
            .map(info)
            .collect()
    }

    pub(crate) fn create_group(&self, spec: GroupSpec) -> GroupInfo {
        let info = {
            let mut groups = self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let g = groups.entry(spec.name.clone()).or_insert_with(|| Group {
                spec: spec.clone(),
                instances: Vec::new(),
                failures: 0,
                next_launch_ms: 0,
            });
            info(g)
        };
        self.persist();
        info
    }

    /// What new instances of group `name` are launched with.
    pub(crate) fn launch_of(&self, name: &str) -> Option<skiff_pluginapi::LaunchConfig> {
        self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).map(|g| g.spec.launch.clone())
    }

    /// Replaces what new instances of group `name` are launched with (running ones keep
    /// theirs, as on a cloud's launch template).
    pub(crate) fn set_launch(&self, name: &str, launch: skiff_pluginapi::LaunchConfig) -> bool {
        let found = match self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(name) {
            Some(g) => {
                g.spec.launch = launch;
                true
            }
            None => false,
        };
        if found {
            self.persist();
        }
        found
    }

    pub(crate) fn set_desired(&self, name: &str, desired: u32) -> bool {
        let found = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(name)
            .map(|g| g.spec.desired = desired)
            .is_some();
        self.persist();
        found
    }

    pub(crate) fn terminate_instance(&self, group: &str, id: &str) -> bool {
        let target = {
            let mut groups = self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            groups.get_mut(group).and_then(|g| {
                let drain = g.spec.launch.drain_timeout_ms;
                g.instances.iter_mut().find(|i| i.id == id && i.state != InstanceState::Terminated).map(|i| {
                    i.state = InstanceState::Stopping;
                    (i.runner_pid, drain)
                })
            })
        };
        let Some((pid, drain)) = target else { return false };
        stop_runner(pid, drain);
        self.persist();
        true
    }

    pub(crate) fn delete_group(&self, name: &str) {
        let removed = self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name);
        if let Some(g) = removed {
            for i in g.instances.iter().filter(|i| i.state != InstanceState::Terminated) {
                stop_runner(i.runner_pid, g.spec.launch.drain_timeout_ms);
            }
        }
        self.persist();
    }

    fn stop_all(&self) {
        for g in self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values_mut() {
            for i in g.instances.iter_mut().filter(|i| i.state != InstanceState::Terminated) {
                stop_runner(i.runner_pid, g.spec.launch.drain_timeout_ms);
                i.state = InstanceState::Stopping;
            }
            g.spec.desired = 0;
        }
    }

    /// Marks instances whose runner died, launches or stops instances to match
    /// desired counts. Failed instances are replaced with growing delays.
    fn reconcile(self: &Arc<Self>) {
        let mut launches = Vec::new();
        {
            let mut groups = self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let t = now();
            for g in groups.values_mut() {
                for i in g.instances.iter_mut().filter(|i| i.state != InstanceState::Terminated) {
                    if !alive(i.runner_pid) || !runs_instance(i.runner_pid, &i.id) {
                        if i.state != InstanceState::Stopping && t.saturating_sub(i.launched_at_ms) < 60_000 {
                            g.failures += 1;
                            g.next_launch_ms = t + 500u64.saturating_mul(1 << g.failures.min(6)).min(30_000);
                        }
                        i.state = InstanceState::Terminated;
                        i.exit.get_or_insert_with(|| "the runner exited".to_owned());
                        kill_leftovers(i.runner_pid, &i.id);
                    } else if i.state == InstanceState::Pending && t.saturating_sub(i.launched_at_ms) > 300 {
                        i.state = InstanceState::Running;
                    }
                }
                g.instances
                    .retain(|i| i.state != InstanceState::Terminated || t.saturating_sub(i.launched_at_ms) < 600_000);
                let live: Vec<&Instance> = g
                    .instances
                    .iter()
                    .filter(|i| matches!(i.state, InstanceState::Pending | InstanceState::Running))
                    .collect();
                // An instance that has lived past a minute ends the streak of early deaths.
                if live.iter().any(|i| t.saturating_sub(i.launched_at_ms) >= 60_000) {
                    g.failures = 0;
                }
                let want = g.spec.desired as usize;
                if live.len() > want {
                    let mut extra: Vec<(u32, String)> = live.iter().map(|i| (i.runner_pid, i.id.clone())).collect();
                    extra.sort_by(|a, b| b.1.cmp(&a.1));
                    for (pid, id) in extra.into_iter().take(live.len() - want) {
                        if let Some(i) = g.instances.iter_mut().find(|i| i.id == id) {
                            i.state = InstanceState::Stopping;
                        }
                        stop_runner(pid, g.spec.launch.drain_timeout_ms);
                    }
                } else if live.len() < want && t >= g.next_launch_ms {
                    for n in 0..(want - live.len()) {
                        let zone = g
                            .spec
                            .zones
                            .get((g.instances.len() + n) % g.spec.zones.len().max(1))
                            .cloned()
                            .unwrap_or_default();
                        launches.push((g.spec.clone(), zone));
                    }
                }
            }
        }
        self.attach_targets();
        for (spec, zone) in launches {
            match self.launch(&spec, &zone) {
                Ok(instance) => {
                    if let Some(g) =
                        self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&spec.name)
                    {
                        g.instances.push(instance);
                    }
                }
                Err(e) => {
                    let mut groups = self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(g) = groups.get_mut(&spec.name) {
                        g.failures += 1;
                        g.next_launch_ms = now() + 5_000;
                    }
                    drop(groups);
                    let _ = std::fs::write(
                        self.config.dir.root().join("supervisor.last-error"),
                        format!("launch {}: {e}\n", spec.name),
                    );
                }
            }
        }
        self.persist();
    }

    /// Keeps each group's target group (the one of the same name, once a deploy made
    /// it) in step with the group, as an auto scaling group attached to a target group
    /// does: instances launched later (scale-ups, replacements) are registered, and
    /// stopping or dead ones deregistered, so traffic and health follow the group.
    fn attach_targets(&self) {
        let mut changes = Vec::new();
        {
            let groups = self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for g in groups.values() {
                let mut live = Vec::new();
                let mut gone = Vec::new();
                for i in g.instances.iter().filter(|i| i.port != 0) {
                    match i.state {
                        InstanceState::Running => {
                            live.push(Target { id: i.id.clone(), address: "127.0.0.1".to_owned(), port: i.port })
                        }
                        InstanceState::Stopping | InstanceState::Terminated => gone.push(i.id.clone()),
                        _ => {}
                    }
                }
                changes.push((g.spec.name.clone(), live, gone));
            }
        }
        for (tg, live, gone) in changes {
            self.lbs.attach(&tg, &live, &gone);
        }
    }

    /// The `skiff-runner` command of instance `id` of group `spec`: its settings in a
    /// clean environment, plus the AWS variables a bucket on S3 needs.
    fn runner_command(&self, spec: &GroupSpec, id: &str, port: u16, dir: &std::path::Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.config.runner);
        cmd.args(&self.config.runner_args);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SKIFF_STATE", &spec.launch.runner.bucket)
            .env("SKIFF_SERVICE", &spec.service)
            .env("SKIFF_RELEASE", &spec.release)
            .env("SKIFF_INSTANCE", id)
            .env("PORT", port.to_string())
            .env("SKIFF_PUBLIC_KEY_PEM", &spec.launch.runner.public_key_pem)
            .env("SKIFF_RUNNER_DIR", dir)
            .env("SKIFF_SECRETS", format!("local:{}", self.config.dir.secrets().display()))
            .env("SKIFF_HEARTBEAT_MS", spec.launch.runner.heartbeat_ms.to_string())
            .envs(&spec.launch.env)
            .envs(spec.trace.iter().map(|t| ("TRACEPARENT", t)))
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")));
        for key in
            ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"]
        {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd
    }

    /// The ports of every instance not yet terminated (one in back-off does not
    /// listen, yet its port is still its own).
    fn ports_in_use(&self) -> std::collections::BTreeSet<u16> {
        let groups = self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        groups
            .values()
            .flat_map(|g| g.instances.iter())
            .filter(|i| i.state != InstanceState::Terminated && i.port != 0)
            .map(|i| i.port)
            .collect()
    }

    /// Starts one `skiff-runner` for a group.
    fn launch(&self, spec: &GroupSpec, zone: &str) -> std::io::Result<Instance> {
        let id = self.ids.id("i");
        let port = match spec.launch.port {
            None => 0,
            Some(_) => crate::ports::free_port(&self.ports_in_use())?,
        };
        let dir = self.config.dir.instance(&spec.service, &spec.name, &id);
        std::fs::create_dir_all(&dir)?;
        let out = std::fs::File::create(dir.join("runner.out"))?;
        let mut cmd = self.runner_command(spec, &id, port, &dir);
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn()?;
        let pid = child.id();
        // Reap the runner when it exits so it does not linger as a zombie.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        if let Some(owner) = self.config.instances_exit_with {
            watch_owner(owner, pid);
        }
        Ok(Instance {
            id,
            port,
            runner_pid: pid,
            zone: zone.to_owned(),
            state: InstanceState::Pending,
            launched_at_ms: now(),
            exit: None,
        })
    }
}

fn info(g: &Group) -> GroupInfo {
    GroupInfo {
        name: g.spec.name.clone(),
        service: g.spec.service.clone(),
        release: g.spec.release.clone(),
        desired: g.spec.desired,
        instances: g
            .instances
            .iter()
            .map(|i| InstanceInfo {
                id: i.id.clone(),
                state: i.state,
                address: "127.0.0.1".to_owned(),
                port: (i.port != 0).then_some(i.port),
                provider_id: format!("pid:{}", i.runner_pid),
                zone: i.zone.clone(),
            })
            .collect(),
        provider_id: format!("local-group:{}", g.spec.name),
    }
}

/// SIGTERM to a runner (it drains its program), then SIGKILL to its whole process
/// group if it is still there after the drain time.
fn stop_runner(pid: u32, drain_ms: u64) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_millis(drain_ms + 5_000);
        while std::time::Instant::now() < deadline {
            if !alive(pid) {
                return;
            }
            SystemClock::block_for(Duration::from_millis(50));
        }
        let _ = kill(Pid::from_raw(-raw), Signal::SIGKILL);
    });
}

/// Stops `runner` when `owner` exits (tests bind instances to the test process).
fn watch_owner(owner: u32, runner: u32) {
    std::thread::spawn(move || {
        while alive(owner) && alive(runner) {
            SystemClock::block_for(Duration::from_millis(300));
        }
        if alive(runner) {
            stop_runner(runner, 500);
        }
    });
}

/// Runs a supervisor until `POST /v1/shutdown`.
pub async fn serve(config: SupervisorConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(config.dir.root().join("supervisor"))?;
    let persisted: Persisted = std::fs::read(config.dir.supervisor_state())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let shared = Arc::new(Shared {
        groups: Mutex::new(persisted.groups.clone()),
        lbs: lb::Balancers::default(),
        ids: IdGen::system(),
        started_at_ms: now(),
        port: Mutex::new(0),
        shutdown: tokio::sync::Notify::new(),
        config: config.clone(),
    });
    for (spec, targets) in persisted.target_groups.into_values() {
        shared.lbs.ensure_target_group(spec.clone());
        shared.lbs.register(&spec.name, &targets);
    }
    for (spec, weights) in persisted.load_balancers.into_values() {
        if let Err(e) = shared.lbs.ensure_load_balancer(spec.clone()).await {
            let _ = std::fs::write(
                config.dir.root().join("supervisor.last-error"),
                format!("listener {}: {e}\n", spec.listener_port),
            );
        }
        shared.lbs.set_weights(&spec.service, weights);
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    let port = listener.local_addr()?.port();
    *shared.port.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = port;
    let endpoint = Endpoint { pid: std::process::id(), port, started_at_ms: shared.started_at_ms };
    let tmp = config.dir.endpoint().with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&endpoint).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, config.dir.endpoint())?;

    let reconciler = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.reconcile()).await;
                SystemClock.sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let app = routes::router(shared.clone());
    let stopping = shared.clone();
    axum::serve(listener, app).with_graceful_shutdown(async move { stopping.shutdown.notified().await }).await?;
    reconciler.abort();
    shared.lbs.stop_all();
    shared.persist();
    if std::fs::read(config.dir.endpoint())
        .ok()
        .and_then(|b| serde_json::from_slice::<Endpoint>(&b).ok())
        .is_some_and(|e| e.pid == std::process::id())
    {
        let _ = std::fs::remove_file(config.dir.endpoint());
    }
    Ok(())
}
