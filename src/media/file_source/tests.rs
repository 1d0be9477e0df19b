//! Unit tests of the file source: MJPEG AVI and MP4 streaming, looping, `--audio`
//! replacement, clear errors, the YUV encoder and its pool, frame-rate fractions. Test clips
//! are made by the ffmpeg command-line tool inside each test.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::*;
use crate::media::JpegDecoder;
use crate::media::source::{AudioFormat, MediaItem, SourceStats};

fn tmp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("framecast-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 320x240 MJPEG AVI (no audio) of `frames` frames at `fps`, each a flat grey level.
fn write_avi(path: &Path, frames: u32, fps: f64) {
    write_video(path, "mjpeg", "yuvj420p", frames, fps);
}

/// A 320x240 video (no audio) in the container `path` names, with ffmpeg's encoder `codec`:
/// frame `i` is the flat grey level `20 + 10 i`.
fn write_video(path: &Path, codec: &str, pix_fmt: &str, frames: u32, fps: f64) {
    let grey = "20+10*N";
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!(
            "nullsrc=s=320x240:r={fps},format=rgb24,geq=r='{grey}':g='{grey}':b='{grey}'"
        ))
        .args(["-frames:v", &frames.to_string(), "-an", "-c:v", codec])
        .args(["-pix_fmt", pix_fmt])
        .arg(path)
        .output()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg cannot write {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn opts() -> FileOptions {
    FileOptions {
        quality: 80,
        subsampling: Subsampling::Yuv420,
        looping: false,
        audio: FileAudioChoice::FromFile,
        progress: false,
    }
}

fn collect(src: FileSource, secs: u64) -> (Vec<MediaItem>, SourceStats, Duration) {
    let (items, stats, took) = collect_timed(src, secs);
    (
        items.into_iter().map(|(_, item)| item).collect(),
        stats,
        took,
    )
}

/// As [`collect`], with each item's arrival after the start.
fn collect_timed(
    src: FileSource,
    secs: u64,
) -> (Vec<(Duration, MediaItem)>, SourceStats, Duration) {
    let mut items = Vec::new();
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let stats = Box::new(src).run(
        start,
        &mut |item| {
            items.push((start.elapsed(), item));
            Instant::now() < deadline
        },
        &stop,
    );
    (items, stats, start.elapsed())
}

#[test]
fn mjpeg_avi_frames_and_timestamps() {
    let path = tmp_dir().join("ten.avi");
    write_avi(&path, 10, 25.0);
    let src = FileSource::open(&path, opts(), &|_| 240).unwrap();
    let f = src.format().clone();
    assert_eq!((f.width, f.height, f.fps_num, f.fps_den), (320, 240, 25, 1));
    assert_eq!(f.audio, None, "no audio: video only");
    // The clip has no audio track (-an): said so, and the video goes on.
    let note = src.audio_note().unwrap();
    assert!(note.contains("no audio track"), "{note}");
    assert!(note.ends_with("streaming video only"), "{note}");
    assert_eq!(src.frame_count(), Some(10));
    let (items, stats, took) = collect_timed(src, 10);
    assert_eq!(stats.frames, 10);
    assert_eq!(stats.audio_blocks, 0);
    let mut dec = JpegDecoder::new().unwrap();
    let pts: Vec<u64> = items
        .iter()
        .enumerate()
        .map(|(i, (at, item))| match item {
            MediaItem::Video { pts, jpeg } => {
                // Compressed ahead of time, but never sent before its time.
                let due = Duration::from_micros(pts * 100 / 9);
                assert!(*at >= due, "frame {i} sent at {at:?}, due at {due:?}");
                let frame = dec.decode_rgb_default(jpeg).unwrap();
                assert_eq!((frame.width, frame.height), (320, 240));
                // The grey level survives MJPEG -> planar YUV -> JPEG.
                let want = 20 + i as i32 * 10;
                let got = i32::from(frame.pixel(160, 120).unwrap()[0]);
                assert!((got - want).abs() <= 4, "frame {i}: {got} vs {want}");
                *pts
            }
            MediaItem::Audio { .. } => panic!("audio from a silent file"),
        })
        .collect();
    // 25 fps: 3600 ticks apart, from 0.
    assert_eq!(pts, (0..10).map(|i| i * 3600).collect::<Vec<_>>());
    // Paced in real time: the last frame is due at 360 ms.
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_clip_longer_than_the_queue_is_sent_whole_in_order_and_never_early() {
    // 40 frames: the encoder fills the queue, rests and refills several times.
    let path = tmp_dir().join("forty.avi");
    write_avi(&path, 40, 100.0);
    let src = FileSource::open(&path, opts(), &|_| 240).unwrap();
    let (items, stats, _) = collect_timed(src, 10);
    assert_eq!((stats.frames, stats.frames_dropped), (40, 0));
    let mut pts = Vec::new();
    for (at, item) in &items {
        let MediaItem::Video { pts: p, .. } = item else {
            panic!("audio from a silent file");
        };
        let due = Duration::from_micros(p * 100 / 9);
        assert!(*at >= due, "frame at {p} sent at {at:?}, due at {due:?}");
        pts.push(*p);
    }
    // 100 fps: 900 ticks apart, from 0.
    assert_eq!(pts, (0..40).map(|i| i * 900).collect::<Vec<_>>());
}

#[test]
fn mp4_without_audio_warns_and_streams_video() {
    let path = tmp_dir().join("silent.mp4");
    write_video(&path, "mpeg4", "yuv420p", 6, 30.0);
    let src = FileSource::open(&path, opts(), &|_| 240).unwrap();
    assert_eq!(src.format().audio, None);
    assert_eq!(
        src.audio_note(),
        Some(format!("no audio track in {}; streaming video only", path.display()).as_str())
    );
    let (items, stats, _) = collect(src, 10);
    assert_eq!(stats.frames, 6);
    assert_eq!(items.len(), 6);
    let pts: Vec<u64> = items
        .iter()
        .filter_map(|i| match i {
            MediaItem::Video { pts, .. } => Some(*pts),
            MediaItem::Audio { .. } => None,
        })
        .collect();
    assert_eq!(pts, (0..6).map(|i| i * 3000).collect::<Vec<_>>());
}

#[test]
fn looping_keeps_timestamps_increasing() {
    let path = tmp_dir().join("loop.avi");
    write_avi(&path, 4, 50.0);
    let src = FileSource::open(
        &path,
        FileOptions {
            looping: true,
            ..opts()
        },
        &|_| 240,
    )
    .unwrap();
    let mut items = Vec::new();
    let stop = AtomicBool::new(false);
    Box::new(src).run(
        Instant::now(),
        &mut |item| {
            items.push(item);
            items.len() < 10
        },
        &stop,
    );
    let pts: Vec<u64> = items
        .iter()
        .filter_map(|i| match i {
            MediaItem::Video { pts, .. } => Some(*pts),
            MediaItem::Audio { .. } => None,
        })
        .collect();
    assert_eq!(pts, (0..10).map(|i| i * 1800).collect::<Vec<_>>());
}

#[test]
fn wav_replaces_the_audio() {
    let dir = tmp_dir();
    let path = dir.join("wav.avi");
    write_avi(&path, 5, 25.0);
    let wav_path = dir.join("tone.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav_path, spec).unwrap();
    for i in 0..4800 {
        w.write_sample((i % 100) as i16).unwrap();
        w.write_sample(-((i % 100) as i16)).unwrap();
    }
    w.finalize().unwrap();
    let wav = WavAudio::open(&wav_path).unwrap();
    let src = FileSource::open(
        &path,
        FileOptions {
            audio: FileAudioChoice::Wav(wav),
            ..opts()
        },
        &|_| 240,
    )
    .unwrap();
    assert_eq!(
        src.format().audio,
        Some(AudioFormat {
            sample_rate: 48_000,
            channels: 2
        })
    );
    let (items, stats, _) = collect(src, 10);
    assert_eq!(stats.frames, 5);
    // 100 ms of audio in 5 ms blocks of 240 frames.
    assert_eq!(stats.audio_blocks, 20);
    let audio: Vec<(u64, usize)> = items
        .iter()
        .filter_map(|i| match i {
            MediaItem::Audio { pts, samples } => Some((*pts, samples.len())),
            MediaItem::Video { .. } => None,
        })
        .collect();
    assert_eq!(audio.len(), 20);
    for (k, (pts, len)) in audio.iter().enumerate() {
        assert_eq!((*pts, *len), (k as u64 * 450, 480));
    }
}

#[test]
fn missing_and_unreadable_files_are_clear_errors() {
    let err = FileSource::open(Path::new("/nonexistent/x.mp4"), opts(), &|_| 240).unwrap_err();
    assert!(matches!(err, FileSourceError::NotFound { .. }));
    assert_eq!(err.to_string(), "no such file");
    let junk = tmp_dir().join("junk.mp4");
    std::fs::write(&junk, b"this is not a video, just some text").unwrap();
    let err = FileSource::open(&junk, opts(), &|_| 240).unwrap_err();
    assert!(matches!(err, FileSourceError::NotVideo { .. }), "{err}");
    assert!(err.to_string().contains("cannot read"), "{err}");
}

/// A flat YUV frame: every Y sample `y`, every Cb `cb`, every Cr `cr`.
fn flat_yuv(width: u32, height: u32, s: Subsampling, (y, cb, cr): (u8, u8, u8)) -> YuvFrame {
    let mut f = YuvFrame::default();
    f.reshape(width, height, s);
    let [(yw, yh), (cw, ch), _] = plane_sizes(width, height, s);
    f.data[..yw * yh].fill(y);
    f.data[yw * yh..yw * yh + cw * ch].fill(cb);
    f.data[yw * yh + cw * ch..].fill(cr);
    f
}

#[test]
fn encoder_compresses_yuv_and_refuses_inconsistent_frames() {
    // Pure blue in JPEG's YCbCr: Y 29, Cb 255, Cr 107.
    let blue = flat_yuv(64, 48, Subsampling::Yuv444, (29, 255, 107));
    let mut enc = FrameEncoder::new(90).unwrap();
    let mut dec = JpegDecoder::new().unwrap();
    let jpeg = enc.encode_yuv(&blue).unwrap();
    // The frame's own subsampling, whatever the encoder was made with.
    assert_eq!(
        dec.read_header(&jpeg).unwrap().subsampling,
        Some(Subsampling::Yuv444)
    );
    let rgb = dec.decode_rgb_default(&jpeg).unwrap();
    let [r, g, b] = rgb.pixel(10, 10).unwrap();
    assert!(b > 240 && r < 15 && g < 15, "{r} {g} {b}");
    let mut short = blue.clone();
    short.data.pop();
    assert!(matches!(
        enc.encode_yuv(&short),
        Err(EncodeError::BadYuv { width: 64, .. })
    ));
    assert!(matches!(FrameEncoder::new(0), Err(EncodeError::Quality(0))));
}

/// TV-range planes (luma 16-235, chroma 16-240) of a busy pattern, `pad` bytes past each row.
fn tv_planes(width: u32, height: u32, s: Subsampling, pad: usize) -> Vec<(Vec<u8>, usize)> {
    plane_sizes(width, height, s)
        .iter()
        .enumerate()
        .map(|(i, &(w, h))| {
            let stride = w + pad;
            let (lo, span) = if i == 0 { (16, 220) } else { (16, 225) };
            let data = (0..stride * h)
                .map(|k| {
                    let (x, y) = (k % stride, k / stride);
                    (lo + (x * 7 + y * 13 + (x * y) % 31 + i * 50) % span) as u8
                })
                .collect();
            (data, stride)
        })
        .collect()
}

/// `src` (as [`tv_planes`] makes it) borrowed as the planes of a `w x h` picture.
fn borrowed(src: &[(Vec<u8>, usize)], w: u32, h: u32, s: Subsampling, tv: bool) -> YuvPlanes<'_> {
    let mut planes: [(&[u8], usize); 3] = [(&[], 0); 3];
    for (p, (d, stride)) in planes.iter_mut().zip(src) {
        *p = (d, *stride);
    }
    YuvPlanes {
        width: w,
        height: h,
        subsampling: s,
        planes,
        tv_range: tv,
    }
}

/// `src` copied into a packed `w x h` frame, plane `i` stretched by `range(i)`.
fn packed(
    src: &[(Vec<u8>, usize)],
    w: u32,
    h: u32,
    s: Subsampling,
    range: impl Fn(usize) -> Range,
) -> YuvFrame {
    let mut frame = YuvFrame::default();
    frame.reshape(w, h, s);
    for (i, (dst, dw, dh)) in frame.planes_mut().into_iter().enumerate() {
        let (data, stride) = &src[i];
        let turned = Turn::None;
        assert!(copy_plane(
            data,
            *stride,
            (dw, dh),
            dst,
            (dw, dh),
            turned,
            range(i)
        ));
    }
    frame
}

/// turbojpeg's own JPEG of a packed full-range frame (`tj3CompressFromYUVPlanes8`, set up as
/// the band encoder says it sets libjpeg up: quality 80, the fast DCT).
fn turbojpeg_of(frame: &YuvFrame) -> Vec<u8> {
    use turbojpeg::raw;
    let subsamp = super::yuv::to_turbo(frame.subsampling) as i32;
    let p = frame.as_planes();
    let planes = p.planes.map(|(d, _)| d.as_ptr());
    let strides = p.planes.map(|(_, s)| s as i32);
    // SAFETY: a handle of our own; the frame is consistent (its planes hold the rows
    // turbojpeg reads at their strides); turbojpeg allocates the output, copied and freed.
    unsafe {
        let h = raw::tj3Init(raw::TJINIT_TJINIT_COMPRESS as i32);
        assert!(!h.is_null());
        for (param, value) in [
            (raw::TJPARAM_TJPARAM_QUALITY, 80),
            (raw::TJPARAM_TJPARAM_SUBSAMP, subsamp),
            (raw::TJPARAM_TJPARAM_FASTDCT, 1),
        ] {
            assert_eq!(raw::tj3Set(h, param as i32, value), 0);
        }
        let mut buf: *mut u8 = std::ptr::null_mut();
        let mut len: raw::size_t = 0;
        let r = raw::tj3CompressFromYUVPlanes8(
            h,
            planes.as_ptr(),
            frame.width as i32,
            strides.as_ptr(),
            frame.height as i32,
            &mut buf,
            &mut len,
        );
        assert_eq!(r, 0);
        let jpeg = std::slice::from_raw_parts(buf, len as usize).to_vec();
        raw::tj3Free(buf.cast());
        raw::tj3Destroy(h);
        jpeg
    }
}

#[test]
fn band_encoder_writes_turbojpegs_bytes_from_tv_and_full_range_planes() {
    let mut enc = FrameEncoder::new(80).unwrap();
    let mut dec = JpegDecoder::new().unwrap();
    let tv_range = |i| {
        if i == 0 {
            Range::TvLuma
        } else {
            Range::TvChroma
        }
    };
    for (w, h, s) in [
        (1280, 720, Subsampling::Yuv420), // whole blocks: turbojpeg reads the planes in place
        (1282, 722, Subsampling::Yuv420), // a partial MCU column and row
        (641, 361, Subsampling::Yuv420),  // odd sides: padded planes
        (640, 480, Subsampling::Yuv422),
        (321, 600, Subsampling::Yuv444),
        (330, 90, Subsampling::Gray),
        (17, 9, Subsampling::Yuv422), // smaller than one MCU each way but for one
    ] {
        let src = tv_planes(w, h, s, 24);
        // TV range: stretched band by band here, stretched whole and then compressed there.
        let banded = enc.encode_planes(&borrowed(&src, w, h, s, true)).unwrap();
        let stretched = packed(&src, w, h, s, tv_range);
        assert!(
            banded == turbojpeg_of(&stretched),
            "{w}x{h} {s:?}: not turbojpeg's bytes"
        );
        assert_eq!(banded, enc.encode_yuv(&stretched).unwrap());
        // Full range, rows with a stride: as they are.
        let full = enc.encode_planes(&borrowed(&src, w, h, s, false)).unwrap();
        assert!(full == turbojpeg_of(&packed(&src, w, h, s, |_| Range::Full)));
        let rgb = dec.decode_rgb_default(&banded).unwrap();
        assert_eq!((rgb.width, rgb.height), (w, h));
    }
    // Planes shorter than their shape are refused, not read past.
    let src = tv_planes(64, 48, Subsampling::Yuv420, 0);
    let mut short = borrowed(&src, 64, 48, Subsampling::Yuv420, true);
    short.planes[0].0 = &src[0].0[..64 * 47];
    assert!(matches!(
        enc.encode_planes(&short),
        Err(EncodeError::BadYuv { width: 64, .. })
    ));
    // A stride whose arithmetic would wrap, or that an int cannot hold.
    // (47 rows of 392483916461905354 bytes wrap to 22 in 64-bit arithmetic.)
    for stride in [392_483_916_461_905_354usize, 1 << 40] {
        let mut wild = borrowed(&src, 64, 48, Subsampling::Yuv420, false);
        wild.planes[0].1 = stride;
        assert!(!wild.is_consistent(), "stride {stride}");
        assert!(enc.encode_planes(&wild).is_err());
    }
}

#[test]
fn a_picture_libjpeg_refuses_is_an_error_and_the_encoder_goes_on() {
    // 65520 pixels wide: consistent planes, but past libjpeg's 65500. Its error comes back
    // through the unwinding error hook as an error, not an abort.
    let (w, h) = (65_520u32, 8u32);
    let luma = vec![100u8; (w * h) as usize];
    let wide = YuvPlanes {
        width: w,
        height: h,
        subsampling: Subsampling::Gray,
        planes: [(&luma, w as usize), (&[], 0), (&[], 0)],
        tv_range: true,
    };
    assert!(wide.is_consistent());
    let mut enc = FrameEncoder::new(80).unwrap();
    match enc.encode_planes(&wide) {
        Err(EncodeError::Jpeg(e)) => assert!(e.to_string().contains("65500"), "{e}"),
        other => panic!("{:?}", other.map(|j| j.len())),
    }
    // The same encoder compresses the next picture as if nothing happened.
    let src = tv_planes(64, 48, Subsampling::Yuv420, 0);
    let stretched = packed(&src, 64, 48, Subsampling::Yuv420, |_| Range::Full);
    assert_eq!(
        enc.encode_yuv(&stretched).unwrap(),
        turbojpeg_of(&stretched)
    );
}

#[test]
fn pool_keeps_order() {
    let mut pool = Encoders::pool(3, 80).unwrap();
    let mut out = Vec::new();
    for i in 0..10u64 {
        while pool.full() {
            out.push(pool.collect().unwrap());
        }
        let grey = (i * 20) as u8;
        let frame = flat_yuv(64, 48, Subsampling::Yuv420, (grey, 128, 128));
        pool.submit(i * 10, frame).unwrap();
    }
    while let Some(e) = pool.collect() {
        out.push(e);
    }
    let pts: Vec<u64> = out.iter().map(|e| e.pts).collect();
    assert_eq!(pts, (0..10).map(|i| i * 10).collect::<Vec<_>>());
    // Each frame came back with its own picture.
    let mut dec = JpegDecoder::new().unwrap();
    for (i, e) in out.iter().enumerate() {
        let rgb = dec.decode_rgb_default(e.jpeg.as_ref().unwrap()).unwrap();
        let got = i32::from(rgb.pixel(32, 24).unwrap()[0]);
        assert!((got - i as i32 * 20).abs() <= 2, "frame {i}: {got}");
    }
}

#[test]
fn fps_fractions() {
    assert_eq!(fps_fraction(30.0), (30, 1));
    assert_eq!(fps_fraction(29.97002997), (30000, 1001));
    assert_eq!(fps_fraction(59.94005994), (60000, 1001));
    assert_eq!(fps_fraction(12.5), (12500, 1000));
    assert_eq!(fps_fraction(0.0), (30, 1));
    assert_eq!(fps_fraction(f64::NAN), (30, 1));
    assert_eq!(
        encoders_needed(Duration::from_millis(10), Duration::from_millis(33)),
        1
    );
    assert!(encoders_needed(Duration::from_millis(50), Duration::from_millis(33)) >= 2);
}

/// A file cut short (a download that stopped, a recorder that died) streams up to where
/// its data ends, both tracks, and then the source ends: no error, no hang.
#[test]
fn a_truncated_file_streams_to_where_its_data_ends() {
    let dir = tmp_dir();
    let whole = dir.join("whole.mkv");
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=s=320x240:r=30:d=1", "-f", "lavfi"])
        .args([
            "-i",
            "sine=f=440:r=48000:d=1",
            "-c:v",
            "mjpeg",
            "-c:a",
            "pcm_s16le",
        ])
        .arg(&whole)
        .output()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(out.status.success());
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let src = FileSource::open(&cut, opts(), &|_| 240).unwrap();
    assert_eq!(src.format().audio.map(|a| a.channels), Some(1));
    let (items, stats, took) = collect(src, 10);
    // About half of the 30 frames and of the 1 s of sound (mono, 240-frame blocks).
    assert!((8..=22).contains(&stats.frames), "{stats:?}");
    assert!((60..=150).contains(&stats.audio_blocks), "{stats:?}");
    assert_eq!(items.len() as u64, stats.frames + stats.audio_blocks);
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// The planar YUV path: TV-range H.264 (stretched on the copy), full-range MJPEG (copied),
/// 4:2:2 H.264 streamed as 4:2:0 (libswscale) and 4:4:4 streamed as 4:4:4 (copied) all come
/// out as the colour that went in, with the subsampling asked for.
#[test]
fn yuv_frames_keep_their_colours_and_the_subsampling_asked_for() {
    let dir = tmp_dir();
    let cases = [
        ("tv420.mp4", "libx264", "yuv420p", Subsampling::Yuv420),
        ("full420.mkv", "mjpeg", "yuvj420p", Subsampling::Yuv420),
        ("tv422.mp4", "libx264", "yuv422p", Subsampling::Yuv420),
        ("tv444.mp4", "libx264", "yuv444p", Subsampling::Yuv444),
    ];
    let mut dec = JpegDecoder::new().unwrap();
    for (name, codec, pix_fmt, subsampling) in cases {
        let path = dir.join(name);
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
            .args(["-i", "color=c=0x3366CC:s=320x240:r=30:d=0.2"])
            .args(["-c:v", codec, "-pix_fmt", pix_fmt])
            .arg(&path)
            .output()
            .expect("ffmpeg (scripts/setup.sh installs it)");
        assert!(out.status.success(), "{name}");
        let src = FileSource::open(
            &path,
            FileOptions {
                subsampling,
                ..opts()
            },
            &|_| 240,
        )
        .unwrap();
        let (items, _, _) = collect(src, 5);
        let Some(MediaItem::Video { jpeg, .. }) = items.first() else {
            panic!("{name}: no frame");
        };
        let info = dec.read_header(jpeg).unwrap();
        assert_eq!(info.subsampling, Some(subsampling), "{name}");
        let rgb = dec.decode_rgb_default(jpeg).unwrap();
        let [r, g, b] = rgb.pixel(160, 120).unwrap();
        for (got, want) in [(r, 0x33), (g, 0x66), (b, 0xCC)] {
            assert!(
                (i32::from(got) - want).abs() <= 8,
                "{name}: {r} {g} {b} for 51 102 204"
            );
        }
    }
}
