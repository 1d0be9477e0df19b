//! What a movie file's container says, through FFmpeg's demuxers (libavformat via
//! `ffmpeg-next`): opening it with errors that name the container, the one timeline both
//! tracks share, and the display rotation of the video track.

use std::path::Path;

use ffmpeg_next as ff;

/// Read errors in a row after which a track is taken to end where its data does.
const MAX_READ_ERRORS: u32 = 64;

/// Reads the packets of one track of an input and hands them to its decoder: what the video
/// and the audio reader share. A damaged packet is skipped (as players do, with one warning);
/// the end of the input, or [`MAX_READ_ERRORS`] read errors in a row (a truncated file),
/// sends the decoder its end of stream.
#[derive(Debug)]
pub(crate) struct TrackFeed {
    index: usize,
    /// "video" or "audio", for the messages.
    what: &'static str,
    errors: u32,
    warned: bool,
    flushed: bool,
}

impl TrackFeed {
    /// A feed for stream `index` of the input.
    pub(crate) fn new(index: usize, what: &'static str) -> TrackFeed {
        TrackFeed {
            index,
            what,
            errors: 0,
            warned: false,
            flushed: false,
        }
    }

    /// Whether the decoder was sent its end of stream: nothing more will come.
    pub(crate) fn flushed(&self) -> bool {
        self.flushed
    }

    /// Reads one packet from `input` and, if it is this track's, sends it to `decoder`.
    /// `path` names the file in messages.
    pub(crate) fn feed(
        &mut self,
        input: &mut ff::format::context::Input,
        decoder: &mut ff::decoder::Opened,
        path: &Path,
    ) {
        let mut packet = ff::Packet::empty();
        match packet.read(input) {
            Ok(()) => {
                self.errors = 0;
                if packet.stream() != self.index {
                    return;
                }
                if let Err(e) = decoder.send_packet(&packet) {
                    if !self.warned {
                        self.warned = true;
                        log::warn!(
                            "{}: damaged {} packet skipped ({e})",
                            path.display(),
                            self.what
                        );
                    }
                }
            }
            Err(ff::Error::Eof) => self.flush(decoder),
            Err(e) => {
                self.errors += 1;
                if self.errors >= MAX_READ_ERRORS {
                    log::warn!(
                        "{}: the file cannot be read past here ({e}); ending the {}",
                        path.display(),
                        self.what
                    );
                    self.flush(decoder);
                }
            }
        }
    }

    fn flush(&mut self, decoder: &mut ff::decoder::Opened) {
        self.flushed = true;
        let _ = decoder.send_eof();
    }
}

/// Opens `path` with FFmpeg's demuxers: the error says that the container is what cannot
/// be read.
pub(crate) fn open_input(path: &Path) -> Result<ff::format::context::Input, String> {
    crate::media::ffmpeg_init();
    ff::format::input(&path).map_err(|e| {
        format!(
            "FFmpeg cannot read it as a media container ({e}); check it with `ffprobe {}`",
            path.display()
        )
    })
}

/// Start of a stream on the file's timeline, in seconds (0 if the container does not say).
pub(crate) fn stream_start(s: &ff::format::stream::Stream<'_>) -> f64 {
    let tb = f64::from(s.time_base());
    let st = s.start_time();
    if st == ff::ffi::AV_NOPTS_VALUE || !tb.is_finite() {
        0.0
    } else {
        st as f64 * tb
    }
}

/// Duration of a stream in seconds, if the container says (else the file's).
pub(crate) fn stream_duration(
    input: &ff::format::context::Input,
    s: &ff::format::stream::Stream<'_>,
) -> Option<f64> {
    let tb = f64::from(s.time_base());
    let d = s.duration();
    if d > 0 && d != ff::ffi::AV_NOPTS_VALUE && tb.is_finite() {
        return Some(d as f64 * tb);
    }
    let d = input.duration();
    (d > 0 && d != ff::ffi::AV_NOPTS_VALUE).then(|| d as f64 / f64::from(ff::ffi::AV_TIME_BASE))
}

