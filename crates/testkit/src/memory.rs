//! An in-memory provider for logic tests and the deterministic simulation: instances
//! start at once and are healthy as soon as they are registered, each target group
//! answers a steady stream of requests in proportion to its weight (timed by the
//! clock it is given), and every change is journaled so a test can check that each
//! effect happened once. Real providers are tested against the real thing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use skiff_clock::Clock;
use skiff_pluginapi::{
    Compute, ConnectionInfo, Database, DatabaseInfo, DatabaseSpec, GroupInfo, GroupSpec, HealthState, Identity,
    InstanceInfo, InstanceState, LATENCY_BUCKETS_MS, LoadBalancerInfo, LoadBalancerSpec, LogLine, LogQuery, Logs,
    Provider, ProviderError, Result, RoleInfo, RoleSpec, Secrets, SnapshotInfo, Target, TargetGroupSpec, TargetHealth,
    Traffic, TrafficStats, Weight,
};

/// Requests per second the whole listener carries.
const REQUESTS_PER_SECOND: u64 = 200;
/// The latency every request takes, in ms.
const LATENCY_MS: u64 = 5;

#[derive(Debug, Default)]
struct TargetGroup {
    targets: Vec<Target>,
    /// Requests answered so far, and when they were last counted.
    requests: u64,
    counted_at_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<String, GroupInfo>,
    listeners: BTreeMap<String, (u16, Vec<Weight>)>,
    target_groups: BTreeMap<String, TargetGroup>,
    secrets: BTreeMap<String, String>,
    roles: BTreeMap<String, RoleInfo>,
    databases: BTreeMap<String, DatabaseInfo>,
    /// Whether each group's instances serve on a port.
    ports: BTreeMap<String, Option<u16>>,
    journal: Vec<String>,
    next_instance: u64,
}

/// The in-memory provider. Clones share state.
#[derive(Clone, Debug)]
pub struct MemoryProvider {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl MemoryProvider {
    /// A provider with nothing in it, timing traffic on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryProvider { state: Arc::default(), clock }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every effect so far, in order: `create-group NAME`, `delete-group NAME`,
    /// `weights SERVICE TG=W,...`, `register TG N`, `deregister TG N`, ...
    pub fn journal(&self) -> Vec<String> {
        self.lock().journal.clone()
    }

    /// The groups that exist.
    pub fn group_names(&self) -> Vec<String> {
        self.lock().groups.keys().cloned().collect()
    }

    /// The weights of `service`'s listener, zero weights left out.
    pub fn live_weights(&self, service: &str) -> Vec<Weight> {
        let st = self.lock();
        st.listeners.get(service).map(|(_, w)| w.iter().filter(|w| w.weight > 0).cloned().collect()).unwrap_or_default()
    }

    /// Counts the requests each target group answered since the last count, at its
    /// current weight.
    fn count(&self, st: &mut State) {
        let now = self.clock.now_ms();
        let mut weight_of: BTreeMap<String, u64> = BTreeMap::new();
        for (_, weights) in st.listeners.values() {
            for w in weights {
                weight_of.insert(w.target_group.clone(), u64::from(w.weight));
            }
        }
        for (name, tg) in &mut st.target_groups {
            let elapsed = now.saturating_sub(tg.counted_at_ms);
            let share = weight_of.get(name).copied().unwrap_or(0);
            if !tg.targets.is_empty() {
                tg.requests += elapsed * REQUESTS_PER_SECOND * share / 100 / 1000;
            }
            tg.counted_at_ms = now;
        }
    }
}

fn instance(id: String, n: u64, zone: &str, port: Option<u16>) -> InstanceInfo {
    InstanceInfo {
        id: id.clone(),
        state: InstanceState::Running,
        address: "127.0.0.1".to_owned(),
        port: port.map(|_| 20_000 + u16::try_from(n % 40_000).unwrap_or(0)),
        provider_id: format!("mem-{id}"),
        zone: zone.to_owned(),
    }
}

fn resize(st: &mut State, group: &str, desired: u32) {
    let port = st.ports.get(group).copied().flatten();
    let Some(mut g) = st.groups.remove(group) else { return };
    while g.instances.len() < desired as usize {
        st.next_instance += 1;
        let n = st.next_instance;
        g.instances.push(instance(format!("{group}-i{n}"), n, "mem-a", port));
    }
    g.instances.truncate(desired as usize);
    g.desired = desired;
    st.groups.insert(group.to_owned(), g);
}

#[async_trait]
impl Compute for MemoryProvider {
    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo> {
        let mut st = self.lock();
        if let Some(g) = st.groups.get(&spec.name) {
            return Ok(g.clone());
        }
        let mut instances = Vec::new();
        for _ in 0..spec.desired {
            st.next_instance += 1;
            let n = st.next_instance;
            let zone = spec.zones.first().map_or("mem-a", String::as_str);
            instances.push(instance(format!("{}-i{n}", spec.name), n, zone, spec.launch.port));
        }
        let g = GroupInfo {
            name: spec.name.clone(),
            service: spec.service.clone(),
            release: spec.release.clone(),
            desired: spec.desired,
            instances,
            provider_id: format!("mem-group-{}", spec.name),
        };
        st.groups.insert(spec.name.clone(), g.clone());
        st.ports.insert(spec.name.clone(), spec.launch.port);
        st.journal.push(format!("create-group {}", spec.name));
        Ok(g)
    }

