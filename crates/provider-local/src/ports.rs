//! Ports for what the local provider starts (instances, databases), taken from below
//! the kernel's ephemeral range.
//!
//! A port handed out by `bind(127.0.0.1:0)` comes from the ephemeral range — the
//! range `connect()` also draws the local port of every outgoing connection from. An
//! instance's port is chosen once, at launch, and the program binds it later and again
//! after each restart; while it is not bound, any outgoing connection on the machine
//! (a health probe, a database client) may take it, and the instance then fails to
//! start for the rest of its life. Ports below the ephemeral range are never given to
//! outgoing connections, so only another listener can take one.

use std::collections::BTreeSet;
use std::io;
use std::net::TcpListener;
use std::sync::Mutex;

use skiff_clock::Rng;

/// The lowest port handed out.
const FLOOR: u16 = 20_000;
/// Tries before giving up (each a bind on a random port of the pool).
const TRIES: u32 = 200;

static RNG: Mutex<Option<Rng>> = Mutex::new(None);

/// The first port of the ephemeral range (`net.ipv4.ip_local_port_range`), 32768 when
/// it cannot be read.
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(32_768)
}

/// A port on 127.0.0.1 that nothing listens on, none of `taken`, below the ephemeral
/// range when the machine leaves room there (else any free one).
pub(crate) fn free_port(taken: &BTreeSet<u16>) -> io::Result<u16> {
    let ceiling = ephemeral_floor();
    if ceiling > FLOOR + 1_000 {
        let span = u64::from(ceiling - FLOOR);
        let mut rng = RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rng = rng.get_or_insert_with(Rng::from_entropy);
        for _ in 0..TRIES {
            let port = FLOOR + u16::try_from(rng.below(span)).unwrap_or(0);
            if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_below_the_ephemeral_range_and_skip_what_is_taken() {
        let ceiling = ephemeral_floor();
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut taken = BTreeSet::new();
        taken.insert(held.local_addr().unwrap().port());
        for _ in 0..50 {
            let p = free_port(&taken).unwrap();
            assert!(!taken.contains(&p));
            if ceiling > FLOOR + 1_000 {
                assert!((FLOOR..ceiling).contains(&p), "{p} is below {ceiling}");
            }
            TcpListener::bind(("127.0.0.1", p)).expect("the port is free");
            taken.insert(p);
        }
    }
}
