//! The decoder thread: JPEG to packed BGR with turbojpeg, handed to the presenter.

use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Receiver;

use super::queue::DropOldest;
use crate::media::MAX_FRAME_PIXELS;
use crate::media::clock::unix_micros;
use crate::media::jpeg::{JpegDecoder, JpegError, MAX_PROGRESSIVE_SCANS};

/// A decoded frame on its way from the decoder thread to the presenter.
#[derive(Debug)]
pub(super) struct Decoded {
    /// Timestamp, 90 kHz.
    pub pts: u64,
    /// When it was ready.
    pub ready: Instant,
    pub width: u32,
    pub height: u32,
    /// Packed BGR, `width * height * 3` bytes.
    pub bgr: Vec<u8>,
}

/// What the decoder thread did, returned when it ends.
#[derive(Debug, Default)]
pub(super) struct DecodeOutcome {
    pub decoded: u64,
    pub errors: u64,
    /// Frames not decoded because there was no decoder.
    pub skipped: u64,
    /// Decoded frames dropped because the presenter was behind.
    pub overflow: u64,
    /// (pts, µs since the Unix epoch) of each decoded frame, when asked for.
    pub frame_times: Vec<(u64, u64)>,
}

/// turbojpeg straight to packed BGR (what OpenCV shows), with the same guards as
/// [`JpegDecoder`]: the header is checked against [`MAX_FRAME_PIXELS`] before anything is
/// allocated, and progressive scans are limited.
struct BgrDecoder {
    header: JpegDecoder,
    dec: turbojpeg::Decompressor,
}

impl BgrDecoder {
    fn new() -> Result<Self, JpegError> {
        let mut dec = turbojpeg::Decompressor::new().map_err(JpegError::Init)?;
        dec.set_scan_limit(MAX_PROGRESSIVE_SCANS)
            .map_err(JpegError::Init)?;
        Ok(Self {
            header: JpegDecoder::new()?,
            dec,
        })
    }

    /// Decodes into `buf` (reused); returns (width, height).
    fn decode(&mut self, jpeg: &[u8], buf: &mut Vec<u8>) -> Result<(u32, u32), JpegError> {
        let info = self.header.read_header(jpeg)?;
        if info.pixels() > MAX_FRAME_PIXELS {
            return Err(JpegError::TooLarge {
                width: u64::from(info.width),
                height: u64::from(info.height),
                pixels: info.pixels(),
                max_pixels: MAX_FRAME_PIXELS,
            });
        }
        let stride = info.width as usize * 3;
        buf.resize(stride * info.height as usize, 0);
        let image = turbojpeg::Image {
            pixels: &mut buf[..],
            width: info.width as usize,
            pitch: stride,
            height: info.height as usize,
            format: turbojpeg::PixelFormat::BGR,
        };
        self.dec
            .decompress(jpeg, image)
            .map_err(|source| JpegError::Decode {
                width: info.width,
                height: info.height,
                source,
            })?;
        Ok((info.width, info.height))
    }
}

/// Starts the decoder thread: it decodes every (pts, JPEG) it receives until `rx` ends, and
/// hands the frames to `out` (dropping the oldest if the presenter is behind), reusing the
/// pixel buffers the presenter sends back through `spare`.
pub(super) fn spawn(
    rx: Receiver<(u64, Bytes)>,
    out: DropOldest<Decoded>,
    spare: Receiver<Vec<u8>>,
    frame_times: bool,
) -> std::io::Result<std::thread::JoinHandle<DecodeOutcome>> {
    std::thread::Builder::new()
        .name("decoder".into())
        .spawn(move || {
            let mut outcome = DecodeOutcome::default();
            let mut dec = match BgrDecoder::new() {
                Ok(d) => d,
                Err(e) => {
                    log::warn!("play: no JPEG decoder ({e}); frames are counted, not decoded");
                    outcome.skipped = rx.iter().count() as u64;
                    return outcome;
                }
            };
            for (pts, jpeg) in rx {
                let mut bgr = spare.try_recv().unwrap_or_default();
                match dec.decode(&jpeg, &mut bgr) {
                    Ok((width, height)) => {
                        outcome.decoded += 1;
                        if frame_times {
                            outcome.frame_times.push((pts, unix_micros()));
                        }
                        // A full queue gives up its oldest frame (counted as overflow).
                        let _ = out.push(Decoded {
                            pts,
                            ready: Instant::now(),
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
