//! The presenter thread: the OpenCV window, the sound output and A/V sync (audio master).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, never, select};

use super::decode::{Decoded, Target, pack_fit};
use super::{OutputEnv, PlayerConfig, pcm_from_le};
use crate::media::avsync::{AudioBlock, AudioReading, AvStats, AvSync, AvSyncConfig, Present};
use crate::media::{AudioSink, ClockSink};
use crate::proto::jitter::AudioOut;

/// The window is pumped at least this often while open.
const PUMP_INTERVAL: Duration = Duration::from_millis(10);
/// How often the window's image area is read (for the decoder's DCT scaling) while frames
/// are shown.
const FIT_INTERVAL: Duration = Duration::from_millis(250);

/// What the presenter is told besides frames.
#[derive(Debug)]
pub(super) enum PresentMsg {
    /// The stream's frame rate.
    FrameRate(u32, u32),
    /// A released audio block.
    Audio(AudioOut),
}

/// Figures the presenter publishes while it runs (for the live status line).
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveStats {
    /// A/V sync figures so far.
    pub av: AvStats,
    /// Times the audio output ran dry.
    pub audio_underruns: u64,
}

/// What the presenter did, returned when it ends.
#[derive(Debug, Default)]
pub(super) struct PresentOutcome {
    pub video_output: String,
    pub audio_output: String,
    pub live: LiveStats,
}

/// What the presenter shares with the [`Player`](super::Player).
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub live: Mutex<LiveStats>,
    pub quit: AtomicBool,
    /// The window's image area, pixels, packed by [`pack_fit`] (0: not known yet), which the
    /// decoder decodes to.
    pub fit: AtomicU64,
}

/// The audio sink in use and its format.
struct AudioOutput {
    sink: Box<dyn AudioSink>,
    format: (u32, u16),
}

/// Opens the sound device, or falls back to a [`ClockSink`]; says why once.
fn open_sink(
    rate: u32,
    channels: u16,
    env: &OutputEnv,
    label: &mut String,
    warned: &mut bool,
) -> Option<AudioOutput> {
    let mut why = String::from("no sound device allowed");
    #[cfg(feature = "cpal")]
    if env.audio_device {
        match crate::media::AudioOutput::open(rate, channels) {
            Ok(out) => {
                *label = format!("device {}", out.device_name());
                if out.sample_rate() != rate {
                    log::info!(
                        "play: the sound device runs at {} Hz; {rate} Hz audio is resampled",
                        out.sample_rate()
                    );
                }
                return Some(AudioOutput {
                    sink: Box::new(out),
                    format: (rate, channels),
                });
            }
            Err(e) => why = e.to_string(),
        }
    }
    #[cfg(not(feature = "cpal"))]
    if env.audio_device {
        why = "built without audio output (feature cpal)".into();
    }
    let capacity = u64::from(rate) * u64::from(crate::media::audio_out::DEFAULT_BUFFER_MS) / 1000;
    match ClockSink::new(rate, channels, capacity) {
        Ok(s) => {
            if !*warned {
                log::warn!("play: no sound output ({why}); audio is timed but not heard");
                *warned = true;
            }
            *label = format!("clock: {why}");
            Some(AudioOutput {
                sink: Box::new(s),
                format: (rate, channels),
            })
        }
        Err(e) => {
            if !*warned {
                log::warn!("play: cannot play this audio ({e}); video plays at its own pace");
                *warned = true;
            }
            *label = format!("none: {e}");
            None
        }
    }
}

/// The window, or nothing when built without OpenCV.
#[cfg(feature = "opencv")]
type Win = crate::media::Window;
#[cfg(not(feature = "opencv"))]
type Win = NoWindow;

/// Stand-in for the window in a build without OpenCV.
#[cfg(not(feature = "opencv"))]
#[derive(Debug)]
struct NoWindow;

#[cfg(not(feature = "opencv"))]
impl NoWindow {
    fn show_bgr_fit(
        &mut self,
        _: (u32, u32),
        _: u32,
        _: u32,
        _: &[u8],
    ) -> Result<(), std::convert::Infallible> {
        Ok(())
    }
    fn image_size(&self) -> Option<(u32, u32)> {
        None
    }
    fn poll_key(&mut self) -> Option<()> {
        None
    }
}

