//! The index skiffd answers reads from: one [`ServiceView`] per service, built from
//! the bucket (state, compiled specs, the latest intent, reconcile verdict, members).
//! It is a cache: rebuilt at start, refreshed on a timer and after every write, and
//! droppable at any time. An optional PostgreSQL copy serves the same views.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use skiff_state::docs::{MemberHealth, OperationIntent, ReconcileDoc, SyncStatus};
use skiff_state::{Ledger, keys};
use tokio::sync::RwLock;

/// What `GET /v1/services/{svc}/status` answers.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ServiceView {
    /// The service.
    pub service_name: String,
    /// `production`, `staging`, ... (from the desired spec).
    pub environment: String,
    /// What availability and cost asked for and got.
    pub decision: serde_json::Value,
    /// What realising the desired state would change.
    pub execution_plan: ExecutionPlan,
    /// `IN_SYNC`, `DRIFTED`, or `UNKNOWN` before the first reconcile.
    pub reconciliation_status: String,
    /// The differences behind a DRIFTED verdict.
    pub differences: serde_json::Value,
    /// Releases.
    pub release: Releases,
    /// Instances by health.
    pub health: Health,
    /// The operation working on the service, if any.
    pub active_operation: Option<String>,
    /// The latest intent recorded for it.
    pub latest_intent: Option<String>,
}

/// The actions from what runs to what is desired.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ExecutionPlan {
    /// The desired spec's digest.
    pub desired_digest: Option<String>,
    /// The deployed spec's digest.
    pub deployed_digest: Option<String>,
    /// Resource changes, in plan order; empty when deployed = desired.
    pub actions: Vec<serde_json::Value>,
}

/// A service's releases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Releases {
    /// Taking traffic.
    pub current: Option<String>,
    /// Last known good.
    pub stable: Option<String>,
    /// Being rolled out.
    pub candidate: Option<String>,
    /// Every release id, oldest first.
    pub all: Vec<String>,
}

/// Instances by health, from runner heartbeats.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Health {
    /// `healthy`, `degraded`, `unhealthy` or `unknown` (no instances reporting).
    pub state: String,
    /// Instances reporting.
    pub instances: u32,
    /// Of those, healthy.
    pub healthy: u32,
}

/// Where a snapshot keeps one service's rendered status answer.
pub type Answer = Arc<std::sync::OnceLock<bytes::Bytes>>;

/// A built index.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Views by service.
    pub services: BTreeMap<String, Arc<ServiceView>>,
    /// Each service's status answer, rendered by the first request that asks for it
    /// and kept with the snapshot (a view never changes within one).
    pub answers: BTreeMap<String, Answer>,
    /// Operations by id: saga, service, status.
    pub operations: BTreeMap<String, skiff_state::OperationEntry>,
    /// Events counted.
    pub events: u64,
    /// How long the build took.
    pub build_ms: u64,
    /// When its build began (ms since the epoch): every write before then is in it.
    pub built_at_ms: u64,
}

/// Builds every view from the bucket.
pub async fn build(ledger: &Ledger) -> Result<Snapshot, skiff_state::StateError> {
    let started = Instant::now();
    // What the snapshot is sure to contain: everything written before the build began.
    let started_at_ms = ledger.clock().now_ms();
    let index = ledger.rebuild_index().await?;
    // The newest intent operation of each service.
    let mut intents: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for (op, e) in &index.operations {
        if e.saga.as_deref() == Some("intent")
            && let Some(svc) = &e.service
        {
            let at = e.updated_at_ms.unwrap_or(0);
            let newer = intents.get(svc).is_none_or(|(t, o)| (at, op) > (*t, o));
            if newer {
                intents.insert(svc.clone(), (at, op.clone()));
            }
        }
    }
    let mut names: Vec<String> = index.services.keys().cloned().collect();
    names.extend(intents.keys().cloned());
    names.sort();
    names.dedup();
    let mut services = BTreeMap::new();
    for name in names {
        let view = view(ledger, &index, &name, intents.get(&name).map(|(_, op)| op.as_str())).await?;
        services.insert(name, Arc::new(view));
    }
    let answers = services.keys().map(|name| (name.clone(), Arc::default())).collect();
    Ok(Snapshot {
        services,
        answers,
        operations: index.operations,
        events: index.events,
        build_ms: started.elapsed().as_millis() as u64,
        built_at_ms: started_at_ms,
    })
}

