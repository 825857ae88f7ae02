//! Control actions anyone may append (approve, reject, pause, resume, cancel) and who
//! holds an operation's lease.

use super::*;

impl Engine {
    pub(super) async fn control(
        &self,
        op: &str,
        action: &'static str,
        event: SagaEvent,
        allowed: impl Fn(&SagaDetail) -> bool,
    ) -> Result<SagaDetail, SagaError> {
        let (_, detail) = self.load(op).await?;
        if !allowed(&detail) {
            return Err(SagaError::InvalidTransition {
                op: op.to_owned(),
                action,
                status: detail.status.as_str().to_owned(),
            });
        }
        let (t, data) = event.to_parts();
        self.ledger.append(op, &t, data).await?;
        Ok(self.load(op).await?.1)
    }

    /// Approves the waiting step (or `step`, ahead of time).
    pub async fn approve(&self, op: &str, by: &str, step: Option<String>) -> Result<SagaDetail, SagaError> {
        let ahead = step.is_some();
        self.control(op, "approve", SagaEvent::Approved { by: by.to_owned(), step }, |d| {
            d.status == OpStatus::AwaitingApproval || (ahead && !d.status.is_terminal())
        })
        .await
    }

    /// Rejects the operation at its approval gate; it compensates.
    pub async fn reject(&self, op: &str, by: &str, reason: &str) -> Result<SagaDetail, SagaError> {
        self.control(op, "reject", SagaEvent::Rejected { by: by.to_owned(), reason: reason.to_owned() }, |d| {
            d.status == OpStatus::AwaitingApproval
        })
        .await
    }

    /// Asks the engine to pause at the next step boundary.
    pub async fn pause(&self, op: &str, by: &str) -> Result<SagaDetail, SagaError> {
        self.control(op, "pause", SagaEvent::PauseRequested { by: by.to_owned() }, |d| {
            matches!(d.status, OpStatus::Planned | OpStatus::Running | OpStatus::AwaitingApproval)
        })
        .await
    }

    /// Lets a paused operation continue (then call [`Engine::run`]).
    pub async fn request_resume(&self, op: &str, by: &str) -> Result<SagaDetail, SagaError> {
        self.control(op, "resume", SagaEvent::ResumeRequested { by: by.to_owned() }, |d| {
            d.status == OpStatus::Paused || d.pause_requested
        })
        .await
    }

    /// Cancels the operation: completed reversible steps are compensated.
    pub async fn cancel(&self, op: &str, by: &str) -> Result<SagaDetail, SagaError> {
        self.control(op, "cancel", SagaEvent::CancelRequested { by: by.to_owned() }, |d| !d.status.is_terminal()).await
    }

    /// Whether a live lease is held on the operation by someone.
    pub async fn lease_holder(&self, op: &str) -> Result<Option<(String, u64)>, SagaError> {
        let now = self.ledger.clock().now_ms();
        Ok(self
            .ledger
            .lease(&Self::scope(op))
            .await?
            .filter(|l| !l.released && l.expires_at_ms > now)
            .map(|l| (l.holder, l.expires_at_ms)))
    }
}
