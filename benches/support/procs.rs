//! Child processes of one loss-sweep run (spawned with their stderr logged, interrupted at a
//! deadline, killed past it) and the netsim figures read back from their JSON.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn show(c: &Command) -> String {
    let quote = |s: &str| {
        if s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_./:=@,".contains(ch))
        {
            s.to_string()
        } else {
            format!("'{s}'")
        }
    };
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The processes of one run: spawned with stderr to a log file, waited for with a
/// deadline, killed past it.
pub(crate) struct Procs<'a> {
    pub(crate) dir: PathBuf,
    pub(crate) log: &'a mut Vec<String>,
    pub(crate) children: Vec<(String, Child)>,
}

impl Procs<'_> {
    pub(crate) fn spawn(&mut self, name: &str, mut c: Command) {
        self.log.push(show(&c));
        let err = File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", show(&c)));
        self.children.push((name.to_string(), child));
    }

    /// Lets the children run until `deadline`, then interrupts those still running (SIGINT:
    /// framecast writes its `--stats-json` then), and kills any that are still there 3 s
    /// later. Each child also has its own time limit, so none outlives the bench.
    pub(crate) fn finish(self, deadline: Instant) {
        if let Some(w) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        for (_, child) in &self.children {
            // SAFETY: signalling our own child (it may have exited: then nothing happens, as
            // it is not reaped yet, its pid is still ours).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        }
        let hard = Instant::now() + Duration::from_secs(3);
        for (name, mut child) in self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < hard => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        println!("  ({name} ignored SIGINT: killed)");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

pub(crate) fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Payload bytes into netsim (both ways) and measured loss forward/reverse, percent.
/// `media_up`: the media flows client → `--forward` (SRT) rather than back (framecast).
pub(crate) fn netsim_figures(j: &serde_json::Value, media_up: bool) -> (f64, f64, f64) {
    let loss = |d: &serde_json::Value| {
        let lost = d["lost"].as_f64().unwrap_or(0.0) + d["burst_lost"].as_f64().unwrap_or(0.0);
        100.0 * lost / d["sent"].as_f64().unwrap_or(0.0).max(1.0)
    };
    let (up, down) = (loss(&j["upstream"]), loss(&j["downstream"]));
    let (fwd, rev) = if media_up { (up, down) } else { (down, up) };
    (
        j["bytes_in"].as_f64().expect("netsim stats lack bytes_in"),
        fwd,
        rev,
    )
}
