//! One RTP session pair (video and audio, RFC 3550): sequence numbers, timestamps on one
//! media clock, sender reports.
//!
//! framecast stamps video and audio on one 90 kHz timeline (proto-spec.md §5), so both RTP
//! timestamps derive from it: video's is the pts itself (RFC 2435's clock is 90 kHz), audio's
//! the pts at the sample rate. The sender reports map both onto one wall clock (RFC 3550
//! §6.4.1), anchored at the first media handed in: `wall(now)` goes with `pts(now) =
//! anchor_pts + (now - anchor_now)`. That is what lets a player line audio up with video.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtcp_types::{
    Bye, CompoundBuilder, RtcpPacketWriter, RtcpPacketWriterExt, Sdes, SdesChunk, SdesItem,
    SenderReport,
};
use rtp_types::RtpPacketBuilder;
use serde::Serialize;

use super::jpeg::{JpegError, RtpJpeg};
use super::payload::{jpeg_payloads, l16_frames_per_packet, l16_from_s16le};

/// RTP/JPEG's static payload type (RFC 3551 table 5).
pub const PT_JPEG: u8 = 26;
/// The dynamic payload type used for L16 audio (named in the SDP's rtpmap).
pub const PT_L16: u8 = 97;
/// The media clock of framecast's pts and of RTP/JPEG.
const VIDEO_CLOCK: u64 = 90_000;
/// Largest RTP packet (header included): fits a 1500-byte MTU with IPv6 and a tunnel.
pub const DEFAULT_MAX_PACKET: usize = 1400;
const RTP_HEADER: usize = 12;

/// Which port a datagram goes to (the SDP names them: video at P, its RTCP at P+1, audio at
/// P+2, its RTCP at P+3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpChannel {
    /// RTP/JPEG.
    VideoRtp,
    /// RTCP for the video SSRC.
    VideoRtcp,
    /// RTP L16.
    AudioRtp,
    /// RTCP for the audio SSRC.
    AudioRtcp,
}

