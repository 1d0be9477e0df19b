//! The decoder thread: decodes only what the presenter will use, handed to it.
//!
//! What "decode" means depends on whether there is a window (the presenter says which, once,
//! before the first frame):
//!
//! - **A window:** each frame is decoded straight to packed BGR (what OpenCV's `imshow` takes,
//!   no conversion pass after), at the smallest DCT scaling (1, 1/2, 1/4, 1/8) that still
//!   covers the window's image area, so a small window costs a fraction of a full decode. A
//!   frame is not decoded at all when a newer one is already waiting behind it: the newer one
//!   is due, so the older one would never be shown (it counts as skipped).
//! - **No window** (`--no-video`, no display, or a build without OpenCV): nothing is shown, so
//!   no pixels are made. Each frame is still checked, so that `frames_decoded`,
//!   `decode_errors` and the decoded times of `--frame-times` keep their meaning: the header,
//!   then every scan entropy-decoded in full (a corrupt or truncated JPEG fails exactly as in
//!   a full decode), with the IDCT cut to 1/8 and no colour conversion
//!   ([`JpegDecoder::check`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Receiver;

use super::present::Shared;
use super::queue::DropOldest;
use crate::media::MAX_FRAME_PIXELS;
use crate::media::clock::unix_micros;
use crate::media::jpeg::{JpegDecoder, JpegError};

/// A decoded frame on its way from the decoder thread to the presenter.
#[derive(Debug)]
pub(super) struct Decoded {
    /// Timestamp, 90 kHz.
    pub pts: u64,
    /// When it was ready.
    pub ready: Instant,
    /// The frame's own size (its JPEG header), pixels: what the window is sized to.
    pub frame: (u32, u32),
    /// Size of `bgr`, pixels (the frame's size reduced by DCT scaling).
    pub width: u32,
    pub height: u32,
    /// Packed BGR, `width * height * 3` bytes; empty when there is no window.
    pub bgr: Vec<u8>,
}

/// What the decoder thread did, returned when it ends.
#[derive(Debug, Default)]
pub(super) struct DecodeOutcome {
    pub decoded: u64,
    pub errors: u64,
    /// Frames not decoded because there was no decoder.
    pub skipped: u64,
    /// Frames not decoded because a newer frame was already waiting (window only).
    pub superseded: u64,
    /// Decoded frames dropped because the presenter was behind.
    pub overflow: u64,
    /// (pts, µs since the Unix epoch) of each decoded frame, when asked for.
    pub frame_times: Vec<(u64, u64)>,
}

/// What the presenter will do with the frames, as it tells the decoder before the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// Show them in a window: decode to BGR at the window's size
    /// ([`Shared::fit`](super::present::Shared) holds it once known).
    Window,
    /// Nothing to show: check each frame, make no pixels.
    Nothing,
}

/// Width and height, pixels.
type Size = (u32, u32);

/// One frame through the decoder, for [`Target`].
struct FrameDecoder {
    dec: JpegDecoder,
    /// The 1/8-size gray picture a check leaves (reused).
    scratch: Vec<u8>,
}

impl FrameDecoder {
    fn new() -> Result<Self, JpegError> {
        Ok(Self {
            dec: JpegDecoder::new()?,
            scratch: Vec::new(),
        })
    }

    /// Decodes `jpeg` for `target` into `bgr` (window only); returns (frame size, decoded
    /// size).
    fn decode(
        &mut self,
        jpeg: &[u8],
        target: Target,
        fit: Option<(u32, u32)>,
        bgr: &mut Vec<u8>,
    ) -> Result<(Size, Size), JpegError> {
        match target {
            Target::Window => {
                let d = self.dec.decode_bgr_fit(jpeg, MAX_FRAME_PIXELS, fit, bgr)?;
                Ok(((d.info.width, d.info.height), (d.width, d.height)))
            }
            Target::Nothing => {
                let info = self.dec.check(jpeg, MAX_FRAME_PIXELS, &mut self.scratch)?;
                Ok(((info.width, info.height), (0, 0)))
            }
        }
    }
}

/// Unpacks [`Shared::fit`]: 0 means not known yet (decode at full size).
pub(super) fn unpack_fit(v: u64) -> Option<(u32, u32)> {
    let (w, h) = ((v >> 32) as u32, v as u32);
    (w > 0 && h > 0).then_some((w, h))
}

