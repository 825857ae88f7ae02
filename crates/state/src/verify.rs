//! `state verify`: every document parses with the kind its key promises, every event
//! log is gap-free and consistent, every blob and spec matches its digest, and every
//! reference resolves. References are `spec_digest` fields (→ `specs/`) and string
//! values `sha256:<hex>` anywhere in a document (→ `blobs/sha256/`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;
use skiff_sdk::Code;

use crate::codec::{self, Document};
use crate::docs::*;
use crate::keys::{self, KeyKind};
use crate::{Ledger, Result, StateError};
use skiff_ir::canonical::sha256_hex;

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Failure class.
    pub code: Code,
    /// The object it concerns.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
}

/// What `verify` checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Objects listed.
    pub objects: u64,
    /// JSON documents parsed.
    pub documents: u64,
    /// Operations with an event log.
    pub event_logs: u64,
    /// Events checked.
    pub events: u64,
    /// Blobs and specs whose digest was checked.
    pub digests: u64,
    /// Problems, in key order.
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

const RESTORE: &str = "restore the object from bucket versioning or a backup; remove it only if nothing references it";

fn corrupt(key: &str, message: String) -> Finding {
    Finding { code: Code::StateCorrupt, key: key.to_owned(), message, fix: RESTORE.to_owned() }
}

/// The reason inside a decoding error, without the key the finding names anyway.
fn reason(e: StateError) -> String {
    match e {
        StateError::Corrupt { why, .. } => why,
        other => other.to_string(),
    }
}

fn typed<T: Document>(key: &str, bytes: &[u8]) -> Result<Value, Finding> {
    codec::decode::<T>(key, bytes).map_err(|e| corrupt(key, reason(e)))?;
    Ok(serde_json::from_slice(bytes).unwrap_or(Value::Null))
}

/// Collects `sha256:<hex>` strings and `spec_digest` fields.
fn references(value: &Value, blobs: &mut BTreeSet<String>, specs: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "spec_digest"
                    && let Some(d) = v.as_str()
                {
                    specs.insert(d.to_owned());
                }
                references(v, blobs, specs);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, blobs, specs)),
        Value::String(s) => {
            if let Some(hex) = s.strip_prefix("sha256:")
                && hex.len() == 64
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
            {
                blobs.insert(hex.to_owned());
            }
        }
        _ => {}
    }
}

