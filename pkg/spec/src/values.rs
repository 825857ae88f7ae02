//! Validated scalar types of the spec: names, durations, percentages, references.
//!
//! Each type parses from the text a person writes and prints back in one canonical
//! form, so a parsed spec serializes deterministically.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Why a scalar did not parse: what was expected, as a noun phrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected(pub &'static str);

macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident, $expected:literal, $pattern:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// What a valid value looks like, for messages.
            pub const EXPECTED: &'static str = $expected;

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Expected;
            fn from_str(s: &str) -> Result<Self, Expected> {
                let check: fn(&str) -> bool = $check;
                if check(s) { Ok($name(s.to_owned())) } else { Err(Expected($expected)) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(StrVisitor::<$name>::new($expected))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "pattern": $pattern, "description": $expected})
            }
        }
    };
}

struct StrVisitor<T> {
    expected: &'static str,
    _t: std::marker::PhantomData<T>,
}

impl<T> StrVisitor<T> {
    fn new(expected: &'static str) -> Self {
        StrVisitor { expected, _t: std::marker::PhantomData }
    }
}

impl<T: FromStr<Err = Expected>> de::Visitor<'_> for StrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(|Expected(what)| E::custom(format!("invalid value `{v}`, expected {what}")))
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

string_value!(
    /// A DNS label: lowercase letter first, then lowercase letters, digits and `-`, at most 63.
    DnsLabel,
    "a DNS label: a lowercase letter, then up to 62 lowercase letters, digits or `-` (not ending in `-`)",
    "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$",
    is_dns_label
);

string_value!(
    /// An environment variable name such as `RUST_LOG`.
    EnvName,
    "an environment variable name: a letter or `_`, then letters, digits or `_`",
    "^[A-Za-z_][A-Za-z0-9_]*$",
    |s| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && s.len() <= 128
    }
);

string_value!(
    /// A reference to a secret, `secret://NAME` or `secret://NAME/KEY`; never the value itself.
    SecretRef,
    "a secret reference `secret://NAME/KEY` (NAME a DNS label, KEY letters, digits, `.`, `_`, `-`)",
    "^secret://[a-z]([a-z0-9-]{0,61}[a-z0-9])?(/[A-Za-z0-9._-]+)?$",
    |s| {
        s.strip_prefix("secret://").is_some_and(|rest| {
            let (name, key) = rest.split_once('/').map_or((rest, None), |(n, k)| (n, Some(k)));
            is_dns_label(name)
                && key.is_none_or(|k| {
                    !k.is_empty() && k.len() <= 128 && k.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                })
        })
    }
);

impl SecretRef {
    /// The secret's name (the part after `secret://`, before `/`).
    pub fn name(&self) -> &str {
        let rest = &self.0["secret://".len()..];
        rest.split_once('/').map_or(rest, |(n, _)| n)
    }

    /// The key inside the secret, if one is named.
    pub fn key(&self) -> Option<&str> {
        self.0["secret://".len()..].split_once('/').map(|(_, k)| k)
    }
}

string_value!(
    /// A cloud region such as `us-east-1`, or `local` for the local provider.
    Region,
    "a region such as `us-east-1`, `eu-west-2` or `local`",
    "^(local|[a-z]{2}(-[a-z]+)+-[0-9]+)$",
    |s| {
        if s == "local" {
            return true;
        }
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() >= 3
            && parts[0].len() == 2
            && parts[0].chars().all(|c| c.is_ascii_lowercase())
            && parts[1..parts.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
            && parts.last().is_some_and(|p| !p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_digit()))
    }
);

string_value!(
    /// An HTTP path starting with `/`, such as `/healthz`.
    HttpPath,
    "an HTTP path starting with `/`, such as `/healthz`",
    "^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$",
    |s| {
        s.starts_with('/') && s.len() <= 1024 && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._~!$&'()*+,;=:@%-".contains(c))
    }
);