/// Packs a window's image area for [`Shared::fit`].
pub(super) fn pack_fit(w: u32, h: u32) -> u64 {
    (u64::from(w) << 32) | u64::from(h)
}

/// Starts the decoder thread. It waits for the presenter to say what it will do with the
/// frames (`target`; a presenter gone before saying means nothing is shown), then decodes
/// the (pts, JPEG) it receives until `rx` ends (see the module docs for what that means), and
/// hands the frames to `out` (dropping the oldest if the presenter is behind), reusing the
/// pixel buffers the presenter sends back through `spare`.
pub(super) fn spawn(
    rx: Receiver<(u64, Bytes)>,
    out: DropOldest<Decoded>,
    spare: Receiver<Vec<u8>>,
    target: Receiver<Target>,
    shared: Arc<Shared>,
    frame_times: bool,
) -> std::io::Result<std::thread::JoinHandle<DecodeOutcome>> {
    std::thread::Builder::new()
        .name("decoder".into())
        .spawn(move || {
            let mut outcome = DecodeOutcome::default();
            let mut dec = match FrameDecoder::new() {
                Ok(d) => d,
                Err(e) => {
                    log::warn!("play: no JPEG decoder ({e}); frames are counted, not decoded");
                    outcome.skipped = rx.iter().count() as u64;
                    return outcome;
                }
            };
            let target = target.recv().unwrap_or(Target::Nothing);
            let mut last_size = (0, 0);
            while let Ok((pts, jpeg)) = rx.recv() {
                if target == Target::Window && !rx.is_empty() {
                    // A newer frame was released behind this one: it is due, so this one
                    // would only be dropped as late after costing a decode.
                    outcome.superseded += 1;
                    continue;
                }
                let mut bgr = match target {
                    Target::Window => spare.try_recv().unwrap_or_default(),
                    Target::Nothing => Vec::new(),
                };
                let fit = unpack_fit(shared.fit.load(Ordering::Relaxed));
                match dec.decode(&jpeg, target, fit, &mut bgr) {
                    Ok((frame, (width, height))) => {
                        outcome.decoded += 1;
                        if target == Target::Window && last_size != (width, height) {
                            log::debug!(
                                "play: decoding {}x{} frames to {width}x{height} (window area {fit:?})",
                                frame.0,
                                frame.1
                            );
                            last_size = (width, height);
                        }
                        if frame_times {
                            outcome.frame_times.push((pts, unix_micros()));
                        }
                        // A full queue gives up its oldest frame (counted as overflow).
                        let _ = out.push(Decoded {
                            pts,
                            ready: Instant::now(),
                            frame,
                            width,
                            height,
                            bgr,
                        });
                    }
                    Err(e) => {
                        log::debug!("play: undecodable frame: {e}");
                        outcome.errors += 1;
                    }
                }
            }
            outcome.overflow = out.dropped();
            outcome
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::jpeg::{reduced_side, reduction_to_fit};
    use crate::media::{JpegEncoder, Subsampling, TestPattern, VideoFrameRgb};

    fn jpeg(w: u32, h: u32, s: Subsampling) -> Vec<u8> {
        let frame = TestPattern::new(w, h, 30, 1).unwrap().frame(5);
        JpegEncoder::new(80, s).unwrap().encode_rgb(&frame).unwrap()
    }

    #[test]
    fn the_reduction_is_the_largest_that_still_covers_the_window() {
        // 1280x720 into windows of various sizes.
        assert_eq!(reduction_to_fit(1280, 720, (1280, 720)), 1);
        assert_eq!(
            reduction_to_fit(1280, 720, (1920, 1080)),
            1,
            "never enlarge"
        );
        assert_eq!(reduction_to_fit(1280, 720, (641, 360)), 1, "640 < 641");
        assert_eq!(reduction_to_fit(1280, 720, (640, 360)), 2);
        assert_eq!(reduction_to_fit(1280, 720, (639, 200)), 2);
        assert_eq!(reduction_to_fit(1280, 720, (320, 180)), 4);
        assert_eq!(reduction_to_fit(1280, 720, (160, 90)), 8);
        assert_eq!(reduction_to_fit(1280, 720, (10, 10)), 8, "1/8 at most");
        assert_eq!(
            reduction_to_fit(1280, 720, (0, 90)),
            1,
            "unknown area: full size"
        );
        // The height may be what limits it (a tall window).
        assert_eq!(reduction_to_fit(1280, 720, (160, 361)), 1);
        // Odd sides round up, as libjpeg-turbo does.
        assert_eq!(reduced_side(1281, 8), 161);
        assert_eq!(reduction_to_fit(1281, 721, (161, 91)), 8);
    }

    #[test]
    fn scaled_bgr_decodes_have_the_reduced_size_and_the_right_colours() {
        let mut dec = JpegDecoder::new().unwrap();
        let src = jpeg(1280, 720, Subsampling::Yuv420);
        let mut buf = Vec::new();
        for (fit, reduction, size) in [
            (None, 1, (1280, 720)),
            (Some((1280, 720)), 1, (1280, 720)),
            (Some((700, 400)), 1, (1280, 720)),
            (Some((640, 360)), 2, (640, 360)),
            (Some((300, 100)), 4, (320, 180)),
            (Some((100, 50)), 8, (160, 90)),
        ] {
            let d = dec
                .decode_bgr_fit(&src, MAX_FRAME_PIXELS, fit, &mut buf)
                .unwrap();
            assert_eq!((d.info.width, d.info.height), (1280, 720));
            assert_eq!(d.reduction, reduction, "{fit:?}");
            assert_eq!((d.width, d.height), size, "{fit:?}");
            assert_eq!(buf.len() as u32, size.0 * size.1 * 3, "{fit:?}");
        }
        // A reduced picture is the full one, smaller: compare a 1/2 decode (BGR) with the
        // full RGB decode shrunk by averaging 2x2 blocks.
        dec.decode_bgr_fit(&src, MAX_FRAME_PIXELS, Some((640, 360)), &mut buf)
            .unwrap();
        let full = dec.decode_rgb_default(&src).unwrap();
        let mut half = VideoFrameRgb::black(640, 360);
        for y in 0..360 {
            for x in 0..640 {
                for c in 0..3 {
                    let at = |dx: usize, dy: usize| {
                        u32::from(full.data[((2 * y + dy) * 1280 + 2 * x + dx) * 3 + c])
                    };
                    let avg = (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1) + 2) / 4;
                    half.data[(y * 640 + x) * 3 + c] = avg as u8;
                }
            }
        }
        let mut rgb = VideoFrameRgb::black(640, 360);
        for (o, bgr) in rgb.data.chunks_exact_mut(3).zip(buf.chunks_exact(3)) {
            o.copy_from_slice(&[bgr[2], bgr[1], bgr[0]]);
        }
        let db = crate::media::psnr(&half, &rgb).unwrap();
        assert!(
            db > 28.0,
            "PSNR of the 1/2 decode against the shrunk full one: {db:.1}"
        );
        // The decoder is back at full size for the next caller.
        assert_eq!(dec.decode_rgb_default(&src).unwrap().width, 1280);
    }

    #[test]
    fn the_check_finds_corrupt_and_truncated_jpegs() {
        let mut fd = FrameDecoder::new().unwrap();
        let mut none = Vec::new();
        for s in [
            Subsampling::Yuv420,
            Subsampling::Yuv422,
            Subsampling::Yuv444,
            Subsampling::Gray,
        ] {
            let good = jpeg(640, 360, s);
            assert_eq!(
                fd.decode(&good, Target::Nothing, None, &mut none).unwrap(),
                ((640, 360), (0, 0)),
                "{s:?}"
            );
            assert!(none.is_empty(), "no pixels made without a window");
            assert_eq!(fd.scratch.len(), 80 * 45, "1/8-size gray");
            // Cut anywhere in the entropy-coded data (or its end marker): an error, as a full
            // decode gives.
            for cut in [good.len() / 2, good.len() - 300, good.len() - 2] {
                let e = fd
                    .decode(&good[..cut], Target::Nothing, None, &mut none)
                    .unwrap_err();
                assert!(
                    matches!(e, JpegError::Decode { .. }),
                    "{s:?} cut {cut}: {e}"
                );
                assert!(
                    fd.dec.decode_rgb_default(&good[..cut]).is_err(),
                    "a full decode agrees"
                );
            }
        }
        // Corrupt bytes in the scan: whatever a full decode says of each, the check says
        // too, and it does find some (seeded).
        let good = jpeg(640, 360, Subsampling::Yuv420);
        let sos = good.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
        let mut rng = fastrand::Rng::with_seed(5);
        let mut found = 0;
        for _ in 0..100 {
            let mut bad = good.clone();
            for _ in 0..4 {
                let i = rng.usize(sos + 20..bad.len() - 2);
                bad[i] = rng.u8(..);
            }
            let checked = fd.decode(&bad, Target::Nothing, None, &mut none).is_ok();
            let full = fd.dec.decode_rgb_default(&bad).is_ok();
            assert_eq!(checked, full, "the check and a full decode disagree");
            found += u32::from(!checked);
        }
        assert!(found > 10, "only {found} of 100 corruptions found");
        // Not a JPEG, and a claimed size over the bound.
        assert!(matches!(
            fd.decode(b"nope", Target::Nothing, None, &mut none),
            Err(JpegError::Header { .. })
        ));
        assert!(matches!(
            fd.dec.check(&good, 640 * 360 - 1, &mut none),
            Err(JpegError::TooLarge { .. })
        ));
    }

    /// Runs the decoder thread over `jpegs`, all queued before it is told `target`; returns
    /// what it handed on and its outcome.
    fn run_thread(target: Target, jpegs: &[Vec<u8>]) -> (Vec<Decoded>, DecodeOutcome) {
        let (tx, rx) = DropOldest::new(8);
        let (out, decoded) = DropOldest::new(8);
        let (_spare_tx, spare) = crossbeam_channel::bounded(1);
        let (target_tx, target_rx) = crossbeam_channel::bounded(1);
        let h = spawn(rx, out, spare, target_rx, Arc::new(Shared::default()), true).unwrap();
        for (i, j) in jpegs.iter().enumerate() {
            tx.push((i as u64 * 3000, Bytes::from(j.clone())));
        }
        target_tx.send(target).unwrap();
        drop(tx);
        let outcome = h.join().unwrap();
        (decoded.try_iter().collect(), outcome)
    }

    #[test]
    fn with_a_window_only_the_newest_waiting_frame_is_decoded() {
        let jpegs: Vec<Vec<u8>> = (0..3)
            .map(|_| jpeg(320, 240, Subsampling::Yuv420))
            .collect();
        let (frames, outcome) = run_thread(Target::Window, &jpegs);
        // The first two had a newer frame behind them when their turn came: never shown, so
        // never decoded.
        assert_eq!((outcome.decoded, outcome.superseded), (1, 2));
        assert_eq!(frames.len(), 1);
        let f = &frames[0];
        assert_eq!(
            (f.pts, f.frame, f.width, f.height),
            (6000, (320, 240), 320, 240)
        );
        assert_eq!(f.bgr.len(), 320 * 240 * 3);
        assert_eq!(outcome.frame_times.len(), 1);
    }

    #[test]
    fn without_a_window_every_frame_is_checked_and_none_gets_pixels() {
        let good = jpeg(320, 240, Subsampling::Yuv420);
        let cut = good[..good.len() / 2].to_vec();
        let (frames, outcome) = run_thread(Target::Nothing, &[good.clone(), cut, good]);
        assert_eq!(
            (outcome.decoded, outcome.errors, outcome.superseded),
            (2, 1, 0)
        );
        let pts: Vec<u64> = frames.iter().map(|f| f.pts).collect();
        assert_eq!(
            pts,
            [0, 6000],
            "the truncated frame is an error, not a frame"
        );
        assert!(
            frames
                .iter()
                .all(|f| f.bgr.is_empty() && f.frame == (320, 240))
        );
        assert_eq!(outcome.frame_times.len(), 2);
    }

    #[test]
    fn fit_packs_and_unpacks() {
        assert_eq!(unpack_fit(0), None);
        assert_eq!(unpack_fit(pack_fit(640, 0)), None);
        assert_eq!(unpack_fit(pack_fit(640, 360)), Some((640, 360)));
        assert_eq!(unpack_fit(pack_fit(u32::MAX, 1)), Some((u32::MAX, 1)));
    }
}
