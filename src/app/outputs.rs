//! The outputs `relay` and `serve` share for watching with other tools: `--http` (status page,
//! MJPEG, snapshots, JSON, Prometheus metrics) and `--rtp-out` with `--sdp` (RTP/JPEG + L16
//! for ffplay, VLC, GStreamer). Both are fed by taps through a [`Hub`]; the datagram loop
//! only hands the hub a snapshot of its counters a few times a second.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::http::HttpServer;
use super::hub::Hub;
use super::rtp_out::RtpOutArgs;
use crate::proto::relay::Relay;
use crate::rtp::RtpStats;

/// How often the loop hands the hub its counters.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(500);

/// `--http` and `--rtp-out` options.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Serve a status page (`/`), MJPEG (`/STREAM.mjpg`), the latest frame (`/STREAM.jpg`),
    /// `/stats.json` and Prometheus `/metrics` on this address (off by default).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Most HTTP MJPEG viewers at once.
    #[arg(long, default_value_t = 64)]
    pub http_max_clients: usize,
    /// Seconds an HTTP client may take nothing before it is cut off.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub http_stall_timeout: f64,
    /// Send a stream as RTP/JPEG (RFC 2435) at this address's port and L16 audio two ports up,
    /// RTCP on the odd ports; unicast or multicast. Needs --sdp.
    #[arg(long, value_name = "ADDR:PORT", requires = "sdp")]
    pub rtp_out: Option<SocketAddr>,
    /// Write the SDP file describing --rtp-out here (open it with ffplay, VLC or GStreamer).
    #[arg(long, value_name = "FILE", requires = "rtp_out")]
    pub sdp: Option<PathBuf>,
    /// The stream sent by --rtp-out (a relay's; the server sends its own).
    #[arg(long, value_name = "NAME")]
    pub rtp_stream: Option<String>,
    /// Multicast TTL (hop limit) of --rtp-out.
    #[arg(long, default_value_t = 1)]
    pub rtp_ttl: u8,
}

impl Default for OutputArgs {
    /// Both outputs off (the command line's defaults otherwise).
    fn default() -> Self {
        OutputArgs {
            http: None,
            http_max_clients: 64,
            http_stall_timeout: super::http::STALL_TIMEOUT.as_secs_f64(),
            rtp_out: None,
            sdp: None,
            rtp_stream: None,
            rtp_ttl: 1,
        }
    }
}

/// What the outputs report at exit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputsReport {
    /// The HTTP address, when serving.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// RTP output counters, when sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtp: Option<RtpStats>,
}

/// The running outputs of a role (nothing when neither flag is given).
#[derive(Debug, Default)]
pub struct Outputs {
    hub: Option<Arc<Hub>>,
    http: Option<HttpServer>,
    next_snapshot: Option<Instant>,
}

impl Outputs {
    /// Checks the options and binds the HTTP port. `listen` is the role's own UDP address
    /// (taps subscribe to it); `own_stream` the server's stream name (None for a relay);
    /// `on_demand`: taps may start for streams asked for by name.
    pub fn start(
        role: &'static str,
        args: &OutputArgs,
        listen: SocketAddr,
        own_stream: Option<&str>,
        on_demand: bool,
    ) -> anyhow::Result<Outputs> {
        Outputs::start_keyed(role, args, listen, own_stream, on_demand, None)
    }

    /// As [`Outputs::start`], for a role with keys: its taps subscribe with the view key.
    pub fn start_keyed(
        role: &'static str,
        args: &OutputArgs,
        listen: SocketAddr,
        own_stream: Option<&str>,
        on_demand: bool,
        keys: Option<crate::proto::secure::Keys>,
    ) -> anyhow::Result<Outputs> {
        if args.http.is_none() && args.rtp_out.is_none() {
            return Ok(Outputs::default());
        }
        if args.http_max_clients == 0 {
            anyhow::bail!("--http-max-clients must be positive");
        }
        let stall = super::duration_arg("http-stall-timeout", Some(args.http_stall_timeout))?
            .unwrap_or(super::http::STALL_TIMEOUT);
        let rtp = match (args.rtp_out, &args.sdp) {
            (Some(dest), Some(sdp)) => {
                let stream = match (own_stream, &args.rtp_stream) {
                    (Some(own), Some(s)) if s != own => anyhow::bail!(
                        "--rtp-stream {s:?}: this server streams {own:?} only; leave --rtp-stream out"
                    ),
                    (Some(own), _) => own.to_string(),
                    (None, Some(s)) => s.clone(),
                    (None, None) => "live".to_string(),
                };
                super::check_name("rtp-stream", &stream)?;
                if dest.ip().is_unspecified() {
                    anyhow::bail!(
                        "--rtp-out {dest}: name the receiver's address (unicast) or a multicast group"
                    );
                }
                Some((
                    stream,
                    RtpOutArgs {
                        dest,
                        sdp: sdp.clone(),
                        ttl: args.rtp_ttl,
                    },
                ))
            }
            _ => None,
        };
        let hub = Hub::new(role, listen, on_demand, args.http_max_clients, rtp, keys);
        let http = match args.http {
            Some(a) => Some(HttpServer::start(a, hub.clone(), stall)?),
            None => None,
        };
        if let Some(s) = hub.rtp_stream().map(str::to_string) {
            hub.ensure_tap(&s);
        }
        if let (Some(s), true) = (own_stream, http.is_some()) {
            hub.ensure_tap(s);
        }
        Ok(Outputs {
            hub: Some(hub),
            http,
            next_snapshot: None,
        })
    }

    /// The HTTP server's address, when serving.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.local_addr())
    }

    /// A publisher claimed `stream` at the relay: the page lists it.
    pub fn stream_seen(&self, stream: &str) {
        if let (Some(h), Some(_)) = (&self.hub, &self.http) {
            h.ensure_tap(stream);
        }
    }

    /// Called by the datagram loop at each wake-up: now and then hands the hub the relay's
    /// counters. Returns when it wants to be called again.
    pub fn tick(&mut self, now: Instant, relay: &Relay) -> Option<Instant> {
        let hub = self.hub.as_ref()?;
        if self.next_snapshot.is_none_or(|t| now >= t) {
            hub.set_relay(relay.stats(), relay.subscribers());
            self.next_snapshot = Some(now + SNAPSHOT_EVERY);
        }
        self.next_snapshot
    }

    /// Stops the taps and the HTTP server.
    pub fn finish(mut self) -> OutputsReport {
        let http = self.http_addr().map(|a| a.to_string());
        let rtp = self.hub.take().and_then(|h| h.shutdown());
        if let Some(s) = self.http.take() {
            s.stop();
        }
        OutputsReport { http, rtp }
    }
}

impl Drop for Outputs {
    /// A role that fails midway still stops its taps and HTTP thread.
    fn drop(&mut self) {
        if let Some(h) = self.hub.take() {
            h.shutdown();
        }
        if let Some(s) = self.http.take() {
            s.stop();
        }
    }
}
