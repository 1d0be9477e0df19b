//! Progress display of a file source: a bar on the terminal line above the role's status
//! line (indicatif) when stderr is a terminal, else a line every 10 s.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

/// An indicatif draw target that draws a one-line bar on the terminal line above the cursor
/// (saving and restoring the cursor around it), leaving the cursor's line to the role's
/// status line.
#[derive(Debug, Default)]
struct LineAbove {
    text: std::sync::Mutex<String>,
}

impl indicatif::TermLike for LineAbove {
    fn width(&self) -> u16 {
        1000 // lines are short; trailing padding is trimmed
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        if let Ok(mut t) = self.text.lock() {
            t.push_str(s.trim_start_matches('\r'));
        }
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        if let Ok(mut t) = self.text.lock() {
            t.clear();
        }
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        use std::io::Write;
        let text = match self.text.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return Ok(()),
        };
        // Save cursor, up one line, clear it, draw, restore cursor.
        let mut err = std::io::stderr().lock();
        write!(err, "\x1b7\x1b[1A\r\x1b[2K{}\x1b8", text.trim_end())?;
        err.flush()
    }
}

/// Progress display of a file source.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    name: String,
    duration_s: Option<f64>,
    next_line: Instant,
    window: (Instant, u64),
    fps: f64,
    enabled: bool,
}

impl Progress {
    pub(super) fn new(enabled: bool, path: &Path, duration_s: Option<f64>) -> Progress {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let len = duration_s.map_or(0, |d| (d * 1000.0) as u64);
            // The bar lives on its own line above the cursor: serve's status line keeps the
            // cursor's line, and the two never overwrite each other.
            eprintln!();
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(len),
                indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(LineAbove::default()), 2),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} [{bar:24}] {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            let mut short: String = name.chars().take(24).collect();
            if short.len() < name.len() {
                short.push('~');
            }
            bar.set_prefix(short);
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            name,
            duration_s,
            next_line: now + Duration::from_secs(10),
            window: (now, 0),
            fps: 0.0,
            enabled,
        }
    }

    pub(super) fn update(&mut self, pos_s: f64, loop_index: u64, frames: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.window.0).as_secs_f64();
        if dt >= 1.0 {
            self.fps = (frames - self.window.1) as f64 / dt;
            self.window = (now, frames);
        }
        let total = self
            .duration_s
            .map_or_else(|| "?".to_string(), |d| format!("{d:.1} s"));
        let looped = if loop_index > 0 {
            format!(" | loop {}", loop_index + 1)
        } else {
            String::new()
        };
        let msg = format!("{pos_s:.1} / {total} | {:.1} fps{looped}", self.fps);
        if let Some(bar) = &self.bar {
            bar.set_position((pos_s * 1000.0) as u64);
            bar.set_message(msg);
        } else if now >= self.next_line {
            self.next_line = now + Duration::from_secs(10);
            eprintln!("file {}: {msg}", self.name);
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            // Leave the last drawing as it is: by now the status line may have ended its
            // line, and "the line above" is no longer the bar's.
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            bar.finish();
        }
    }
}
