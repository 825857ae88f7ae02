//! One progress line per engine event, the same whether the engine runs here (its
//! observer) or on a worker (a client following the event stream).

use skiff_saga::SagaEvent;

/// A progress line for an event; `None` for bookkeeping events.
pub fn event(e: &SagaEvent) -> Option<String> {
    use SagaEvent::*;
    Some(match e {
        OperationStarted { holder, .. } => format!("started by {holder}"),
        OperationResumed { holder, .. } => format!("resumed by {holder}"),
        StepStarted { step, attempt, resume, .. } => {
            format!("{step}: started (attempt {attempt}{})", if *resume { ", resuming" } else { "" })
        }
        StepProgress { step, message, .. } => format!("{step}: {message}"),
        StepSucceeded { step, summary, .. } => format!("{step}: ✓ {summary}"),
        StepFailed { step, code, message, retrying, .. } => {
            format!("{step}: ✗ {code}: {message}{}", if *retrying { " (retrying)" } else { "" })
        }
        StepHeld { step, code, message, .. } => format!("{step}: ⏸ {code}: {message}; pausing"),
        ApprovalRequested { step, .. } => format!("{step}: waits for approval"),
        Paused { .. } => "paused".to_owned(),
        CompensationStarted { reason, .. } => format!("compensating: {reason}"),
        StepCompensated { step, summary, .. } => format!("{step}: ↶ {summary}"),
        CompensationBlocked { step, .. } => format!("{step}: irreversible, compensation stops here"),
        CompensationFailed { step, message, .. } => format!("{step}: compensation failed: {message}"),
        OperationSucceeded { .. } => "succeeded".to_owned(),
        OperationFailed { message, .. } => format!("failed: {message}"),
        OperationCompensated { .. } => "compensated".to_owned(),
        OperationCancelled { .. } => "cancelled".to_owned(),
        _ => return None,
    })
}

/// The line for a stored event (type and data as the ledger keeps them).
pub fn stored(event_type: &str, data: &serde_json::Value) -> Option<String> {
    SagaEvent::from_parts(event_type, data).and_then(|e| event(&e))
}
