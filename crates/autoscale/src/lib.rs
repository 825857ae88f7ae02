//! Queue-driven autoscaling.
//!
//! [`decide`] is the whole policy, a pure function of the reading and what was last
//! done: desired = ⌈backlog ÷ target per instance⌉ kept within `min..=max`; a change in
//! the same direction as the last one happens at once (a growing queue gets instances
//! as it grows; a draining one gives them back as it drains), a change of direction
//! waits until `cooldown` has passed since the last change — so the count turns at most
//! once per cooldown. [`read_backlog`] reads a PostgreSQL queue in a read-only
//! transaction. The caller (`skiff_ops::autoscale`) keeps the last change in the ledger
//! and sets the group's size.

mod postgres;

pub use postgres::{Backlog, read_backlog};

/// Which way the count moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// More instances.
    Out,
    /// Fewer instances.
    In,
}

impl Direction {
    /// `out` or `in`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
        }
    }

    /// The direction `out`/`in` names.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "out" => Some(Direction::Out),
            "in" => Some(Direction::In),
            _ => None,
        }
    }
}

/// The bounds and pace of one service's scaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Fewest instances.
    pub min: u32,
    /// Most instances.
    pub max: u32,
    /// Waiting jobs one instance takes (at least 1).
    pub target_per_instance: u32,
    /// The least time between a change and a change the other way, in milliseconds.
    pub cooldown_ms: u64,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The count to run.
    pub desired: u32,
    /// The move, when the count changes.
    pub change: Option<Direction>,
    /// Why, in words.
    pub reason: String,
}

/// The count the backlog asks for, before any cooldown: ⌈backlog ÷ target⌉ within bounds.
pub fn wanted(policy: &Policy, backlog: u64) -> u32 {
    let per = u64::from(policy.target_per_instance.max(1));
    let n = backlog.div_ceil(per);
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    n.clamp(policy.min, policy.max.max(policy.min))
}

/// The count to run, given the current count, the backlog and the last change
/// (`(at_ms, direction)`).
pub fn decide(policy: &Policy, current: u32, backlog: u64, last: Option<(u64, Direction)>, now_ms: u64) -> Decision {
    let want = wanted(policy, backlog);
    let per = policy.target_per_instance.max(1);
    let reading = format!("{backlog} waiting ÷ {per} per instance → {want} (bounds {}..={})", policy.min, policy.max);
    if want == current {
        return Decision { desired: current, change: None, reason: format!("{reading}: steady") };
    }
    let direction = if want > current { Direction::Out } else { Direction::In };
    if let Some((at, last_dir)) = last
        && last_dir != direction
    {
        let since = now_ms.saturating_sub(at);
        if since < policy.cooldown_ms {
            return Decision {
                desired: current,
                change: None,
                reason: format!(
                    "{reading}: held at {current}, cooling down ({}s of {}s since scaling {})",
                    since / 1000,
                    policy.cooldown_ms / 1000,
                    last_dir.as_str()
                ),
            };
        }
    }
    Decision {
        desired: want,
        change: Some(direction),
        reason: format!("{reading}: scale {} from {current}", direction.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const P: Policy = Policy { min: 1, max: 5, target_per_instance: 100, cooldown_ms: 10_000 };

    #[test]
    fn a_burst_scales_out_at_once_and_a_drained_queue_comes_back_after_the_cooldown() {
        let d = decide(&P, 1, 2_000, None, 0);
        assert_eq!((d.desired, d.change), (5, Some(Direction::Out)));
        let held = decide(&P, 5, 0, Some((0, Direction::Out)), 9_999);
        assert_eq!((held.desired, held.change), (5, None));
        assert!(held.reason.contains("cooling down"), "{}", held.reason);
        let back = decide(&P, 5, 0, Some((0, Direction::Out)), 10_000);
        assert_eq!((back.desired, back.change), (1, Some(Direction::In)));
        assert_eq!(wanted(&P, 101), 2);
        assert_eq!(wanted(&Policy { min: 0, ..P }, 0), 0);
    }

    #[derive(Clone, Debug)]
    struct Tick {
        advance_ms: u64,
        backlog: u64,
    }

    fn ticks() -> impl Strategy<Value = Vec<Tick>> {
        prop::collection::vec(
            (0u64..15_000, 0u64..3_000).prop_map(|(advance_ms, backlog)| Tick { advance_ms, backlog }),
            1..60,
        )
    }

    proptest! {
        /// Over any sequence of readings: the count stays within bounds, every change
        /// moves towards what the backlog asks, and two changes of direction are never
        /// closer than the cooldown.
        #[test]
        fn bounds_hold_and_direction_turns_at_most_once_per_cooldown(
            min in 0u32..4, extra in 0u32..8, per in 1u32..500, cooldown_ms in 1_000u64..30_000, ts in ticks()
        ) {
            let policy = Policy { min, max: min + extra.max(1), target_per_instance: per, cooldown_ms };
            let mut now = 0u64;
            let mut current = policy.min;
            let mut last: Option<(u64, Direction)> = None;
            for t in ts {
                now += t.advance_ms;
                let d = decide(&policy, current, t.backlog, last, now);
                prop_assert!((policy.min..=policy.max).contains(&d.desired));
                let want = wanted(&policy, t.backlog);
                match d.change {
                    None => prop_assert_eq!(d.desired, current),
                    Some(dir) => {
                        prop_assert_eq!(d.desired, want);
                        if let Some((at, prev)) = last && prev != dir {
                            prop_assert!(now - at >= cooldown_ms);
                        }
                        last = Some((now, dir));
                    }
                }
                // Holding only ever happens in a cooldown.
                if d.desired != want {
                    prop_assert!(last.is_some_and(|(at, _)| now - at < cooldown_ms));
                }
                current = d.desired;
            }
        }
    }
}
