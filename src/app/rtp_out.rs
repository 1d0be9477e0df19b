//! The driver of `--rtp-out`: a UDP socket, an [`RtpSession`] and the SDP file. Runs on its
//! stream's tap thread, fed with the tap's frames and audio at their playout instants.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::proto::jitter::AudioOut;
use crate::proto::reassembler::Frame;
use crate::proto::wire::Description;
use crate::rtp::jpeg::MAX_DIMENSION;
use crate::rtp::sdp::{SdpStream, sdp};
use crate::rtp::{RtpConfig, RtpSession, RtpStats};

/// How long the BYE waits after the last RTP packet. A receiver that reads a flow's RTCP
/// socket before its RTP socket (FFmpeg's `rtp:` protocol does) and is behind by a few
/// packets would otherwise end the stream with the last ones unread.
pub const BYE_GRACE: Duration = Duration::from_millis(200);

/// Seconds from 1900 (NTP's epoch) to 1970 (Unix's).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Where the RTP goes and where its SDP is written.
#[derive(Debug, Clone)]
pub struct RtpOutArgs {
    /// Destination (unicast or multicast); video at this port, audio at port + 2.
    pub dest: SocketAddr,
    /// The SDP file to write.
    pub sdp: PathBuf,
    /// Multicast TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
}

/// A stream going out as RTP.
#[derive(Debug)]
pub struct RtpOutput {
    args: RtpOutArgs,
    socket: UdpSocket,
    session: RtpSession,
    described: Option<Description>,
    refused: bool,
    warned: bool,
    send_errors: u64,
}

/// The wall clock as NTP 32.32 (RFC 3550 §4).
fn ntp_now() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    ((d.as_secs() + NTP_UNIX_OFFSET) << 32) + ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

impl RtpOutput {
    /// Opens the sending socket. `cname` names the stream in RTCP.
    pub fn open(args: RtpOutArgs, cname: &str) -> anyhow::Result<RtpOutput> {
        let dest = args.dest;
        if dest.port() == 0 || dest.port() > u16::MAX - 3 {
            anyhow::bail!(
                "--rtp-out {dest}: the port must be 1-65532 (video uses it, RTCP and audio the next three)"
            );
        }
        let domain = Domain::for_address(dest);
        let s =
            Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("--rtp-out socket")?;
        if dest.ip().is_multicast() {
            if dest.is_ipv4() {
                s.set_multicast_ttl_v4(args.ttl.into())?;
                s.set_multicast_loop_v4(true)?;
            } else {
                s.set_multicast_hops_v6(args.ttl.into())?;
                s.set_multicast_loop_v6(true)?;
            }
        }
        let any: SocketAddr = if dest.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        s.bind(&any.into())
            .with_context(|| format!("--rtp-out {dest}: cannot bind a sending socket"))?;
        let _ = s.set_send_buffer_size(1 << 20);
        let mut rng = fastrand::Rng::new();
        let now = Instant::now();
        Ok(RtpOutput {
            session: RtpSession::new(RtpConfig::random(&mut rng, cname), now, ntp_now()),
            socket: s.into(),
            args,
            described: None,
            refused: false,
            warned: false,
            send_errors: 0,
        })
    }

    /// Counters.
    pub fn stats(&self) -> RtpStats {
        self.session.stats().clone()
    }

