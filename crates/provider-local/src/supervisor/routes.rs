//! The control API (JSON over HTTP on 127.0.0.1), see [`crate::api`].

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use skiff_pluginapi::{GroupSpec, LaunchConfig, LoadBalancerSpec, Mirror, Target, TargetGroupSpec};

use super::Shared;
use crate::api::{
    ApiError, Deregister, Desired, RunTask, Shutdown, Status, TargetGroupEntry, TargetGroupStatus, Weights,
};

type S = State<Arc<Shared>>;

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(ApiError { code: "NOT_FOUND".into(), message: format!("{what} does not exist") }))
        .into_response()
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/groups", get(list_groups))
        .route("/v1/groups/{name}", put(create_group).get(get_group).delete(delete_group))
        .route("/v1/groups/{name}/desired", post(set_desired))
        .route("/v1/groups/{name}/launch", get(get_launch).put(put_launch))
        .route("/v1/groups/{name}/instances/{id}", axum::routing::delete(terminate))
        .route("/v1/lbs/{service}", put(ensure_lb).get(get_lb).delete(delete_lb))
        .route("/v1/lbs/{service}/weights", put(set_weights).get(get_weights))
        .route("/v1/lbs/{service}/mirror", put(set_mirror).get(get_mirror))
        .route("/v1/target-groups", get(list_tgs))
        .route("/v1/target-groups/{name}", put(ensure_tg).delete(delete_tg))
        .route("/v1/target-groups/{name}/targets", post(register))
        .route("/v1/target-groups/{name}/deregister", post(deregister))
        .route("/v1/target-groups/{name}/health", get(health))
        .route("/v1/target-groups/{name}/stats", get(stats))
        .route("/v1/tasks", post(run_task))
        .with_state(shared)
}

async fn status(State(s): S) -> Json<Status> {
    let port = *s.port.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(Status {
        pid: std::process::id(),
        port,
        started_at_ms: s.started_at_ms,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        runner: s.config.runner.display().to_string(),
        groups: s.groups_of(None),
        load_balancers: s.lbs.all_lbs(),
        target_groups: s
            .lbs
            .target_groups()
            .into_iter()
            .map(|(name, service, targets)| TargetGroupStatus { name, service, targets })
            .collect(),
    })
}

async fn shutdown(State(s): S, Json(req): Json<Shutdown>) -> StatusCode {
    if req.stop_instances {
        s.stop_all();
    }
    s.persist();
    s.shutdown.notify_one();
    StatusCode::ACCEPTED
}

#[derive(Deserialize)]
struct ServiceQuery {
    service: Option<String>,
}

async fn list_groups(State(s): S, Query(q): Query<ServiceQuery>) -> Response {
    Json(s.groups_of(q.service.as_deref())).into_response()
}

async fn create_group(State(s): S, Path(name): Path<String>, Json(spec): Json<GroupSpec>) -> Response {
    if spec.name != name {
        return (
            StatusCode::BAD_REQUEST,
            Json(ApiError { code: "USAGE".into(), message: "path and body name differ".into() }),
        )
            .into_response();
    }
    Json(s.create_group(spec)).into_response()
}

async fn get_group(State(s): S, Path(name): Path<String>) -> Response {
    s.group_info(&name).map_or_else(|| not_found(&format!("group {name}")), |g| Json(g).into_response())
}

async fn delete_group(State(s): S, Path(name): Path<String>) -> StatusCode {
    s.delete_group(&name);
    StatusCode::NO_CONTENT
}

async fn set_desired(State(s): S, Path(name): Path<String>, Json(d): Json<Desired>) -> Response {
    if s.set_desired(&name, d.desired) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&format!("group {name}"))
    }
}

async fn get_launch(State(s): S, Path(name): Path<String>) -> Response {
    s.launch_of(&name).map_or_else(|| not_found(&format!("group {name}")), |l| Json(l).into_response())
}

async fn put_launch(State(s): S, Path(name): Path<String>, Json(launch): Json<LaunchConfig>) -> Response {
    if s.set_launch(&name, launch) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&format!("group {name}"))
    }
}

