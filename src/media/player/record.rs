//! The recorder thread: writes what was received (`--record`) off the network thread.

use bytes::Bytes;
use crossbeam_channel::Receiver;

use super::pcm_from_le;
use crate::media::recorder::{RecordError, RecordSummary, Recorder};
use crate::proto::jitter::AudioOut;
use crate::proto::wire::Description;

/// What the recorder thread is handed, in the order the viewer released it.
#[derive(Debug)]
pub(super) enum RecordItem {
    /// The stream's description (video size, audio format).
    Describe(Description),
    /// A received frame.
    Video {
        pts: u64,
        width: u16,
        height: u16,
        jpeg: Bytes,
    },
    /// A released audio block (concealed ones are written as silence).
    Audio(AudioOut),
}

/// What the recorder thread did, returned when it ends.
#[derive(Debug, Default)]
pub(super) struct RecordOutcome {
    /// What was recorded (`None` when a write failed and recording stopped).
    pub summary: Option<RecordSummary>,
    /// The first error, which stopped the recording.
    pub error: Option<RecordError>,
}

/// Starts the recorder thread: it writes every item until `rx` ends, then finishes the files.
/// A write error stops the recording (said once, kept for the report); the items that follow
/// are read and dropped.
pub(super) fn spawn(
    mut recorder: Recorder,
    rx: Receiver<RecordItem>,
) -> std::io::Result<std::thread::JoinHandle<RecordOutcome>> {
    std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            let mut pcm = Vec::new();
            let mut error = None;
            for item in &rx {
                let r = match item {
                    RecordItem::Describe(d) => recorder.describe(&d),
                    RecordItem::Video {
                        pts,
                        width,
                        height,
                        jpeg,
                    } => recorder.video(pts, width, height, &jpeg),
                    RecordItem::Audio(a) => {
                        pcm_from_le(&a.samples, a.concealed, &mut pcm);
                        recorder.audio(
                            a.pts,
                            a.sample_rate,
                            u16::from(a.channels),
                            &pcm,
                            a.concealed,
                        )
                    }
                };
                if let Err(e) = r {
                    log::error!("play: recording stopped: {e}");
                    error = Some(e);
                    break;
                }
            }
            if error.is_some() {
                // Keep taking items so the sender's queue does not fill up for nothing.
                rx.iter().for_each(drop);
                return RecordOutcome {
                    summary: None,
                    error,
                };
            }
            match recorder.finish() {
                Ok(s) => RecordOutcome {
                    summary: Some(s),
                    error: None,
                },
                Err(e) => {
                    log::error!("play: finishing the recording failed: {e}");
                    RecordOutcome {
                        summary: Some(recorder.summary().clone()),
                        error: Some(e),
                    }
                }
            }
        })
}
