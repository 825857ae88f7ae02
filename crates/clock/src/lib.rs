//! Time, randomness and ids come from here and nowhere else (CONVENTIONS §7): a
//! [`Clock`] that reads and waits (system or manual, with [`timeout`] and the
//! [`simulate`] driver), a seeded [`Rng`], an [`IdGen`] for sortable ids, and UTC
//! date formatting, so leases, retries, bakes and sagas can be tested deterministically.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// A wait on a [`Clock`]: completes once the clock has moved past its deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of the current time that can also wait. Everything that sleeps, times
/// out, backs off or polls takes one, so a [`ManualClock`] drives it in tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;

    /// Waits until `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> Sleep;
}

/// [`timeout`] ran out before the future finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Runs `future` until it finishes or `d` passes on `clock`, whichever is first. The
/// future is polled first, so one that is ready never times out.
pub async fn timeout<F: Future>(clock: &dyn Clock, d: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut sleep = clock.sleep(d);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        sleep.as_mut().poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// Fires every `period` on a clock: the first tick at once, then one period after the
/// previous one (later when a tick was late; missed ticks are not made up). Dropping
/// a pending [`tick`](Ticker::tick) loses nothing, so it can sit in `select!`.
#[derive(Debug)]
pub struct Ticker {
    clock: Arc<dyn Clock>,
    period_ms: Millis,
    next: Millis,
}

impl Ticker {
    /// A ticker on `clock` whose first tick is now.
    pub fn new(clock: Arc<dyn Clock>, period: Duration) -> Self {
        let next = clock.now_ms();
        Ticker { period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1), next, clock }
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        let now = self.clock.now_ms();
        if now < self.next {
            self.clock.sleep(Duration::from_millis(self.next - now)).await;
        }
        let now = self.clock.now_ms();
        self.next = self.next.saturating_add(self.period_ms);
        if self.next <= now {
            self.next = now.saturating_add(self.period_ms);
        }
    }
}

/// The operating system's clock; waits on the tokio timer (so a runtime with time
/// enabled must be running).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(clippy::disallowed_methods, reason = "this is the one place that reads the wall clock")]
    fn now_ms(&self) -> Millis {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    #[expect(clippy::disallowed_methods, reason = "this is the one place that waits on the real timer")]
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

impl SystemClock {
    /// Blocks the calling thread for `d` (for code outside any runtime, such as a
    /// command waiting for a process it started).
    #[expect(clippy::disallowed_methods, reason = "this is the one place that blocks on the real clock")]
    pub fn block_for(d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that moves only when told to: [`advance`](ManualClock::advance) and
/// [`set`](ManualClock::set) wake the sleeps whose deadline they pass. For tests and
/// the deterministic simulation ([`simulate`]).
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<ManualInner>);

#[derive(Debug, Default)]
struct ManualInner {
    now: AtomicU64,
    next_id: AtomicU64,
    /// Pending sleeps: (deadline, id) → who to wake.
    sleepers: Mutex<BTreeMap<(Millis, u64), Waker>>,
}

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: Millis) -> Self {
        let clock = ManualClock::default();
        clock.0.now.store(ms, Ordering::SeqCst);
        clock
    }

    /// Moves the clock forward by `ms`, waking every sleep it passes.
    pub fn advance(&self, ms: u64) {
        self.0.now.fetch_add(ms, Ordering::SeqCst);
        self.wake_due();
    }

    /// Sets the clock to `ms` (never backwards past pending sleeps' order), waking
    /// every sleep it passes.
    pub fn set(&self, ms: Millis) {
        self.0.now.store(ms, Ordering::SeqCst);
        self.wake_due();
    }

    /// The earliest deadline of a pending sleep.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.lock().keys().next().map(|(d, _)| *d)
    }

    /// How many sleeps are pending.
    pub fn sleepers(&self) -> usize {
        self.lock().len()
    }

    /// Moves the clock to the earliest pending deadline (if later than now) and wakes
    /// what is due; `false` when nothing sleeps.
    pub fn advance_to_next_deadline(&self) -> bool {
        let Some(deadline) = self.next_deadline() else { return false };
        self.0.now.fetch_max(deadline, Ordering::SeqCst);
        self.wake_due();
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Millis, u64), Waker>> {
        self.0.sleepers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wake_due(&self) {
        let now = self.0.now.load(Ordering::SeqCst);
        let due: Vec<Waker> = {
            let mut sleepers = self.lock();
            let later = sleepers.split_off(&(now.saturating_add(1), 0));
            std::mem::replace(&mut *sleepers, later).into_values().collect()
        };
        for w in due {
            w.wake();
        }
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let deadline = self.now_ms().saturating_add(ms);
        let id = self.0.next_id.fetch_add(1, Ordering::SeqCst);
        Box::pin(ManualSleep { clock: self.clone(), deadline, id })
    }
}