/// One service's view; `intent` is its newest intent operation.
pub async fn view(
    ledger: &Ledger,
    index: &skiff_state::Index,
    name: &str,
    intent: Option<&str>,
) -> Result<ServiceView, skiff_state::StateError> {
    let entry = index.services.get(name).cloned().unwrap_or_default();
    let deployed = match &entry.spec_digest {
        Some(d) => Some(ledger.get_spec(d).await?),
        None => None,
    };
    let desired_digest = match intent {
        Some(op) => ledger
            .read::<OperationIntent>(&keys::op_intent(op))
            .await?
            .and_then(|i| i.params["ir_digest"].as_str().map(str::to_owned)),
        None => None,
    };
    let desired = match &desired_digest {
        Some(d) if Some(d) != entry.spec_digest.as_ref() => ledger.get_spec(d).await.ok(),
        _ => None,
    };
    let actions = match (&desired, &deployed) {
        (Some(want), have) => {
            let after = skiff_compiler::plan(want);
            let before = match have {
                Some(h) => skiff_compiler::plan(h),
                None => skiff_compiler::ResourcePlan { resources: Vec::new(), ..after.clone() },
            };
            skiff_compiler::diff_plans(&before, &after)
                .changes
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        }
        (None, _) => Vec::new(),
    };
    let shown = desired.as_ref().or(deployed.as_ref());
    let decision = shown.map_or(serde_json::Value::Null, |ir| {
        serde_json::json!({
            "availability_plan": ir.decision.availability_plan,
            "cost_plan": ir.decision.cost_plan,
        })
    });
    let environment = shown
        .and_then(|ir| ir.source.environment.as_ref().map(|e| e.as_str().to_owned()))
        .unwrap_or_else(|| "production".to_owned());
    let reconcile = ledger.read::<ReconcileDoc>(&keys::service_reconcile(name)).await?;
    let (reconciliation_status, differences) = match reconcile {
        Some(r) => (
            match r.status {
                SyncStatus::InSync => "IN_SYNC",
                SyncStatus::Drifted => "DRIFTED",
            }
            .to_owned(),
            serde_json::to_value(&r.differences).unwrap_or_default(),
        ),
        None => ("UNKNOWN".to_owned(), serde_json::json!([])),
    };
    let members = index.members.get(name);
    let current = entry.current_release.clone();
    let live: Vec<_> =
        members.map(|m| m.values().filter(|m| Some(&m.release) == current.as_ref()).collect()).unwrap_or_default();
    let healthy = live.iter().filter(|m| m.health == MemberHealth::Healthy).count() as u32;
    let instances = live.len() as u32;
    let state = match (instances, healthy) {
        (0, _) => "unknown",
        (n, h) if n == h => "healthy",
        (_, 0) => "unhealthy",
        _ => "degraded",
    };
    Ok(ServiceView {
        service_name: name.to_owned(),
        environment,
        decision,
        execution_plan: ExecutionPlan {
            desired_digest: desired_digest.or_else(|| entry.spec_digest.clone()),
            deployed_digest: entry.spec_digest.clone(),
            actions,
        },
        reconciliation_status,
        differences,
        release: Releases {
            current,
            stable: entry.stable_release.clone(),
            candidate: entry.candidate_release.clone(),
            all: index.releases.get(name).cloned().unwrap_or_default(),
        },
        health: Health { state: state.to_owned(), instances, healthy },
        active_operation: entry.active_operation.clone(),
        latest_intent: intent.map(str::to_owned),
    })
}

