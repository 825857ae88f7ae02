//! skiffd: Skiff's stateless control plane. It serves gRPC (proto/skiff/v1) and
//! HTTP/JSON on one port over the state bucket, answers reads from an index rebuilt
//! from the bucket, and records intents and operations for skiff-worker to run.

pub mod auth;
pub mod grpc;
pub mod http;
pub mod index;
pub mod metrics;
pub mod openapi;
pub mod postgres;
pub mod serve;
pub mod server;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use skiff_sdk::grpc::{MAX_MESSAGE_BYTES, proto::skiff_server::SkiffServer};

use crate::server::Server;

/// The one router: gRPC under `/skiff.v1.Skiff/*`, HTTP/JSON everywhere else.
pub fn app(server: Arc<Server>) -> axum::Router {
    let grpc = SkiffServer::new(grpc::Service(server.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let routes = tonic::service::Routes::new(grpc)
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn(grpc::tag_method));
    http::router(server.clone())
        .merge(routes)
        .fallback(http::fallback)
        .layer(axum::middleware::from_fn_with_state(server, http::guard))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .layer(axum::middleware::from_fn(http::request_log))
}

/// Keeps the token records fresh (every [`auth::TOKEN_REFRESH`]: the bound on a
/// revocation) and writes the tokens' last use.
pub async fn token_refresher(server: Arc<Server>) {
    loop {
        skiff_clock::Clock::sleep(&skiff_clock::SystemClock, auth::TOKEN_REFRESH).await;
        if let Err(e) = server.auth.bucket.refresh().await {
            tracing::warn!(error = %e, "token refresh failed (using the previous records)");
        }
        server.auth.bucket.flush_usage().await;
    }
}

/// Keeps the index fresh: rebuilds every `every`, and soon after each write.
pub async fn refresher(server: Arc<Server>, every: Duration) {
    loop {
        tokio::select! {
            () = skiff_clock::Clock::sleep(&skiff_clock::SystemClock, every) => {}
            () = server.refresh.notified() => {}
        }
        if let Err(e) = server.index.refresh(&server.ledger).await {
            tracing::warn!(error = %e, "index refresh failed (serving the previous one)");
        }
    }
}
