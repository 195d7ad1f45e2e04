//! Bounded audit of failed sign-ins: from one address, the first few failures
//! of a window are recorded one by one; the rest are counted, and the count is
//! recorded once when the window ends (or with the next recorded failure). A
//! client can then neither flood the append-only log nor hide in it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures recorded individually per address and window.
pub const PER_WINDOW: u32 = 10;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(600);
/// Addresses tracked at once; beyond it, failures are recorded untracked.
const MAX_ADDRESSES: usize = 100_000;

struct Entry {
    started: Instant,
    recorded: u32,
    counted: u32,
}

#[derive(Default)]
pub struct AuditThrottle {
    entries: Mutex<HashMap<String, Entry>>,
}

impl AuditThrottle {
    /// Whether a failure from `addr` is recorded: `Some(detail)` to record
    /// (`reason`, with the count of earlier unrecorded ones if any), `None` to
    /// only count it.
    pub fn admit(&self, addr: Option<&str>, reason: &str) -> Option<String> {
        let addr = addr.unwrap_or("unknown");
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return Some(reason.to_owned());
        };
        if entries.len() >= MAX_ADDRESSES && !entries.contains_key(addr) {
            entries.retain(|_, e| now.duration_since(e.started) < WINDOW);
            if entries.len() >= MAX_ADDRESSES {
                return Some(reason.to_owned());
            }
        }
        let entry = entries.entry(addr.to_owned()).or_insert(Entry {
            started: now,
            recorded: 0,
            counted: 0,
        });
        let mut carried = 0;
        if now.duration_since(entry.started) >= WINDOW {
            carried = entry.counted;
            *entry = Entry {
                started: now,
                recorded: 0,
                counted: 0,
            };
        }
        if entry.recorded >= PER_WINDOW {
            entry.counted += 1;
            return None;
        }
        entry.recorded += 1;
        Some(match carried {
            0 => reason.to_owned(),
            n => format!("{reason}; {n} earlier failures from this address were counted, not recorded one by one"),
        })
    }

    /// The counts of windows that have ended: `(address, unrecorded failures)`.
    pub fn drain(&self) -> Vec<(String, u32)> {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        entries.retain(|addr, e| {
            if now.duration_since(e.started) < WINDOW {
                return true;
            }
            if e.counted > 0 {
                out.push((addr.clone(), e.counted));
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failures_of_a_window_are_recorded_and_the_rest_counted() {
        let t = AuditThrottle::default();
        for _ in 0..PER_WINDOW {
            assert!(t.admit(Some("10.0.0.1"), "bad").is_some());
        }
        assert_eq!(t.admit(Some("10.0.0.1"), "bad"), None);
        assert_eq!(t.admit(Some("10.0.0.1"), "bad"), None);
        assert!(t.admit(Some("10.0.0.2"), "bad").is_some(), "per address");
        assert!(t.drain().is_empty(), "the window has not ended");
    }
}
