//! What the relay or server shares with its HTTP thread: each tapped stream's newest frame
//! (a `watch` channel: readers see only the latest, so a slow reader skips frames and
//! nothing queues up), its description and figures, and a snapshot of the relay's counters
//! taken by the datagram loop.
//!
//! Frames reach the hub through taps ([`super::tap`]): a local viewer per stream, on its own
//! thread, subscribed to this process's own socket like any framecast viewer. So the relay
//! core is untouched, HTTP and RTP get whole, repaired frames at their playout time, and the
//! datagram loop never waits for them.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

use super::figures::StreamFigures;
use super::rtp_out::RtpOutArgs;
use crate::proto::relay::{RelayStats, SubscriberInfo};
use crate::proto::wire::Description;
use crate::rtp::RtpStats;

/// Most streams tapped at once (each tap is one local viewer).
pub const MAX_TAPS: usize = 16;

/// A frame as received: the JPEG bytes unchanged.
#[derive(Debug, Clone)]
pub struct LatestFrame {
    /// Frame id.
    pub frame_id: u32,
    /// Presentation timestamp, 90 kHz.
    pub pts: u64,
    /// The JPEG.
    pub jpeg: Bytes,
}

/// One tapped stream.
#[derive(Debug)]
pub struct StreamEntry {
    /// The newest frame.
    pub frames: watch::Sender<Option<LatestFrame>>,
    /// The stream's description, once known.
    pub description: Option<Description>,
    /// Figures as the tap sees them (viewers filled in from the relay's subscribers).
    pub figures: StreamFigures,
    /// Frames the tap received.
    pub frames_total: u64,
    /// HTTP MJPEG clients now.
    pub http_clients: u64,
    /// RTP output counters, when this stream goes out as RTP.
    pub rtp: Option<RtpStats>,
}

/// The relay's figures as of the loop's last snapshot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelaySnapshot {
    /// Counters.
    pub relay: RelayStats,
    /// Per-subscriber figures (taps excluded).
    pub subscribers: Vec<SubscriberInfo>,
}

/// Shared state between the datagram loop, the taps and the HTTP thread.
#[derive(Debug)]
pub struct Hub {
    /// "relay" or "serve".
    pub role: &'static str,
    /// Set when the role stops: taps and the HTTP server end.
    pub stop: AtomicBool,
    /// The address taps subscribe to (this process's own socket, on loopback).
    pub server: SocketAddr,
    /// Taps may be started for streams asked for by name (a pulling relay learns of streams
    /// only when someone asks).
    pub on_demand: bool,
    /// Most simultaneous HTTP MJPEG clients.
    pub max_clients: usize,
    /// HTTP MJPEG clients now.
    pub clients: AtomicUsize,
    rtp: Option<(String, RtpOutArgs)>,
    /// The role's keys: taps subscribe with their view part (proto-spec.md §8).
    pub keys: Option<crate::proto::secure::Keys>,
    state: Mutex<HubState>,
    taps: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct HubState {
    streams: BTreeMap<String, StreamEntry>,
    relay: RelaySnapshot,
    tap_addrs: HashSet<SocketAddr>,
}

/// A locked view of the hub's state.
pub struct HubView<'a>(MutexGuard<'a, HubState>);

impl HubView<'_> {
    /// Tapped streams by name.
    pub fn streams(&self) -> &BTreeMap<String, StreamEntry> {
        &self.0.streams
    }

    /// The relay's figures.
    pub fn relay(&self) -> &RelaySnapshot {
        &self.0.relay
    }
}