impl RtpChannel {
    /// Offset from the base port.
    pub fn port_offset(self) -> u16 {
        match self {
            RtpChannel::VideoRtp => 0,
            RtpChannel::VideoRtcp => 1,
            RtpChannel::AudioRtp => 2,
            RtpChannel::AudioRtcp => 3,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpTransmit {
    /// Where it goes.
    pub channel: RtpChannel,
    /// The RTP or RTCP packet.
    pub payload: Vec<u8>,
}

/// Session settings. The random parts (SSRCs, timestamp offsets) come from the caller so
/// that the session stays deterministic.
#[derive(Debug, Clone)]
pub struct RtpConfig {
    /// Video SSRC.
    pub video_ssrc: u32,
    /// Audio SSRC.
    pub audio_ssrc: u32,
    /// Random start of the video timestamps (RFC 3550 §5.1).
    pub video_ts_offset: u32,
    /// Random start of the audio timestamps.
    pub audio_ts_offset: u32,
    /// Random first sequence numbers (video, audio).
    pub first_seq: (u16, u16),
    /// Largest RTP packet in bytes, header included.
    pub max_packet: usize,
    /// Canonical name shared by both SSRCs, so receivers group them for lip-sync.
    pub cname: String,
    /// Sender-report interval.
    pub report_interval: Duration,
}

impl RtpConfig {
    /// Settings from a seeded RNG.
    pub fn random(rng: &mut fastrand::Rng, cname: &str) -> RtpConfig {
        RtpConfig {
            video_ssrc: rng.u32(..),
            audio_ssrc: rng.u32(..),
            video_ts_offset: rng.u32(..),
            audio_ts_offset: rng.u32(..),
            first_seq: (rng.u16(..), rng.u16(..)),
            max_packet: DEFAULT_MAX_PACKET,
            cname: cname.into(),
            report_interval: Duration::from_secs(1),
        }
    }
}

/// Counters (what `--stats-json` and `/stats.json` show under `rtp`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RtpStats {
    /// Video frames sent.
    pub frames: u64,
    /// Frames not sent because RFC 2435 cannot carry them.
    pub frames_refused: u64,
    /// RTP/JPEG packets sent.
    pub video_packets: u64,
    /// Audio sample frames sent.
    pub audio_frames: u64,
    /// L16 packets sent.
    pub audio_packets: u64,
    /// Sender reports sent (both SSRCs).
    pub sender_reports: u64,
}

#[derive(Debug, Default)]
struct Flow {
    seq: u16,
    packets: u32,
    octets: u32,
    started: bool,
}

/// The sender side of RTP/JPEG plus L16 with RTCP sender reports.
#[derive(Debug)]
pub struct RtpSession {
    cfg: RtpConfig,
    /// (instant, NTP 32.32) pair that fixes the wall clock.
    wall: (Instant, u64),
    anchor: Option<(Instant, u64)>,
    video: Flow,
    audio: Flow,
    audio_rate: Option<u32>,
    next_report: Option<Instant>,
    out: VecDeque<RtpTransmit>,
    stats: RtpStats,
}

/// NTP 32.32 fixed point from a duration.
fn ntp_of(d: Duration) -> u64 {
    (d.as_secs() << 32) + ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

impl RtpSession {
    /// A session whose wall clock reads `ntp` (NTP 32.32, RFC 3550 §4) at `now`.
    pub fn new(cfg: RtpConfig, now: Instant, ntp: u64) -> RtpSession {
        RtpSession {
            video: Flow {
                seq: cfg.first_seq.0,
                ..Flow::default()
            },
            audio: Flow {
                seq: cfg.first_seq.1,
                ..Flow::default()
            },
            cfg,
            wall: (now, ntp),
            anchor: None,
            audio_rate: None,
            next_report: None,
            out: VecDeque::new(),
            stats: RtpStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &RtpStats {
        &self.stats
    }

    fn anchor(&mut self, now: Instant, pts: u64) {
        if self.anchor.is_none() {
            self.anchor = Some((now, pts));
        }
    }

    /// The pts playing at `now` on the anchored timeline.
    fn pts_at(&self, now: Instant) -> Option<u64> {
        let (t0, p0) = self.anchor?;
        let d = now.saturating_duration_since(t0).as_nanos() as u64;
        Some(p0 + d * 9 / 100_000)
    }

    fn audio_ts(&self, pts: u64, rate: u32) -> u32 {
        let samples = (u128::from(pts) * u128::from(rate) + u128::from(VIDEO_CLOCK / 2))
            / u128::from(VIDEO_CLOCK);
        self.cfg.audio_ts_offset.wrapping_add(samples as u32)
    }

    fn rtp(&mut self, video: bool, marker: bool, ts: u32, payload: &[u8]) {
        let (flow, pt, ssrc, channel) = if video {
            (
                &mut self.video,
                PT_JPEG,
                self.cfg.video_ssrc,
                RtpChannel::VideoRtp,
            )
        } else {
            (
                &mut self.audio,
                PT_L16,
                self.cfg.audio_ssrc,
                RtpChannel::AudioRtp,
            )
        };
        let packet = RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(pt)
            .marker_bit(marker)
            .sequence_number(flow.seq)
            .timestamp(ts)
            .ssrc(ssrc)
            .payload(payload)
            .write_vec_unchecked();
        flow.seq = flow.seq.wrapping_add(1);
        flow.packets = flow.packets.wrapping_add(1);
        flow.octets = flow.octets.wrapping_add(payload.len() as u32);
        self.out.push_back(RtpTransmit {
            channel,
            payload: packet,
        });
    }

    /// Sends one frame (stamped `pts`, 90 kHz), handed over at its playout instant `now`.
    /// A JPEG RFC 2435 cannot carry is not sent: the error says why.
    pub fn push_frame(&mut self, now: Instant, pts: u64, jpeg: &[u8]) -> Result<(), JpegError> {
        let info = match RtpJpeg::parse(jpeg) {
            Ok(i) => i,
            Err(e) => {
                self.stats.frames_refused += 1;
                return Err(e);
            }
        };
        self.anchor(now, pts);
        if !self.video.started {
            self.video.started = true;
            self.report(now, true);
        }
        let ts = self.cfg.video_ts_offset.wrapping_add(pts as u32);
        let payloads = jpeg_payloads(jpeg, &info, self.cfg.max_packet - RTP_HEADER);
        let last = payloads.len() - 1;
        for (k, p) in payloads.iter().enumerate() {
            self.rtp(true, k == last, ts, p);
        }
        self.stats.frames += 1;
        self.stats.video_packets += payloads.len() as u64;
        Ok(())
    }

    /// Sends one audio block (interleaved s16le, first sample at `pts`), handed over at its
    /// playout instant `now`.
    pub fn push_audio(
        &mut self,
        now: Instant,
        pts: u64,
        sample_rate: u32,
        channels: u8,
        s16le: &[u8],
    ) {
        if sample_rate == 0 || channels == 0 {
            return;
        }
        self.anchor(now, pts);
        self.audio_rate = Some(sample_rate);
        if !self.audio.started {
            self.audio.started = true;
            self.report(now, false);
        }
        let per = l16_frames_per_packet(channels, self.cfg.max_packet - RTP_HEADER);
        let bytes_per_frame = 2 * usize::from(channels);
        let l16 = l16_from_s16le(s16le);
        let ts0 = self.audio_ts(pts, sample_rate);
        for (k, chunk) in l16.chunks(per * bytes_per_frame).enumerate() {
            let ts = ts0.wrapping_add((k * per) as u32);
            self.rtp(false, false, ts, chunk);
            self.stats.audio_packets += 1;
        }
        self.stats.audio_frames += (l16.len() / bytes_per_frame) as u64;
    }

    /// Ends both flows: a last sender report with a BYE for each SSRC that sent (RFC 3550
    /// §6.6), which tells players the stream is over (ffmpeg ends its input on it).
    pub fn bye(&mut self, now: Instant) {
        for video in [true, false] {
            let flow = if video { &self.video } else { &self.audio };
            if flow.started {
                self.report_with(now, video, true);
            }
        }
        self.next_report = None;
    }

    /// A compound SR + SDES(CNAME) for one SSRC (RFC 3550 §6.1, §6.4.1).
    fn report(&mut self, now: Instant, video: bool) {
        self.report_with(now, video, false);
    }

    fn report_with(&mut self, now: Instant, video: bool, bye: bool) {
        let Some(pts) = self.pts_at(now) else { return };
        let ntp = self
            .wall
            .1
            .wrapping_add(ntp_of(now.saturating_duration_since(self.wall.0)));
        let (ssrc, ts, flow, channel) = if video {
            let ts = self.cfg.video_ts_offset.wrapping_add(pts as u32);
            (self.cfg.video_ssrc, ts, &self.video, RtpChannel::VideoRtcp)
        } else {
            let Some(rate) = self.audio_rate else { return };
            let ts = self.audio_ts(pts, rate);
            (self.cfg.audio_ssrc, ts, &self.audio, RtpChannel::AudioRtcp)
        };
        let sr = SenderReport::builder(ssrc)
            .ntp_timestamp(ntp)
            .rtp_timestamp(ts)
            .packet_count(flow.packets)
            .octet_count(flow.octets);
        let sdes = Sdes::builder().add_chunk(
            SdesChunk::builder(ssrc)
                .add_item(SdesItem::builder(SdesItem::CNAME, self.cfg.cname.as_str())),
        );
        let mut compound = CompoundBuilder::default().add_packet(sr).add_packet(sdes);
        if bye {
            compound = compound.add_packet(Bye::builder().add_source(ssrc));
        }
        let Ok(size) = compound.calculate_size() else {
            return;
        };
        let mut buf = vec![0u8; size];
        if compound.write_into(&mut buf).is_ok() {
            self.out.push_back(RtpTransmit {
                channel,
                payload: buf,
            });
            self.stats.sender_reports += 1;
        }
        if self.next_report.is_none() && !bye {
            self.next_report = Some(now + self.cfg.report_interval);
        }
    }

    /// When [`RtpSession::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_report
    }

    /// Sends the sender reports that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_report.is_some_and(|t| now >= t) {
            if self.video.started {
                self.report(now, true);
            }
            if self.audio.started {
                self.report(now, false);
            }
            self.next_report = Some(now + self.cfg.report_interval);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<RtpTransmit> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtcp_types::{Compound, Packet};
    use rtp_types::RtpPacket;

    fn cfg() -> RtpConfig {
        RtpConfig::random(&mut fastrand::Rng::with_seed(1), "test@framecast")
    }

    fn sr_of(t: &RtpTransmit) -> (u32, u64, u32) {
        let mut c = Compound::parse(&t.payload).unwrap();
        match c.next().unwrap().unwrap() {
            Packet::Sr(sr) => (sr.ssrc(), sr.ntp_timestamp(), sr.rtp_timestamp()),
            p => panic!("{p:?}"),
        }
    }

    /// Both sender reports map the same instant to timestamps of the same pts: audio and
    /// video line up on the receiver's wall clock.
    #[test]
    fn sender_reports_put_audio_and_video_on_one_clock() {
        let c = cfg();
        let t0 = Instant::now();
        let mut s = RtpSession::new(c.clone(), t0, 1 << 40);
        let j = crate::rtp::jpeg::tests_support::jpeg(3000);
        s.push_frame(t0, 9_000, &j).unwrap();
        s.push_audio(
            t0 + Duration::from_millis(10),
            9_900,
            48_000,
            2,
            &[0u8; 4 * 480],
        );
        let out: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
        assert_eq!(
            out[0].channel,
            RtpChannel::VideoRtcp,
            "a report before the first RTP"
        );
        let (ssrc, ntp_v, ts_v) = sr_of(&out[0]);
        assert_eq!(
            (ssrc, ntp_v, ts_v),
            (c.video_ssrc, 1 << 40, c.video_ts_offset + 9_000)
        );
        let video: Vec<_> = out
            .iter()
            .filter(|t| t.channel == RtpChannel::VideoRtp)
            .map(|t| RtpPacket::parse(&t.payload[..]).unwrap().marker_bit())
            .collect();
        assert!(video.len() >= 3 && video[..video.len() - 1].iter().all(|m| !m));
        assert!(video[video.len() - 1], "marker on the frame's last packet");
        let a = out
            .iter()
            .find(|t| t.channel == RtpChannel::AudioRtcp)
            .unwrap();
        let (_, ntp_a, ts_a) = sr_of(a);
        // 10 ms later on the wall clock, 900 ticks later in pts = 480 samples at 48 kHz.
        assert_eq!(ntp_a - ntp_v, ntp_of(Duration::from_millis(10)));
        assert_eq!(
            ts_a,
            c.audio_ts_offset.wrapping_add(9_900 * 48_000 / 90_000)
        );
        let rtp_a = out
            .iter()
            .find(|t| t.channel == RtpChannel::AudioRtp)
            .unwrap();
        let p = RtpPacket::parse(&rtp_a.payload[..]).unwrap();
        assert_eq!((p.payload_type(), p.timestamp()), (PT_L16, ts_a));
        // Reports repeat every interval.
        assert_eq!(s.poll_timeout(), Some(t0 + c.report_interval));
        s.handle_timeout(t0 + c.report_interval);
        assert_eq!(std::iter::from_fn(|| s.poll_transmit()).count(), 2);
        assert_eq!(s.stats().sender_reports, 4);
        s.bye(t0 + c.report_interval);
        let byes: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
        assert_eq!(byes.len(), 2);
        for b in &byes {
            let kinds: Vec<_> = Compound::parse(&b.payload)
                .unwrap()
                .map(|p| matches!(p.unwrap(), Packet::Bye(_)))
                .collect();
            assert_eq!(kinds, [false, false, true], "SR, SDES, BYE");
        }
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn refused_frames_are_counted_and_send_nothing() {
        let mut s = RtpSession::new(cfg(), Instant::now(), 0);
        assert!(s.push_frame(Instant::now(), 0, b"not a jpeg").is_err());
        assert_eq!(s.poll_transmit(), None);
        assert_eq!(s.stats().frames_refused, 1);
    }
}
