//! WAV files whose `fmt ` chunk is longer than their format needs: a plain PCM or float
//! header (format tag 1 or 3) padded to 40 bytes (cbSize 0 and 22 unused bytes, a common
//! export pattern). ffmpeg reads them; hound refuses them ("unexpected fmt chunk size").
//!
//! [`WavFile`] shows hound the same bytes with the chunk cut to its 16 meaningful bytes and
//! the rest turned into a `JUNK` chunk, which hound skips: two header fields rewritten, no
//! sample moved, the file itself untouched.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Most chunks looked at before `fmt ` (it comes first in practice).
const MAX_CHUNKS: usize = 64;

/// A WAV file as hound reads it, with the header rewrites of the module docs if any.
#[derive(Debug)]
pub(super) struct WavFile {
    file: File,
    pos: u64,
    /// (offset, bytes) shown instead of the file's own.
    patches: Vec<(u64, Vec<u8>)>,
}

impl WavFile {
    /// The file as it is.
    pub(super) fn plain(file: File) -> WavFile {
        WavFile {
            file,
            pos: 0,
            patches: Vec::new(),
        }
    }

    /// The file with its over-long PCM or float `fmt ` chunk shown as a 16-byte one, or
    /// `None` if it has no such chunk.
    pub(super) fn with_short_fmt(mut file: File) -> io::Result<Option<WavFile>> {
        file.seek(SeekFrom::Start(0))?;
        let mut riff = [0u8; 12];
        file.read_exact(&mut riff)?;
        if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
            return Ok(None);
        }
        let mut at = 12u64;
        for _ in 0..MAX_CHUNKS {
            let mut head = [0u8; 10];
            file.seek(SeekFrom::Start(at))?;
            if file.read_exact(&mut head).is_err() {
                return Ok(None);
            }
            let size = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
            if &head[0..4] == b"fmt " {
                let tag = u16::from_le_bytes([head[8], head[9]]);
                // Room for the 16 bytes kept and an 8-byte JUNK header.
                if !matches!(tag, 1 | 3) || size < 16 + 8 {
                    return Ok(None);
                }
                let junk = (size - 16 - 8) as u32;
                let mut junk_head = b"JUNK".to_vec();
                junk_head.extend_from_slice(&junk.to_le_bytes());
                let patches = vec![
                    (at + 4, 16u32.to_le_bytes().to_vec()),
                    (at + 8 + 16, junk_head),
                ];
                file.seek(SeekFrom::Start(0))?;
                return Ok(Some(WavFile {
                    file,
                    pos: 0,
                    patches,
                }));
            }
            if &head[0..4] == b"data" {
                return Ok(None);
            }
            at += 8 + size + (size & 1);
        }
        Ok(None)
    }
}

impl Read for WavFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        let start = self.pos;
        let end = start + n as u64;
        for (off, bytes) in &self.patches {
            let (p0, p1) = (*off, *off + bytes.len() as u64);
            let (lo, hi) = (p0.max(start), p1.min(end));
            if lo < hi {
                buf[(lo - start) as usize..(hi - start) as usize]
                    .copy_from_slice(&bytes[(lo - p0) as usize..(hi - p0) as usize]);
            }
        }
        self.pos = end;
        Ok(n)
    }
}

impl Seek for WavFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A float WAV with a 40-byte fmt chunk (cbSize 0, 22 unused bytes) and `frames` stereo
    /// frames of (i / 1000, -i / 1000).
    fn long_fmt_float_wav(path: &std::path::Path, frames: u32) {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
        fmt.extend_from_slice(&2u16.to_le_bytes());
        fmt.extend_from_slice(&48_000u32.to_le_bytes());
        fmt.extend_from_slice(&(48_000u32 * 8).to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        fmt.extend_from_slice(&32u16.to_le_bytes());
        fmt.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        fmt.extend_from_slice(&[0; 22]);
        assert_eq!(fmt.len(), 40);
        let mut data = Vec::new();
        for i in 0..frames {
            let v = i as f32 / 1000.0;
            data.extend_from_slice(&v.to_le_bytes());
            data.extend_from_slice(&(-v).to_le_bytes());
        }
        let mut f = File::create(path).unwrap();
        f.write_all(b"RIFF").unwrap();
        f.write_all(&(4 + 8 + 40 + 8 + data.len() as u32).to_le_bytes())
            .unwrap();
        f.write_all(b"WAVEfmt ").unwrap();
        f.write_all(&40u32.to_le_bytes()).unwrap();
        f.write_all(&fmt).unwrap();
        f.write_all(b"data").unwrap();
        f.write_all(&(data.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&data).unwrap();
    }

    #[test]
    fn a_40_byte_float_fmt_chunk_reads() {
        let path =
            std::env::temp_dir().join(format!("framecast-longfmt-{}.wav", std::process::id()));
        long_fmt_float_wav(&path, 100);
        // hound alone refuses it...
        let Err(e) = hound::WavReader::open(&path) else {
            panic!("hound reads it now: this shim can go");
        };
        assert!(e.to_string().contains("fmt chunk size"), "{e}");
        // ...and reads it through the rewrite, every sample.
        let f = WavFile::with_short_fmt(File::open(&path).unwrap())
            .unwrap()
            .expect("a long fmt chunk");
        let mut r = hound::WavReader::new(io::BufReader::new(f)).unwrap();
        let spec = r.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 48_000, 32)
        );
        assert_eq!(spec.sample_format, hound::SampleFormat::Float);
        let s: Vec<f32> = r.samples::<f32>().map(|x| x.unwrap()).collect();
        assert_eq!(s.len(), 200);
        assert_eq!((s[14], s[15]), (0.007, -0.007));
        // A plain WAV has nothing to rewrite.
        let plain =
            std::env::temp_dir().join(format!("framecast-plainfmt-{}.wav", std::process::id()));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        hound::WavWriter::create(&plain, spec)
            .unwrap()
            .finalize()
            .unwrap();
        assert!(
            WavFile::with_short_fmt(File::open(&plain).unwrap())
                .unwrap()
                .is_none()
        );
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&plain);
    }
}