#[cfg(feature = "opencv")]
fn is_quit(k: Option<crate::media::Key>) -> bool {
    k == Some(crate::media::Key::Quit)
}

#[cfg(not(feature = "opencv"))]
fn is_quit(_: Option<()>) -> bool {
    false
}

/// Opens the window if asked and possible; returns it and the report's label.
fn open_window(cfg: &PlayerConfig) -> (Option<Win>, String) {
    if !cfg.video {
        return (None, "off".into());
    }
    if !cfg.decode {
        return (None, "none: --no-decode".into());
    }
    #[cfg(feature = "opencv")]
    {
        let opened = crate::media::Window::open_with_env(
            &cfg.title,
            cfg.env.display.clone(),
            cfg.env.wayland_display.clone(),
        );
        match opened {
            Ok(w) => (Some(w), "window".into()),
            Err(e) => {
                log::warn!("play: no video window ({e}); frames are checked and counted");
                (None, format!("none: {e}"))
            }
        }
    }
    #[cfg(not(feature = "opencv"))]
    {
        log::warn!("play: built without a video window (feature opencv); frames are counted");
        (None, "none: built without OpenCV".into())
    }
}

/// The presenter's state on its thread.
struct Presenter {
    cfg: PlayerConfig,
    sync: AvSync,
    audio: Option<AudioOutput>,
    audio_output: String,
    audio_warned: bool,
    unplayable: Option<(u32, u16)>,
    pcm: Vec<i16>,
    shared: Arc<Shared>,
}

impl Presenter {
    fn reading(&self, now: Instant) -> Option<AudioReading> {
        self.audio.as_ref().map(|o| AudioReading {
            played_frames: o.sink.played_frames(now),
            latency: o.sink.latency(),
            sample_rate: o.sink.sample_rate(),
        })
    }

    fn publish(&self) {
        let live = LiveStats {
            av: self.sync.stats(),
            audio_underruns: self.audio.as_ref().map_or(0, |o| o.sink.underruns()),
        };
        if let Ok(mut l) = self.shared.live.lock() {
            *l = live;
        }
    }

    fn message(&mut self, msg: PresentMsg) {
        match msg {
            PresentMsg::FrameRate(num, den) => self.sync.set_frame_rate(num, den),
            PresentMsg::Audio(a) => self.audio_block(&a),
        }
    }

    /// Pushes a released block into the sink through the resampler (opening the sink on
    /// the first block, or anew when the format changes).
    fn audio_block(&mut self, a: &AudioOut) {
        let now = Instant::now();
        let channels = u16::from(a.channels);
        let format = (a.sample_rate, channels);
        if self.audio.as_ref().is_none_or(|o| o.format != format) && self.unplayable != Some(format)
        {
            // First block, or the format changed: a new sink counts from zero.
            self.audio = None;
            self.sync.reset_audio();
            self.audio = open_sink(
                format.0,
                format.1,
                &self.cfg.env,
                &mut self.audio_output,
                &mut self.audio_warned,
            );
            self.unplayable = self.audio.is_none().then_some(format);
        }
        let Some(reading) = self.reading(now) else {
            return;
        };
        if self.audio.as_ref().is_some_and(|o| !o.sink.running()) {
            // The device is still starting: what it would queue now would only add latency
            // (and then be dropped or played late); the stream starts when the device does.
            return;
        }
        pcm_from_le(&a.samples, a.concealed, &mut self.pcm);
        let block = AudioBlock {
            pts: a.pts,
            sample_rate: a.sample_rate,
            channels,
            samples: &self.pcm,
        };
        if log::log_enabled!(log::Level::Debug) && self.sync.stats().audio_blocks % 1000 == 0 {
            let st = self.sync.stats();
            log::debug!(
                "audio: played {} pushed {} latency {:?} queue {:.1} ms err {:.2} ms corr {:.1} ppm underruns {}",
                reading.played_frames,
                self.sync.pushed_frames(),
                reading.latency,
                st.audio_queue_ms,
                st.audio_queue_error_ms,
                st.drift_correction_ppm,
                self.audio.as_ref().map_or(0, |o| o.sink.underruns())
            );
        }
        if let Some(o) = &mut self.audio {
            let sink = &mut o.sink;
            self.sync
                .push_audio(now, block, reading, |s| sink.push(now, s));
        }
        self.publish();
    }
}