/// The view straight from the bucket, without an index: the service's state, spec,
/// reconcile verdict, releases and members read for this one request (what every read
/// would cost without the index; the benchmark's baseline). Intents are not looked up.
pub async fn view_from_bucket(ledger: &Ledger, name: &str) -> Result<Option<ServiceView>, skiff_state::StateError> {
    let Some(state) = ledger.read::<skiff_state::docs::ServiceState>(&keys::service_state(name)).await? else {
        return Ok(None);
    };
    let mut index = skiff_state::Index::default();
    index.services.insert(
        name.to_owned(),
        skiff_state::ServiceEntry {
            current_release: state.current_release,
            stable_release: state.stable_release,
            candidate_release: state.candidate_release,
            spec_digest: state.spec_digest,
            active_operation: state.active_operation,
            generation: state.cas.generation,
        },
    );
    for listed in ledger.store().list(&keys::releases(name)).await? {
        if let keys::KeyKind::Release { release, .. } = keys::classify(&listed.key) {
            index.releases.entry(name.to_owned()).or_default().push(release);
        }
    }
    for listed in ledger.store().list(&keys::members(name)).await? {
        if let keys::KeyKind::Member { instance, .. } = keys::classify(&listed.key)
            && let Some(m) = ledger.read::<skiff_state::docs::Member>(&listed.key).await?
        {
            index.members.entry(name.to_owned()).or_default().insert(
                instance,
                skiff_state::MemberEntry { release: m.release, health: m.health, updated_at_ms: m.updated_at_ms },
            );
        }
    }
    view(ledger, &index, name, None).await.map(Some)
}

/// Where reads are answered from.
#[derive(Clone, Debug)]
pub struct Index {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    /// One read-your-writes rebuild at a time; others wait for it.
    catch_up: Arc<tokio::sync::Mutex<()>>,
    postgres: Option<Arc<crate::postgres::PgIndex>>,
    /// `--index bucket`: answer each status straight from the bucket.
    direct: Option<Ledger>,
}

impl Index {
    /// An empty index; `postgres` also keeps a copy there and answers from it.
    pub fn new(postgres: Option<crate::postgres::PgIndex>) -> Self {
        Index { snapshot: Arc::default(), catch_up: Arc::default(), postgres: postgres.map(Arc::new), direct: None }
    }

    /// No index for status reads: every one is read from `ledger` (`--index bucket`;
    /// always current, and the benchmark's baseline).
    pub fn direct(ledger: Ledger) -> Self {
        Index { snapshot: Arc::default(), catch_up: Arc::default(), postgres: None, direct: Some(ledger) }
    }

    /// Rebuilds from the bucket and swaps the new snapshot in.
    pub async fn refresh(&self, ledger: &Ledger) -> anyhow::Result<Arc<Snapshot>> {
        let snapshot = Arc::new(build(ledger).await?);
        if let Some(pg) = &self.postgres {
            pg.replace(&snapshot).await?;
        }
        *self.snapshot.write().await = snapshot.clone();
        Ok(snapshot)
    }

    /// Makes sure the index holds every write made up to `ms` (ms since the epoch):
    /// rebuilds now when its snapshot began before then. Read-your-writes.
    pub async fn at_least(&self, ledger: &Ledger, ms: u64) -> anyhow::Result<()> {
        if self.direct.is_some() || self.snapshot.read().await.built_at_ms > ms {
            return Ok(());
        }
        let _one = self.catch_up.lock().await;
        if self.snapshot.read().await.built_at_ms > ms {
            return Ok(());
        }
        self.refresh(ledger).await.map(drop)
    }

    /// The current snapshot.
    pub async fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().await.clone()
    }

    /// One service's view.
    pub async fn service(&self, name: &str) -> anyhow::Result<Option<Arc<ServiceView>>> {
        Ok(self.service_and_answer(name).await?.map(|(view, _)| view))
    }

    /// One service's view and, when it comes from this replica's snapshot, where the
    /// snapshot keeps its rendered answer (the same snapshot's: never a newer view's
    /// answer for an older view, or the reverse).
    pub async fn service_and_answer(&self, name: &str) -> anyhow::Result<Option<(Arc<ServiceView>, Option<Answer>)>> {
        if let Some(ledger) = &self.direct {
            return Ok(view_from_bucket(ledger, name).await?.map(|v| (Arc::new(v), None)));
        }
        match &self.postgres {
            Some(pg) => Ok(pg.service(name).await?.map(|v| (Arc::new(v), None))),
            None => {
                let snapshot = self.snapshot.read().await;
                Ok(snapshot.services.get(name).map(|v| (v.clone(), snapshot.answers.get(name).cloned())))
            }
        }
    }
}