string_value!(
    /// A kind a plugin serves (a step kind or an addon), `PLUGIN.NAME` such as `changelog.append`.
    StepKind,
    "a plugin's kind `PLUGIN.NAME`, such as `changelog.append`",
    "^[a-z][a-z0-9-]*\\.[a-z][a-z0-9-]*$",
    |s| {
        let name = |p: &str| {
            !p.is_empty()
                && p.len() <= 40
                && p.starts_with(|c: char| c.is_ascii_lowercase())
                && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        s.split_once('.').is_some_and(|(plugin, step)| name(plugin) && name(step))
    }
);

string_value!(
    /// A lowercase hexadecimal SHA-256 digest (64 characters).
    Sha256Hex,
    "a SHA-256 digest: 64 lowercase hexadecimal characters",
    "^[0-9a-f]{64}$",
    |s| s.len() == 64 && s.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
);

string_value!(
    /// A machine class such as `t4g.small` or `m7g.large`.
    InstanceType,
    "an instance type such as `t4g.small`",
    "^[a-z][a-z0-9-]*\\.[a-z0-9]+$",
    |s| {
        s.split_once('.').is_some_and(|(family, size)| {
            family.starts_with(|c: char| c.is_ascii_lowercase())
                && family.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !size.is_empty()
                && size.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }) && s.len() <= 64
    }
);

string_value!(
    /// One named IAM action `service:Action`; wildcards are refused.
    IamAction,
    "one named action `service:Action` such as `s3:GetObject` (no `*` wildcards)",
    "^[a-z0-9-]+:[A-Za-z0-9]+$",
    |s| {
        s.split_once(':').is_some_and(|(svc, action)| {
            !svc.is_empty()
                && svc.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !action.is_empty()
                && action.chars().all(|c| c.is_ascii_alphanumeric())
        })
    }
);

/// A span of time written `500ms`, `30s`, `2m`, `1h` or `7d`; stored in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(u64);

const UNITS: [(&str, u64); 5] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

impl Duration {
    /// What a valid duration looks like, for messages.
    pub const EXPECTED: &'static str = "a duration such as `500ms`, `30s`, `2m`, `1h` or `7d`";

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(s * 1000)
    }

    /// The length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The length as a standard library duration.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl FromStr for Duration {
    type Err = Expected;
    fn from_str(s: &str) -> Result<Self, Expected> {
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or(Expected(Self::EXPECTED))?;
        let (digits, unit) = s.split_at(split);
        let scale = UNITS.iter().find(|(u, _)| *u == unit).map(|(_, m)| *m).ok_or(Expected(Self::EXPECTED))?;
        if digits.is_empty() || digits.len() > 12 {
            return Err(Expected(Self::EXPECTED));
        }
        let n: u64 = digits.parse().map_err(|_| Expected(Self::EXPECTED))?;
        n.checked_mul(scale).map(Duration).ok_or(Expected(Self::EXPECTED))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let (unit, scale) = UNITS.iter().find(|(_, m)| self.0.is_multiple_of(*m)).copied().unwrap_or(("ms", 1));
        write!(f, "{}{unit}", self.0 / scale)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor::<Duration>::new(Self::EXPECTED))
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": "^[0-9]{1,12}(ms|s|m|h|d)$", "description": Self::EXPECTED})
    }
}

/// A share written `1%`, `0.5%` or as a fraction `0.01`; stored in parts per million.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percentage(u32);

impl Percentage {
    /// What a valid percentage looks like, for messages.
    pub const EXPECTED: &'static str =
        "a percentage such as `1%` or `0.5%`, or a fraction between 0 and 1 such as `0.01`";

    /// A share of `ppm` parts per million (1% is 10,000).
    pub const fn from_ppm(ppm: u32) -> Self {
        Percentage(if ppm > 1_000_000 { 1_000_000 } else { ppm })
    }

    /// The share in parts per million.
    pub const fn ppm(self) -> u32 {
        self.0
    }

    /// The share as a fraction between 0 and 1.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 1_000_000.0
    }

    fn from_fraction(f: f64) -> Option<Self> {
        if !(0.0..=1.0).contains(&f) {
            return None;
        }
        let ppm = (f * 1_000_000.0).round();
        // Lossless: `f` is in [0, 1], so `ppm` is in [0, 1e6].
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "bounded to 0..=1e6 above")]
        Some(Percentage(ppm as u32))
    }
}

