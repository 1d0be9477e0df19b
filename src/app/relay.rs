//! `framecast relay`: the cache server. Publishers push into it (`serve --relay`), or it
//! pulls from `--upstream`; viewers subscribe by stream name.

use super::keys::{KeyArgs, layer_seed, refuse_words};
use crate::proto::secure::{Role, Secure, SecureEvent, SecureStats};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::outputs::{OutputArgs, Outputs, OutputsReport};
use super::status::StatusLine;
use crate::driver::event_loop::{EventLoop, IoStats, LoopControl};
use crate::driver::udp::SOCKET_BUFFER;
use crate::driver::udp::{BufferSizes, bind_udp};
use crate::proto::node::soonest;
use crate::proto::relay::{
    OverloadLimit, Relay, RelayConfig, RelayEvent, RelayStats, SubscriberInfo,
};

/// `framecast relay` options.
#[derive(clap::Args, Debug, Clone)]
pub struct RelayArgs {
    /// Address publishers and viewers send to.
    #[arg(long, default_value = "0.0.0.0:6000")]
    pub listen: SocketAddr,
    /// A server or relay to pull streams from when nobody pushes them here.
    #[arg(long, value_name = "ADDR")]
    pub upstream: Option<SocketAddr>,
    /// Per-subscriber queue, KiB; beyond it whole frames are dropped for that subscriber.
    #[arg(long, default_value_t = 4096)]
    pub queue_kib: usize,
    /// Datagrams cached per flow for retransmissions.
    #[arg(long, default_value_t = 8192)]
    pub cache_packets: usize,
    /// Most subscribers.
    #[arg(long, default_value_t = 1024)]
    pub max_subscribers: usize,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write figures as JSON to this file at exit.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Send every datagram on its own (`sendmmsg` without UDP GSO), as after a kernel or
    /// route refused GSO; `FRAMECAST_NO_GSO=1` does the same for every role.
    #[arg(long)]
    pub no_gso: bool,
    /// Sender threads for the fan-out, each owning a shard of the subscribers: `auto` sends
    /// on the relay's own thread until it is saturated (85 % of a core for 2 s), then adds
    /// threads one at a time, up to one per core but one; `N` starts N threads (0: never).
    /// With GSO one core sends several hundred thousand datagrams a second (hundreds of
    /// 15 Mbit/s viewers), and every extra thread costs a hand-off per batch.
    #[arg(long, default_value = "auto", value_name = "auto|N")]
    pub send_threads: SendThreads,
    /// HTTP and RTP outputs.
    #[command(flatten)]
    pub outputs: OutputArgs,
    /// Keys (proto-spec.md §8): the publish key lets publishers push here, the view key
    /// lets viewers watch and this relay pull from `--upstream`.
    #[command(flatten)]
    pub keys: KeyArgs,
}

impl RelayArgs {
    /// Options for a relay on `listen`.
    pub fn new(listen: SocketAddr) -> RelayArgs {
        RelayArgs {
            listen,
            upstream: None,
            queue_kib: 4096,
            cache_packets: 8192,
            max_subscribers: 1024,
            duration: None,
            stats_json: None,
            no_gso: false,
            send_threads: SendThreads::Auto,
            outputs: OutputArgs::default(),
            keys: KeyArgs::default(),
        }
    }
}

/// `--send-threads`: how many threads send the fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendThreads {
    /// The relay's own thread until it is saturated, then more as needed.
    Auto,
    /// Exactly this many sender threads (0: the relay's own thread only).
    Fixed(usize),
}

impl std::str::FromStr for SendThreads {
    type Err = String;

    fn from_str(s: &str) -> Result<SendThreads, String> {
        let max = crate::driver::send_pool::MAX_SEND_THREADS;
        match s {
            "auto" => Ok(SendThreads::Auto),
            _ => match s.parse::<usize>() {
                Ok(n) if n <= max => Ok(SendThreads::Fixed(n)),
                _ => Err(format!(
                    "expected `auto` or a number of threads from 0 to {max} (0 sends on the relay's own thread)"
                )),
            },
        }
    }
}

/// What `relay` reports at exit.
#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    /// Always "relay".
    pub role: &'static str,
    /// Listening address.
    pub listen: String,
    /// Protocol figures.
    pub relay: RelayStats,
    /// Per-subscriber figures.
    pub subscribers: Vec<SubscriberInfo>,
    /// Socket figures.
    pub io: IoStats,
    /// Socket buffers.
    pub buffers: BufferSizes,
    /// HTTP and RTP outputs.
    pub outputs: OutputsReport,
    /// Secure-layer figures (all 0 without keys).
    pub secure: SecureStats,
}

