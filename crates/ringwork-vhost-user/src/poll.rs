//! How a worker thread polls its rings before it sleeps.
//!
//! Polling spends CPU to save a sleep and a wakeup (and the driver's kick)
//! when the driver makes buffers available again soon after the worker ran
//! out of them. A fixed window pays off for one busy queue but burns CPU
//! for nothing where buffers come rarely or several workers share few
//! CPUs; the adaptive policy sizes the window by what it observes, as
//! QEMU's event loop does for its `poll-max-ns`: it grows while the thread
//! keeps being woken shortly after it went to sleep and shrinks when the
//! thread sleeps long.
//!
//! Trust and panic contract: pure arithmetic on durations; nothing here
//! panics.

use std::time::Duration;

/// How worker threads poll their rings after processing before they sleep
/// ([`Server::set_poll_policy`](crate::Server::set_poll_policy)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollPolicy {
    /// Sleep at once (the default).
    #[default]
    Off,
    /// Poll until this long has passed since the worker last made
    /// progress (`ringwork serve --poll-us`).
    Fixed(Duration),
    /// A window between zero and `max` that adapts
    /// (`ringwork serve --poll-max-us`): after each sleep, the time since
    /// the worker last made progress (polling plus sleeping) is compared
    /// with the window. Within the window: unchanged. Longer than `max`:
    /// halved (zero below [`PollPolicy::ADAPTIVE_START`]), since polling that long
    /// would not have caught it. In between: doubled (from
    /// [`PollPolicy::ADAPTIVE_START`]), up to `max`, since a longer poll would have.
    Adaptive {
        /// The largest window.
        max: Duration,
    },
}

impl PollPolicy {
    /// Where an adaptive window starts when it grows from zero, and below
    /// which a shrinking window becomes zero.
    pub const ADAPTIVE_START: Duration = Duration::from_micros(4);

    /// A fixed window, or [`PollPolicy::Off`] for a zero one.
    pub fn fixed(window: Duration) -> Self {
        if window.is_zero() {
            Self::Off
        } else {
            Self::Fixed(window)
        }
    }

    /// The window a worker starts with.
    pub fn initial_window(&self) -> Duration {
        match *self {
            Self::Off | Self::Adaptive { .. } => Duration::ZERO,
            Self::Fixed(w) => w,
        }
    }

    /// The window after a sleep that ended `idle` after the worker's last
    /// progress, when it was `window`.
    pub fn next_window(&self, window: Duration, idle: Duration) -> Duration {
        let Self::Adaptive { max } = *self else {
            return window;
        };
        if idle <= window {
            window
        } else if idle > max {
            let w = window / 2;
            if w < Self::ADAPTIVE_START {
                Duration::ZERO
            } else {
                w
            }
        } else if window.is_zero() {
            Self::ADAPTIVE_START.min(max)
        } else {
            (window * 2).min(max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn off_and_fixed_never_change() {
        for p in [PollPolicy::Off, PollPolicy::fixed(50 * US)] {
            let w = p.initial_window();
            for idle in [US, 40 * US, 10_000 * US] {
                assert_eq!(p.next_window(w, idle), w, "{p:?}");
            }
        }
        assert_eq!(PollPolicy::fixed(Duration::ZERO), PollPolicy::Off);
        assert_eq!(PollPolicy::fixed(7 * US).initial_window(), 7 * US);
    }

    #[test]
    fn adaptive_grows_to_catch_short_gaps_and_stops_at_max() {
        let p = PollPolicy::Adaptive { max: 50 * US };
        let w = p.initial_window();
        // The driver comes back `gap` after the worker ran dry, every time:
        // the worker sleeps (and the window is adjusted) until the window
        // covers the gap and polling catches the driver.
        let grow = |gap: Duration| {
            let (mut w, mut seen) = (p.initial_window(), vec![]);
            while w < gap {
                w = p.next_window(w, gap);
                seen.push(w.as_micros());
            }
            seen
        };
        assert_eq!(grow(30 * US), [4, 8, 16, 32]);
        assert_eq!(grow(45 * US), [4, 8, 16, 32, 50]);
        assert_eq!(w, Duration::ZERO);
        // A gap longer than `max` is never polled for.
        assert_eq!(p.next_window(Duration::ZERO, 80 * US), Duration::ZERO);
        // Once the window covers the gap, events arrive while polling: the
        // worker never sleeps, so nothing is adjusted; a sleep that ends
        // within the window leaves it too.
        assert_eq!(p.next_window(50 * US, 20 * US), 50 * US);
    }

    #[test]
    fn adaptive_shrinks_to_zero_when_sleeps_are_long() {
        let p = PollPolicy::Adaptive { max: 50 * US };
        let mut w = 50 * US;
        let mut seen = vec![];
        for _ in 0..5 {
            w = p.next_window(w, 1_000 * US);
            seen.push(w.as_micros());
        }
        assert_eq!(seen, [25, 12, 6, 0, 0]);
    }
}
