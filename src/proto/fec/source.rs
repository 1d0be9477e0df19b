//! The sending side of FEC (proto-spec.md §7.6): remembers the chunks of recent frames as
//! they pass, codes a frame once it is whole and someone needs its parity, and builds PARITY
//! datagrams (§6.7) for any index range: the proactive symbols sent after a frame, and the
//! fresh ones a FEC_REQUEST (§6.8) asks for.
//!
//! Bounded: at most [`MAX_FRAMES`] frames, each of at most [`MAX_FEC_DATA`] chunks; payloads
//! are reference-counted slices of the datagrams already held, not copies.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::proto::fec::sizing::{burst_from_q8, loss_from_q16, proactive_parity};
use crate::proto::fec::{FecDecoder, FecEncoder, MAX_FEC_DATA, parity_space};
use crate::proto::wire::{
    Body, FLAG_RETRANSMIT, Packet, PacketType, ParityChunk, ReceiverReport, SymbolRequest,
    VideoChunk,
};

/// Frames remembered (about 3 s at 30 fps); the oldest frame id goes first.
pub const MAX_FRAMES: usize = 96;

/// Repair rounds the latency leaves at or above which a viewer's path is given few proactive symbols (it has
/// time for several repair rounds); below it, more.
const ROUNDS_FOR_LEAN: f64 = 3.0;
/// Chance that proactive parity alone restores a frame when there is time for repair rounds:
/// low, since a round asks for exactly what is missing and proactive symbols that arrive
/// beyond a frame's need are wasted.
const LEAN_TARGET: f64 = 0.15;

#[derive(Debug)]
struct FrameChunks {
    ssrc: u32,
    first_seq: u32,
    pts: u64,
    width: u16,
    height: u16,
    frame_size: u32,
    chunks: Vec<Option<Bytes>>,
    held: usize,
    encoder: Option<FecEncoder>,
    /// Set once the origin's parity for this frame arrived (a relay restoring its own losses).
    decoder: Option<FecDecoder>,
    /// The parity index after the highest received from the origin.
    parity_next: u16,
}

/// Recent frames' chunks, and their parity once asked for.
#[derive(Debug, Default)]
pub struct ParitySource {
    frames: BTreeMap<u32, FrameChunks>,
    /// Frames coded (each at most once).
    pub frames_coded: u64,
}

/// The proactive parity a viewer's path gets for a frame of `k` chunks (§7.6): from the loss
/// and burst length it reports (`loss_q16`, `burst_q8`), and how many repair rounds its
/// playout latency (`latency_ms`, 0: not stated) leaves at its RTT (`rtt_us`). With many
/// rounds, most frames may need one; with few, proactive symbols must do more.
pub fn proactive_for(k: usize, report: &ReceiverReport, latency_ms: u16) -> usize {
    let loss = loss_from_q16(report.loss_q16);
    if loss <= 0.0 {
        return 0;
    }
    let rtt = (f64::from(report.rtt_us) / 1000.0).max(1.0);
    let latency = if latency_ms == 0 {
        100.0
    } else {
        f64::from(latency_ms)
    };
    let rounds = ((latency - rtt) / (rtt + 5.0)).max(0.0);
    let target = if rounds >= ROUNDS_FOR_LEAN {
        LEAN_TARGET
    } else if rounds >= 2.0 {
        0.7
    } else {
        0.95
    };
    proactive_parity(k, loss, burst_from_q8(report.burst_q8), target)
}

impl ParitySource {
    /// Remembers a video chunk (original or retransmitted) whose wire sequence number is
    /// `seq`. Returns the frame id when this chunk made the frame whole.
    pub fn on_video(&mut self, ssrc: u32, seq: u32, v: &VideoChunk) -> Option<u32> {
        let k = usize::from(v.chunk_count);
        if k > MAX_FEC_DATA {
            return None;
        }
        let first_seq = seq.wrapping_sub(u32::from(v.chunk_index));
        let stale = self.frames.get(&v.frame_id).is_some_and(|f| {
            f.ssrc != ssrc || f.first_seq != first_seq || f.chunks.len() != k || f.pts != v.pts
        });
        if stale {
            self.frames.remove(&v.frame_id);
        }
        if !self.frames.contains_key(&v.frame_id) {
            while self.frames.len() >= MAX_FRAMES {
                self.frames.pop_first();
            }
            self.frames.insert(
                v.frame_id,
                FrameChunks {
                    ssrc,
                    first_seq,
                    pts: v.pts,
                    width: v.width,
                    height: v.height,
                    frame_size: v.frame_size,
                    chunks: vec![None; k],
                    held: 0,
                    encoder: None,
                    decoder: None,
                    parity_next: 0,
                },
            );
        }
        let f = self.frames.get_mut(&v.frame_id)?;
        let slot = f.chunks.get_mut(usize::from(v.chunk_index))?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(v.payload.clone());
        f.held += 1;
        if let Some(d) = &mut f.decoder {
            let _ = d.add_data(v.chunk_index.into(), &v.payload);
        }
        (f.held == k).then_some(v.frame_id)
    }