/// Starts the presenter thread. It shows each decoded frame from `frames` when the audio
/// clock reaches it (at once without audio), plays the audio blocks from `msgs`, pumps the
/// window, and on the quit key sets the shared quit flag and wakes the network loop. It tells
/// the decoder through `target` whether frames will be shown, once the window is open (or
/// not), and keeps [`Shared::fit`] at the window's image area. It ends when `msgs` ends.
pub(super) fn spawn(
    cfg: PlayerConfig,
    msgs: Receiver<PresentMsg>,
    frames: Receiver<Decoded>,
    spare: Sender<Vec<u8>>,
    target: Sender<Target>,
    shared: Arc<Shared>,
    waker: Arc<mio::Waker>,
) -> std::io::Result<std::thread::JoinHandle<PresentOutcome>> {
    std::thread::Builder::new()
        .name("presenter".into())
        .spawn(move || {
            let (mut window, video_output) = open_window(&cfg);
            // No decoder (--no-decode) means nobody listens: fine.
            let _ = target.send(if window.is_some() {
                Target::Window
            } else {
                Target::Nothing
            });
            drop(target);
            let mut next_fit = Instant::now();
            let audio_output = if cfg.audio { "none" } else { "off" }.to_string();
            let mut p = Presenter {
                cfg,
                sync: AvSync::new(AvSyncConfig::default()),
                audio: None,
                audio_output,
                audio_warned: false,
                unplayable: None,
                pcm: Vec::new(),
                shared,
            };
            let mut frames = frames;
            let none: Receiver<Decoded> = never();
            let mut held: Option<Decoded> = None;
            let mut next_pump = Instant::now();
            let mut show_warned = false;
            loop {
                let now = Instant::now();
                let mut wake = None;
                let mut shown = false;
                if let Some(f) = &held {
                    let reading = p.reading(now);
                    match p
                        .sync
                        .present(now, f.pts, f.ready, !frames.is_empty(), reading)
                    {
                        Present::Wait(at) => wake = Some(at.max(now + Duration::from_micros(500))),
                        Present::Show { .. } => {
                            if let (Some(w), Some(f)) = (&mut window, &held) {
                                if let Err(e) = w.show_bgr_fit(f.frame, f.width, f.height, &f.bgr) {
                                    if !show_warned {
                                        log::warn!("play: cannot show a frame: {e}");
                                        show_warned = true;
                                    }
                                }
                                // Once a frame has sized the window, follow its image area
                                // (the user may resize it) so the decoder makes no more
                                // pixels than it shows.
                                if now >= next_fit {
                                    let fit = w.image_size().map_or(0, |(w, h)| pack_fit(w, h));
                                    p.shared.fit.store(fit, Ordering::Relaxed);
                                    next_fit = now + FIT_INTERVAL;
                                }
                            }
                            shown = true;
                        }
                        Present::Late => {}
                    }
                    if wake.is_none() {
                        if let Some(f) = held.take() {
                            let _ = spare.try_send(f.bgr);
                        }
                        p.publish();
                    }
                }
                if let Some(w) = &mut window {
                    if shown || now >= next_pump {
                        if is_quit(w.poll_key()) {
                            p.shared.quit.store(true, Ordering::Relaxed);
                            let _ = waker.wake();
                        }
                        next_pump = now + PUMP_INTERVAL;
                    }
                    wake = Some(wake.map_or(next_pump, |t: Instant| t.min(next_pump)));
                }
                if held.is_none() && !frames.is_empty() {
                    held = frames.try_recv().ok();
                    continue;
                }
                let want = if held.is_none() { &frames } else { &none };
                let timeout = wake.map_or(Duration::from_secs(1), |t| {
                    t.saturating_duration_since(Instant::now())
                });
                select! {
                    recv(msgs) -> m => match m {
                        Ok(m) => p.message(m),
                        Err(_) => break,
                    },
                    recv(want) -> f => match f {
                        Ok(f) => held = Some(f),
                        Err(_) => frames = never(),
                    },
                    default(timeout) => {}
                }
            }
            let _ = window.take(); // close the window now
            let live = LiveStats {
                av: p.sync.stats(),
                audio_underruns: p.audio.as_ref().map_or(0, |o| o.sink.underruns()),
            };
            drop(p.audio.take());
            PresentOutcome {
                video_output,
                audio_output: p.audio_output,
                live,
            }
        })
}
