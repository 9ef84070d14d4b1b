//! The sign-up guard: while the mail root's file system is nearly full or the machine
//! is overloaded, no account is created by any route (just-in-time login, `/new`,
//! invites). Existing accounts keep working; the refusal is temporary.
//!
//! ```text
//! [registration] min_free_disk = "1G"   statvfs(mail root): f_bavail * f_frsize
//! [registration] max_load_1m = 5        sysinfo(2): the 1-minute load average
//! event=signup_guard result=paused reason=disk free=812M min=1G   (at most once a minute)
//! event=signup_guard result=resumed
//! ```
//!
//! One reading serves every request for a second, so the check costs a lock and a
//! comparison. The load comes from sysinfo(2), the numbers `/proc/loadavg` shows, because
//! the packaged unit's `ProcSubset=pid` hides `/proc/loadavg`. A reading that fails (the
//! mail root's file system cannot be asked) does not pause sign-ups: it is logged, at
//! most once a minute, and creation goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::format_size;

/// How long one reading of the disk and the load is used.
const READING_TTL: Duration = Duration::from_secs(1);
/// At most one log line per this long about a paused guard or a failed reading.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(60);

/// Registration is paused for the moment: answered as a temporary failure everywhere.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("registration is temporarily unavailable")]
pub struct Paused {
    pub why: PauseReason,
}

/// Which limit is exceeded, with the numbers (for the log line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PauseReason {
    Disk { free: u64, min: u64 },
    Load { load: f64, max: f64 },
}

impl PauseReason {
    /// The log line's fields.
    pub fn fields(&self) -> String {
        match *self {
            PauseReason::Disk { free, min } => format!(
                "reason=disk free={} min={}",
                format_size_rounded(free),
                format_size(min)
            ),
            PauseReason::Load { load, max } => format!("reason=load load_1m={load:.2} max={max}"),
        }
    }
}

/// Bytes in the largest binary unit at or below them, rounded down (`812M`).
fn format_size_rounded(b: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if b >= 1u64 << shift {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

/// What the machine said at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Bytes free for unprivileged users on the mail root's file system.
    pub free_disk: Result<u64, String>,
    pub load_1m: Result<f64, String>,
}

/// Takes a reading for the mail root `root`.
pub type Probe = fn(&Path) -> Reading;

/// The system's numbers: statvfs of `root` (or of its nearest existing parent, where a
/// fresh install has not made it yet) and sysinfo's load.
pub fn system_probe(root: &Path) -> Reading {
    Reading {
        free_disk: free_bytes(root),
        load_1m: nix::sys::sysinfo::sysinfo()
            .map(|s| s.load_average().0)
            .map_err(|e| e.to_string()),
    }
}

fn free_bytes(root: &Path) -> Result<u64, String> {
    let mut path = root;
    loop {
        match nix::sys::statvfs::statvfs(path) {
            Ok(s) => {
                return Ok(s.blocks_available().saturating_mul(s.fragment_size()));
            }
            Err(nix::errno::Errno::ENOENT) => match path.parent() {
                Some(parent) => path = parent,
                None => return Err("no such directory".into()),
            },
            Err(e) => return Err(format!("{}: {e}", root.display())),
        }
    }
}

/// The cached reading and what was last decided.
pub struct Gauge {
    state: Mutex<State>,
    paused: AtomicBool,
}

struct State {
    probe: Probe,
    last: Option<(Instant, PathBuf, Reading)>,
}

impl Default for Gauge {
    fn default() -> Self {
        Gauge::new(system_probe)
    }
}

impl Gauge {
    pub fn new(probe: Probe) -> Gauge {
        Gauge {
            state: Mutex::new(State { probe, last: None }),
            paused: AtomicBool::new(false),
        }
    }

    /// Replaces where readings come from (tests), dropping the cached one.
    pub fn set_probe(&self, probe: Probe) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = State { probe, last: None };
    }

    /// The reading for `root`, at most [`READING_TTL`] old.
    pub fn reading(&self, root: &Path, now: Instant) -> Reading {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, path, reading)) = state.last.as_ref() {
            if path == root && now.saturating_duration_since(*at) < READING_TTL {
                return reading.clone();
            }
        }
        let reading = (state.probe)(root);
        state.last = Some((now, root.to_owned(), reading.clone()));
        reading
    }

    /// Notes the decision; true when it differs from the one before.
    pub fn changed(&self, paused: bool) -> bool {
        self.paused.swap(paused, Ordering::Relaxed) != paused
    }
}

