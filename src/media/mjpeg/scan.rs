//! Cutting a concatenated MJPEG byte stream (`ffmpeg -f mjpeg -`, `rpicam-vid --codec mjpeg`)
//! into whole JPEGs, with a fixed memory bound.
//!
//! The scanner walks the marker structure rather than searching for FF D9: a JPEG ends at the
//! EOI that follows its entropy-coded data, not at an FF D9 inside an APP segment (an EXIF
//! thumbnail is a whole JPEG). Inside entropy-coded data every FF is followed by 00 (stuffing),
//! a restart marker (D0-D7) or a fill FF, so the first other marker ends the scan. Bytes before
//! an SOI (and so after the previous EOI) are skipped and counted. A JPEG that grows past
//! [`MAX_JPEG_BYTES`] or whose structure breaks is dropped, counted, and the scanner
//! resynchronises on the next SOI.

/// Largest JPEG the scanner keeps: 8 MiB (a 4K 4:2:2 camera frame at high quality is about
/// 2 MiB). The buffer never grows beyond this plus one read.
pub const MAX_JPEG_BYTES: usize = 8 << 20;

/// What [`MjpegScanner::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// A whole JPEG, SOI to EOI.
    Jpeg(Vec<u8>),
    /// A JPEG was dropped: over [`MAX_JPEG_BYTES`], or its markers are broken.
    Dropped(DropReason),
}

/// Why a JPEG was dropped by the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Larger than [`MAX_JPEG_BYTES`].
    TooLarge,
    /// Its marker structure is broken.
    Damaged,
    /// The input ended inside it.
    Truncated,
}

/// Cuts a byte stream into JPEGs (see the module docs).
#[derive(Debug, Default)]
pub struct MjpegScanner {
    buf: Vec<u8>,
    /// Where the walk continues in `buf` (0 = still looking for SOI).
    pos: usize,
    /// The walk is inside entropy-coded data.
    in_scan: bool,
    /// Skipping a too-large JPEG until the next SOI.
    skipping: bool,
    /// Bytes skipped outside JPEGs (before an SOI, after an EOI).
    pub junk_bytes: u64,
}

enum Step {
    More,
    Done(usize),
    Broken,
}

impl MjpegScanner {
    /// An empty scanner.
    pub fn new() -> MjpegScanner {
        MjpegScanner::default()
    }

    /// Appends `data` and returns the JPEGs (and drops) it completes, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Scanned> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if self.pos == 0 && !self.find_soi() {
                break;
            }
            match self.walk() {
                Step::More => {
                    if self.buf.len() > MAX_JPEG_BYTES {
                        out.push(Scanned::Dropped(DropReason::TooLarge));
                        self.restart(1);
                        self.skipping = true;
                    }
                    break;
                }
                Step::Done(end) => {
                    let rest = self.buf.split_off(end);
                    out.push(Scanned::Jpeg(std::mem::replace(&mut self.buf, rest)));
                    self.pos = 0;
                    self.in_scan = false;
                    self.skipping = false;
                }
                Step::Broken => {
                    out.push(Scanned::Dropped(DropReason::Damaged));
                    self.restart(1);
                }
            }
        }
        out
    }

    /// Bytes held (at most [`MAX_JPEG_BYTES`] plus the last push).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The end of the input: a JPEG in progress is reported truncated.
    pub fn finish(&mut self) -> Option<Scanned> {
        let partial = self.pos > 0 && !self.skipping;
        self.junk_bytes += if partial { 0 } else { self.buf.len() as u64 };
        self.buf.clear();
        self.pos = 0;
        partial.then_some(Scanned::Dropped(DropReason::Truncated))
    }

    /// Drops `n` bytes of the current (broken) JPEG and looks for the next SOI.
    fn restart(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
        self.pos = 0;
        self.in_scan = false;
    }

    /// Moves to the next SOI in the buffer (discarding what is before it); false if there is
    /// none yet (keeps a trailing FF, which may be its first byte).
    fn find_soi(&mut self) -> bool {
        match self.buf.windows(2).position(|w| w == [0xFF, 0xD8]) {
            Some(i) => {
                if !self.skipping {
                    self.junk_bytes += i as u64;
                }
                self.buf.drain(..i);
                self.pos = 2;
                self.in_scan = false;
                true
            }
            None => {
                let keep = usize::from(self.buf.last() == Some(&0xFF));
                let drop = self.buf.len() - keep;
                if !self.skipping {
                    self.junk_bytes += drop as u64;
                }
                self.buf.drain(..drop);
                false
            }
        }
    }

    /// Walks the markers from `pos`; `pos` and `in_scan` keep the progress across pushes.
    fn walk(&mut self) -> Step {
        let b = &self.buf;
        loop {
            if self.pos > b.len() {
                return Step::More; // inside a segment that has not all arrived
            }
            if self.in_scan {
                // Find the next marker that is not stuffing, a restart or fill.
                let mut i = self.pos;
                loop {
                    let Some(off) = b[i..].iter().position(|&x| x == 0xFF) else {
                        self.pos = b.len();
                        return Step::More;
                    };
                    i += off;
                    let Some(&next) = b.get(i + 1) else {
                        self.pos = i;
                        return Step::More;
                    };
                    match next {
                        0x00 | 0xD0..=0xD7 => i += 2,
                        0xFF => i += 1,
                        _ => break,
                    }
                }
                self.pos = i;
                self.in_scan = false;
            }
            let p = self.pos;
            let Some(&ff) = b.get(p) else {
                return Step::More;
            };
            if ff != 0xFF {
                return Step::Broken;
            }
            let Some(&marker) = b.get(p + 1) else {
                return Step::More;
            };
            match marker {
                0xFF => self.pos += 1,
                0xD9 => return Step::Done(p + 2),
                0x01 | 0xD0..=0xD7 => self.pos += 2,
                0xD8 | 0x00 => return Step::Broken,
                _ => {
                    let (Some(&hi), Some(&lo)) = (b.get(p + 2), b.get(p + 3)) else {
                        return Step::More;
                    };
                    let len = usize::from(u16::from_be_bytes([hi, lo]));
                    if len < 2 {
                        return Step::Broken;
                    }
                    self.pos = p + 2 + len;
                    if marker == 0xDA {
                        self.in_scan = true;
                    }
                    if self.pos > b.len() {
                        // Wait for the rest of the segment; `walk` resumes from its end.
                        return Step::More;
                    }
                }
            }
        }
    }
}
