//! A tap: a local [`Viewer`] of one stream, on its own thread, subscribed to this process's
//! own socket over loopback. It hands each whole frame to the [`Hub`] (for HTTP) and, with
//! `--rtp-out`, frames and audio to the [`RtpOutput`], at their playout instants.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::figures::FigureMeter;
use super::hub::{Hub, LatestFrame};
use super::rtp_out::{RtpOutArgs, RtpOutput};
use crate::driver::event_loop::{EventLoop, LoopControl};
use crate::driver::udp::{bind_udp, ephemeral_for};
use crate::proto::node::soonest;
use crate::proto::secure::{Role, Secure};
use crate::proto::viewer::{Viewer, ViewerConfig, ViewerEvent};

/// The tap's playout latency: the viewers' default, so a tap never makes the relay or the
/// publisher pace tighter than a default viewer does (§7.1).
const TAP_LATENCY: Duration = Duration::from_millis(100);
/// How often the tap refreshes its stream's figures.
const FIGURES_EVERY: Duration = Duration::from_secs(1);
const TAP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Binds the tap's socket and starts its thread.
pub(crate) fn spawn(
    hub: Arc<Hub>,
    stream: String,
    rtp: Option<RtpOutArgs>,
) -> anyhow::Result<JoinHandle<()>> {
    let (socket, _) =
        bind_udp(ephemeral_for(hub.server), TAP_SOCKET_BUFFER).context("tap socket")?;
    let rtp = match rtp {
        Some(a) => Some(RtpOutput::open(a, &format!("framecast-{stream}"))?),
        None => None,
    };
    let cfg = ViewerConfig {
        latency: TAP_LATENCY,
        ..ViewerConfig::new(hub.server, &stream)
    };
    let keys = hub.keys.as_ref().map(|k| k.view_part());
    let mut node = Secure::new(Viewer::new(cfg), keys, super::keys::layer_seed(None)?);
    node.connect(hub.server, Role::View);
    let lp = EventLoop::new(socket, node)?;
    if let Ok(a) = lp.local_addr() {
        hub.add_tap_addr(a);
    }
    std::thread::Builder::new()
        .name(format!("tap {stream}"))
        .spawn(move || run(hub, stream, lp, rtp))
        .context("cannot start a tap thread")
}

fn run(
    hub: Arc<Hub>,
    stream: String,
    mut lp: EventLoop<Secure<Viewer>>,
    mut rtp: Option<RtpOutput>,
) {
    let mut meter = FigureMeter::new(Instant::now());
    let mut next_figures = Instant::now() + FIGURES_EVERY;
    let result = lp.run(&hub.stop, |viewer, now| {
        while let Some(e) = viewer.poll_event() {
            match e {
                ViewerEvent::Description(d) => {
                    if let Some(r) = rtp.as_mut() {
                        r.describe(&d);
                    }
                    hub.with_stream(&stream, |s| s.description = Some(d));
                }
                ViewerEvent::Frame(f) => {
                    if let Some(r) = rtp.as_mut() {
                        r.frame(now, &f);
                    }
                    hub.publish(
                        &stream,
                        LatestFrame {
                            frame_id: f.frame_id,
                            pts: f.pts,
                            jpeg: f.jpeg,
                        },
                    );
                }
                ViewerEvent::Audio(a) => {
                    if let Some(r) = rtp.as_mut() {
                        r.audio(now, &a);
                    }
                }
                ViewerEvent::Rejected(r) => log::debug!("tap {stream}: refused ({r:?})"),
                _ => {}
            }
        }
        if let Some(r) = rtp.as_mut() {
            r.flush(now);
        }
        if now >= next_figures {
            next_figures = now + FIGURES_EVERY;
            let stats = viewer.stats();
            let rtp_stats = rtp.as_ref().map(|r| r.stats());
            hub.with_stream(&stream, |s| {
                s.figures = meter.sample(now, &stats, s.figures.viewers);
                s.rtp = rtp_stats;
            });
        }
        if hub.stop.load(Ordering::Relaxed) {
            return LoopControl::Stop;
        }
        LoopControl::Continue(soonest(
            Some(next_figures),
            rtp.as_ref().and_then(|r| r.poll_timeout()),
        ))
    });
    if let Err(e) = result {
        log::warn!("tap {stream}: network loop failed: {e}");
    }
    if let Some(r) = rtp.as_mut() {
        r.close(Instant::now());
    }
    let rtp_stats = rtp.as_ref().map(|r| r.stats());
    hub.with_stream(&stream, |s| s.rtp = rtp_stats);
    let bye = lp.node_mut().bye();
    lp.send_now(&bye);
}
