//! The optional PostgreSQL index (`--index postgres://…`): the same service views in
//! one table, replaced wholesale from the bucket on every rebuild, so it can be
//! dropped and rebuilt at any time (`skiffd index rebuild`).

use tokio_postgres::{Client, NoTls};

use crate::index::{ServiceView, Snapshot};

/// A connection to the index database.
#[derive(Debug)]
pub struct PgIndex {
    client: tokio::sync::Mutex<Client>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS skiff_service_views (
    service text PRIMARY KEY,
    view jsonb NOT NULL,
    built_at_ms bigint NOT NULL
)";

impl PgIndex {
    /// Connects and creates the table if missing.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the index database: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client.batch_execute(SCHEMA).await?;
        Ok(PgIndex { client: tokio::sync::Mutex::new(client) })
    }

    /// Replaces every view with the snapshot's, in one transaction.
    pub async fn replace(&self, snapshot: &Snapshot) -> anyhow::Result<()> {
        let mut client = self.client.lock().await;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM skiff_service_views", &[]).await?;
        let insert = tx
            .prepare("INSERT INTO skiff_service_views (service, view, built_at_ms) VALUES ($1, $2::text::jsonb, $3)")
            .await?;
        let at = snapshot.built_at_ms as i64;
        for (name, view) in &snapshot.services {
            let json = serde_json::to_string(&**view)?;
            tx.execute(&insert, &[name, &json, &at]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One service's view.
    pub async fn service(&self, name: &str) -> anyhow::Result<Option<ServiceView>> {
        let client = self.client.lock().await;
        let row = client.query_opt("SELECT view::text FROM skiff_service_views WHERE service = $1", &[&name]).await?;
        match row {
            Some(r) => {
                let text: String = r.get(0);
                Ok(Some(serde_json::from_str(&text)?))
            }
            None => Ok(None),
        }
    }

    /// How many views the table holds.
    pub async fn count(&self) -> anyhow::Result<i64> {
        let client = self.client.lock().await;
        Ok(client.query_one("SELECT count(*) FROM skiff_service_views", &[]).await?.get(0))
    }
}
