//! Time, randomness and ids come from here and nowhere else (CONVENTIONS §7): a
//! [`Clock`] (system or manual), a seeded [`Rng`], an [`IdGen`] for sortable ids, and
//! UTC date formatting, so leases, retries and sagas can be tested deterministically.
#![warn(missing_docs)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(clippy::disallowed_methods, reason = "this is the one place that reads the wall clock")]
    fn now_ms(&self) -> Millis {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: Millis) -> Self {
        ManualClock(AtomicU64::new(ms))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `ms`.
    pub fn set(&self, ms: Millis) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
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

    proptest! {
        #[test]
        fn dates_round_trip(ms in 0u64..10_000_000_000_000) {
            let utc = Utc::from_ms(ms);
            prop_assert_eq!(utc.to_ms(), ms);
            prop_assert_eq!(Utc::parse(&utc.rfc3339()), Some(utc));
        }
    }
}
