//! The Matroska writer: libavformat's muxer (through `ffmpeg-next`) with an MJPEG track (the
//! received JPEGs, unchanged) and a 16-bit PCM track, each block with its own timestamp.
//!
//! Clusters are closed every [`CLUSTER_MS`] and every packet is flushed to the file
//! (`flush_packets`), so a recorder killed mid-way (SIGKILL, power loss) leaves a file that
//! players and ffprobe read up to its last closed cluster; only the final index (cues) and
//! sizes, written by [`MkvWriter::finish`], are missing then.

use std::path::Path;

use ff::Rescale as _;
use ffmpeg_next as ff;

/// Longest cluster in ms: at most this much media is lost if the process is killed.
pub const CLUSTER_MS: u32 = 100;

/// The tracks of a recording: the video's size, and the audio's rate and channels if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tracks {
    pub width: u16,
    pub height: u16,
    pub audio: Option<(u32, u16)>,
}

/// An open Matroska file (see the module docs).
pub(super) struct MkvWriter {
    out: ff::format::context::Output,
    video_tb: ff::Rational,
    audio_tb: Option<ff::Rational>,
}

impl std::fmt::Debug for MkvWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MkvWriter").finish_non_exhaustive()
    }
}

/// The media clock (proto-spec.md §4.2) as a rational time base.
const TICKS: ff::Rational = ff::Rational(1, 90_000);

fn err(what: &str, e: ff::Error) -> String {
    format!("{what}: {e}")
}

impl MkvWriter {
    /// Creates `path` (replacing it) and writes the header for `tracks`.
    pub(super) fn create(path: &Path, tracks: Tracks) -> Result<MkvWriter, String> {
        crate::media::ffmpeg_init();
        let mut out = ff::format::output_as(&path, "matroska")
            .map_err(|e| err("cannot open the Matroska muxer", e))?;
        let codec =
            |id| ff::encoder::find(id).ok_or_else(|| format!("this FFmpeg build lacks {id:?}"));
        let mut v = ff::codec::context::Context::new_with_codec(codec(ff::codec::Id::MJPEG)?)
            .encoder()
            .video()
            .map_err(|e| err("video track", e))?;
        v.set_width(u32::from(tracks.width));
        v.set_height(u32::from(tracks.height));
        v.set_format(ff::format::Pixel::YUVJ420P);
        v.set_time_base(TICKS);
        out.add_stream_with(&v)
            .map_err(|e| err("cannot add the video track", e))?;
        if let Some((rate, channels)) = tracks.audio {
            let mut a =
                ff::codec::context::Context::new_with_codec(codec(ff::codec::Id::PCM_S16LE)?)
                    .encoder()
                    .audio()
                    .map_err(|e| err("audio track", e))?;
            a.set_rate(rate as i32);
            a.set_channel_layout(ff::ChannelLayout::default(i32::from(channels)));
            a.set_channels(i32::from(channels));
            a.set_format(ff::format::Sample::I16(ff::format::sample::Type::Packed));
            a.set_time_base(ff::Rational(1, rate as i32));
            out.add_stream_with(&a)
                .map_err(|e| err("cannot add the audio track", e))?;
        }
        let mut opts = ff::Dictionary::new();
        opts.set("cluster_time_limit", &CLUSTER_MS.to_string());
        opts.set("flush_packets", "1");
        out.write_header_with(opts)
            .map_err(|e| err("cannot write the Matroska header", e))?;
        let tb = |i: usize| out.stream(i).map(|s| s.time_base());
        let video_tb = tb(0).unwrap_or(ff::Rational(1, 1000));
        let audio_tb = tracks.audio.and_then(|_| tb(1));
        Ok(MkvWriter {
            out,
            video_tb,
            audio_tb,
        })
    }

    fn write(
        &mut self,
        stream: usize,
        tb: ff::Rational,
        t: i64,
        data: &[u8],
        dur: i64,
    ) -> Result<(), String> {
        let mut p = ff::Packet::copy(data);
        p.set_stream(stream);
        let ts = t.rescale(TICKS, tb);
        p.set_pts(Some(ts));
        p.set_dts(Some(ts));
        p.set_duration(dur.rescale(TICKS, tb));
        p.set_flags(ff::packet::Flags::KEY);
        p.write(&mut self.out)
            .map(|_| ())
            .map_err(|e| err("writing a packet", e))
    }

    /// Writes one JPEG at `t` (90 kHz ticks from the start of the recording).
    pub(super) fn video(&mut self, t: i64, jpeg: &[u8]) -> Result<(), String> {
        self.write(0, self.video_tb, t, jpeg, 0)
    }

    /// Writes interleaved s16 `samples` whose first frame is at `t` (90 kHz ticks),
    /// `dur` ticks long.
    pub(super) fn audio(&mut self, t: i64, samples: &[i16], dur: i64) -> Result<(), String> {
        let Some(tb) = self.audio_tb else {
            return Ok(());
        };
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        self.write(1, tb, t, &bytes, dur)
    }

    /// Writes the index and the final sizes.
    pub(super) fn finish(mut self) -> Result<(), String> {
        self.out
            .write_trailer()
            .map_err(|e| err("cannot finish the Matroska file", e))
    }
}
