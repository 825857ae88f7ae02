//! `skiff audit [--since]`: who did what, when.

use std::fmt::Write as _;

use skiff_clock::{Clock, Utc};
use skiff_sdk::{Answer, Code, Envelope};

use crate::context::Context;
use crate::error::Result;

/// Parses `--since`: a date, an RFC 3339 time, or an age such as `24h` relative to `now`.
pub(crate) fn since_ms(text: &str, now: u64) -> Option<u64> {
    if let Some(utc) = Utc::parse(text) {
        return Some(utc.to_ms());
    }
    let age: skiff_spec::values::Duration = text.parse().ok()?;
    Some(now.saturating_sub(age.as_millis()))
}

pub(crate) async fn run(ctx: &Context, since: Option<&str>) -> Result<Answer> {
    let floor = match since {
        None => None,
        Some(text) => match since_ms(text, skiff_clock::SystemClock.now_ms()) {
            Some(ms) => Some(ms),
            None => {
                return Err(Envelope::failure(Code::Usage, format!("`--since {text}` is not a date, time or age"))
                    .fact("use 2026-11-22, 2026-11-22T10:00:00Z, or an age such as 30m, 24h, 7d")
                    .into());
            }
        },
    };
    {
        let (_, ledger) = ctx.ledger()?;
        let entries = ledger.audit_since(floor).await.map_err(|e| crate::error::state(&e))?;
        let mut body = String::new();
        for e in &entries {
            let _ = writeln!(
                body,
                "{}  {:<12} {:<20} {:<24} {}",
                Utc::from_ms(e.at_ms).rfc3339(),
                e.actor,
                e.action,
                e.target,
                e.outcome
            );
        }
        let env = Envelope::ok(format!("{} audit entr{}", entries.len(), if entries.len() == 1 { "y" } else { "ies" }))
            .fact(match floor {
                Some(ms) => format!("since {}", Utc::from_ms(ms).rfc3339()),
                None => "since the bucket was initialized".to_owned(),
            })
            .data(serde_json::json!({ "since_ms": floor, "entries": entries }));
        Ok(Answer::from(env).body(body))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_accepts_dates_times_and_ages() {
        let now = 1_795_388_532_000;
        assert_eq!(super::since_ms("2026-11-22", now), Some(1_795_305_600_000));
        assert_eq!(super::since_ms("1h", now), Some(now - 3_600_000));
        assert_eq!(super::since_ms("2026-11-22T23:02:12Z", now), Some(1_795_388_532_000));
        assert_eq!(super::since_ms("yesterday", now), None);
    }
}