    async fn set_desired(&self, group: &str, desired: u32) -> Result<()> {
        let mut st = self.lock();
        if !st.groups.contains_key(group) {
            return Err(ProviderError::not_found(format!("group {group}")));
        }
        resize(&mut st, group, desired);
        st.journal.push(format!("set-desired {group} {desired}"));
        Ok(())
    }

    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>> {
        Ok(self.lock().groups.get(group).cloned())
    }

    async fn list_groups(&self, service: &str) -> Result<Vec<GroupInfo>> {
        Ok(self.lock().groups.values().filter(|g| g.service == service).cloned().collect())
    }

    async fn terminate_instance(&self, group: &str, instance: &str) -> Result<()> {
        let mut st = self.lock();
        if let Some(g) = st.groups.get_mut(group) {
            g.instances.retain(|i| i.id != instance);
        }
        st.journal.push(format!("terminate {group} {instance}"));
        Ok(())
    }

    async fn delete_group(&self, group: &str) -> Result<()> {
        let mut st = self.lock();
        if st.groups.remove(group).is_some() {
            st.journal.push(format!("delete-group {group}"));
        }
        Ok(())
    }
    /// Journals `run-task TASK RELEASE` and answers exit 0.
    async fn run_task(&self, spec: &skiff_pluginapi::TaskSpec) -> Result<skiff_pluginapi::TaskOutcome> {
        self.lock().journal.push(format!("run-task {} {}", spec.task, spec.group.release));
        Ok(skiff_pluginapi::TaskOutcome { exit_code: 0, output: format!("{} ran\n", spec.task), duration_ms: 1 })
    }
}

#[async_trait]
impl Traffic for MemoryProvider {
    async fn ensure_load_balancer(&self, spec: &LoadBalancerSpec) -> Result<LoadBalancerInfo> {
        let mut st = self.lock();
        let (port, weights) =
            st.listeners.entry(spec.service.clone()).or_insert((spec.listener_port, Vec::new())).clone();
        Ok(LoadBalancerInfo {
            service: spec.service.clone(),
            address: format!("127.0.0.1:{port}"),
            weights,
            provider_id: format!("mem-lb-{}", spec.service),
        })
    }

    async fn ensure_target_group(&self, spec: &TargetGroupSpec) -> Result<()> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if !st.target_groups.contains_key(&spec.name) {
            st.target_groups.insert(spec.name.clone(), TargetGroup { counted_at_ms: now, ..TargetGroup::default() });
            st.journal.push(format!("create-target-group {}", spec.name));
        }
        Ok(())
    }

    async fn register(&self, target_group: &str, targets: &[Target]) -> Result<()> {
        let mut st = self.lock();
        self.count(&mut st);
        let tg = st.target_groups.get_mut(target_group).ok_or_else(|| ProviderError::not_found(target_group))?;
        let mut added = 0;
        for t in targets {
            if !tg.targets.iter().any(|x| x.id == t.id) {
                tg.targets.push(t.clone());
                added += 1;
            }
        }
        if added > 0 {
            st.journal.push(format!("register {target_group} {added}"));
        }
        Ok(())
    }

    async fn deregister(&self, target_group: &str, target_ids: &[String]) -> Result<()> {
        let mut st = self.lock();
        self.count(&mut st);
        if let Some(tg) = st.target_groups.get_mut(target_group) {
            let before = tg.targets.len();
            tg.targets.retain(|t| !target_ids.contains(&t.id));
            let removed = before - tg.targets.len();
            if removed > 0 {
                st.journal.push(format!("deregister {target_group} {removed}"));
            }
        }
        Ok(())
    }

    async fn set_weights(&self, service: &str, weights: &[Weight]) -> Result<()> {
        let mut st = self.lock();
        self.count(&mut st);
        let entry =
            st.listeners.get_mut(service).ok_or_else(|| ProviderError::not_found(format!("listener {service}")))?;
        let mut w = weights.to_vec();
        w.sort();
        if entry.1 != w {
            entry.1 = w.clone();
            let text: Vec<String> = w.iter().map(|w| format!("{}={}", w.target_group, w.weight)).collect();
            st.journal.push(format!("weights {service} {}", text.join(",")));
        }
        Ok(())
    }

    async fn weights(&self, service: &str) -> Result<Vec<Weight>> {
        Ok(self.lock().listeners.get(service).map(|(_, w)| w.clone()).unwrap_or_default())
    }

    async fn target_health(&self, target_group: &str) -> Result<Vec<TargetHealth>> {
        let st = self.lock();
        let tg = st.target_groups.get(target_group).ok_or_else(|| ProviderError::not_found(target_group))?;
        Ok(tg
            .targets
            .iter()
            .map(|t| TargetHealth { id: t.id.clone(), state: HealthState::Healthy, reason: None })
            .collect())
    }

