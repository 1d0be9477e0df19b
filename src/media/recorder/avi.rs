//! The video file: MJPEG in AVI 1.0 written byte by byte ([`AviWriter`]), and how the
//! recorder lays received frames on its slots (one per frame interval, gaps repeating the
//! previous frame).

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;

use super::{
    CHECKPOINT_SECS, DEFAULT_FPS, MAX_GAP, MAX_GAP_SLOTS, RecordError, Recorder, mul_div_round,
};
use crate::proto::wire::CLOCK_RATE;

impl Recorder {
    pub(super) fn write_video(
        &mut self,
        pts: u64,
        width: u16,
        height: u16,
        jpeg: Bytes,
    ) -> Result<(), RecordError> {
        if self.video_done || self.avi.is_none() {
            self.summary.video_skipped += 1;
            return Ok(());
        }
        let (num, den) = self.fps.unwrap_or(DEFAULT_FPS);
        let (num, den) = (i128::from(num), i128::from(den));
        let tick_den = den * i128::from(CLOCK_RATE);
        let max_gap_slots = (i128::from(MAX_GAP.as_secs() as u32) * num / den).min(MAX_GAP_SLOTS);
        let pts = i128::from(pts);
        let next = i128::from(self.next_slot);
        let mut slot = if pts >= self.video_anchor {
            mul_div_round(pts - self.video_anchor, num, tick_den)
        } else {
            -1 - mul_div_round(self.video_anchor - pts, num, tick_den)
        };
        let one_second_slots = num / den + 1;
        if slot - next > max_gap_slots || next - slot > one_second_slots {
            // A jump forward beyond MAX_GAP, or back by more than a second: a new timeline.
            self.summary.rebases += 1;
            log::warn!("record: video timestamps jumped; continuing the recording without a gap");
            self.video_anchor = pts - mul_div_round(next, tick_den, num);
            slot = next;
        }
        if slot < next {
            self.summary.video_skipped += 1;
            return Ok(());
        }
        let pad = self.last_jpeg.clone().unwrap_or_else(|| jpeg.clone());
        let mut s = next;
        while s < slot {
            if !self.put_frame(&pad, width, height)? {
                return Ok(());
            }
            self.summary.video_repeats += 1;
            s += 1;
        }
        if self.put_frame(&jpeg, width, height)? {
            self.last_jpeg = Some(jpeg);
        }
        Ok(())
    }

    /// Writes one slot; false once the size limit is reached.
    fn put_frame(&mut self, jpeg: &Bytes, width: u16, height: u16) -> Result<bool, RecordError> {
        let path = &self.avi_path;
        let io = |source: io::Error| RecordError::Io {
            path: path.clone(),
            source,
        };
        let Some(avi) = self.avi.as_mut() else {
            return Ok(false);
        };
        avi.note_size(u32::from(width), u32::from(height));
        if !avi.write_frame(jpeg).map_err(io)? {
            log::warn!(
                "record: {} reached the AVI size limit; video recording stops here",
                path.display()
            );
            self.summary.truncated = true;
            self.video_done = true;
            self.summary.video_skipped += 1;
            return Ok(false);
        }
        let every = (CHECKPOINT_SECS * u64::from(avi.fps.0) / u64::from(avi.fps.1.max(1))).max(1);
        if avi.frames() % every == 0 {
            avi.checkpoint().map_err(io)?;
        }
        self.next_slot += 1;
        self.summary.video_frames += 1;
        Ok(true)
    }
}

/// Offset of the `movi` list type in the file; `idx1` offsets count from here.
const MOVI_AT: u64 = 220;
/// Length of the headers up to the first `00dc` chunk.
const HEADER_LEN: usize = 224;
/// AVIF_HASINDEX.
const AVIF_HASINDEX: u32 = 0x10;
/// AVIIF_KEYFRAME: every JPEG stands alone.
pub(super) const AVIIF_KEYFRAME: u32 = 0x10;

/// A streaming MJPEG AVI 1.0 writer.
pub(super) struct AviWriter {
    out: BufWriter<File>,
    pub(super) fps: (u32, u32),
    width: u32,
    height: u32,
    /// (offset from `movi`, size) per chunk.
    index: Vec<(u32, u32)>,
    /// End of the data written.
    pos: u64,
    max_chunk: u32,
    max_bytes: u64,
    done: bool,
}

impl AviWriter {
    pub(super) fn create(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = File::create(path)?;
        let mut w = Self {
            out: BufWriter::with_capacity(1 << 20, file),
            fps: DEFAULT_FPS,
            width: 0,
            height: 0,
            index: Vec::new(),
            pos: HEADER_LEN as u64,
            max_chunk: 0,
            max_bytes,
            done: false,
        };
        let h = w.header(false);
        w.out.write_all(&h)?;
        Ok(w)
    }

    fn frames(&self) -> u64 {
        self.index.len() as u64
    }

    fn note_size(&mut self, width: u32, height: u32) {
        if self.width == 0 {
            self.width = width;
            self.height = height;
        }
    }