impl Hub {
    /// A hub for a role listening on `listen` (taps reach it on loopback).
    pub fn new(
        role: &'static str,
        listen: SocketAddr,
        on_demand: bool,
        max_clients: usize,
        rtp: Option<(String, RtpOutArgs)>,
        keys: Option<crate::proto::secure::Keys>,
    ) -> Arc<Hub> {
        let ip = if listen.is_ipv4() {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        };
        let server = if listen.ip().is_unspecified() {
            SocketAddr::new(ip, listen.port())
        } else {
            listen
        };
        Arc::new(Hub {
            keys,
            role,
            stop: AtomicBool::new(false),
            server,
            on_demand,
            max_clients,
            clients: AtomicUsize::new(0),
            rtp,
            state: Mutex::new(HubState::default()),
            taps: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panicked tap leaves consistent data behind (plain counters and a channel).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A locked view for reading.
    pub fn view(&self) -> HubView<'_> {
        HubView(self.lock())
    }

    /// Starts a tap for `stream` unless there is one, or [`MAX_TAPS`] are running. True if
    /// the stream is (now) tapped.
    pub fn ensure_tap(self: &Arc<Hub>, stream: &str) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        {
            let mut st = self.lock();
            if st.streams.contains_key(stream) {
                return true;
            }
            if st.streams.len() >= MAX_TAPS {
                return false;
            }
            st.streams.insert(
                stream.to_string(),
                StreamEntry {
                    frames: watch::Sender::new(None),
                    description: None,
                    figures: StreamFigures::default(),
                    frames_total: 0,
                    http_clients: 0,
                    rtp: None,
                },
            );
        }
        let rtp = self
            .rtp
            .as_ref()
            .filter(|(s, _)| s == stream)
            .map(|(_, a)| a.clone());
        match super::tap::spawn(self.clone(), stream.to_string(), rtp) {
            Ok(h) => {
                self.taps.lock().unwrap_or_else(|p| p.into_inner()).push(h);
                true
            }
            Err(e) => {
                log::warn!("cannot start a tap for stream {stream:?}: {e:#}");
                self.lock().streams.remove(stream);
                false
            }
        }
    }

    /// The stream that goes out as RTP, if any.
    pub fn rtp_stream(&self) -> Option<&str> {
        self.rtp.as_ref().map(|(s, _)| s.as_str())
    }

    /// A tap's local address (so that it is not counted as a viewer).
    pub(crate) fn add_tap_addr(&self, addr: SocketAddr) {
        self.lock().tap_addrs.insert(addr);
    }

    /// Runs `f` on a stream's entry.
    pub(crate) fn with_stream<R>(
        &self,
        stream: &str,
        f: impl FnOnce(&mut StreamEntry) -> R,
    ) -> Option<R> {
        self.lock().streams.get_mut(stream).map(f)
    }

    /// A new frame from a tap: readers waiting on the channel wake.
    pub(crate) fn publish(&self, stream: &str, frame: LatestFrame) {
        self.with_stream(stream, |e| {
            e.frames_total += 1;
            e.frames.send_replace(Some(frame));
        });
    }

    /// The datagram loop's snapshot of the relay (called a few times a second).
    pub fn set_relay(&self, relay: RelayStats, subscribers: Vec<SubscriberInfo>) {
        let mut st = self.lock();
        let taps: HashSet<String> = st.tap_addrs.iter().map(|a| a.to_string()).collect();
        let subscribers: Vec<SubscriberInfo> = subscribers
            .into_iter()
            .filter(|s| !taps.contains(&s.addr))
            .collect();
        for (name, e) in st.streams.iter_mut() {
            e.figures.viewers = subscribers.iter().filter(|s| &s.stream == name).count() as u64;
        }
        st.relay = RelaySnapshot { relay, subscribers };
    }

    /// Stops the taps and waits for them; gives the RTP output's counters, if any.
    pub fn shutdown(&self) -> Option<RtpStats> {
        self.stop.store(true, Ordering::Relaxed);
        let taps = std::mem::take(&mut *self.taps.lock().unwrap_or_else(|p| p.into_inner()));
        for t in taps {
            let _ = t.join();
        }
        let mut st = self.lock();
        let rtp = st.streams.values().find_map(|e| e.rtp.clone());
        // Dropping the senders ends every MJPEG response.
        st.streams.clear();
        rtp
    }
}