impl Ledger {
    /// Checks the whole bucket.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let listed = self.store.list(keys::ROOT).await?;
        let present: BTreeSet<String> = listed.iter().map(|l| l.key.clone()).collect();
        let mut logs: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
        let mut ops_needing_intent = BTreeSet::new();
        let mut blob_refs: BTreeMap<String, String> = BTreeMap::new();
        let mut spec_refs: BTreeMap<String, String> = BTreeMap::new();
        for l in &listed {
            report.objects += 1;
            let kind = keys::classify(&l.key);
            let Some(obj) = self.store.get(&l.key).await? else { continue };
            let bytes = obj.bytes;
            match &kind {
                KeyKind::Unknown => {
                    report.findings.push(Finding {
                        code: Code::StateCorrupt,
                        key: l.key.clone(),
                        message: "object outside the ledger's key layout".to_owned(),
                        fix: "move it out of v1/; nothing in Skiff reads it".to_owned(),
                    });
                    continue;
                }
                KeyKind::Blob { digest } | KeyKind::Spec { digest } => {
                    report.digests += 1;
                    let actual = sha256_hex(&bytes);
                    if &actual != digest {
                        report.findings.push(Finding {
                            code: Code::DigestMismatch,
                            key: l.key.clone(),
                            message: format!("content hashes to {actual}"),
                            fix: "treat it as tampering or corruption: restore the object, or re-create what references it".to_owned(),
                        });
                    }
                    if matches!(kind, KeyKind::Blob { .. }) {
                        continue;
                    }
                }
                KeyKind::ReleaseSignature { .. } => continue,
                _ => {}
            }
            report.documents += 1;
            let parsed = match &kind {
                KeyKind::Bucket => typed::<BucketDoc>(&l.key, &bytes),
                KeyKind::ServiceState { .. } => typed::<ServiceState>(&l.key, &bytes),
                KeyKind::ServiceReconcile { .. } => typed::<crate::docs::ReconcileDoc>(&l.key, &bytes),
                KeyKind::ServiceOwnership { .. } => typed::<crate::docs::OwnershipDoc>(&l.key, &bytes),
                KeyKind::ServicePromotions { .. } => typed::<crate::docs::PromotionsDoc>(&l.key, &bytes),
                KeyKind::ServiceAutoscale { .. } => typed::<crate::docs::AutoscaleDoc>(&l.key, &bytes),
                KeyKind::OpIntent { .. } => typed::<OperationIntent>(&l.key, &bytes),
                KeyKind::OpState { op } => {
                    ops_needing_intent.insert(op.clone());
                    typed::<OperationState>(&l.key, &bytes)
                }
                KeyKind::OpEvent { op, seq } => {
                    ops_needing_intent.insert(op.clone());
                    match codec::decode::<Event>(&l.key, &bytes) {
                        Ok(e) if &e.op_id != op || e.seq != *seq => Err(corrupt(
                            &l.key,
                            format!("event says operation `{}` seq {}, its key says `{op}` seq {seq}", e.op_id, e.seq),
                        )),
                        Ok(e) => {
                            logs.entry(op.clone()).or_default().push((*seq, e.event_id));
                            Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
                        }
                        Err(e) => Err(corrupt(&l.key, reason(e))),
                    }
                }
                KeyKind::Lease { .. } => typed::<Lease>(&l.key, &bytes),
                KeyKind::Member { .. } => typed::<Member>(&l.key, &bytes),
                KeyKind::Audit { .. } => typed::<AuditEntry>(&l.key, &bytes),
                KeyKind::DatabaseBackup { .. } => typed::<BackupRecord>(&l.key, &bytes),
                KeyKind::DatabaseRestore { .. } => typed::<RestoreRecord>(&l.key, &bytes),
                KeyKind::DatabaseRetired { .. } => typed::<RetireRecord>(&l.key, &bytes),
                KeyKind::Cutover { .. } => typed::<CutoverRecord>(&l.key, &bytes),
                KeyKind::TerraformCurrent { .. } => typed::<TerraformCurrent>(&l.key, &bytes),
                KeyKind::TerraformExecution { .. } => typed::<TerraformExecution>(&l.key, &bytes),
                KeyKind::Migration { .. } => typed::<MigrationRecord>(&l.key, &bytes),
                KeyKind::GroupLaunch { .. } => typed::<GroupLaunch>(&l.key, &bytes),
                KeyKind::SecretRecord { .. } => typed::<SecretRecord>(&l.key, &bytes),
                KeyKind::Token { .. } => typed::<TokenRecord>(&l.key, &bytes),
                other => {
                    let expected = other.expected_kind().unwrap_or_default();
                    match codec::header(&l.key, &bytes) {
                        Ok((k, _, v)) if k == expected => Ok(v),
                        Ok((k, _, _)) => Err(corrupt(&l.key, format!("holds `{k}`, expected `{expected}`"))),
                        Err(e) => Err(corrupt(&l.key, reason(e))),
                    }
                }
            };
            match parsed {
                Ok(value) => {
                    let (mut blobs, mut specs) = (BTreeSet::new(), BTreeSet::new());
                    references(&value, &mut blobs, &mut specs);
                    for b in blobs {
                        blob_refs.entry(b).or_insert_with(|| l.key.clone());
                    }
                    for s in specs {
                        spec_refs.entry(s).or_insert_with(|| l.key.clone());
                    }
                }
                Err(finding) => report.findings.push(finding),
            }
        }
        for (op, mut events) in logs {
            report.event_logs += 1;
            report.events += events.len() as u64;
            events.sort();
            let mut ids = BTreeSet::new();
            for (i, (seq, id)) in events.iter().enumerate() {
                let want = i as u64 + 1;
                if *seq != want {
                    report.findings.push(corrupt(
                        &keys::op_event(&op, want),
                        format!("event log of `{op}` has a gap: expected seq {want}, next present is {seq}"),
                    ));
                    break;
                }
                if !ids.insert(id.clone()) {
                    report.findings.push(corrupt(&keys::op_event(&op, *seq), format!("event id `{id}` appears twice")));
                }
            }
        }
        for op in ops_needing_intent {
            if !present.contains(&keys::op_intent(&op)) {
                report.findings.push(corrupt(
                    &keys::op_intent(&op),
                    format!("operation `{op}` has state or events but no intent"),
                ));
            }
        }
        for (digest, from) in blob_refs {
            if !present.contains(&keys::blob(&digest)) {
                report.findings.push(Finding {
                    code: Code::NotFound,
                    key: keys::blob(&digest),
                    message: format!("referenced by {from} but missing"),
                    fix: "restore the blob, or re-create the release that references it".to_owned(),
                });
            }
        }
        for (digest, from) in spec_refs {
            if !present.contains(&keys::spec(&digest)) {
                report.findings.push(Finding {
                    code: Code::NotFound,
                    key: keys::spec(&digest),
                    message: format!("referenced by {from} but missing"),
                    fix: "re-deploy the service to record its spec again".to_owned(),
                });
            }
        }
        report.findings.sort_by(|a, b| (&a.key, &a.message).cmp(&(&b.key, &b.message)));
        Ok(report)
    }
}

impl From<Finding> for StateError {
    fn from(f: Finding) -> Self {
        StateError::Corrupt { key: f.key, why: f.message }
    }
}
