//! orders-api: a small real HTTP API over PostgreSQL, the service of Skiff's api-db
//! stack. It reads `DATABASE_URL` (which Skiff resolves from `secret://DB/url` on
//! the instance), creates its table, and serves:
//!
//! - `GET /healthz` — 200 when a `select 1` on the database answers, else 503;
//! - `POST /orders` with `{"item": "..."}` — inserts a row, answers it;
//! - `GET /orders` — the row count, the newest id and a checksum of every item;
//! - `GET /` — which release and instance answered.
//!
//! `orders-api migrate [--to N]` migrates the schema instead (see `migrate.rs`).
//!
//! Every request that fails to reach the database drops the connection so the next
//! one opens a fresh one with the same URL: a restarted database is picked up.
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a service logs to stdout and stderr")]

mod migrate;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

struct App {
    url: String,
    client: Mutex<Option<Client>>,
    release: String,
    instance: String,
}

type Answer = (StatusCode, Json<Value>);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn arg_port() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == "--port").and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(url) = env("DATABASE_URL") else {
        eprintln!("orders-api: DATABASE_URL is not set (Skiff sets it from the spec's secret reference)");
        std::process::exit(2);
    };
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "migrate") {
        std::process::exit(migrate::run(&url, &args[2..]).await);
    }
    let host = env("HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = arg_port().or_else(|| env("PORT")).unwrap_or_else(|| "8080".to_owned());
    let app = Arc::new(App {
        url,
        client: Mutex::new(None),
        release: env("SKIFF_RELEASE").unwrap_or_else(|| "dev".to_owned()),
        instance: env("SKIFF_INSTANCE").unwrap_or_else(|| "local".to_owned()),
    });
    if let Err(e) = app.query("create table if not exists orders (id bigserial primary key, item text not null, created_at timestamptz not null default now())", &[]).await {
        eprintln!("orders-api: cannot create the orders table: {e}");
        std::process::exit(1);
    }
    let router = Router::new()
        .route("/", get(root))
        .route("/healthz", get(health))
        .route("/orders", get(list).post(create))
        .with_state(Arc::clone(&app));
    let listener = match tokio::net::TcpListener::bind(format!("{host}:{port}")).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orders-api: cannot listen on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("orders-api: listening on {host}:{port} release={} instance={}", app.release, app.instance);
    if let Err(e) = axum::serve(listener, router).await {
        eprintln!("orders-api: {e}");
        std::process::exit(1);
    }
}

impl App {
    /// Runs `sql` on the shared connection, opening one if there is none; a failed
    /// query drops it so the next request reconnects.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, String> {
        let mut guard = self.client.lock().await;
        if guard.is_none() {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            *guard = Some(client);
        }
        let client = guard.as_ref().ok_or("no connection")?;
        match client.query(sql, params).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                *guard = None;
                Err(e.to_string())
            }
        }
    }
}

fn failed(e: &str) -> Answer {
    println!("orders-api: database error: {e}");
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e})))
}

async fn root(State(app): State<Arc<App>>) -> Answer {
    (StatusCode::OK, Json(json!({"service": "orders-api", "release": app.release, "instance": app.instance})))
}

async fn health(State(app): State<Arc<App>>) -> Answer {
    match app.query("select 1", &[]).await {
        Ok(_) => (StatusCode::OK, Json(json!({"ok": true}))),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
}

async fn create(State(app): State<Arc<App>>, Json(order): Json<NewOrder>) -> Answer {
    let sql = "insert into orders (item) values ($1) returning id, item";
    match app.query(sql, &[&order.item]).await {
        Ok(rows) => {
            let row = &rows[0];
            let (id, item): (i64, String) = (row.get(0), row.get(1));
            (StatusCode::CREATED, Json(json!({"id": id, "item": item})))
        }
        Err(e) => failed(&e),
    }
}

async fn list(State(app): State<Arc<App>>) -> Answer {
    let sql = "select count(*), coalesce(max(id), 0), coalesce(md5(string_agg(item, ',' order by id)), '') from orders";
    match app.query(sql, &[]).await {
        Ok(rows) => {
            let row = &rows[0];
            let (count, newest, checksum): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
            (
                StatusCode::OK,
                Json(json!({"count": count, "newest": newest, "checksum": checksum, "release": app.release})),
            )
        }
        Err(e) => failed(&e),
    }
}
