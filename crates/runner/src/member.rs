//! The member document (`members/<svc>/<instance>.json`): the runner's heartbeat,
//! updated with compare-and-swap — release, health, restarts, RSS, CPU, and why it
//! refused or is unhealthy.

use skiff_state::docs::{Member as MemberDoc, MemberHealth, RunnerDetail};
use skiff_state::{Ledger, StateError, Update, keys};
use tokio::sync::Mutex;

use crate::Config;

/// The runner's handle on its member document (clones share it).
#[derive(Clone)]
pub(crate) struct Member {
    ledger: Ledger,
    key: String,
    service: String,
    instance: String,
    release: String,
    state: std::sync::Arc<Mutex<(MemberHealth, RunnerDetail)>>,
}

impl Member {
    pub(crate) async fn open(config: &Config) -> Result<Self, StateError> {
        let ledger = Ledger::open(&config.bucket, &skiff_objstore::OpenOptions::default())?;
        let detail = RunnerDetail {
            phase: "verifying".to_owned(),
            port: config.port,
            runner_pid: std::process::id(),
            started_at_ms: ledger.clock().now_ms(),
            ..RunnerDetail::default()
        };
        let member = Member {
            key: keys::member(&config.service, &config.instance),
            service: config.service.clone(),
            instance: config.instance.clone(),
            release: config.release.clone(),
            ledger,
            state: std::sync::Arc::new(Mutex::new((MemberHealth::Starting, detail))),
        };
        member.write().await?;
        Ok(member)
    }

    /// Removes the document (a task's runner is no member of its group).
    pub(crate) async fn remove(&self) -> Result<(), StateError> {
        let store = self.ledger.store();
        match store.get(&self.key).await? {
            Some(obj) => store.delete_if_match(&self.key, &obj.version).await.map_err(StateError::from),
            None => Ok(()),
        }
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Changes health and detail, then writes.
    pub(crate) async fn set(&self, health: MemberHealth, f: impl FnOnce(&mut RunnerDetail)) -> Result<(), StateError> {
        {
            let mut s = self.state.lock().await;
            s.0 = health;
            f(&mut s.1);
        }
        self.write().await
    }

    /// Changes detail only (kept for the next heartbeat).
    pub(crate) async fn note(&self, f: impl FnOnce(&mut RunnerDetail)) {
        f(&mut self.state.lock().await.1);
    }

    pub(crate) async fn health(&self) -> MemberHealth {
        self.state.lock().await.0
    }

    /// Writes the current state (a heartbeat).
    pub(crate) async fn write(&self) -> Result<(), StateError> {
        let (health, detail) = self.state.lock().await.clone();
        let now = self.ledger.clock().now_ms();
        self.ledger
            .update::<MemberDoc<RunnerDetail>, _>(&self.key, |_| {
                Ok(Update::Write(MemberDoc {
                    cas: Default::default(),
                    service: self.service.clone(),
                    instance: self.instance.clone(),
                    release: self.release.clone(),
                    health,
                    updated_at_ms: now,
                    detail: detail.clone(),
                }))
            })
            .await?;
        Ok(())
    }
}
