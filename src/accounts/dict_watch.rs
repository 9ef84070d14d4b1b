//! Lost dict writes: Dovecot's mail processes write last_login and quota_clone into the
//! dict socket as the mail user, and when they cannot reach it (the socket's directory
//! does not admit them: `mail_access_groups`) Dovecot only logs it in its own log, logins
//! keep working, and the last-login times and usage quietly go stale. The core counts
//! successful logins and dict writes; when logins keep succeeding for
//! [`QUIET_AFTER`] with no dict write at all, postern says so in its own log, at most
//! once per [`REPEAT_EVERY`].
//!
//! ```text
//! login 10:00  login 10:10  ... login 10:30   -> warn (30 minutes of logins, no write)
//! login 10:45                                 -> quiet (warned less than an hour ago)
//! write 10:50                                 -> the count starts again
//! event=dict_writes result=missing logins=41 minutes=30 last_write=never dict=/run/postern/dict.sock ...
//! ```

use std::sync::Mutex;

/// How long logins may succeed with no dict write before postern warns.
pub const QUIET_AFTER: i64 = 30 * 60;
/// The warning is repeated at most this often.
pub const REPEAT_EVERY: i64 = 60 * 60;

/// Logins and dict writes seen by this process.
#[derive(Debug, Default)]
pub struct DictWatch {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Successful logins since the last dict write (or the start).
    logins: u64,
    /// When the first of them was.
    first_login: Option<i64>,
    last_write: Option<i64>,
    last_warning: Option<i64>,
    warnings: u64,
}

/// Logins went on without a dict write: what the warning says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    /// Successful logins since the last dict write (or the start).
    pub logins: u64,
    /// Seconds since the first of them.
    pub quiet_for: i64,
    /// When the last dict write arrived; `None`: never since the start.
    pub last_write: Option<i64>,
}

impl DictWatch {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A login succeeded at `now`. `Some` when it is time to warn.
    pub fn login(&self, now: i64) -> Option<Overdue> {
        let mut s = self.state();
        s.logins += 1;
        let first = *s.first_login.get_or_insert(now);
        let quiet_for = now.saturating_sub(first);
        if quiet_for < QUIET_AFTER
            || s.last_warning
                .is_some_and(|w| now.saturating_sub(w) < REPEAT_EVERY)
        {
            return None;
        }
        s.last_warning = Some(now);
        s.warnings += 1;
        Some(Overdue {
            logins: s.logins,
            quiet_for,
            last_write: s.last_write,
        })
    }

    /// How many warnings this process has given.
    pub fn warnings(&self) -> u64 {
        self.state().warnings
    }

    /// A dict write (last_login, quota_clone) arrived at `now`.
    pub fn write(&self, now: i64) {
        let mut s = self.state();
        s.logins = 0;
        s.first_login = None;
        s.last_write = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000;

    #[test]
    fn thirty_minutes_of_logins_without_a_write_warn_once_an_hour() {
        let w = DictWatch::default();
        assert_eq!(w.login(T), None);
        assert_eq!(w.login(T + QUIET_AFTER - 1), None);
        let first = Overdue {
            logins: 3,
            quiet_for: QUIET_AFTER,
            last_write: None,
        };
        assert_eq!(w.login(T + QUIET_AFTER), Some(first));
        // Within the hour: quiet, however many logins.
        for i in 1..REPEAT_EVERY / 60 {
            assert_eq!(w.login(T + QUIET_AFTER + i * 60), None, "minute {i}");
        }
        let again = w.login(T + QUIET_AFTER + REPEAT_EVERY);
        assert_eq!(
            again,
            Some(Overdue {
                logins: 3 + REPEAT_EVERY as u64 / 60,
                quiet_for: QUIET_AFTER + REPEAT_EVERY,
                last_write: None,
            })
        );
    }

    #[test]
    fn a_write_starts_the_count_again() {
        let w = DictWatch::default();
        assert_eq!(w.login(T), None);
        w.write(T + QUIET_AFTER - 10);
        // The quiet time counts from the first login after the write.
        assert_eq!(w.login(T + QUIET_AFTER), None);
        assert_eq!(w.login(T + 2 * QUIET_AFTER - 1), None);
        assert_eq!(
            w.login(T + 2 * QUIET_AFTER),
            Some(Overdue {
                logins: 3,
                quiet_for: QUIET_AFTER,
                last_write: Some(T + QUIET_AFTER - 10),
            })
        );
        // Writes alone never warn, and a single login after a write is no evidence.
        w.write(T + 3 * QUIET_AFTER);
        assert_eq!(w.login(T + 10 * QUIET_AFTER), None);
    }

    #[test]
    fn writes_that_keep_coming_keep_it_quiet() {
        let w = DictWatch::default();
        for minute in 0..600 {
            let now = T + minute * 60;
            assert_eq!(w.login(now), None, "minute {minute}");
            if minute % 20 == 0 {
                w.write(now);
            }
        }
    }
}
