//! The video track of a movie file through FFmpeg (libavformat, libavcodec, libswscale via
//! `ffmpeg-next`): each frame with its own timestamp on the file's shared timeline, handed on
//! as the decoder's own planar YCbCr ([`YuvFrame`], no RGB anywhere), turned as the display
//! matrix says (ffplay's orientation).
//!
//! The planes are copied once into the frame JPEG compresses from, stretched from TV range
//! (16-235) to JPEG's full range on the way when the track is TV range (what nearly every
//! H.264 or HEVC file is). libswscale runs only when the decoded layout is not the JPEG's
//! subsampling (a 4:2:2 or 10-bit file streamed as 4:2:0, say). The colour matrix is left as it
//! is (the previous RGB round trip used BT.601 both ways, which also left it as it was).

use std::path::{Path, PathBuf};

use super::demux::{TrackFeed, open_input, stream_duration, stream_rotation, timeline_origin};
use super::yuv::{Range, Turn, YuvFrame, YuvPlanes, copy_plane, plane_sizes};
use crate::media::Subsampling;
use ffmpeg_next as ff;

/// How a decoded picture is turned before it is streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// As decoded.
    None,
    /// 90° clockwise.
    Cw90,
    /// 180°.
    Half,
    /// 90° counter-clockwise (270° clockwise).
    Ccw90,
}

impl Rotation {
    /// The turn for `degrees` clockwise, if it is a multiple of 90 (within 1°).
    pub fn from_degrees(degrees: f64) -> Option<Rotation> {
        let d = degrees.rem_euclid(360.0);
        let near = |x: f64| (d - x).abs() < 1.0;
        if near(0.0) || near(360.0) {
            Some(Rotation::None)
        } else if near(90.0) {
            Some(Rotation::Cw90)
        } else if near(180.0) {
            Some(Rotation::Half)
        } else if near(270.0) {
            Some(Rotation::Ccw90)
        } else {
            None
        }
    }
}

/// libswscale's converter, owned by one reader.
struct Scaler(ff::software::scaling::Context);

// SAFETY: an `SwsContext` has no thread affinity; it is owned here and used by one thread
// at a time (the reader is opened on one thread and then moved to the video thread).
unsafe impl Send for Scaler {}

/// The best video track of a file, decoded frame by frame.
pub(super) struct VideoReader {
    path: PathBuf,
    input: ff::format::context::Input,
    decoder: ff::decoder::Video,
    scaler: Option<(Scaler, (ff::format::Pixel, u32, u32))>,
    decoded: ff::frame::Video,
    /// The decoded picture in the JPEG's layout, when libswscale had to convert it.
    converted: ff::frame::Video,
    /// The JPEG's chroma subsampling.
    subsampling: Subsampling,
    time_base: f64,
    /// The timeline's zero, seconds.
    origin: f64,
    rotation: Rotation,
    /// Reads the track's packets into the decoder.
    feed: TrackFeed,
    /// Frames per second the container states (average), if sane.
    pub(super) fps: Option<f64>,
    /// Length of the track in seconds, if known.
    pub(super) duration: Option<f64>,
    /// Frames in the track, if the container says.
    pub(super) frames: Option<u64>,
}