/// The timeline's zero, in seconds: the earliest start of the tracks streamed (the best
/// video and, if `with_audio`, the best audio track), as ffplay's shared clock starts. A
/// track that starts later keeps its offset.
pub(crate) fn timeline_origin(input: &ff::format::context::Input, with_audio: bool) -> f64 {
    let mut origin = f64::INFINITY;
    if let Some(v) = input.streams().best(ff::media::Type::Video) {
        origin = origin.min(stream_start(&v));
    }
    if with_audio {
        if let Some(a) = input.streams().best(ff::media::Type::Audio) {
            origin = origin.min(stream_start(&a));
        }
    }
    if origin.is_finite() { origin } else { 0.0 }
}

/// The clockwise rotation, in degrees in `0..360`, that shows a video as its display matrix
/// (ISO/IEC 14496-12 `tkhd` matrix as FFmpeg's `AV_PKT_DATA_DISPLAYMATRIX` side data: nine
/// native-endian i32, 16.16 fixed point for the 2x2 part) says, as ffplay computes it
/// (`av_display_rotation_get`, negated). `None` if the data is not a matrix.
pub fn display_rotation(matrix: &[u8]) -> Option<f64> {
    if matrix.len() < 36 {
        return None;
    }
    let m = |i: usize| {
        let b = [
            matrix[4 * i],
            matrix[4 * i + 1],
            matrix[4 * i + 2],
            matrix[4 * i + 3],
        ];
        f64::from(i32::from_ne_bytes(b)) / 65536.0
    };
    let (a, b, c, d) = (m(0), m(1), m(3), m(4));
    let sx = a.hypot(c);
    let sy = b.hypot(d);
    if sx == 0.0 || sy == 0.0 {
        return None;
    }
    // av_display_rotation_get is counter-clockwise; players turn the picture clockwise.
    let ccw = -(b / sy).atan2(a / sx).to_degrees();
    let cw = (-ccw).rem_euclid(360.0);
    Some(if (cw - 360.0).abs() < 1e-6 { 0.0 } else { cw })
}

/// The display rotation of stream `s` (clockwise degrees), if it has a display matrix.
pub(crate) fn stream_rotation(s: &ff::format::stream::Stream<'_>) -> Option<f64> {
    s.side_data()
        .find(|d| d.kind() == ff::codec::packet::side_data::Type::DisplayMatrix)
        .and_then(|d| display_rotation(d.data()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(a: f64, b: f64, c: f64, d: f64) -> Vec<u8> {
        let fx = |v: f64| ((v * 65536.0).round() as i32).to_ne_bytes();
        let mut out = Vec::new();
        for v in [
            fx(a),
            fx(b),
            [0; 4],
            fx(c),
            fx(d),
            [0; 4],
            [0; 4],
            [0; 4],
            0x4000_0000i32.to_ne_bytes(),
        ] {
            out.extend_from_slice(&v);
        }
        out
    }

    /// Quarter turns: `av_display_rotation_get` gives -90 for (a, b, c, d) = (0, 1, -1, 0),
    /// which ffplay shows turned 90° clockwise.
    #[test]
    fn rotation_of_the_usual_matrices() {
        assert_eq!(display_rotation(&matrix(1.0, 0.0, 0.0, 1.0)), Some(0.0));
        let r90 = display_rotation(&matrix(0.0, 1.0, -1.0, 0.0)).unwrap();
        assert!((r90 - 90.0).abs() < 1e-6, "{r90}");
        let r270 = display_rotation(&matrix(0.0, -1.0, 1.0, 0.0)).unwrap();
        assert!((r270 - 270.0).abs() < 1e-6, "{r270}");
        let r180 = display_rotation(&matrix(-1.0, 0.0, 0.0, -1.0)).unwrap();
        assert!((r180 - 180.0).abs() < 1e-6, "{r180}");
        assert_eq!(display_rotation(&[0; 8]), None);
        assert_eq!(display_rotation(&matrix(0.0, 0.0, 0.0, 0.0)), None);
    }
}