struct ManualSleep {
    clock: ManualClock,
    deadline: Millis,
    id: u64,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut sleepers = self.clock.lock();
        if self.clock.now_ms() >= self.deadline {
            sleepers.remove(&(self.deadline, self.id));
            return Poll::Ready(());
        }
        sleepers.insert((self.deadline, self.id), cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        self.clock.lock().remove(&(self.deadline, self.id));
    }
}

/// Runs `future` to its end on a fresh single-threaded runtime whose only time is
/// `clock`: whenever every task is waiting, the clock jumps to the next pending
/// deadline. Nothing really sleeps, and the same inputs give the same schedule.
///
/// # Panics
/// When every task waits and nothing sleeps (a deadlock), or the runtime cannot start.
pub fn simulate<F>(clock: &ManualClock, future: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    /// Turns given to other tasks before the clock moves: enough for every ready
    /// task to reach its next wait when all I/O is in memory.
    const SETTLE: usize = 64;
    /// Rounds with no sleeper and no progress before the run counts as stuck.
    const STUCK: usize = 10_000;
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime starts");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let task = tokio::task::spawn_local(future);
        let mut idle = 0;
        loop {
            for _ in 0..SETTLE {
                if task.is_finished() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            if task.is_finished() {
                return match task.await {
                    Ok(v) => v,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                };
            }
            if clock.advance_to_next_deadline() {
                idle = 0;
            } else {
                idle += 1;
                assert!(idle < STUCK, "simulation stalled: every task waits and nothing sleeps");
            }
        }
    })
}

/// A small, fast, seedable pseudo-random generator (SplitMix64). Not for secrets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for the same seed.
    pub fn seeded(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator seeded from the operating system's randomness.
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        Rng(h.finish())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// `true` with probability `p` (0 to 1).
    pub fn chance(&mut self, p: f64) -> bool {
        // 53 bits of the draw give a uniform float in [0, 1).
        #[expect(clippy::cast_precision_loss, reason = "53-bit mantissa is exactly representable")]
        let f = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        f < p
    }
}

/// Makes unique ids that sort by creation time: `PREFIX-<time>-<random>`, where time is
/// 10 Crockford base32 characters of milliseconds and random is 8 more.
#[derive(Debug, Clone)]
pub struct IdGen {
    clock: Arc<dyn Clock>,
    rng: Arc<Mutex<Rng>>,
}

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

fn base32(mut v: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = CROCKFORD[usize::try_from(v & 31).unwrap_or(0)];
        v >>= 5;
    }
    String::from_utf8(out).expect("alphabet is ASCII")
}

impl IdGen {
    /// Ids from this clock and generator.
    pub fn new(clock: Arc<dyn Clock>, rng: Rng) -> Self {
        IdGen { clock, rng: Arc::new(Mutex::new(rng)) }
    }

    /// Ids from the system clock and OS randomness.
    pub fn system() -> Self {
        Self::new(Arc::new(SystemClock), Rng::from_entropy())
    }

    /// A new id, e.g. `op-01jd3x7k2a-7q0c5m1z`.
    pub fn id(&self, prefix: &str) -> String {
        let random = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next_u64();
        format!("{prefix}-{}-{}", base32(self.clock.now_ms(), 10), base32(random, 8))
    }

    /// The clock ids are stamped with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

/// A UTC calendar date and time, from milliseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Utc {
    /// Year.
    pub year: i64,
    /// Month, 1-12.
    pub month: u32,
    /// Day of month, 1-31.
    pub day: u32,
    /// Hour, 0-23.
    pub hour: u32,
    /// Minute, 0-59.
    pub minute: u32,
    /// Second, 0-59.
    pub second: u32,
    /// Millisecond, 0-999.
    pub milli: u32,
}

impl Utc {
    /// The date and time of `ms` milliseconds after the epoch.
    pub fn from_ms(ms: Millis) -> Self {
        let secs = ms / 1000;
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
        let rem = secs % 86_400;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let small = |v: u64| u32::try_from(v).unwrap_or(0);
        Utc {
            year,
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
            hour: small(rem / 3600),
            minute: small(rem % 3600 / 60),
            second: small(rem % 60),
            milli: small(ms % 1000),
        }
    }

    /// Milliseconds since the epoch of a UTC date and time.
    pub fn to_ms(self) -> Millis {
        let y = self.year - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        u64::try_from(secs).unwrap_or(0) * 1000 + u64::from(self.milli)
    }