    /// A parity symbol from upstream (§6.7) whose header seq is `seq`: restores the frame's
    /// missing chunks once enough symbols are in. Returns them as `(wire seq, chunk)`, to be
    /// handled as if they had arrived (they were, by the origin, byte for byte). A symbol
    /// that contradicts the frame's chunks is ignored.
    pub fn on_parity(&mut self, ssrc: u32, seq: u32, p: &ParityChunk) -> Vec<(u32, VideoChunk)> {
        let k = p.params.k();
        if !self.frames.contains_key(&p.frame_id) {
            while self.frames.len() >= MAX_FRAMES {
                self.frames.pop_first();
            }
            self.frames.insert(
                p.frame_id,
                FrameChunks {
                    ssrc,
                    first_seq: seq,
                    pts: p.pts,
                    width: p.width,
                    height: p.height,
                    frame_size: p.params.frame_size() as u32,
                    chunks: vec![None; k],
                    held: 0,
                    encoder: None,
                    decoder: None,
                    parity_next: 0,
                },
            );
        }
        let Some(f) = self.frames.get_mut(&p.frame_id) else {
            return Vec::new();
        };
        let consistent = f.ssrc == ssrc
            && f.first_seq == seq
            && f.pts == p.pts
            && f.chunks.len() == k
            && u64::from(f.frame_size) == p.params.frame_size();
        if !consistent || f.held == k {
            return Vec::new();
        }
        f.parity_next = f.parity_next.max(p.index.saturating_add(1));
        if f.decoder.is_none() {
            let mut d = FecDecoder::new(p.params);
            for (i, c) in f.chunks.iter().enumerate() {
                if let Some(c) = c {
                    let _ = d.add_data(i, c);
                }
            }
            f.decoder = Some(d);
        }
        let Some(d) = f.decoder.as_mut() else {
            return Vec::new();
        };
        if d.params() != p.params || d.add_parity(p.index.into(), &p.symbol).is_err() {
            return Vec::new();
        }
        self.restore(p.frame_id)
    }

    /// Restores frame `frame_id`'s missing chunks once the origin's parity and the chunks
    /// received since (a NACKed one may complete the code after the last symbol came) make
    /// up K. Returns them as `(wire seq, chunk)`, to be handled as if they had arrived;
    /// empty while more are needed.
    pub fn restore(&mut self, frame_id: u32) -> Vec<(u32, VideoChunk)> {
        let Some(f) = self.frames.get_mut(&frame_id) else {
            return Vec::new();
        };
        let k = f.chunks.len();
        let Some(d) = f.decoder.as_mut() else {
            return Vec::new();
        };
        if f.held == k || d.needed() > 0 {
            return Vec::new();
        }
        let Ok(restored) = d.recover() else {
            return Vec::new();
        };
        let c = d.params().chunk_len();
        let out: Vec<(u32, VideoChunk)> = restored
            .into_iter()
            .filter_map(|i| {
                let payload = Bytes::copy_from_slice(d.data(i)?);
                Some((
                    f.first_seq.wrapping_add(i as u32),
                    VideoChunk {
                        frame_id,
                        pts: f.pts,
                        frame_size: f.frame_size,
                        width: f.width,
                        height: f.height,
                        chunk_index: i as u16,
                        chunk_count: k as u16,
                        offset: (i * c) as u32,
                        payload,
                    },
                ))
            })
            .collect();
        f.decoder = None;
        out
    }

    /// Whether frame `frame_id` is held whole.
    pub fn is_whole(&self, frame_id: u32) -> bool {
        self.frames
            .get(&frame_id)
            .is_some_and(|f| f.held == f.chunks.len())
    }

    /// For a frame held in part: how many more symbols would make it whole, the parity
    /// index after the highest received from the origin, and its chunk count K (§7.3).
    /// `None` for a frame held whole or unknown.
    pub fn missing(&self, frame_id: u32) -> Option<(usize, u16, usize)> {
        let f = self.frames.get(&frame_id)?;
        let k = f.chunks.len();
        if f.held == k {
            return None;
        }
        let needed = f.decoder.as_ref().map_or(k - f.held, |d| d.needed());
        Some((needed, f.parity_next, k))
    }

