//! The backlog of a PostgreSQL queue: the configured query, run in a read-only
//! transaction with a statement timeout, on a connection opened for the reading.

use std::sync::Arc;
use std::time::Duration;

use skiff_clock::Clock;
use tokio_postgres::NoTls;

/// One reading of a queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Backlog {
    /// Jobs waiting.
    pub jobs: u64,
    /// The oldest waiting job's age in seconds, when the query returns it.
    pub oldest_age_s: Option<f64>,
}

/// Runs `query` (one row: backlog, then optionally the oldest job's age in seconds)
/// against `url`, all of it within `deadline`. Errors are one line naming what failed.
pub async fn read_backlog(
    clock: &Arc<dyn Clock>,
    url: &str,
    query: &str,
    deadline: Duration,
) -> Result<Backlog, String> {
    let work = async {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| format!("cannot connect to the queue's database: {e}"))?;
        let conn = tokio::spawn(connection);
        let read = async {
            let ms = deadline.as_millis().max(1);
            client
                .batch_execute(&format!("BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}"))
                .await
                .map_err(|e| format!("cannot start a read-only transaction: {e}"))?;
            let row = client.query_one(query, &[]).await.map_err(|e| format!("the backlog query failed: {e}"))?;
            let _ = client.batch_execute("ROLLBACK").await;
            let jobs = match row.try_get::<_, i64>(0) {
                Ok(n) => n,
                Err(_) => i64::from(
                    row.try_get::<_, i32>(0)
                        .map_err(|_| "the backlog query's first column is not an integer (cast it: count(*)::int8)")?,
                ),
            };
            let oldest_age_s = if row.len() > 1 {
                row.try_get::<_, Option<f64>>(1).map_err(|_| {
                    "the backlog query's second column is not a number of seconds (cast it: ::float8)".to_owned()
                })?
            } else {
                None
            };
            Ok(Backlog { jobs: u64::try_from(jobs).unwrap_or(0), oldest_age_s })
        };
        let out = read.await;
        drop(client);
        conn.abort();
        out
    };
    skiff_clock::timeout(clock.as_ref(), deadline, work)
        .await
        .unwrap_or_else(|_| Err(format!("the queue did not answer within {}ms", deadline.as_millis())))
}
