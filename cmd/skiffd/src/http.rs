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
        Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The envelope as an HTTP answer.
pub fn answer(env: &Envelope) -> Response {
    (status_for(env.code), axum::Json(body(env))).into_response()
}

/// The JSON of an answer: the envelope, with `data`'s fields also at the top level.
fn body(env: &Envelope) -> serde_json::Value {
    let mut body = serde_json::to_value(env).unwrap_or_default();
    if let (Some(obj), serde_json::Value::Object(data)) = (body.as_object_mut(), &env.data) {
        for (k, v) in data {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    body
}

/// A 200 answer already rendered (the same bytes [`answer`] would write).
fn rendered(bytes: bytes::Bytes) -> Response {
    ([(http::header::CONTENT_TYPE, "application/json")], bytes).into_response()
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
        Refusal::RateLimited { who, retry_after_ms, why } => {
            Envelope::failure(Code::RateLimited, format!("{who}: {why}; retry in {} s", retry_after_ms.div_ceil(1000)))
                .fact("nothing was changed")
                .fact(format!("retry_after_ms: {retry_after_ms}"))
        }
    }
}

/// A refusal as an HTTP answer: 429 ones say when to retry.
pub fn refused(r: &Refusal) -> Response {
    let mut resp = answer(&refusal(r));
    if let Refusal::RateLimited { retry_after_ms, .. } = r
        && let Ok(v) = http::HeaderValue::from_str(&retry_after_ms.div_ceil(1000).max(1).to_string())
    {
        resp.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    resp
}

async fn authorize(server: &Server, headers: &HeaderMap, needs: Role) -> Result<Caller, Box<Response>> {
    let header = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    server.auth.authorize(header, needs).await.map_err(|r| Box::new(refused(&r)))
}

/// The consistency token a read sent, if any.
fn consistency(headers: &HeaderMap) -> Option<u64> {
    headers.get(crate::server::CONSISTENCY).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

/// An answer carrying a consistency token.
fn with_token(mut resp: Response, ms: u64) -> Response {
    if let Ok(v) = http::HeaderValue::from_str(&ms.to_string()) {
        resp.headers_mut().insert(crate::server::CONSISTENCY, v);
    }
    resp
}

/// Read-your-writes before a read: the index holds what this replica's clients saw
/// and what the caller's token names.
async fn caught_up(server: &Server, headers: &HeaderMap) -> Result<(), Box<Response>> {
    server.read_your_writes(consistency(headers)).await.map_err(|e| {
        Box::new(answer(
            &Envelope::failure(Code::StateUnavailable, "the index cannot catch up with the bucket").fact(e.to_string()),
        ))
    })
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
        .route("/readyz", get(readyz))
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

/// The largest intent body read.
pub const INTENT_BYTES: usize = 1024 * 1024;

async fn intent(State(server): State<Arc<Server>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let caller = match authorize(&server, &headers, Role::Operator).await {
        Ok(c) => c,
        Err(r) => {
            let refused = Envelope::failure(Code::PermissionDenied, format!("refused with HTTP {}", r.status()));
            server.audit("anonymous", "api.intent.refused", "-", &refused).await;
            return *r;
        }
    };
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if !json {
        let env = Envelope::failure(Code::Usage, "an intent is JSON: send `content-type: application/json`")
            .fact("nothing was recorded");
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, axum::Json(serde_json::to_value(&env).unwrap_or_default()))
            .into_response();
    }
    let _slot = match server.submission_slot(&caller.name).await {
        Ok(s) => s,
        Err(r) => return refused(&r),
    };
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return answer(
            &skiff_ops::intent::bad_intent(
                "the Idempotency-Key header is missing: retries with the same key create nothing twice",
            )
            .envelope,
        );
    };
    let Ok(body) = axum::body::to_bytes(body, INTENT_BYTES).await else {
        let env = Envelope::failure(Code::Usage, format!("an intent body is at most {INTENT_BYTES} bytes"))
            .fact("nothing was recorded");
        return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(serde_json::to_value(&env).unwrap_or_default()))
            .into_response();
    };
    let submitted = submit_intent(&server, &caller, &body, &key).await;
    server.audit(&caller.name, "api.intent", &skiff_ops::intent::intent_op(&key), &submitted.envelope).await;
    with_token(answer(&submitted.envelope), server.saw_write())
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
    if let Err(r) = authorize(&server, &headers, Role::Viewer).await {
        return *r;
    }
    if let Err(r) = caught_up(&server, &headers).await {
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
    if let Err(r) = authorize(&server, &headers, Role::Viewer).await {
        return *r;
    }
    if let Err(r) = caught_up(&server, &headers).await {
        return *r;
    }
    match server.index.service_and_answer(&svc).await {
        Ok(Some((view, kept))) => {
            let render = || {
                let summary = format!(
                    "{} {}: release {}, {}",
                    view.service_name,
                    view.reconciliation_status,
                    view.release.current.as_deref().unwrap_or("none"),
                    view.health.state
                );
                bytes::Bytes::from(serde_json::to_vec(&body(&Envelope::ok(summary).data(&*view))).unwrap_or_default())
            };
            rendered(match kept {
                Some(kept) => kept.get_or_init(render).clone(),
                None => render(),
            })
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
    let caller = match authorize(&server, &headers, Role::Viewer).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let shown = server.run(&caller, Op::Saga(SagaRequest::Show { op: id }), Vec::new()).await;
    if crate::grpc::ended(&shown.envelope.data) {
        // The caller saw it end: its token makes any replica's next read include it.
        return with_token(answer(&shown.envelope), server.saw_write());
    }
    answer(&shown.envelope)
}

async fn healthz(State(server): State<Arc<Server>>) -> Response {
    let snap = server.index.snapshot().await;
    let body = serde_json::json!({
        "ok": true,
        "index": {"services": snap.services.len(), "operations": snap.operations.len(), "built_at_ms": snap.built_at_ms},
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Ready to serve: the bucket answers and the index was built from it.
async fn readyz(State(server): State<Arc<Server>>) -> Response {
    let snap = server.index.snapshot().await;
    let env = match server.ledger.is_initialized().await {
        Ok(true) if snap.built_at_ms > 0 => Envelope::ok("ready: the bucket answers and the index is built")
            .data(serde_json::json!({"index_built_at_ms": snap.built_at_ms})),
        Ok(true) => Envelope::failure(Code::StateUnavailable, "not ready: the index is not built yet"),
        Ok(false) => Envelope::failure(Code::StateUnavailable, "not ready: the state bucket is not initialized"),
        Err(e) => {
            Envelope::failure(Code::StateUnavailable, "not ready: the state bucket does not answer").fact(e.to_string())
        }
    };
    answer(&env)
}

/// Request headers past this many bytes are refused with an envelope (hyper drops
/// connections past [`crate::serve::MAX_HEADER_BYTES`]).
pub const HEADER_BYTES: usize = 16 * 1024;

fn grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Oversized headers and slow handlers, answered as envelopes (gRPC as its statuses).
pub async fn guard(State(server): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    let is_grpc = grpc(req.headers());
    if header_bytes > HEADER_BYTES {
        let env = Envelope::failure(
            Code::Usage,
            format!("the request headers are {header_bytes} bytes; at most {HEADER_BYTES} are read"),
        )
        .fact("nothing was done");
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            axum::Json(serde_json::to_value(&env).unwrap_or_default()),
        )
            .into_response();
    }
    let limit = server.request_timeout;
    match skiff_clock::timeout(&skiff_clock::SystemClock, limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) if is_grpc => {
            tonic::Status::deadline_exceeded(format!("no answer within {} ms", limit.as_millis())).into_http()
        }
        Err(_) => answer(
            &Envelope::failure(Code::DeadlineExceeded, format!("no answer within {} ms", limit.as_millis()))
                .fact("anything the request started carries on in the ledger: check `skiff saga list`"),
        ),
    }
}

/// The request log: one line per request (method, route, status, latency, actor,
/// trace id), in a span `http` that continues the caller's `traceparent`, so what the
/// request does (an operation it submits included) joins the caller's trace.
pub async fn request_log(req: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let method = req.method().to_string();
    // The route's pattern (`/v1/operations/{id}`), or the path itself where the pattern
    // is a catch-all: gRPC's `/skiff.v1.Skiff/Deploy` names the method.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .filter(|m| !m.contains("{*"))
        .unwrap_or_else(|| req.uri().path().to_owned());
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        method = %method,
        route = %route,
        status = tracing::field::Empty,
        actor = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(carrier) = carrier(req.headers()) {
        skiff_observability::continue_trace(&span, &carrier);
    }
    let trace_id = skiff_observability::trace_id(&span).unwrap_or_default();
    span.record("trace_id", trace_id.as_str());
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.record("status", status);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(method, route, status, latency_ms, trace_id, "request"));
    resp
}

/// The caller's W3C trace context, if it sent one.
fn carrier(headers: &HeaderMap) -> Option<skiff_observability::Carrier> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Some(skiff_observability::Carrier { traceparent: header("traceparent")?, tracestate: header("tracestate") })
}

/// What no route answers.
pub async fn fallback(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    if grpc(&headers) {
        return tonic::Status::unimplemented(format!("{} is not a call skiffd serves", uri.path())).into_http();
    }
    answer(&Envelope::failure(Code::NotFound, format!("no route {}", uri.path())).action(
        "openapi",
        "curl $SKIFF_SERVER/v1/openapi.json",
        false,
        Safety::ReadOnly,
        0.6,
    ))
}

async fn metrics(State(server): State<Arc<Server>>) -> Response {
    let snap = server.index.snapshot().await;
    let mut text = server.metrics.render(&snap, server.ledger.clock().now_ms());
    text.push_str(&skiff_observability::metrics::prometheus());
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
