//! The supervisor's control API: request and response shapes shared by the server
//! (in `skiff local serve`) and the client ([`crate::LocalProvider`]).

use serde::{Deserialize, Serialize};
use skiff_pluginapi::{GroupInfo, LoadBalancerInfo, TargetHealth, Weight};

/// `GET /v1/status`: what the supervisor runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Supervisor process id.
    pub pid: u32,
    /// Its control port on 127.0.0.1.
    pub port: u16,
    /// When it started.
    pub started_at_ms: u64,
    /// Its version.
    pub version: String,
    /// The runner binary it launches.
    pub runner: String,
    /// Instance groups.
    pub groups: Vec<GroupInfo>,
    /// Load balancers.
    pub load_balancers: Vec<LoadBalancerInfo>,
    /// Target groups and their targets' health.
    pub target_groups: Vec<TargetGroupStatus>,
}

/// One target group in [`Status`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupStatus {
    /// Name.
    pub name: String,
    /// Service.
    pub service: String,
    /// Targets' health.
    pub targets: Vec<TargetHealth>,
}

/// `POST /v1/groups/{name}/desired`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// Instances to keep running.
    pub desired: u32,
}

/// `PUT /v1/lbs/{service}/weights`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// The new weights.
    pub weights: Vec<Weight>,
}

/// `POST /v1/target-groups/{name}/deregister`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deregister {
    /// Target ids.
    pub targets: Vec<String>,
}

/// `POST /v1/shutdown`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shutdown {
    /// Also stop every instance (they keep running otherwise, like VMs without their control plane).
    pub stop_instances: bool,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Taxonomy code.
    pub code: String,
    /// Message.
    pub message: String,
}

/// `supervisor.json` in the local directory: how to reach a running supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Process id.
    pub pid: u32,
    /// Control port on 127.0.0.1.
    pub port: u16,
    /// When it started.
    pub started_at_ms: u64,
}

/// `POST /v1/tasks`: run a task of a release once; answered with its `TaskOutcome`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunTask {
    /// The task.
    pub task: skiff_pluginapi::TaskSpec,
    /// The asking process: the task is killed if it exits.
    pub owner: Option<u32>,
}

/// `GET /v1/target-groups`: a target group with the targets registered in it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroupEntry {
    /// The target group.
    pub spec: skiff_pluginapi::TargetGroupSpec,
    /// Its targets.
    pub targets: Vec<skiff_pluginapi::Target>,
}
