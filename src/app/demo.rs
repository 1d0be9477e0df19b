//! `framecast demo`: serve, relay and players on loopback in one process, optionally
//! through the impairment proxy on both hops, then a summary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::play::{Play, PlayArgs, PlayReport};
use super::relay::{RelayArgs, RelayReport, RelayRole};
use super::serve::{Serve, ServeArgs, ServeReport};
use crate::driver::netsim::{Netsim, NetsimArgs, NetsimStats};

/// `framecast demo` options.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Seconds to stream.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// The synthetic source, `test:WxH@FPS`.
    #[arg(long, default_value = "test:1280x720@30")]
    pub source: String,
    /// Players to start.
    #[arg(long, default_value_t = 2)]
    pub players: usize,
    /// Packet loss in percent on each hop (serve to relay, relay to players), through netsim.
    /// The default is a realistic network, not a perfect loopback; `--loss 0 --delay 0
    /// --jitter 0` turns the impairment off.
    #[arg(long, default_value_t = 1.0)]
    pub loss: f64,
    /// Mean loss-burst length (Gilbert-Elliott) instead of independent losses.
    #[arg(long)]
    pub burst: Option<f64>,
    /// One-way delay in milliseconds added on each hop.
    #[arg(long, default_value_t = 5)]
    pub delay: u64,
    /// Delay jitter in milliseconds on each hop.
    #[arg(long, default_value_t = 1)]
    pub jitter: u64,
    /// Player jitter-buffer latency in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub latency: u64,
    /// Seed of the impairments.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write every role's figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
}

/// Everything the demo measured.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// The server.
    pub serve: ServeReport,
    /// The relay.
    pub relay: RelayReport,
    /// The players.
    pub players: Vec<PlayReport>,
    /// The impairment proxies (serve-relay, relay-players), when used.
    pub netsim: Vec<NetsimStats>,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames played intact, summed over players.
    pub frames_played: u64,
    /// Share of sent frames every player played intact, percent.
    pub delivered_pct: f64,
}

fn netsim_args(listen: SocketAddr, forward: SocketAddr, a: &DemoArgs, seed: u64) -> NetsimArgs {
    let mut n = NetsimArgs::new(listen, forward);
    n.loss = a.loss;
    n.burst = a.burst;
    n.delay = a.delay;
    n.jitter = a.jitter;
    n.seed = seed;
    n
}

/// Runs the demo; `stop` ends it early (Ctrl-C).
pub fn run_demo(a: &DemoArgs, stop: &AtomicBool) -> anyhow::Result<DemoReport> {
    let duration = super::duration_arg("duration", Some(a.duration))?.unwrap_or_default();
    if a.players == 0 || a.players > 64 {
        anyhow::bail!("--players {}: expected 1-64", a.players);
    }
    let lo: SocketAddr = "127.0.0.1:0".parse()?;
    let impaired = a.loss > 0.0 || a.delay > 0 || a.jitter > 0 || a.burst.is_some();

    let mut sargs = ServeArgs::new(lo);
    sargs.source = a.source.clone();
    sargs.duration = Some(duration.as_secs_f64());
    sargs.seed = Some(a.seed);
    // Give the relay and the players a moment to subscribe before the first frame.
    sargs.start_delay_ms = 300;
    let mut serve = Serve::bind(sargs)?;
    serve.status = false;
    let serve_addr = serve.local_addr();

    let mut netsims = Vec::new();
    let upstream = if impaired {
        let n = Netsim::bind(&netsim_args(lo, serve_addr, a, a.seed))
            .context("demo: netsim (serve side)")?;
        let addr = n.local_addr();
        netsims.push(n);
        addr
    } else {
        serve_addr
    };
    let mut rargs = RelayArgs::new(lo);
    rargs.upstream = Some(upstream);
    let mut relay = RelayRole::bind(rargs)?;
    relay.status = false;
    let relay_addr = relay.local_addr();
    let viewer_side = if impaired {
        let n = Netsim::bind(&netsim_args(lo, relay_addr, a, a.seed.wrapping_add(1)))
            .context("demo: netsim (viewer side)")?;
        let addr = n.local_addr();
        netsims.push(n);
        addr
    } else {
        relay_addr
    };
    let mut players = Vec::new();
    for _ in 0..a.players {
        let mut p = PlayArgs::new(viewer_side, "live");
        p.latency = a.latency;
        let mut play = Play::bind(p)?;
        play.status = false;
        players.push(play);
    }

    eprintln!(
        "framecast demo: {} for {:.1} s, serve {serve_addr} -> relay {relay_addr} -> {} player(s){}",
        a.source,
        duration.as_secs_f64(),
        a.players,
        if impaired {
            format!(
                " through a simulated network on both hops: {}% loss, {} ms ± {} ms each way (--loss 0 --delay 0 --jitter 0 for a perfect loopback)",
                a.loss, a.delay, a.jitter
            )
        } else {
            String::new()
        }
    );

    let others = Arc::new(AtomicBool::new(false));
    let relay_t = {
        let s = others.clone();
        std::thread::spawn(move || relay.run(&s))
    };
    let netsim_t: Vec<_> = netsims
        .into_iter()
        .map(|n| {
            let s = others.clone();
            std::thread::spawn(move || n.run(&s))
        })
        .collect();
    let player_t: Vec<_> = players
        .into_iter()
        .map(|p| {
            let s = others.clone();
            std::thread::spawn(move || p.run(&s))
        })
        .collect();
    let serve_report = serve.run(stop);
    // Let the players play out what is still in their buffers.
    std::thread::sleep(Duration::from_millis(a.latency + 400));
    others.store(true, Ordering::Relaxed);
    let serve = serve_report?;
    let relay = relay_t
        .join()
        .map_err(|_| anyhow::anyhow!("relay thread panicked"))??;
    let mut netsim = Vec::new();
    for t in netsim_t {
        netsim.push(
            t.join()
                .map_err(|_| anyhow::anyhow!("netsim thread panicked"))??,
        );
    }
    let mut reports = Vec::new();
    for t in player_t {
        reports.push(
            t.join()
                .map_err(|_| anyhow::anyhow!("player thread panicked"))??,
        );
    }
    let sent = serve.server.frames_sent;
    let played: u64 = reports.iter().map(|p| p.client.frames_played).sum();
    let expected = sent * reports.len() as u64;
    let report = DemoReport {
        serve,
        relay,
        players: reports,
        netsim,
        frames_sent: sent,
        frames_played: played,
        delivered_pct: if expected > 0 {
            100.0 * played as f64 / expected as f64
        } else {
            0.0
        },
    };
    print_summary(&report);
    if let Some(p) = &a.stats_json {
        super::write_stats_json(p, &report)?;
    }
    Ok(report)
}