    async fn stats(&self, target_group: &str) -> Result<TrafficStats> {
        let mut st = self.lock();
        self.count(&mut st);
        let requests = st.target_groups.get(target_group).map_or(0, |t| t.requests);
        let mut buckets = vec![0; LATENCY_BUCKETS_MS.len()];
        let i = LATENCY_BUCKETS_MS.iter().position(|b| LATENCY_MS <= *b).unwrap_or(0);
        buckets[i] = requests;
        Ok(TrafficStats { requests, errors: 0, latency_buckets: buckets })
    }

    async fn delete_target_group(&self, target_group: &str) -> Result<()> {
        let mut st = self.lock();
        if st.target_groups.remove(target_group).is_some() {
            st.journal.push(format!("delete-target-group {target_group}"));
        }
        Ok(())
    }

    async fn describe_load_balancer(&self, service: &str) -> Result<Option<LoadBalancerInfo>> {
        Ok(self.lock().listeners.get(service).map(|(port, weights)| LoadBalancerInfo {
            service: service.to_owned(),
            address: format!("127.0.0.1:{port}"),
            weights: weights.clone(),
            provider_id: format!("mem-lb-{service}"),
        }))
    }
}

#[async_trait]
impl Logs for MemoryProvider {
    async fn ensure_log_group(&self, _name: &str, _retention_days: u32) -> Result<()> {
        Ok(())
    }

    async fn read(&self, _query: &LogQuery) -> Result<Vec<LogLine>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl Secrets for MemoryProvider {
    async fn put(&self, reference: &str, value: &str) -> Result<()> {
        self.lock().secrets.insert(reference.to_owned(), value.to_owned());
        Ok(())
    }

    async fn exists(&self, reference: &str) -> Result<bool> {
        Ok(self.lock().secrets.contains_key(reference))
    }

    async fn list(&self, name: &str) -> Result<Vec<String>> {
        let prefix = format!("secret://{name}/");
        Ok(self
            .lock()
            .secrets
            .keys()
            .filter(|k| k.starts_with(&prefix) || *k == &format!("secret://{name}"))
            .cloned()
            .collect())
    }

    async fn delete(&self, reference: &str) -> Result<()> {
        self.lock().secrets.remove(reference);
        Ok(())
    }
}

#[async_trait]
impl Identity for MemoryProvider {
    async fn ensure_role(&self, role: &RoleSpec) -> Result<RoleInfo> {
        let info = RoleInfo {
            name: role.name.clone(),
            permissions: role.permissions.clone(),
            provider_id: format!("mem-role-{}", role.name),
        };
        let mut st = self.lock();
        if st.roles.get(&role.name) != Some(&info) {
            st.roles.insert(role.name.clone(), info.clone());
            st.journal.push(format!("role {}", role.name));
        }
        Ok(info)
    }

    async fn describe_role(&self, name: &str) -> Result<Option<RoleInfo>> {
        Ok(self.lock().roles.get(name).cloned())
    }

    async fn delete_role(&self, name: &str) -> Result<()> {
        self.lock().roles.remove(name);
        Ok(())
    }
}

#[async_trait]
impl Database for MemoryProvider {
    async fn create(&self, spec: &DatabaseSpec) -> Result<DatabaseInfo> {
        let info = DatabaseInfo {
            id: spec.id.clone(),
            status: "available".to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 5432,
            provider_id: format!("mem-db-{}", spec.id),
        };
        self.lock().databases.entry(spec.id.clone()).or_insert(info.clone());
        Ok(info)
    }

    async fn describe(&self, id: &str) -> Result<Option<DatabaseInfo>> {
        Ok(self.lock().databases.get(id).cloned())
    }

    async fn snapshot(&self, id: &str, snapshot_id: &str) -> Result<SnapshotInfo> {
        Ok(SnapshotInfo {
            id: snapshot_id.to_owned(),
            database: id.to_owned(),
            provider_ref: format!("mem-snap-{snapshot_id}"),
            size_bytes: Some(0),
        })
    }

    async fn restore(&self, _snapshot: &SnapshotInfo, spec: &DatabaseSpec) -> Result<DatabaseInfo> {
        self.create(spec).await
    }

    async fn connection(&self, id: &str) -> Result<ConnectionInfo> {
        Ok(ConnectionInfo {
            host: "127.0.0.1".to_owned(),
            port: 5432,
            database: id.to_owned(),
            user: "skiff".to_owned(),
            url_ref: format!("secret://{id}/url"),
        })
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.lock().databases.remove(id);
        Ok(())
    }

    async fn disable_login(&self, id: &str, user: &str) -> Result<()> {
        self.lock().journal.push(format!("disable-login {id} {user}"));
        Ok(())
    }
}

impl Provider for MemoryProvider {
    fn name(&self) -> &str {
        "memory"
    }

    fn compute(&self) -> &dyn Compute {
        self
    }

    fn traffic(&self) -> &dyn Traffic {
        self
    }

    fn logs(&self) -> &dyn Logs {
        self
    }

    fn secrets(&self) -> &dyn Secrets {
        self
    }

    fn identity(&self) -> &dyn Identity {
        self
    }

    fn database(&self) -> &dyn Database {
        self
    }
}