/// A bound relay.
pub struct RelayRole {
    args: RelayArgs,
    lp: EventLoop<Secure<Relay>>,
    buffers: BufferSizes,
    outputs: Outputs,
    /// Print the live status line.
    pub status: bool,
}

impl std::fmt::Debug for RelayRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayRole")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl RelayRole {
    /// Checks the options and binds the socket.
    pub fn bind(args: RelayArgs) -> anyhow::Result<RelayRole> {
        if args.queue_kib == 0 || args.cache_packets == 0 || args.max_subscribers == 0 {
            anyhow::bail!("--queue-kib, --cache-packets and --max-subscribers must be positive");
        }

        let keys = args.keys.load()?;
        let (socket, buffers) = bind_udp(args.listen, SOCKET_BUFFER).context("relay --listen")?;
        crate::driver::udp::warn_if_clamped(&buffers);
        let mut key = [0u8; 16];
        fastrand::Rng::new().fill(&mut key);
        let cfg = RelayConfig {
            token_key: key,
            queue_bytes: args.queue_kib * 1024,
            cache_packets: args.cache_packets,
            max_subscribers: args.max_subscribers,
            upstream: args.upstream,
            ..RelayConfig::default()
        };
        let mut node = Secure::new(Relay::new(cfg), keys.clone(), layer_seed(None)?);
        if let Some(up) = args.upstream {
            node.connect(up, Role::View);
        }
        let mut lp = EventLoop::new(socket, node)?;
        lp.set_gso(!args.no_gso);
        match args.send_threads {
            SendThreads::Auto => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                lp.set_auto_send_threads(cores.saturating_sub(1).min(8));
            }
            SendThreads::Fixed(n) => lp.set_send_threads(n).context("relay --send-threads")?,
        }
        let listen = lp.local_addr().unwrap_or(args.listen);
        let on_demand = args.upstream.is_some();
        let outputs = Outputs::start_keyed("relay", &args.outputs, listen, None, on_demand, keys)?;
        Ok(RelayRole {
            args,
            lp,
            buffers,
            outputs,
            status: true,
        })
    }

    /// Datagrams per send system call (see [`EventLoop::set_batch_size`]).
    pub fn set_batch_size(&mut self, n: usize) {
        self.lp.set_batch_size(n);
    }

    /// Turns UDP GSO off (`false`) for this relay's sends (see [`EventLoop::set_gso`]).
    pub fn set_gso(&mut self, on: bool) {
        self.lp.set_gso(on);
    }

    /// The HTTP server's address (`--http`).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.outputs.http_addr()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.lp.local_addr().unwrap_or(self.args.listen)
    }

    /// Relays until `--duration` elapses or `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> anyhow::Result<RelayReport> {
        // The coder's tables now, not at the first repair with every subscriber waiting.
        crate::proto::fec::warm_up();
        let end = super::duration_arg("duration", self.args.duration)?.map(|d| Instant::now() + d);
        let mut status = StatusLine::new(self.status);
        // Frames skipped for each limit when the last status line was printed.
        let mut skips_shown = [0u64; 3];
        let outputs = &mut self.outputs;
        let auth = super::keys::auth_label(self.lp.node().is_keyed());
        // Refused publishers, counted per (source, stream); each logged once.
        let mut refused: std::collections::BTreeMap<(SocketAddr, String), u64> = Default::default();
        self.lp
            .run(stop, |relay, now| {
                while let Some(e) = relay.poll_secure_event() {
                    match e {
                        SecureEvent::Refused { peer, reason } => log::warn!(
                            "relay: refused {peer}: {} (further refusals of this source are counted, not logged)",
                            refuse_words(reason)
                        ),
                        SecureEvent::Plaintext { peer } => log::warn!(
                            "relay: {peer} sent in the clear and was told keys are required (auth_required); counted from now on"
                        ),
                        SecureEvent::RefusedBy { peer, reason } => log::warn!(
                            "relay: upstream {peer} refused this relay: {}",
                            refuse_words(reason)
                        ),
                        SecureEvent::Connected { .. } => {}
                    }
                }
                while let Some(e) = relay.poll_event() {
                    log::debug!("relay: {e:?}");
                    if let RelayEvent::StreamRefused { stream, from } = &e {
                        let n = refused.entry((*from, stream.clone())).or_insert(0);
                        *n += 1;
                        if *n == 1 {
                            log::warn!(
                                "relay: refused stream {stream:?} from {from}: another publisher feeds it (name_taken); counted from now on"
                            );
                        }
                    }
                    if let RelayEvent::StreamClaimed { stream, .. } = &e {
                        outputs.stream_seen(stream);
                    }
                }
                let snapshot = outputs.tick(now, relay);
                let s = relay.stats();
                status.tick(now, &[s.datagrams_in as f64, s.datagrams_out as f64, s.bytes_out as f64 * 8.0], |r| {
                    format!(
                        "relay ({auth}) | in {:.0} pkt/s | out {:.0} pkt/s {:.1} Mbit/s | subscribers {} | cache hits {} | asked upstream {} | queue drops {} | bad {}{}",
                        r[0],
                        r[1],
                        r[2] / 1e6,
                        s.subscribers,
                        s.cache_hits,
                        s.upstream_requests,
                        s.queue_frames_dropped,
                        s.malformed.total() + s.unknown_sender,
                        overload_words(&s, &mut skips_shown)
                    )
                });
                if end.is_some_and(|e| now >= e) {
                    return LoopControl::Stop;
                }
                LoopControl::Continue(soonest(soonest(end, status.deadline()), snapshot))
            })
            .context("relay: network loop failed")?;
        status.finish();
        for ((from, stream), n) in &refused {
            log::warn!("relay: refused stream {stream:?} from {from} {n} times");
        }
        for (from, n) in self.lp.node().refusal_counts() {
            log::warn!("relay: refused {n} requests from {from} (keys)");
        }
        // Let sender threads finish, so that the socket figures are final.
        self.lp
            .set_send_threads(0)
            .context("relay: stopping sender threads")?;
        let outputs = std::mem::take(&mut self.outputs).finish();
        let report = RelayReport {
            role: "relay",
            listen: self.local_addr().to_string(),
            relay: self.lp.node().stats(),
            subscribers: self.lp.node().subscribers(),
            io: self.lp.io_stats(),
            buffers: self.buffers,
            outputs,
            secure: self.lp.node().secure_stats().clone(),
        };
        if let Some(p) = &self.args.stats_json {
            super::write_stats_json(p, &report)?;
        }
        Ok(report)
    }
}

