//! The operation's state document (the cursor): the fold written under the lease's
//! fencing token — at every status change, and between them as a checkpoint at most
//! every [`CHECKPOINT_MS`] of the clock, in the background behind the next step.

use super::*;

/// Between status changes the cursor is written at most this often: it is a snapshot
/// of the event fold (resume folds whatever came after it), so fast steps cost their
/// two events and not a third write each.
pub(super) const CHECKPOINT_MS: u64 = 1_000;

impl Engine {
    /// Writes the folded state under the lease's fencing token. The first write
    /// checks lease and fence; later ones replace the version this engine wrote last
    /// in one conditional put, and fall back to the checked path if anyone else wrote.
    pub(super) async fn persist(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        self.flush(sh).await?;
        self.write_cursor(sh).await
    }

    /// Checkpoints the cursor in the background: the next step's `step_started` event
    /// may be written meanwhile (the cursor is a snapshot of the event fold; the events
    /// carry the order). Within [`CHECKPOINT_MS`] of the last write nothing is written:
    /// the next checkpoint or status change covers this step. Cursor writes stay in
    /// order, and every status change or return [`Engine::flush`]es first. While one
    /// write is in flight, later requests coalesce into a single queued write that reads
    /// the newest fold when it starts, so a slow store writes fewer snapshots instead of
    /// falling behind. `point` is the hook fired once a write covering it is durable.
    pub(super) async fn persist_behind(&self, sh: &Arc<Shared>, point: String) {
        let mut pending = sh.pending.lock().await;
        sh.queued_points.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(point);
        let since = self.ledger.clock().now_ms().saturating_sub(sh.checkpointed_at_ms.load(Ordering::SeqCst));
        if since < CHECKPOINT_MS {
            return;
        }
        if pending.is_some() && sh.queued.load(Ordering::SeqCst) {
            // A write is already queued and will read the newest fold: nothing to add.
            return;
        }
        let previous = pending.take();
        sh.queued.store(true, Ordering::SeqCst);
        let (engine, shared) = (self.clone(), sh.clone());
        *pending = Some(tokio::spawn(async move {
            if let Some(p) = previous {
                join_cursor(p).await?;
            }
            shared.queued.store(false, Ordering::SeqCst);
            engine.write_cursor(&shared).await
        }));
    }

    /// Waits for a background cursor write and reports its error.
    pub(super) async fn flush(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        let pending = sh.pending.lock().await.take();
        match pending {
            Some(p) => join_cursor(p).await,
            None => Ok(()),
        }
    }

    /// Writes the fold as it is now, then fires the crash-test points it covers.
    pub(super) async fn write_cursor(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        sh.checkpointed_at_ms.store(self.ledger.clock().now_ms(), Ordering::SeqCst);
        let points: Vec<String> =
            std::mem::take(&mut *sh.queued_points.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let d = sh.detail.lock().await.clone();
        let key = keys::op_state(&sh.op);
        let doc = OperationState {
            cas: Default::default(),
            op_id: sh.op.clone(),
            saga: sh.plan.saga.clone(),
            service: sh.service.clone(),
            status: d.status,
            fence: sh.guard.token,
            updated_at_ms: self.ledger.clock().now_ms(),
            detail: d.clone(),
        };
        let mut last = sh.last.lock().await;
        let replaced = match last.as_ref() {
            Some((prev, version)) => self.ledger.replace_if_match(&key, prev, version, doc.clone()).await?,
            None => None,
        };
        *last = Some(match replaced {
            Some(written) => written,
            None => self.ledger.fenced_update_versioned(&key, &sh.guard, |_| Ok(Update::Write(doc.clone()))).await?,
        });
        drop(last);
        for p in &points {
            self.hook(p);
        }
        Ok(())
    }
}

/// Joins a background cursor write. A panic in it is re-raised: a bug stops the run
/// like any other panic would, instead of turning into an ordinary error.
pub(super) async fn join_cursor(handle: tokio::task::JoinHandle<Result<(), SagaError>>) -> Result<(), SagaError> {
    match handle.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(SagaError::InvalidGraph { saga: String::new(), why: format!("cursor writer stopped: {e}") }),
    }
}