    /// Chunks of the whole frame `frame_id` (K), if held whole.
    pub fn chunk_count(&self, frame_id: u32) -> Option<usize> {
        self.frames
            .get(&frame_id)
            .filter(|f| f.held == f.chunks.len())
            .map(|f| f.chunks.len())
    }

    /// PARITY datagrams for symbols `from .. from + count` of frame `frame_id` (capped at its
    /// R = `parity_space(K)` symbols), coding the frame on first use. `retransmit` sets
    /// `FLAG_RETRANSMIT` (an answer to a FEC_REQUEST). Empty when the frame is not held whole
    /// or cannot be coded.
    pub fn parity(
        &mut self,
        frame_id: u32,
        from: usize,
        count: usize,
        retransmit: bool,
    ) -> Vec<Bytes> {
        let Some(f) = self.frames.get_mut(&frame_id) else {
            return Vec::new();
        };
        if f.held != f.chunks.len() {
            return Vec::new();
        }
        if f.encoder.is_none() {
            let chunks: Vec<&[u8]> = f.chunks.iter().flatten().map(|b| b.as_ref()).collect();
            match FecEncoder::new(&chunks, parity_space(chunks.len())) {
                Ok(e) => {
                    f.encoder = Some(e);
                    self.frames_coded += 1;
                }
                Err(e) => {
                    log::debug!("fec: frame {frame_id} cannot be coded: {e}");
                    // Not codable (e.g. an odd chunk length beyond the datagram): forget it.
                    self.frames.remove(&frame_id);
                    return Vec::new();
                }
            }
        }
        let Some(enc) = f.encoder.as_ref() else {
            return Vec::new();
        };
        let params = enc.params();
        let end = from.saturating_add(count).min(params.parity_count());
        (from..end)
            .filter_map(|i| {
                let symbol = enc.parity(i).ok()?;
                let mut p = Packet::new(
                    PacketType::Parity,
                    f.ssrc,
                    f.first_seq,
                    Body::Parity(ParityChunk {
                        frame_id,
                        pts: f.pts,
                        width: f.width,
                        height: f.height,
                        params,
                        index: i as u16,
                        symbol: Bytes::copy_from_slice(symbol),
                    }),
                );
                if retransmit {
                    p.header.flags = FLAG_RETRANSMIT;
                }
                Some(p.encode())
            })
            .collect()
    }

    /// The datagrams answering one FEC_REQUEST entry, if the frame is held whole.
    pub fn answer(&mut self, r: &SymbolRequest) -> Vec<Bytes> {
        self.parity(r.frame_id, r.from.into(), r.count.into(), true)
    }

    /// Forgets everything (a new source).
    pub fn clear(&mut self) {
        self.frames.clear();
    }

    /// Payload bytes referenced (for memory figures).
    pub fn bytes(&self) -> usize {
        self.frames
            .values()
            .map(|f| f.chunks.iter().flatten().map(Bytes::len).sum::<usize>())
            .sum()
    }