/// The status line's overload note (proto-spec.md §7.3): which limit made the relay skip
/// frames in the last second or since the previous line (`shown`: the skips per limit then,
/// updated here; lines come every 5 s off a terminal), and how many it skipped for each limit
/// so far; empty when it skipped none.
pub fn overload_words(s: &RelayStats, shown: &mut [u64; 3]) -> String {
    let now = [
        s.frames_skipped_relay_cpu,
        s.frames_skipped_socket_buffer,
        s.frames_skipped_slow_subscriber,
    ];
    let grown = [
        OverloadLimit::RelayCpu,
        OverloadLimit::SocketBuffer,
        OverloadLimit::SlowSubscriber,
    ]
    .into_iter()
    .zip(now.iter().zip(shown.iter()))
    .filter(|(_, (n, was))| n > was)
    .max_by_key(|(_, (n, was))| *n - *was)
    .map(|(limit, _)| limit);
    *shown = now;
    match s.overloaded.or(grown) {
        Some(limit) => format!(
            " | OVERLOADED: {} (frames skipped: relay CPU {}, socket buffer {}, slow subscriber {})",
            limit.words(),
            s.frames_skipped_relay_cpu,
            s.frames_skipped_socket_buffer,
            s.frames_skipped_slow_subscriber
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_skips_since_the_previous_line() {
        let mut shown = [0; 3];
        let mut s = RelayStats::default();
        assert_eq!(overload_words(&s, &mut shown), "");
        // Skips 3 s ago (not in the last second) but after the previous line, off a terminal.
        s.frames_skipped_relay_cpu = 40;
        s.frames_skipped_slow_subscriber = 2;
        let w = overload_words(&s, &mut shown);
        assert!(w.contains("OVERLOADED: relay CPU"), "{w}");
        // None since: quiet again.
        assert_eq!(overload_words(&s, &mut shown), "");
        // The relay's own latest limit wins while it is recent.
        s.overloaded = Some(OverloadLimit::SocketBuffer);
        assert!(overload_words(&s, &mut shown).contains("OVERLOADED: socket buffer"));
    }
}