    /// The stream's description: writes the SDP file, or refuses a stream RFC 2435 cannot
    /// describe, with one line saying so.
    pub fn describe(&mut self, d: &Description) {
        if self.described.as_ref() == Some(d) {
            return;
        }
        self.described = Some(d.clone());
        if d.width > MAX_DIMENSION || d.height > MAX_DIMENSION {
            eprintln!(
                "rtp-out: stream {:?} is {}x{}, larger than RTP/JPEG (RFC 2435) can describe (2040x2040 at most): no RTP is sent for it; serve it at most 2040 pixels wide and high (e.g. --width 1920 --height 1080), or watch it with `framecast play` or over --http",
                d.name, d.width, d.height
            );
            self.refused = true;
            return;
        }
        self.refused = false;
        let text = sdp(&SdpStream {
            name: d.name.clone(),
            dest: self.args.dest.ip(),
            port: self.args.dest.port(),
            fps: (d.fps_num, d.fps_den),
            audio: d.audio.map(|a| (a.sample_rate, a.channels)),
            ttl: self.args.ttl,
            session_id: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |t| t.as_secs()),
        });
        // Written whole under a temporary name first, so a player never reads half a file.
        let tmp = self.args.sdp.with_extension("sdp.tmp");
        let written =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.args.sdp));
        if let Err(e) = written {
            eprintln!(
                "rtp-out: cannot write the SDP file {}: {e}; check the directory exists and is writable",
                self.args.sdp.display()
            );
        }
    }

    /// A frame at its playout instant.
    pub fn frame(&mut self, now: Instant, f: &Frame) {
        if self.refused || self.described.is_none() {
            return;
        }
        if let Err(e) = self.session.push_frame(now, f.pts, &f.jpeg) {
            if !self.warned {
                self.warned = true;
                eprintln!("rtp-out: frame {} not sent: {e}", f.frame_id);
            }
        }
    }

    /// Audio at its playout instant.
    pub fn audio(&mut self, now: Instant, a: &AudioOut) {
        if self.refused || self.described.is_none() {
            return;
        }
        self.session
            .push_audio(now, a.pts, a.sample_rate, a.channels, &a.samples);
    }

    /// Sends what is due. The socket is blocking but sends to UDP rarely wait, and this runs
    /// on the tap's thread, never the relay's.
    pub fn flush(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        while let Some(t) = self.session.poll_transmit() {
            let mut dest = self.args.dest;
            dest.set_port(dest.port() + t.channel.port_offset());
            if self.socket.send_to(&t.payload, dest).is_err() {
                self.send_errors += 1;
            }
        }
    }

    /// Sends what is left, then, [`BYE_GRACE`] later, says BYE on both flows (players end
    /// the stream). Blocks the tap's thread for the grace when anything was sent.
    pub fn close(&mut self, now: Instant) {
        self.flush(now);
        let mut now = now;
        if self.described.is_some() && !self.refused {
            std::thread::sleep(BYE_GRACE);
            now = Instant::now();
        }
        self.session.bye(now);
        self.flush(now);
    }

    /// When [`RtpOutput::flush`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(width: u16, height: u16) -> Description {
        Description {
            name: "cam1".into(),
            width,
            height,
            fps_num: 30,
            fps_den: 1,
            audio: None,
            video_seq_base: 0,
        }
    }

    /// A stream too large for RFC 2435 gets no SDP and no RTP; one that fits gets its SDP.
    #[test]
    fn a_stream_wider_than_2040_pixels_is_refused_not_sent() {
        let dir = std::env::temp_dir().join(format!("framecast-rtpout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sdp = dir.join("s.sdp");
        let args = RtpOutArgs {
            dest: "127.0.0.1:9".parse().unwrap(),
            sdp: sdp.clone(),
            ttl: 1,
        };
        let mut out = RtpOutput::open(args, "test").unwrap();
        out.describe(&description(2048, 1080));
        assert!(out.refused && !sdp.exists());
        let frame = Frame {
            frame_id: 1,
            pts: 0,
            width: 2048,
            height: 1080,
            jpeg: bytes::Bytes::from_static(b"\xff\xd8"),
        };
        out.frame(Instant::now(), &frame);
        assert_eq!(out.stats().frames + out.stats().frames_refused, 0);
        out.describe(&description(1920, 1080));
        assert!(!out.refused);
        let text = std::fs::read_to_string(&sdp).unwrap();
        assert!(text.contains("m=video 9 RTP/AVP 26"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