fn print_summary(r: &DemoReport) {
    let s = &r.serve;
    println!(
        "serve   frames sent {} | mean JPEG {:.1} KB, encode {:.2} ms | datagrams {} | retransmits {}",
        s.server.frames_sent,
        s.source.mean_jpeg_bytes / 1000.0,
        s.source.mean_encode_ms,
        s.server.video_datagrams + s.server.audio_blocks,
        s.server.relay.retransmits_sent
    );
    let rl = &r.relay.relay;
    println!(
        "relay   subscribers {} | datagrams in {} out {} | cache hits {} | asked upstream {} | queue drops {}",
        rl.subscribers,
        rl.datagrams_in,
        rl.datagrams_out,
        rl.cache_hits,
        rl.upstream_requests,
        rl.queue_frames_dropped
    );
    for (i, n) in r.netsim.iter().enumerate() {
        println!(
            "netsim{} {} | datagrams {} | lost {} | duplicated {} | reordered {}",
            i + 1,
            if i == 0 {
                "serve<->relay  "
            } else {
                "relay<->players"
            },
            n.sent,
            n.lost + n.burst_lost,
            n.duplicated,
            n.reordered
        );
    }
    for (i, p) in r.players.iter().enumerate() {
        let c = &p.client;
        println!(
            "player{} played {}/{} intact ({:.2}%) | decoded {} | recovered {} datagrams | lost {} | late {} | incomplete {} | audio concealed {} | rtt {:.2} ms",
            i + 1,
            c.frames_played,
            r.frames_sent,
            if r.frames_sent > 0 {
                100.0 * c.frames_played as f64 / r.frames_sent as f64
            } else {
                0.0
            },
            p.frames_decoded,
            c.video.recovered + c.audio.recovered,
            c.video.lost + c.audio.lost,
            c.frames_late,
            c.frames_incomplete,
            c.audio_concealed,
            c.rtt_ms
        );
    }
    let recovered: u64 = r
        .players
        .iter()
        .map(|p| p.client.video.recovered + p.client.audio.recovered)
        .sum();
    let dropped: u64 = r
        .players
        .iter()
        .map(|p| p.client.frames_late + p.client.frames_incomplete + p.client.frames_overflow)
        .sum();
    let lost: u64 = r.netsim.iter().map(|n| n.lost + n.burst_lost).sum();
    println!(
        "summary: frames sent {} | delivered intact {}/{} ({:.2}%) | dropped {} | datagrams lost in transit {} | recovered {} | retransmitted {}",
        r.frames_sent,
        r.frames_played,
        r.frames_sent * r.players.len() as u64,
        r.delivered_pct,
        dropped,
        lost,
        recovered,
        r.serve.server.relay.retransmits_sent + r.relay.relay.retransmits_sent
    );
}