/// The rule: which limit `reading` exceeds, if any. A number that could not be read
/// exceeds nothing.
pub fn exceeded(reading: &Reading, min_free: u64, max_load: Option<f64>) -> Option<PauseReason> {
    if min_free > 0 {
        if let Ok(free) = reading.free_disk {
            if free < min_free {
                return Some(PauseReason::Disk {
                    free,
                    min: min_free,
                });
            }
        }
    }
    if let (Some(max), Ok(load)) = (max_load, &reading.load_1m) {
        if *load > max {
            return Some(PauseReason::Load { load: *load, max });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(free: u64, load: f64) -> Reading {
        Reading {
            free_disk: Ok(free),
            load_1m: Ok(load),
        }
    }

    #[test]
    fn each_limit_and_unreadable_numbers() {
        let g = 1u64 << 30;
        assert_eq!(exceeded(&reading(2 * g, 0.5), g, None), None);
        assert_eq!(
            exceeded(&reading(g - 1, 0.5), g, None),
            Some(PauseReason::Disk {
                free: g - 1,
                min: g
            })
        );
        // Exactly the minimum is enough; 0 switches the disk check off.
        assert_eq!(exceeded(&reading(g, 0.5), g, None), None);
        assert_eq!(exceeded(&reading(0, 0.5), 0, None), None);
        assert_eq!(exceeded(&reading(2 * g, 9.0), g, None), None);
        assert_eq!(
            exceeded(&reading(2 * g, 5.01), g, Some(5.0)),
            Some(PauseReason::Load {
                load: 5.01,
                max: 5.0
            })
        );
        assert_eq!(exceeded(&reading(2 * g, 5.0), g, Some(5.0)), None);
        let unreadable = Reading {
            free_disk: Err("EACCES".into()),
            load_1m: Err("ENOSYS".into()),
        };
        assert_eq!(exceeded(&unreadable, g, Some(0.1)), None);
        assert_eq!(
            PauseReason::Disk {
                free: 812 << 20,
                min: g
            }
            .fields(),
            "reason=disk free=812M min=1G"
        );
        assert_eq!(
            PauseReason::Load {
                load: 7.25,
                max: 5.0
            }
            .fields(),
            "reason=load load_1m=7.25 max=5"
        );
    }

    #[test]
    fn a_reading_serves_for_a_second_and_follows_the_root() {
        use std::sync::atomic::AtomicU64;
        static CALLS: AtomicU64 = AtomicU64::new(0);
        fn counting(_: &Path) -> Reading {
            CALLS.fetch_add(1, Ordering::SeqCst);
            reading(1, 0.0)
        }
        let gauge = Gauge::new(counting);
        let t0 = Instant::now();
        let root = Path::new("/var/vmail");
        gauge.reading(root, t0);
        gauge.reading(root, t0 + Duration::from_millis(900));
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        gauge.reading(root, t0 + Duration::from_millis(1000));
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
        gauge.reading(Path::new("/srv/mail"), t0 + Duration::from_millis(1000));
        assert_eq!(CALLS.load(Ordering::SeqCst), 3);
        assert!(!gauge.changed(false));
        assert!(gauge.changed(true));
        assert!(!gauge.changed(true));
        assert!(gauge.changed(false));
    }

    #[test]
    fn the_system_probe_reads_this_machine() {
        let r = system_probe(Path::new("/tmp/postern-no-such-dir/below"));
        // The nearest existing parent (/tmp) answers.
        assert!(r.free_disk.is_ok(), "{r:?}");
        assert!(r.load_1m.as_ref().is_ok_and(|l| *l >= 0.0), "{r:?}");
    }
}
