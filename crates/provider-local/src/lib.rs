//! The local provider, the embedded default: an instance is a `skiff-runner` process
//! on 127.0.0.1 with its own port; an instance group per release; a weighted L7 load
//! balancer per service with health checks and per-target-group stats; secrets in an
//! encrypted file; logs under the local directory; a managed database is a real
//! PostgreSQL started with `initdb`/`pg_ctl`. A small supervisor process (started by
//! `skiff local up`) owns instances and load balancers so they outlive the CLI; any
//! later CLI process finds it again through `supervisor.json`.
#![warn(missing_docs)]

pub mod api;
mod client;
mod databases;
pub mod front;
mod ports;
mod posture;
pub mod supervisor;

use std::path::{Path, PathBuf};

pub use client::LocalProvider;
pub use supervisor::{SupervisorConfig, serve};

/// The local provider's directory (default `.skiff/local`, beside `.skiff/state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalDir(PathBuf);

impl LocalDir {
    /// The directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir(root.into())
    }

    /// Beside a `file://…/state` bucket (`…/local`); else `.skiff/local` under `cwd`.
    pub fn for_state(state_url: &str, cwd: &Path) -> Self {
        match state_url.strip_prefix("file://").map(Path::new).and_then(Path::parent) {
            Some(parent) => LocalDir(parent.join("local")),
            None => LocalDir(cwd.join(".skiff/local")),
        }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.0
    }

    /// `supervisor.json`: how to reach the running supervisor.
    pub fn endpoint(&self) -> PathBuf {
        self.0.join("supervisor.json")
    }

    /// The supervisor's persisted state.
    pub fn supervisor_state(&self) -> PathBuf {
        self.0.join("supervisor").join("state.json")
    }

    /// The supervisor's own log.
    pub fn supervisor_log(&self) -> PathBuf {
        self.0.join("supervisor").join("supervisor.log")
    }

    /// The encrypted secret store.
    pub fn secrets(&self) -> PathBuf {
        self.0.join("secrets")
    }

    /// An instance's working directory (artifact, logs).
    pub fn instance(&self, service: &str, group: &str, id: &str) -> PathBuf {
        self.0.join("instances").join(service).join(group).join(id)
    }

    /// Every instance directory of a service lives under this.
    pub fn instances_of(&self, service: &str) -> PathBuf {
        self.0.join("instances").join(service)
    }

    /// Database records.
    pub fn databases(&self) -> PathBuf {
        self.0.join("databases")
    }

    /// Where database clusters keep their data: beside the records, or — when Skiff
    /// runs as root and PostgreSQL as its own user — under that user's home. Removing
    /// the local directory leaves the latter; remove it with the directory.
    pub fn database_data(&self) -> PathBuf {
        databases::data_base(&self.databases()).unwrap_or_else(|_| self.databases())
    }

    /// Role records.
    pub fn identity(&self) -> PathBuf {
        self.0.join("identity")
    }
}
