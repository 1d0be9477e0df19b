//! The `framecast` command line: `serve`, `relay`, `play`, `netsim`, `demo`, `load`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use framecast::app::demo::{DemoArgs, run_demo};
use framecast::app::load::{LoadArgs, run_load};
use framecast::app::play::{EXIT_SILENT, Play, PlayArgs, PlayEnd};
use framecast::app::relay::{RelayArgs, RelayRole};
use framecast::app::serve::{Serve, ServeArgs};
use framecast::app::write_stats_json;
use framecast::driver::netsim::{Netsim, NetsimArgs};

/// Stream video and audio over UDP on a local network.
#[derive(Parser, Debug)]
#[command(name = "framecast", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stream a source to viewers (and optionally into a relay).
    Serve(ServeArgs),
    /// Cache and rebroadcast streams to many viewers.
    Relay(RelayArgs),
    /// Watch a stream.
    Play(PlayArgs),
    /// A UDP impairment proxy: loss, bursts, delay, jitter, reordering, duplication.
    Netsim(NetsimArgs),
    /// Serve, relay and two players on loopback, then a summary.
    Demo(DemoArgs),
    /// A load generator: N viewers of one stream in this process (no decoding), then
    /// frames played, late, incomplete and skipped by the relay per viewer, min/median/max.
    ///
    /// A frame is late when its datagrams reached the viewer's socket after its playout
    /// time: arrival is the kernel's receive timestamp, so a load generator that falls
    /// behind on a busy machine does not count its own lag as the relay's (`--loop-time`,
    /// or a kernel without timestamps, uses the threads' clock instead).
    Load(LoadArgs),
    /// Write a new random key file (mode 0600) for --key-file, or the view-only part of one.
    Keygen(framecast::app::keys::KeygenArgs),
}

fn run(cli: Cli, stop: &AtomicBool) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => {
            Serve::bind(a)?.run(stop)?;
        }
        Command::Keygen(a) => {
            let keys = framecast::app::keys::keygen(&a)?;
            eprintln!(
                "keygen: wrote {} ({}); give it to serve, relay and play with --key-file",
                a.out.display(),
                if keys.can_publish() {
                    "publish and view keys"
                } else {
                    "the view key only: it can watch, not publish"
                }
            );
        }
        Command::Relay(a) => {
            RelayRole::bind(a)?.run(stop)?;
        }
        Command::Play(a) => {
            let r = Play::bind(a)?.run(stop)?;
            let c = &r.client;
            eprintln!(
                "played {} frames intact, {} dropped late, {} incomplete; {} datagrams recovered, {} lost",
                c.frames_played,
                c.frames_late,
                c.frames_incomplete,
                c.video.recovered + c.audio.recovered,
                c.video.lost + c.audio.lost
            );
            if r.end == PlayEnd::Silent {
                return Ok(ExitCode::from(EXIT_SILENT));
            }
        }
        Command::Netsim(a) => {
            let n = Netsim::bind(&a)?;
            eprintln!("netsim: {} -> {}", n.local_addr(), a.forward);
            let stats = n.run(stop)?;
            eprintln!(
                "netsim: {} datagrams, {} lost, {} duplicated, {} reordered",
                stats.sent,
                stats.lost + stats.burst_lost,
                stats.duplicated,
                stats.reordered
            );
            if let Some(p) = &a.stats_json {
                write_stats_json(p, &stats)?;
            }
        }
        Command::Demo(a) => {
            run_demo(&a, stop)?;
        }
        Command::Load(a) => {
            let r = run_load(&a, stop)?;
            eprintln!("{}", r.line());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,symphonia=off"),
    )
    .init();
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || s.store(true, Ordering::Relaxed)) {
        eprintln!(
            "framecast: warning: cannot catch Ctrl-C ({e}); it will end the program abruptly"
        );
    }
    match run(cli, &stop) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("framecast: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
