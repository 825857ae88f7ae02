//! The doctor's autoscaler finding: a queue-scaled service whose autoscaler never read
//! its queue, or has not for longer than the stale bound, is named; a fresh reading is
//! not.

use std::sync::Arc;

use skiff_clock::{IdGen, Rng, SystemClock};
use skiff_doctor::{Inputs, KeyCheck, diagnose};
use skiff_objstore::MemoryStore;
use skiff_state::docs::{AutoscaleDoc, ServiceState};
use skiff_state::{Ledger, Update, keys};

const SPEC: &str = "service: jobs\nkind: worker\nartifact: {path: target/release/jobs}\nrun: {command: [jobs]}\n\
scale:\n  max: 3\n  queue: {kind: postgres, table: jobs, target_per_instance: 10}\n\
database: {name: jobs-db, engine: postgres}\n";

const NOW: u64 = 1_800_000_000_000;

async fn ledger() -> Ledger {
    let ledger =
        Ledger::new(Arc::new(MemoryStore::new()), IdGen::new(Arc::new(SystemClock), Rng::seeded(7)), Rng::seeded(7));
    ledger.init("test").await.unwrap();
    let spec = skiff_spec::parse("jobs.yaml", SPEC.as_bytes()).unwrap();
    let digest = ledger.put_spec(&skiff_ir::compile(&spec)).await.unwrap();
    ledger
        .update::<ServiceState, _>(&keys::service_state("jobs"), |_| {
            Ok(Update::Write(ServiceState {
                service: "jobs".to_owned(),
                spec_digest: Some(digest.clone()),
                ..Default::default()
            }))
        })
        .await
        .unwrap();
    ledger
}

async fn summaries(ledger: &Ledger) -> Vec<String> {
    let inputs = Inputs {
        ledger,
        provider: Err("not asked".to_owned()),
        key: KeyCheck::Present,
        service: Some("jobs".to_owned()),
        now_ms: NOW,
        stuck_after_ms: 60_000,
        heartbeat_stale_ms: 60_000,
        autoscale_stale_ms: 60_000,
    };
    diagnose(&inputs).await.into_iter().filter(|f| f.subject == "autoscaler of jobs").map(|f| f.summary).collect()
}

async fn reading(ledger: &Ledger, observed_ms: u64) {
    ledger
        .update::<AutoscaleDoc, _>(&keys::service_autoscale("jobs"), |_| {
            Ok(Update::Write(AutoscaleDoc {
                service: "jobs".to_owned(),
                group: "jobs-1".to_owned(),
                desired: 1,
                observed_ms,
                reason: "0 waiting".to_owned(),
                ..Default::default()
            }))
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_silent_autoscaler_is_a_finding_and_a_fresh_one_is_not() {
    let ledger = ledger().await;
    let never = summaries(&ledger).await;
    assert_eq!(never.len(), 1, "{never:?}");
    assert!(never[0].contains("has never read its queue"), "{never:?}");

    reading(&ledger, NOW - 5_000).await;
    assert_eq!(summaries(&ledger).await, Vec::<String>::new());

    reading(&ledger, NOW - 120_000).await;
    let stale = summaries(&ledger).await;
    assert!(stale.len() == 1 && stale[0].contains("has not read its queue for 120s"), "{stale:?}");
}
