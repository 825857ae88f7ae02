//! Immutable audit entries, one object each, keyed by date and time so a listing is
//! already in time order.

use serde_json::Value;
use skiff_clock::Utc;
use skiff_sdk::Code;

use crate::docs::AuditEntry;
use crate::keys;
use crate::{Ledger, Result};

impl Ledger {
    /// Records that `actor` did `action` on `target` with outcome `outcome`.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: Code,
        details: Value,
    ) -> Result<AuditEntry> {
        let at = self.now();
        let utc = Utc::from_ms(at);
        let entry = AuditEntry {
            id: self.ids.id("au"),
            at_ms: at,
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.as_str().to_owned(),
            details,
        };
        self.create(&keys::audit(&utc.date(), &utc.compact(), &entry.id), &entry).await?;
        Ok(entry)
    }

    /// Audit entries at or after `since_ms` (all when `None`), oldest first.
    pub async fn audit_since(&self, since_ms: Option<u64>) -> Result<Vec<AuditEntry>> {
        let floor = since_ms.map(|ms| {
            let utc = Utc::from_ms(ms);
            format!("{}{}/{}", keys::audits(), utc.date(), utc.compact())
        });
        let mut out = Vec::new();
        for listed in self.store.list(&keys::audits()).await? {
            if floor.as_ref().is_some_and(|f| listed.key.as_str() < f.as_str()) {
                continue;
            }
            if let Some(entry) = self.read::<AuditEntry>(&listed.key).await? {
                out.push(entry);
            }
        }
        out.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
        Ok(out)
    }
}
