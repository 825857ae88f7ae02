//! HTTP/JSON: `POST /v1/intents`, `GET /v1/services[/{svc}/status]`,
//! `GET /v1/operations/{id}`, `/healthz`, `/metrics` and `/v1/openapi.json`.
//!
//! Bodies are the envelope with its `data` object's fields lifted to the top level,
//! so `GET /v1/services/orders-api/status` answers `service_name`, `decision`, ...
//! beside `ok`, `code` and `summary`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use skiff_ops::{Request as Op, SagaRequest};
use skiff_sdk::{Code, Envelope, Safety};

use crate::auth::{Caller, Refusal, Role};
use crate::server::Server;

/// The HTTP status for a code.
pub fn status_for(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Usage | Code::SpecInvalid | Code::ConfigInvalid => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Conflict | Code::LeaseHeld | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PolicyDenied | Code::SignatureInvalid | Code::DigestMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        Code::StateUnavailable | Code::ProviderError => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The envelope as an HTTP answer.
pub fn answer(env: &Envelope) -> Response {
    let mut body = serde_json::to_value(env).unwrap_or_default();
    if let (Some(obj), serde_json::Value::Object(data)) = (body.as_object_mut(), &env.data) {
        for (k, v) in data {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    (status_for(env.code), axum::Json(body)).into_response()
}

/// The envelope for a refused request.
pub fn refusal(r: &Refusal) -> Envelope {
    match r {
        Refusal::Unauthenticated(why) => Envelope::failure(Code::Unauthenticated, "a valid bearer token is needed")
            .fact((*why).to_owned())
            .action("token", "skiffd token create --name NAME --role viewer", false, Safety::Reversible, 0.5),
        Refusal::Forbidden { caller, needs } => Envelope::failure(
            Code::PermissionDenied,
            format!("{} ({}) may not do this: it needs the {} role", caller.name, caller.role.as_str(), needs.as_str()),
        )
        .fact("nothing was changed"),
    }
}

fn authorize(server: &Server, headers: &HeaderMap, needs: Role) -> Result<Caller, Box<Response>> {
    let header = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    server.tokens.authorize(header, needs).map_err(|r| Box::new(answer(&refusal(&r))))
}

/// Every route.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v1/intents", post(intent))
        .route("/v1/services", get(services))
        .route("/v1/services/{svc}/status", get(status))
        .route("/v1/operations/{id}", get(operation))
        .route("/v1/openapi.json", get(|| async { axum::Json(crate::openapi::document()) }))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(server.clone(), observe))
        .with_state(server)
}

async fn observe(State(server): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    server.metrics.observe(&route, resp.status().as_u16(), started.elapsed());
    resp
}

async fn intent(State(server): State<Arc<Server>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let caller = match authorize(&server, &headers, Role::Operator) {
        Ok(c) => c,
        Err(r) => {
            let refused = Envelope::failure(Code::PermissionDenied, format!("refused with HTTP {}", r.status()));
            server.audit("anonymous", "api.intent.refused", "-", &refused).await;
            return *r;
        }
    };
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return answer(
            &skiff_ops::intent::bad_intent(
                "the Idempotency-Key header is missing: retries with the same key create nothing twice",
            )
            .envelope,
        );
    };
    let submitted = submit_intent(&server, &caller, &body, &key).await;
    server.audit(&caller.name, "api.intent", &skiff_ops::intent::intent_op(&key), &submitted.envelope).await;
    answer(&submitted.envelope)
}

/// Parses and records an intent (HTTP and gRPC share it).
pub async fn submit_intent(server: &Arc<Server>, caller: &Caller, body: &[u8], key: &str) -> skiff_sdk::Answer {
    let intent: skiff_ops::intent::Intent = match serde_json::from_slice(body) {
        Ok(i) => i,
        Err(e) => return skiff_ops::intent::bad_intent(&e.to_string()),
    };
    let key = key.to_owned();
    server
        .with_context(caller, Vec::new(), move |ctx| async move {
            skiff_ops::answer(skiff_ops::intent::submit(&ctx, &intent, &key).await)
        })
        .await
}

async fn services(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&server, &headers, Role::Viewer) {
        return *r;
    }
    let snap = server.index.snapshot().await;
    let list: Vec<_> = snap
        .services
        .values()
        .map(|v| {
            serde_json::json!({
                "service_name": v.service_name,
                "reconciliation_status": v.reconciliation_status,
                "release": v.release.current,
                "health": v.health.state,
            })
        })
        .collect();
    answer(&Envelope::ok(format!("{} services", list.len())).data(serde_json::json!({"services": list})))
}

async fn status(State(server): State<Arc<Server>>, headers: HeaderMap, Path(svc): Path<String>) -> Response {
    if let Err(r) = authorize(&server, &headers, Role::Viewer) {
        return *r;
    }
    match server.index.service(&svc).await {
        Ok(Some(view)) => {
            let summary = format!(
                "{} {}: release {}, {}",
                view.service_name,
                view.reconciliation_status,
                view.release.current.as_deref().unwrap_or("none"),
                view.health.state
            );
            answer(&Envelope::ok(summary).data(&*view))
        }
        Ok(None) => answer(&Envelope::failure(Code::NotFound, format!("no service `{svc}` is recorded")).action(
            "list",
            "curl $SKIFF_SERVER/v1/services",
            false,
            Safety::ReadOnly,
            0.6,
        )),
        Err(e) => answer(&Envelope::failure(Code::StateUnavailable, "the index cannot answer").fact(e.to_string())),
    }
}

async fn operation(State(server): State<Arc<Server>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let caller = match authorize(&server, &headers, Role::Viewer) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    answer(&server.run(&caller, Op::Saga(SagaRequest::Show { op: id }), Vec::new()).await.envelope)
}

async fn healthz(State(server): State<Arc<Server>>) -> Response {
    let snap = server.index.snapshot().await;
    let body = serde_json::json!({
        "ok": true,
        "index": {"services": snap.services.len(), "operations": snap.operations.len(), "built_at_ms": snap.built_at_ms},
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn metrics(State(server): State<Arc<Server>>) -> Response {
    let snap = server.index.snapshot().await;
    let text = server.metrics.render(&snap, server.ledger.clock().now_ms());
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
