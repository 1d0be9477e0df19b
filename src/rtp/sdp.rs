//! The SDP file (RFC 8866) that tells ffplay, VLC or GStreamer where the RTP goes and what
//! it carries: RTP/JPEG (payload type 26) at the base port, L16 (RFC 3551 §4.5.11, a
//! dynamic payload type) two ports up, each with its RTCP on the next port.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::session::{PT_JPEG, PT_L16};

/// What the SDP describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpStream {
    /// Stream name (the session name).
    pub name: String,
    /// Where the RTP is sent.
    pub dest: IpAddr,
    /// The video's RTP port; RTCP on +1, audio on +2, its RTCP on +3.
    pub port: u16,
    /// Frame rate (numerator, denominator).
    pub fps: (u16, u16),
    /// Audio (sample rate in Hz, channels), if the stream has audio.
    pub audio: Option<(u32, u8)>,
    /// Multicast time-to-live (IPv4 multicast only).
    pub ttl: u8,
    /// Session id and version (`o=` line), e.g. seconds since the epoch.
    pub session_id: u64,
}

/// The SDP text.
pub fn sdp(s: &SdpStream) -> String {
    let (net, addr) = match s.dest {
        IpAddr::V4(a) if a.is_multicast() => ("IP4", format!("{a}/{}", s.ttl)),
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    };
    // Characters that would break the line-based format stay out of the session name.
    let name: String = s
        .name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut t = String::new();
    let _ = writeln!(t, "v=0");
    let _ = writeln!(t, "o=- {0} {0} IN {net} {1}", s.session_id, s.dest);
    let _ = writeln!(t, "s=framecast {name}");
    let _ = writeln!(t, "c=IN {net} {addr}");
    let _ = writeln!(t, "t=0 0");
    let _ = writeln!(t, "m=video {} RTP/AVP {PT_JPEG}", s.port);
    let _ = writeln!(t, "a=rtpmap:{PT_JPEG} JPEG/90000");
    let _ = writeln!(t, "a=rtcp:{}", s.port.wrapping_add(1));
    if s.fps.1 > 0 {
        let _ = writeln!(
            t,
            "a=framerate:{:.3}",
            f64::from(s.fps.0) / f64::from(s.fps.1)
        );
    }
    let _ = writeln!(t, "a=sendonly");
    if let Some((rate, channels)) = s.audio {
        let _ = writeln!(t, "m=audio {} RTP/AVP {PT_L16}", s.port.wrapping_add(2));
        let _ = writeln!(t, "a=rtpmap:{PT_L16} L16/{rate}/{channels}");
        let _ = writeln!(t, "a=rtcp:{}", s.port.wrapping_add(3));
        let _ = writeln!(t, "a=sendonly");
    }
    t.replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_video_and_audio_ports_and_multicast_ttl() {
        let mut s = SdpStream {
            name: "cam1".into(),
            dest: "239.1.2.3".parse().unwrap(),
            port: 5004,
            fps: (30, 1),
            audio: Some((48_000, 2)),
            ttl: 1,
            session_id: 7,
        };
        let t = sdp(&s);
        assert!(t.contains("c=IN IP4 239.1.2.3/1\r\n"), "{t}");
        assert!(t.contains("m=video 5004 RTP/AVP 26\r\n"));
        assert!(t.contains("m=audio 5006 RTP/AVP 97\r\na=rtpmap:97 L16/48000/2\r\na=rtcp:5007"));
        s.dest = "::1".parse().unwrap();
        s.audio = None;
        s.name = "a\nb".into();
        let t = sdp(&s);
        assert!(t.contains("c=IN IP6 ::1\r\n") && !t.contains("m=audio"));
        assert!(t.contains("s=framecast a b\r\n"));
    }
}