    /// Appends a `00dc` chunk; false (nothing written) if it would pass the size limit.
    fn write_frame(&mut self, jpeg: &[u8]) -> io::Result<bool> {
        let len = jpeg.len() as u64;
        let padded = len + (len & 1);
        let idx_after = (self.index.len() as u64 + 1) * 16 + 8;
        if len > u64::from(u32::MAX) || self.pos + 8 + padded + idx_after > self.max_bytes {
            return Ok(false);
        }
        let offset = (self.pos - MOVI_AT) as u32;
        self.out.write_all(b"00dc")?;
        self.out.write_all(&(len as u32).to_le_bytes())?;
        self.out.write_all(jpeg)?;
        if len & 1 == 1 {
            self.out.write_all(&[0])?;
        }
        self.pos += 8 + padded;
        self.index.push((offset, len as u32));
        self.max_chunk = self.max_chunk.max(len as u32);
        Ok(true)
    }

    /// The headers for the current state; `with_index`: the file ends with `idx1`.
    fn header(&self, with_index: bool) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let mut at = 0;
        let mut put = |b: &[u8]| {
            h[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        };
        let u32le = |v: u32| v.to_le_bytes();
        let u16le = |v: u16| v.to_le_bytes();
        let (num, den) = (self.fps.0.max(1), self.fps.1.max(1));
        let frames = self.index.len() as u32;
        let file_len = self.pos
            + if with_index {
                8 + 16 * u64::from(frames)
            } else {
                0
            };
        let usec = (1_000_000u64 * u64::from(den) / u64::from(num)) as u32;
        let bytes_per_sec = (u64::from(self.max_chunk) * u64::from(num) / u64::from(den))
            .min(u64::from(u32::MAX)) as u32;
        let (w, hgt) = (self.width, self.height);
        put(b"RIFF");
        put(&u32le((file_len - 8).min(u64::from(u32::MAX)) as u32));
        put(b"AVI ");
        put(b"LIST");
        put(&u32le(192));
        put(b"hdrl");
        put(b"avih");
        put(&u32le(56));
        put(&u32le(usec)); // dwMicroSecPerFrame
        put(&u32le(bytes_per_sec)); // dwMaxBytesPerSec
        put(&u32le(0)); // dwPaddingGranularity
        put(&u32le(AVIF_HASINDEX)); // dwFlags
        put(&u32le(frames)); // dwTotalFrames
        put(&u32le(0)); // dwInitialFrames
        put(&u32le(1)); // dwStreams
        put(&u32le(self.max_chunk + 8)); // dwSuggestedBufferSize
        put(&u32le(w)); // dwWidth
        put(&u32le(hgt)); // dwHeight
        put(&[0; 16]); // dwReserved[4]
        put(b"LIST");
        put(&u32le(116));
        put(b"strl");
        put(b"strh");
        put(&u32le(56));
        put(b"vids"); // fccType
        put(b"MJPG"); // fccHandler
        put(&u32le(0)); // dwFlags
        put(&u16le(0)); // wPriority
        put(&u16le(0)); // wLanguage
        put(&u32le(0)); // dwInitialFrames
        put(&u32le(den)); // dwScale
        put(&u32le(num)); // dwRate
        put(&u32le(0)); // dwStart
        put(&u32le(frames)); // dwLength
        put(&u32le(self.max_chunk + 8)); // dwSuggestedBufferSize
        put(&u32le(u32::MAX)); // dwQuality: default
        put(&u32le(0)); // dwSampleSize: varies
        put(&u16le(0)); // rcFrame
        put(&u16le(0));
        put(&u16le(w.min(u32::from(u16::MAX)) as u16));
        put(&u16le(hgt.min(u32::from(u16::MAX)) as u16));
        put(b"strf");
        put(&u32le(40));
        put(&u32le(40)); // biSize
        put(&u32le(w)); // biWidth
        put(&u32le(hgt)); // biHeight
        put(&u16le(1)); // biPlanes
        put(&u16le(24)); // biBitCount
        put(b"MJPG"); // biCompression
        put(&u32le(w.saturating_mul(hgt).saturating_mul(3))); // biSizeImage
        put(&[0; 16]); // biXPelsPerMeter, biYPelsPerMeter, biClrUsed, biClrImportant
        put(b"LIST");
        put(&u32le((self.pos - MOVI_AT) as u32));
        put(b"movi");
        debug_assert_eq!(at, HEADER_LEN);
        h
    }

    /// Patches the headers for what was written so far (no index yet), so a process that
    /// dies leaves a readable file.
    fn checkpoint(&mut self) -> io::Result<()> {
        let h = self.header(false);
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&h)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        self.out.flush()
    }

    /// Appends `idx1` and patches the headers.
    pub(super) fn finish(&mut self) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        self.out.seek(SeekFrom::Start(self.pos))?;
        let mut idx = Vec::with_capacity(8 + 16 * self.index.len());
        idx.extend_from_slice(b"idx1");
        idx.extend_from_slice(&((16 * self.index.len()) as u32).to_le_bytes());
        for &(offset, size) in &self.index {
            idx.extend_from_slice(b"00dc");
            idx.extend_from_slice(&AVIIF_KEYFRAME.to_le_bytes());
            idx.extend_from_slice(&offset.to_le_bytes());
            idx.extend_from_slice(&size.to_le_bytes());
        }
        self.out.write_all(&idx)?;
        let h = self.header(true);
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&h)?;
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}