impl VideoReader {
    /// Opens the best video track of `path`; `with_audio` says whether the audio track
    /// shares the timeline (its start counts for the origin).
    /// Frames come out with `subsampling` (a quarter turn of a 4:2:2 picture comes out 4:2:0,
    /// as 4:2:2 turned is a layout JPEG encoders do not take).
    pub(super) fn open(
        path: &Path,
        with_audio: bool,
        subsampling: Subsampling,
    ) -> Result<VideoReader, String> {
        let input = open_input(path)?;
        let origin = timeline_origin(&input, with_audio);
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| "it has no video track (for sound alone, use --audio FILE.wav with a test or webcam source)".to_string())?;
        let index = stream.index();
        let codec_id = stream.parameters().id();
        let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| format!("the video track's parameters are unusable ({e})"))?;
        let fps_guess = {
            let r = f64::from(stream.avg_frame_rate());
            if r.is_finite() && r > 0.0 { r } else { 30.0 }
        };
        // SAFETY: the parameters are the stream's own, alive for this borrow.
        let (pw, ph) = unsafe {
            let p = stream.parameters().as_ptr();
            ((*p).width.max(0) as u64, (*p).height.max(0) as u64)
        };
        ctx.set_threading(decoder_threads(pw * ph, fps_guess));
        let mut decoder = ctx.decoder();
        // Timestamps in the stream's units: the decoder moves a frame's pts past the priming
        // or pre-skip samples it drops (AAC, Opus), which it can only do knowing them.
        decoder.set_packet_time_base(stream.time_base());
        let decoder = decoder.video().map_err(|_| {
            format!(
                "the video codec {} has no decoder in this FFmpeg build",
                codec_name(codec_id)
            )
        })?;
        let time_base = f64::from(stream.time_base());
        let rate = |r: ff::Rational| {
            let f = f64::from(r);
            (r.denominator() != 0 && f.is_finite() && f > 0.0 && f <= 240.0).then_some(f)
        };
        let fps = rate(stream.avg_frame_rate()).or_else(|| rate(stream.rate()));
        let degrees = stream_rotation(&stream).unwrap_or(0.0);
        let rotation = Rotation::from_degrees(degrees).unwrap_or_else(|| {
            log::warn!(
                "{}: the video is to be shown turned by {degrees:.1}°, which is not a multiple of 90°: streamed as decoded",
                path.display()
            );
            Rotation::None
        });
        let duration = stream_duration(&input, &stream);
        let frames = u64::try_from(stream.frames()).ok().filter(|n| *n > 0);
        let subsampling = match (rotation, subsampling) {
            (Rotation::Cw90 | Rotation::Ccw90, Subsampling::Yuv422) => Subsampling::Yuv420,
            (_, s) => s,
        };
        Ok(VideoReader {
            path: path.to_path_buf(),
            input,
            decoder,
            scaler: None,
            decoded: ff::frame::Video::empty(),
            converted: ff::frame::Video::empty(),
            subsampling,
            time_base,
            origin,
            rotation,
            feed: TrackFeed::new(index, "video"),
            fps,
            duration,
            frames,
        })
    }

    /// The rotation applied to every frame.
    pub(super) fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// Decodes the next frame; returns its time on the shared timeline in ms (negative if
    /// the file gives none), `None` at the end of the track (or where its data ends).
    pub(super) fn grab(&mut self) -> Option<f64> {
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {
                    let ms = match self.decoded.timestamp().or(self.decoded.pts()) {
                        Some(ts) => (ts as f64 * self.time_base - self.origin) * 1000.0,
                        None => -1.0,
                    };
                    return Some(ms);
                }
                Err(ff::Error::Eof) => return None,
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {}
                Err(e) => {
                    log::warn!("{}: video decoding stopped: {e}", self.path.display());
                    return None;
                }
            }
            if self.feed.flushed() {
                return None;
            }
            self.feed
                .feed(&mut self.input, &mut self.decoder, &self.path);
        }
    }

    /// The grabbed frame as full-range planar YCbCr, turned for display, into `frame`; false
    /// if that fails.
    pub(super) fn retrieve(&mut self, frame: &mut YuvFrame) -> bool {
        match self.convert(frame) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("{}: frame conversion failed: {e}", self.path.display());
                false
            }
        }
    }

    /// Whether the encoder takes a decoded `format` as it is, in the stream's subsampling: the
    /// same planar layout, or any of them for gray (its Y plane).
    fn takes_as_is(&self, format: ff::format::Pixel) -> bool {
        use ff::format::Pixel;
        let layout = match format {
            Pixel::YUV420P | Pixel::YUVJ420P => Subsampling::Yuv420,
            Pixel::YUV422P | Pixel::YUVJ422P => Subsampling::Yuv422,
            Pixel::YUV444P | Pixel::YUVJ444P => Subsampling::Yuv444,
            Pixel::GRAY8 => Subsampling::Gray,
            _ => return false,
        };
        layout == self.subsampling || self.subsampling == Subsampling::Gray
    }

    /// The grabbed frame's planes where the decoder left them, when the encoder can take them
    /// as they are (no turn, the JPEG's own layout, whole chroma blocks), so that nothing
    /// copies the frame before it is compressed; `None`: [`retrieve`](Self::retrieve) it.
    pub(super) fn planes(&self) -> Option<YuvPlanes<'_>> {
        let f = &self.decoded;
        if self.rotation != Rotation::None || f.width() == 0 || f.height() == 0 {
            return None;
        }
        if !self.takes_as_is(f.format()) {
            return None;
        }
        // With whole chroma blocks the JPEG's Y plane is the decoded one, not one wider.
        let (w, h) = (f.width(), f.height());
        if plane_sizes(w, h, self.subsampling)[0] != (w as usize, h as usize) {
            return None;
        }
        let n = if self.subsampling == Subsampling::Gray {
            1
        } else {
            3
        };
        if f.planes() < n {
            return None;
        }
        let mut planes: [(&[u8], usize); 3] = [(&[], 0); 3];
        for (i, plane) in planes.iter_mut().enumerate().take(n) {
            *plane = (f.data(i), f.stride(i));
        }
        let p = YuvPlanes {
            width: w,
            height: h,
            subsampling: self.subsampling,
            planes,
            tv_range: !full_range(f),
        };
        p.is_consistent().then_some(p)
    }

    fn convert(&mut self, frame: &mut YuvFrame) -> Result<(), String> {
        use ff::format::Pixel;
        let key = (
            self.decoded.format(),
            self.decoded.width(),
            self.decoded.height(),
        );
        if key.1 == 0 || key.2 == 0 || key.1 > 65535 || key.2 > 65535 {
            return Err(format!("a {}x{} frame", key.1, key.2));
        }
        let (source, full) = if self.takes_as_is(key.0) {
            (&self.decoded, full_range(&self.decoded))
        } else {
            // libswscale to the JPEG's layout, full range ("yuvj").
            let target = match self.subsampling {
                Subsampling::Yuv420 => Pixel::YUVJ420P,
                Subsampling::Yuv422 => Pixel::YUVJ422P,
                Subsampling::Yuv444 => Pixel::YUVJ444P,
                Subsampling::Gray => Pixel::GRAY8,
            };
            if self.scaler.as_ref().is_none_or(|(_, k)| *k != key) {
                let ctx = ff::software::scaling::Context::get(
                    key.0,
                    key.1,
                    key.2,
                    target,
                    key.1,
                    key.2,
                    ff::software::scaling::Flags::BILINEAR,
                )
                .map_err(|e| format!("no conversion from {:?} to {target:?} ({e})", key.0))?;
                self.scaler = Some((Scaler(ctx), key));
            }
            let (scaler, _) = self.scaler.as_mut().expect("set above");
            scaler
                .0
                .run(&self.decoded, &mut self.converted)
                .map_err(|e| e.to_string())?;
            (&self.converted, true)
        };
        let (w, h) = (key.1, key.2);
        let (turn, (ow, oh)) = match self.rotation {
            Rotation::None => (Turn::None, (w, h)),
            Rotation::Half => (Turn::Half, (w, h)),
            Rotation::Cw90 => (Turn::Cw90, (h, w)),
            Rotation::Ccw90 => (Turn::Ccw90, (h, w)),
        };
        frame.reshape(ow, oh, self.subsampling);
        let src_sizes = plane_sizes(w, h, self.subsampling);
        let planes = source.planes();
        for (i, (dst, dw, dh)) in frame.planes_mut().into_iter().enumerate() {
            if i >= planes {
                return Err(format!("a {:?} frame with {planes} planes", key.0));
            }
            // The source plane's true size (the JPEG's plane sizes pad the Y plane).
            let (sw, sh) = if i == 0 {
                (w as usize, h as usize)
            } else {
                src_sizes[i]
            };
            let range = match (full, i) {
                (true, _) => Range::Full,
                (false, 0) => Range::TvLuma,
                (false, _) => Range::TvChroma,
            };
            if !copy_plane(
                source.data(i),
                source.stride(i),
                (sw, sh),
                dst,
                (dw, dh),
                turn,
                range,
            ) {
                return Err(format!(
                    "plane {i} of a {:?} frame is smaller than it says",
                    key.0
                ));
            }
        }
        Ok(())
    }

    /// Back to the first frame for the next loop; false if that fails.
    pub(super) fn rewind(&mut self) -> bool {
        match VideoReader::open(&self.path, true, self.subsampling) {
            Ok(r) => {
                let origin = self.origin;
                *self = r;
                self.origin = origin;
                true
            }
            Err(e) => {
                log::warn!("cannot loop: {e}");
                false
            }
        }
    }
}

