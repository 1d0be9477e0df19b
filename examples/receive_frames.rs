//! An embedder's receiver: subscribes to a stream and hands each decoded frame to its own
//! code (here, a function that reports the average brightness).
//!
//! `cargo run --example receive_frames -- 127.0.0.1:5000 live 5`
//! (start a server first: `framecast serve --listen 127.0.0.1:5000`)

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use framecast::driver::event_loop::{EventLoop, LoopControl};
use framecast::driver::udp::{bind_udp, ephemeral_for};
use framecast::media::{JpegDecoder, MAX_FRAME_PIXELS, VideoFrameRgb};
use framecast::proto::viewer::{Viewer, ViewerConfig, ViewerEvent};

/// The application's own use of a frame.
fn on_frame(frame_id: u32, img: &VideoFrameRgb) {
    let sum: u64 = img.data.iter().map(|&b| b as u64).sum();
    let mean = sum as f64 / img.data.len().max(1) as f64;
    println!(
        "frame {frame_id}: {}x{}, mean brightness {mean:.1}",
        img.width, img.height
    );
}

/// `cargo run --example receive_frames -- [SERVER] [STREAM] [SECONDS]`
#[derive(clap::Parser)]
struct Args {
    /// The server or relay to subscribe to.
    #[arg(default_value = "127.0.0.1:5000")]
    server: SocketAddr,
    /// The stream's name.
    #[arg(default_value = "live")]
    stream: String,
    /// How long to receive, s.
    #[arg(default_value_t = 5.0)]
    seconds: f64,
}

fn main() -> anyhow::Result<()> {
    let Args {
        server,
        stream,
        seconds,
    } = clap::Parser::parse();

    let (socket, _) = bind_udp(ephemeral_for(server), 4 << 20)?;
    let mut lp = EventLoop::new(socket, Viewer::new(ViewerConfig::new(server, &stream)))?;
    let mut decoder = JpegDecoder::new()?;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    lp.run(&AtomicBool::new(false), |client, now| {
        while let Some(event) = client.poll_event() {
            match event {
                ViewerEvent::Frame(f) => match decoder.decode_rgb(&f.jpeg, MAX_FRAME_PIXELS) {
                    Ok(img) => on_frame(f.frame_id, &img),
                    Err(e) => eprintln!("frame {}: {e}", f.frame_id),
                },
                ViewerEvent::FrameDropped {
                    frame_id, reason, ..
                } => eprintln!("frame {frame_id} lost: {reason:?}"),
                ViewerEvent::Description(d) => {
                    eprintln!("stream {}: {}x{}", d.name, d.width, d.height)
                }
                ViewerEvent::LatencyRaised { to, .. } => {
                    eprintln!("latency raised to {} ms", to.as_millis())
                }
                ViewerEvent::Ended => {
                    eprintln!("the stream ended");
                    return LoopControl::Stop;
                }
                ViewerEvent::Audio(_) | ViewerEvent::Rejected(_) => {}
            }
        }
        if now >= end {
            LoopControl::Stop
        } else {
            LoopControl::Continue(Some(end))
        }
    })?;
    let bye = lp.node_mut().bye();
    lp.send_now(&bye);
    let s = lp.node().stats();
    eprintln!(
        "{} frames played, {} recovered datagrams",
        s.frames_played, s.video.recovered
    );
    Ok(())
}