impl FromStr for Percentage {
    type Err = Expected;
    fn from_str(s: &str) -> Result<Self, Expected> {
        let bad = || Expected(Self::EXPECTED);
        let valid_number = |t: &str| {
            !t.is_empty()
                && t.len() <= 16
                && t.chars().all(|c| c.is_ascii_digit() || c == '.')
                && t.matches('.').count() <= 1
                && !t.starts_with('.')
                && !t.ends_with('.')
        };
        match s.strip_suffix('%') {
            Some(num) if valid_number(num) => {
                num.parse::<f64>().ok().and_then(|p| Self::from_fraction(p / 100.0)).ok_or_else(bad)
            }
            Some(_) => Err(bad()),
            None if valid_number(s) => s.parse::<f64>().ok().and_then(Self::from_fraction).ok_or_else(bad),
            None => Err(bad()),
        }
    }
}

impl fmt::Display for Percentage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 10_000;
        let frac = self.0 % 10_000;
        if frac == 0 {
            write!(f, "{whole}%")
        } else {
            let digits = format!("{frac:04}");
            write!(f, "{whole}.{}%", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Percentage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Percentage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Percentage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(Percentage::EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Percentage, E> {
                v.parse().map_err(|_| E::custom(format!("invalid value `{v}`, expected {}", Percentage::EXPECTED)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Percentage, E> {
                Percentage::from_fraction(v)
                    .ok_or_else(|| E::custom(format!("invalid value `{v}`, expected {}", Percentage::EXPECTED)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Percentage, E> {
                match v {
                    0 => Ok(Percentage(0)),
                    1 => Ok(Percentage(1_000_000)),
                    _ => Err(E::custom(format!(
                        "invalid value `{v}`, expected {} (write `{v}%` for {v} percent)",
                        Percentage::EXPECTED
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Percentage, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("invalid value `{v}`, expected {}", Percentage::EXPECTED))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Percentage {
    fn schema_name() -> Cow<'static, str> {
        "Percentage".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": Self::EXPECTED,
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?%$"},
                {"type": "number", "minimum": 0, "maximum": 1}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse_and_print_canonically() {
        for (text, ms, canon) in [
            ("500ms", 500, "500ms"),
            ("30s", 30_000, "30s"),
            ("120s", 120_000, "2m"),
            ("2m", 120_000, "2m"),
            ("1h", 3_600_000, "1h"),
            ("7d", 604_800_000, "7d"),
            ("0ms", 0, "0s"),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), canon, "{text}");
        }
        for bad in ["", "5", "ms", "1.5s", "-1s", "1 s", "1w", "1S", "9999999999999d"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} must fail");
        }
    }

    #[test]
    fn percentages_parse_and_print_canonically() {
        for (text, ppm, canon) in
            [("1%", 10_000, "1%"), ("0.5%", 5_000, "0.5%"), ("0.01", 10_000, "1%"), ("100%", 1_000_000, "100%")]
        {
            let p: Percentage = text.parse().unwrap();
            assert_eq!(p.ppm(), ppm, "{text}");
            assert_eq!(p.to_string(), canon, "{text}");
        }
        for bad in ["", "%", "101%", "1.5", "-1%", "1e3%", ".5%", "abc"] {
            assert!(bad.parse::<Percentage>().is_err(), "{bad:?} must fail");
        }
    }

    #[test]
    fn names_and_references() {
        assert!("payments-api".parse::<DnsLabel>().is_ok());
        for bad in ["", "Payments", "1api", "api-", "a_b", &"a".repeat(64)] {
            assert!(bad.parse::<DnsLabel>().is_err(), "{bad:?}");
        }
        let r: SecretRef = "secret://payments-db/url".parse().unwrap();
        assert_eq!((r.name(), r.key()), ("payments-db", Some("url")));
        for bad in ["payments-db/url", "secret://", "secret://Bad/x", "secret://a/", "secret://a/b/c"] {
            assert!(bad.parse::<SecretRef>().is_err(), "{bad:?}");
        }
        assert!("us-east-1".parse::<Region>().is_ok() && "local".parse::<Region>().is_ok());
        assert!("useast1".parse::<Region>().is_err() && "us-east".parse::<Region>().is_err());
        assert!("s3:GetObject".parse::<IamAction>().is_ok());
        assert!("s3:*".parse::<IamAction>().is_err() && "*".parse::<IamAction>().is_err());
    }

    proptest! {
        #[test]
        fn duration_display_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }

        #[test]
        fn percentage_display_round_trips(ppm in 0u32..=1_000_000) {
            let p = Percentage::from_ppm(ppm);
            // Display keeps four decimals of a percent: 1 ppm resolution.
            prop_assert_eq!(p.to_string().parse::<Percentage>().unwrap(), p);
        }
    }
}