async fn list_tgs(State(s): S) -> Json<Vec<TargetGroupEntry>> {
    Json(s.lbs.persisted_tgs().into_values().map(|(spec, targets)| TargetGroupEntry { spec, targets }).collect())
}

async fn terminate(State(s): S, Path((group, id)): Path<(String, String)>) -> Response {
    if s.terminate_instance(&group, &id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&format!("instance {id} of {group}"))
    }
}

async fn ensure_lb(State(s): S, Path(service): Path<String>, Json(spec): Json<LoadBalancerSpec>) -> Response {
    if spec.service != service {
        return (
            StatusCode::BAD_REQUEST,
            Json(ApiError { code: "USAGE".into(), message: "path and body service differ".into() }),
        )
            .into_response();
    }
    match s.lbs.ensure_load_balancer(spec).await {
        Ok(info) => {
            s.persist();
            Json(info).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, Json(ApiError { code: "PROVIDER_ERROR".into(), message: e.to_string() }))
            .into_response(),
    }
}

async fn get_lb(State(s): S, Path(service): Path<String>) -> Response {
    s.lbs
        .lb_info(&service)
        .map_or_else(|| not_found(&format!("load balancer of {service}")), |i| Json(i).into_response())
}

async fn delete_lb(State(s): S, Path(service): Path<String>) -> StatusCode {
    s.lbs.delete_load_balancer(&service);
    s.persist();
    StatusCode::NO_CONTENT
}

async fn set_weights(State(s): S, Path(service): Path<String>, Json(w): Json<Weights>) -> Response {
    if s.lbs.set_weights(&service, w.weights) {
        s.persist();
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&format!("load balancer of {service}"))
    }
}

async fn get_weights(State(s): S, Path(service): Path<String>) -> Response {
    s.lbs.weights(&service).map_or_else(
        || not_found(&format!("load balancer of {service}")),
        |w| Json(Weights { weights: w }).into_response(),
    )
}

async fn set_mirror(State(s): S, Path(service): Path<String>, Json(m): Json<Option<Mirror>>) -> Response {
    if s.lbs.set_mirror(&service, m) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&format!("load balancer of {service}"))
    }
}

async fn get_mirror(State(s): S, Path(service): Path<String>) -> Response {
    s.lbs
        .mirror_report(&service)
        .map_or_else(|| not_found(&format!("load balancer of {service}")), |r| Json(r).into_response())
}

async fn ensure_tg(State(s): S, Path(name): Path<String>, Json(spec): Json<TargetGroupSpec>) -> Response {
    if spec.name != name {
        return (
            StatusCode::BAD_REQUEST,
            Json(ApiError { code: "USAGE".into(), message: "path and body name differ".into() }),
        )
            .into_response();
    }
    s.lbs.ensure_target_group(spec);
    s.persist();
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_tg(State(s): S, Path(name): Path<String>) -> StatusCode {
    s.lbs.delete_target_group(&name);
    s.persist();
    StatusCode::NO_CONTENT
}

async fn register(State(s): S, Path(name): Path<String>, Json(targets): Json<Vec<Target>>) -> Response {
    if s.lbs.register(&name, &targets) {
        s.persist();
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&format!("target group {name}"))
    }
}

async fn deregister(State(s): S, Path(name): Path<String>, Json(d): Json<Deregister>) -> Response {
    if s.lbs.deregister(&name, &d.targets) {
        s.persist();
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&format!("target group {name}"))
    }
}

async fn health(State(s): S, Path(name): Path<String>) -> Response {
    s.lbs.health(&name).map_or_else(|| not_found(&format!("target group {name}")), |h| Json(h).into_response())
}

async fn stats(State(s): S, Path(name): Path<String>) -> Response {
    s.lbs.stats(&name).map_or_else(|| not_found(&format!("target group {name}")), |h| Json(h).into_response())
}

async fn run_task(State(s): S, Json(req): Json<RunTask>) -> Response {
    match s.run_task(&req.task, req.owner).await {
        Ok(outcome) => Json(outcome).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ApiError { code: "PROVIDER_ERROR".into(), message: format!("task {}: {e}", req.task.id) }),
        )
            .into_response(),
    }
}