    /// `2026-11-22`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `2026-11-22T23:02:12.123Z`.
    pub fn rfc3339(&self) -> String {
        format!("{}T{:02}:{:02}:{:02}.{:03}Z", self.date(), self.hour, self.minute, self.second, self.milli)
    }

    /// `20261122T230212123Z`: sortable and safe in object keys.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.milli
        )
    }

    /// Parses `2026-11-22`, `2026-11-22T23:02:12Z` or `2026-11-22T23:02:12.123Z`.
    pub fn parse(text: &str) -> Option<Self> {
        let num =
            |s: &str| -> Option<u32> { if s.bytes().all(|b| b.is_ascii_digit()) { s.parse().ok() } else { None } };
        let (date, time) = match text.split_once('T') {
            Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
            None => (text, None),
        };
        let mut parts = date.split('-');
        let year = i64::from(num(parts.next()?)?);
        let month = num(parts.next()?)?;
        let day = num(parts.next()?)?;
        if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        let mut utc = Utc { year, month, day, hour: 0, minute: 0, second: 0, milli: 0 };
        if let Some(t) = time {
            let (hms, milli) = t.split_once('.').map_or((t, None), |(a, b)| (a, Some(b)));
            let mut p = hms.split(':');
            utc.hour = num(p.next()?)?;
            utc.minute = num(p.next()?)?;
            utc.second = num(p.next()?)?;
            utc.milli = milli.map_or(Some(0), |m| if m.len() == 3 { num(m) } else { None })?;
            if p.next().is_some() || utc.hour > 23 || utc.minute > 59 || utc.second > 60 {
                return None;
            }
        }
        Some(utc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert_eq, proptest};

    #[test]
    fn known_dates() {
        let t = Utc::from_ms(1_795_388_532_123);
        assert_eq!(t.rfc3339(), "2026-11-22T23:02:12.123Z");
        assert_eq!(t.compact(), "20261122T230212123Z");
        assert_eq!(Utc::from_ms(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Utc::parse("2026-11-22").unwrap().to_ms(), 1_795_305_600_000);
        assert!(Utc::parse("2026-13-01").is_none() && Utc::parse("yesterday").is_none());
    }

    #[test]
    fn ids_sort_by_time_and_are_unique() {
        let clock = Arc::new(ManualClock::new(1_000));
        let ids = IdGen::new(clock.clone(), Rng::seeded(7));
        let a = ids.id("op");
        clock.advance(1);
        let b = ids.id("op");
        assert!(a < b, "{a} < {b}");
        assert_ne!(ids.id("op"), ids.id("op"));
        assert!(a.starts_with("op-") && a.len() == "op-".len() + 10 + 1 + 8);
    }

    #[test]
    fn manual_sleeps_wake_when_the_clock_passes_them() {
        let clock = ManualClock::new(1_000);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (c, o) = (clock.clone(), order.clone());
        let ended_at = simulate(&clock, async move {
            let long = {
                let (c, o) = (c.clone(), o.clone());
                tokio::task::spawn_local(async move {
                    c.sleep(Duration::from_secs(60)).await;
                    o.lock().unwrap().push("long");
                })
            };
            let short = timeout(&c, Duration::from_millis(500), c.sleep(Duration::from_secs(5))).await;
            o.lock().unwrap().push(if short.is_err() { "timed out" } else { "slept" });
            long.await.unwrap();
            c.now_ms()
        });
        assert_eq!(*order.lock().unwrap(), ["timed out", "long"]);
        assert_eq!(ended_at, 61_000);
        assert_eq!(clock.sleepers(), 0, "a timed-out sleep deregisters itself");
    }

    #[test]
    fn advance_wakes_only_what_is_due() {
        let clock = ManualClock::new(0);
        let mut a = clock.sleep(Duration::from_millis(10));
        let mut b = clock.sleep(Duration::from_millis(20));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(a.as_mut().poll(&mut cx).is_pending() && b.as_mut().poll(&mut cx).is_pending());
        assert_eq!((clock.sleepers(), clock.next_deadline()), (2, Some(10)));
        clock.advance(15);
        assert!(a.as_mut().poll(&mut cx).is_ready() && b.as_mut().poll(&mut cx).is_pending());
        assert!(clock.advance_to_next_deadline());
        assert!(b.as_mut().poll(&mut cx).is_ready());
        assert_eq!(clock.now_ms(), 20);
        assert!(!clock.advance_to_next_deadline());
    }

    proptest! {
        #[test]
        fn dates_round_trip(ms in 0u64..10_000_000_000_000) {
            let utc = Utc::from_ms(ms);
            prop_assert_eq!(utc.to_ms(), ms);
            prop_assert_eq!(Utc::parse(&utc.rfc3339()), Some(utc));
        }
    }
}