/// Whether a decoded frame is in JPEG's full range ("yuvj" formats, or tagged so).
fn full_range(frame: &ff::frame::Video) -> bool {
    use ff::format::Pixel;
    matches!(
        frame.format(),
        Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P
    ) || frame.color_range() == ff::util::color::Range::JPEG
}

/// Pixels per second one decoding thread is given (1080p at 30 fps): below it the decoder
/// runs on the reader's thread alone.
const ONE_THREAD_PIXEL_RATE: f64 = 1920.0 * 1088.0 * 30.0;

/// The decoder's threading for a `pixels`-per-frame track at `fps`.
///
/// CPU time per frame, not wall time, is what a sender pays for, and frame threading costs
/// more of it (each thread keeps its own copy of the decoder's state, and they report their
/// progress to each other row by row): FFmpeg's H.264 decoder on 2 cores took 10-20 % more
/// CPU with automatic frame threads than on one thread. One thread decodes 1080p30 H.264 in
/// well under a frame interval, so only tracks above that pixel rate (or of unknown size)
/// get frame threads, as many as there are cores, to keep up in real time.
fn decoder_threads(pixels: u64, fps: f64) -> ff::codec::threading::Config {
    use ff::codec::threading::{Config, Type};
    if pixels > 0 && pixels as f64 * fps <= ONE_THREAD_PIXEL_RATE {
        let mut one = Config::kind(Type::None);
        one.count = 1;
        return one;
    }
    let mut threads = Config::kind(Type::Frame);
    threads.count = 0;
    threads
}

/// FFmpeg's name of a codec (e.g. "h264"), for messages.
pub(crate) fn codec_name(id: ff::codec::Id) -> String {
    ff::codec::decoder::find(id)
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| format!("{id:?}").to_lowercase())
}
