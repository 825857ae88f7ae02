//! `skiff events --op ID [--follow]`: an operation's event log.

use std::fmt::Write as _;
use std::time::Duration;

use skiff_clock::Utc;
use skiff_sdk::{Code, Envelope, Safety};
use skiff_state::docs::{Event, OpStatus, OperationState};
use skiff_state::{Ledger, keys};

use crate::{Ctx, Outcome};

fn line(e: &Event) -> String {
    let data = if e.data.is_null() || e.data == serde_json::json!({}) { String::new() } else { format!(" {}", e.data) };
    format!("{:>6}  {}  {}{data}", e.seq, Utc::from_ms(e.at_ms).rfc3339(), e.event_type)
}

async fn status(ledger: &Ledger, op: &str) -> Result<Option<OpStatus>, skiff_state::StateError> {
    Ok(ledger.read::<OperationState>(&keys::op_state(op)).await?.map(|s| s.status))
}

pub(crate) fn run(ctx: &Ctx, op: &str, follow: bool, after: u64) -> Outcome {
    let op = op.to_owned();
    super::block_on(ctx, |ledger, _| async move {
        let known = match ledger.store().get(&keys::op_intent(&op)).await {
            Ok(o) => o.is_some(),
            Err(e) => return super::state_error(&e.into()),
        };
        let mut events = match ledger.events_after(&op, after).await {
            Ok(e) => e,
            Err(e) => return super::state_error(&e),
        };
        if !known && events.is_empty() {
            return Envelope::failure(Code::NotFound, format!("no operation `{op}`"))
                .fact("it has no intent and no events in this bucket")
                .fact(format!("bucket: {}", ledger.url()))
                .action("config", "skiff config show", false, Safety::ReadOnly, 0.5)
                .into();
        }
        let mut last = events.last().map_or(after, |e| e.seq);
        if follow {
            for e in &events {
                ctx.emit(&serde_json::to_value(e).unwrap_or_default(), &line(e));
            }
            loop {
                match status(&ledger, &op).await {
                    Ok(Some(s)) if s.is_terminal() => break,
                    Ok(_) => {}
                    Err(e) => return super::state_error(&e),
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                let new = match ledger.events_after(&op, last).await {
                    Ok(n) => n,
                    Err(e) => return super::state_error(&e),
                };
                for e in &new {
                    ctx.emit(&serde_json::to_value(e).unwrap_or_default(), &line(e));
                    last = e.seq;
                }
                events.extend(new);
            }
            // Events written between the last poll and the terminal status.
            if let Ok(rest) = ledger.events_after(&op, last).await {
                for e in &rest {
                    ctx.emit(&serde_json::to_value(e).unwrap_or_default(), &line(e));
                }
                events.extend(rest);
            }
        }
        let status = status(&ledger, &op).await.ok().flatten();
        let mut body = String::new();
        if !follow {
            for e in &events {
                let _ = writeln!(body, "{}", line(e));
            }
        }
        let env = Envelope::ok(format!("{} events of operation {op}", events.len()))
            .fact(format!("status: {}", status.map_or("unknown", OpStatus::as_str)))
            .data(serde_json::json!({ "op_id": op, "status": status, "events": events }))
            .operation(op.clone());
        let env = if status.is_some_and(OpStatus::is_terminal) || follow {
            env
        } else {
            env.action("follow", format!("skiff events --op {op} --follow"), false, Safety::ReadOnly, 0.5)
        };
        Outcome::from(env).body(body)
    })
}