    /// The frame's `frame_size` (a sanity figure for tests).
    pub fn frame_size(&self, frame_id: u32) -> Option<u32> {
        self.frames.get(&frame_id).map(|f| f.frame_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::fec::FecParams;
    use crate::proto::packetizer::Packetizer;

    fn frame_chunks(size: usize) -> Vec<(u32, VideoChunk)> {
        let mut p = Packetizer::new(7, 300, 1000, 0);
        let jpeg: Bytes = (0..size)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let (_, chunks) = p.packetize_frame(9000, 64, 48, &jpeg).expect("packetize");
        chunks
            .into_iter()
            .map(|c| {
                let pk = Packet::decode(&c.datagram).expect("decode");
                match pk.body {
                    Body::Video(v) => (pk.header.seq, v),
                    _ => panic!("video"),
                }
            })
            .collect()
    }

    #[test]
    fn parity_restores_lost_chunks_and_is_refused_until_the_frame_is_whole() {
        let chunks = frame_chunks(2000);
        let k = chunks.len();
        assert!(k >= 3);
        let mut src = ParitySource::default();
        let id = chunks[0].1.frame_id;
        for (seq, v) in &chunks[..k - 1] {
            assert_eq!(src.on_video(7, *seq, v), None);
        }
        assert!(src.parity(id, 0, 2, false).is_empty(), "not whole yet");
        assert_eq!(src.on_video(7, chunks[k - 1].0, &chunks[k - 1].1), Some(id));
        let parity = src.parity(id, 0, 2, false);
        assert_eq!(parity.len(), 2);
        assert_eq!(src.frames_coded, 1);
        // A receiver that lost chunks 0 and 1 restores them from the two symbols.
        let v0 = &chunks[0].1;
        let c = v0.payload.len();
        let params =
            FecParams::new(k, parity_space(k), c, u64::from(v0.frame_size)).expect("params");
        let mut dec = FecDecoder::new(params);
        for (_, v) in &chunks[2..] {
            dec.add_data(v.chunk_index.into(), &v.payload)
                .expect("data");
        }
        for d in &parity {
            let pk = Packet::decode(d).expect("parity decodes");
            assert_eq!(pk.header.seq, chunks[0].0, "seq is chunk 0's");
            let Body::Parity(pc) = pk.body else {
                panic!("parity body")
            };
            dec.add_parity(pc.index.into(), &pc.symbol).expect("symbol");
        }
        assert_eq!(dec.recover().expect("recover"), vec![0, 1]);
        assert_eq!(dec.data(0), Some(&chunks[0].1.payload[..]));
        assert_eq!(dec.data(1), Some(&chunks[1].1.payload[..]));
        // A request answers with the retransmit flag, capped at R symbols.
        let r = SymbolRequest {
            frame_id: id,
            from: (parity_space(k) - 1) as u16,
            count: 5,
        };
        let a = src.answer(&r);
        assert_eq!(a.len(), 1);
        assert_eq!(
            Packet::decode(&a[0]).expect("decode").header.flags,
            FLAG_RETRANSMIT
        );
    }

    #[test]
    fn a_chunk_that_completes_the_code_restores_the_rest() {
        // A relay lost chunks 0..3; the origin's parity brought 2 symbols (one short), then
        // a NACKed chunk 2 arrived: that makes K, and chunks 0 and 1 are restored at once
        // rather than when a third symbol or their own NACKs come.
        let chunks = frame_chunks(3000);
        let k = chunks.len();
        let mut origin = ParitySource::default();
        for (seq, v) in &chunks {
            origin.on_video(7, *seq, v);
        }
        let id = chunks[0].1.frame_id;
        let mut relay = ParitySource::default();
        for (seq, v) in &chunks[3..] {
            assert_eq!(relay.on_video(7, *seq, v), None);
        }
        assert_eq!(relay.missing(id), Some((3, 0, k)));
        for d in origin.parity(id, 0, 2, false) {
            let pk = Packet::decode(&d).expect("decode");
            let Body::Parity(pc) = pk.body else {
                panic!("parity body")
            };
            assert!(
                relay.on_parity(7, pk.header.seq, &pc).is_empty(),
                "one short"
            );
        }
        assert_eq!(relay.missing(id), Some((1, 2, k)));
        assert!(relay.restore(id).is_empty());
        assert_eq!(relay.on_video(7, chunks[2].0, &chunks[2].1), None);
        let restored = relay.restore(id);
        let got: Vec<(u32, u16)> = restored.iter().map(|(s, v)| (*s, v.chunk_index)).collect();
        assert_eq!(got, vec![(chunks[0].0, 0), (chunks[1].0, 1)]);
        assert_eq!(restored[0].1.payload, chunks[0].1.payload);
        assert_eq!(restored[1].1.payload, chunks[1].1.payload);
    }

    #[test]
    fn proactive_parity_grows_with_loss_and_shrinks_with_time_for_rounds() {
        use crate::proto::fec::sizing::{burst_to_q8, loss_to_q16};
        let path = |loss: f64, burst: f64, rtt_ms: u32| ReceiverReport {
            loss_q16: loss_to_q16(loss),
            burst_q8: burst_to_q8(burst),
            rtt_us: rtt_ms * 1000,
            ..ReceiverReport::default()
        };
        let random = |loss: f64| 1.0 / (1.0 - loss);
        assert_eq!(proactive_for(48, &path(0.0, 1.0, 20), 120), 0);
        let lean = proactive_for(48, &path(0.1, random(0.1), 20), 300);
        let rich = proactive_for(48, &path(0.1, random(0.1), 100), 300);
        assert!(lean > 0 && rich > lean, "lean {lean}, rich {rich}");
        assert!(proactive_for(48, &path(0.2, random(0.2), 20), 300) > lean);
        // Bursts of mean 4 leave most frames whole: with rounds to spare, none goes ahead.
        assert_eq!(proactive_for(48, &path(0.1, 4.0, 20), 120), 0);
        // An unstated burst length (0) is taken as independent loss.
        assert_eq!(proactive_for(48, &path(0.1, f64::INFINITY, 20), 300), lean);
    }
}
