//! `skiff events --op ID [--follow]`: an operation's event log.

use std::fmt::Write as _;
use std::time::Duration;

use skiff_clock::{Clock as _, SystemClock, Utc};
use skiff_sdk::{Answer, Envelope, Safety};
use skiff_state::docs::{Event, OpStatus, OperationState};
use skiff_state::{Ledger, keys};

use crate::context::Context;
use crate::error::Result;

/// One event as a line.
pub(crate) fn line(e: &Event) -> String {
    let data = if e.data.is_null() || e.data == serde_json::json!({}) { String::new() } else { format!(" {}", e.data) };
    format!("{:>6}  {}  {}{data}", e.seq, Utc::from_ms(e.at_ms).rfc3339(), e.event_type)
}

async fn status(ledger: &Ledger, op: &str) -> Result<Option<OpStatus>> {
    Ok(ledger.read::<OperationState>(&keys::op_state(op)).await.map_err(|e| crate::error::state(&e))?.map(|s| s.status))
}

/// The events of `op` after `after`; with `follow`, streamed (through the context's
/// UI) until the operation ends.
pub(crate) async fn run(ctx: &Context, op: &str, follow: bool, after: u64) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    crate::lookup::operation(&ledger, op).await?;
    let mut events = ledger.events_after(op, after).await.map_err(|e| crate::error::state(&e))?;
    let mut last = events.last().map_or(after, |e| e.seq);
    if follow {
        for e in &events {
            ctx.emit(&serde_json::to_value(e).unwrap_or_default(), &line(e));
        }
        loop {
            if status(&ledger, op).await?.is_some_and(OpStatus::is_terminal) {
                break;
            }
            SystemClock.sleep(Duration::from_millis(300)).await;
            let new = ledger.events_after(op, last).await.map_err(|e| crate::error::state(&e))?;
            for e in &new {
                ctx.emit(&serde_json::to_value(e).unwrap_or_default(), &line(e));
                last = e.seq;
            }
            events.extend(new);
        }
        // Events written between the last poll and the terminal status.
        if let Ok(rest) = ledger.events_after(op, last).await {
            for e in &rest {
                ctx.emit(&serde_json::to_value(e).unwrap_or_default(), &line(e));
            }
            events.extend(rest);
        }
    }
    let status = status(&ledger, op).await.ok().flatten();
    Ok(answer(op, status, &events, follow))
}

/// The answer for `op`'s events (`follow`: they were streamed already).
pub(crate) fn answer(op: &str, status: Option<OpStatus>, events: &[Event], follow: bool) -> Answer {
    let mut body = String::new();
    if !follow {
        for e in events {
            let _ = writeln!(body, "{}", line(e));
        }
    }
    let env = Envelope::ok(format!("{} events of operation {op}", events.len()))
        .fact(format!("status: {}", status.map_or("unknown", OpStatus::as_str)))
        .data(serde_json::json!({ "op_id": op, "status": status, "events": events }))
        .operation(op.to_owned());
    let env = if status.is_some_and(OpStatus::is_terminal) || follow {
        env
    } else {
        env.action("follow", format!("skiff events --op {op} --follow"), false, Safety::ReadOnly, 0.5)
    };
    Answer::from(env).body(body)
}
