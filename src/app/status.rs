//! The live one-line status every role prints on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Prints a status line at most once per interval: rewritten in place on a terminal, one
/// line every few seconds otherwise (logs stay readable).
#[derive(Debug)]
pub struct StatusLine {
    tty: bool,
    enabled: bool,
    next: Option<Instant>,
    interval: Duration,
    last: Option<(Instant, Vec<f64>)>,
    printed: bool,
}

impl StatusLine {
    /// A status line; `enabled` false makes it silent (the demo runs several roles).
    pub fn new(enabled: bool) -> StatusLine {
        let tty = std::io::stderr().is_terminal();
        StatusLine {
            tty,
            enabled,
            next: None,
            interval: if tty {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            },
            last: None,
            printed: false,
        }
    }

    /// When the next line is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.enabled.then_some(self.next).flatten()
    }

    /// If a line is due, computes per-second rates of `counters` since the last line and
    /// prints what `render` makes of them.
    pub fn tick(&mut self, now: Instant, counters: &[f64], render: impl FnOnce(&[f64]) -> String) {
        if !self.enabled {
            return;
        }
        let Some(next) = self.next else {
            self.next = Some(now + self.interval);
            self.last = Some((now, counters.to_vec()));
            return;
        };
        if now < next {
            return;
        }
        let rates: Vec<f64> = match &self.last {
            Some((t, prev)) => {
                let dt = now.saturating_duration_since(*t).as_secs_f64().max(1e-3);
                counters
                    .iter()
                    .zip(prev)
                    .map(|(c, p)| (c - p) / dt)
                    .collect()
            }
            None => vec![0.0; counters.len()],
        };
        let line = render(&rates);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        self.printed = true;
        self.last = Some((now, counters.to_vec()));
        self.next = Some(now + self.interval);
    }

    /// Ends the line on a terminal so that what follows starts on a fresh one.
    pub fn finish(&mut self) {
        if self.enabled && self.tty && self.printed {
            eprintln!();
        }
    }
}
