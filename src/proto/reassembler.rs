//! Frame reassembly (proto-spec.md §5.1): collects the chunks of each frame and hands out a
//! frame only when every chunk is present. Claimed sizes never size an allocation: chunks
//! are stored as received and the frame is assembled from them at the end.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::proto::wire::{SeqNo, VideoChunk};

/// A whole JPEG frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Frame id.
    pub frame_id: u32,
    /// Presentation timestamp, 90 kHz.
    pub pts: u64,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// The JPEG bytes.
    pub jpeg: Bytes,
}

/// What happened to an inserted chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Stored; the frame is still incomplete.
    Stored,
    /// This chunk completed the frame.
    Complete(Frame),
    /// Already had it.
    Duplicate,
    /// The chunk disagrees with earlier chunks of the same frame (size, count, pts,
    /// dimensions or offset): dropped and counted.
    Inconsistent,
}

/// What [`Reassembler::insert_datagram`] made of a chunk.
#[derive(Debug)]
pub enum DatagramOutcome {
    /// Stored; the frame is still incomplete.
    Stored,
    /// This chunk completed the frame: all its datagrams, in chunk order.
    Complete(Vec<Bytes>),
    /// Already had it.
    Duplicate,
    /// The chunk disagrees with earlier chunks of the same frame: dropped.
    Inconsistent,
}

/// Limits that bound the reassembler's memory.
#[derive(Debug, Clone, Copy)]
pub struct ReassemblyLimits {
    /// Frames under reassembly at once.
    pub max_frames: usize,
    /// Payload bytes held at once.
    pub max_bytes: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_frames: 64,
            max_bytes: 96 * 1024 * 1024,
        }
    }
}

/// A frame under reassembly.
#[derive(Debug, Clone)]
pub struct Partial {
    /// Presentation timestamp.
    pub pts: u64,
    frame_size: u32,
    width: u16,
    height: u16,
    chunk_count: u16,
    chunks: BTreeMap<u16, (u32, Bytes)>,
    /// The whole datagrams of the chunks, by index, when the caller keeps them
    /// ([`Reassembler::insert_datagram`]).
    datagrams: BTreeMap<u16, Bytes>,
    bytes: usize,
    /// Sequence number of chunk 0, derived from any chunk (§5.1), when known.
    pub first_seq: Option<SeqNo>,
    /// When the last chunk arrived.
    pub last_arrival: Instant,
    /// When the first chunk arrived.
    pub first_arrival: Instant,
}

impl Partial {
    /// Chunk indexes not yet received.
    pub fn missing(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.chunk_count).filter(|i| !self.chunks.contains_key(i))
    }

    /// Number of chunks in the frame.
    pub fn chunk_count(&self) -> u16 {
        self.chunk_count
    }

    /// Number of chunks received.
    pub fn received(&self) -> usize {
        self.chunks.len()
    }

    /// The chunks received: index and payload, in index order.
    pub fn chunks(&self) -> impl Iterator<Item = (u16, &Bytes)> + '_ {
        self.chunks.iter().map(|(&i, (_, data))| (i, data))
    }

    /// The whole datagrams of the chunks received, in index order, when the caller keeps
    /// them ([`Reassembler::insert_datagram`]; empty otherwise).
    pub fn datagrams(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.datagrams.values()
    }

    /// The length every chunk but the last has (§5.1), derived from any chunk held that
    /// tells it: a non-last chunk's payload, or the last chunk's offset. `None` if unknown.
    pub fn chunk_len(&self) -> Option<usize> {
        let last = self.chunk_count.checked_sub(1)?;
        self.chunks.iter().find_map(|(&i, (off, data))| {
            if i < last {
                Some(data.len())
            } else if i > 0 {
                Some(*off as usize / i as usize)
            } else {
                None
            }
        })
    }

    /// Size of the whole frame, bytes.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Width and height, pixels.
    pub fn dimensions(&self) -> (u16, u16) {
        (self.width, self.height)
    }
}

/// Collects chunks into frames, keyed by frame id.
#[derive(Debug, Clone, Default)]
pub struct Reassembler {
    frames: BTreeMap<u32, Partial>,
    bytes: usize,
    limits: ReassemblyLimits,
    /// Frames evicted to stay within the limits.
    pub evicted: u64,
}

impl Reassembler {
    /// A reassembler with the given limits.
    pub fn new(limits: ReassemblyLimits) -> Reassembler {
        Reassembler {
            limits,
            ..Default::default()
        }
    }

    /// Inserts one chunk whose extended sequence number is `seq`.
    pub fn insert(&mut self, now: Instant, seq: SeqNo, c: &VideoChunk) -> ChunkOutcome {
        self.insert_inner(now, seq, c, None).0
    }

    /// Like [`Reassembler::insert`], but keeping the chunk's whole `datagram` (sharing its
    /// bytes, not copying them) instead of assembling the JPEG: a completed frame comes as
    /// all its datagrams in chunk order, as a relay replays them to late joiners (§7.4), with
    /// the same checks and no copy of the frame.
    pub fn insert_datagram(
        &mut self,
        now: Instant,
        seq: SeqNo,
        c: &VideoChunk,
        datagram: &Bytes,
    ) -> DatagramOutcome {
        match self.insert_inner(now, seq, c, Some(datagram)) {
            (ChunkOutcome::Stored, _) => DatagramOutcome::Stored,
            (ChunkOutcome::Complete(_), datagrams) => DatagramOutcome::Complete(datagrams),
            (ChunkOutcome::Duplicate, _) => DatagramOutcome::Duplicate,
            (ChunkOutcome::Inconsistent, _) => DatagramOutcome::Inconsistent,
        }
    }

    /// Inserts a chunk; with a `datagram` to keep, a completed frame's JPEG is not assembled
    /// (its [`Frame::jpeg`] is empty) and its datagrams are returned.
    fn insert_inner(
        &mut self,
        now: Instant,
        seq: SeqNo,
        c: &VideoChunk,
        datagram: Option<&Bytes>,
    ) -> (ChunkOutcome, Vec<Bytes>) {
        let outcome = |o: ChunkOutcome| (o, Vec::new());
        let first_seq =
            (seq.0 >= c.chunk_index as u64).then(|| SeqNo(seq.0 - c.chunk_index as u64));
        if !self.frames.contains_key(&c.frame_id) {
            self.make_room(c.payload.len());
            self.frames.insert(
                c.frame_id,
                Partial {
                    pts: c.pts,
                    frame_size: c.frame_size,
                    width: c.width,
                    height: c.height,
                    chunk_count: c.chunk_count,
                    chunks: BTreeMap::new(),
                    datagrams: BTreeMap::new(),
                    bytes: 0,
                    first_seq,
                    last_arrival: now,
                    first_arrival: now,
                },
            );
        }
        let Some(p) = self.frames.get_mut(&c.frame_id) else {
            return outcome(ChunkOutcome::Inconsistent);
        };
        if p.pts != c.pts
            || p.frame_size != c.frame_size
            || p.width != c.width
            || p.height != c.height
            || p.chunk_count != c.chunk_count
            || (p.first_seq.is_some() && first_seq.is_some() && p.first_seq != first_seq)
        {
            return outcome(ChunkOutcome::Inconsistent);
        }
        if p.chunks.contains_key(&c.chunk_index) {
            return outcome(ChunkOutcome::Duplicate);
        }
        // Offsets must line up with the neighbours already held (no overlap, no gap).
        let end = c.offset as u64 + c.payload.len() as u64;
        if let Some((_, (off, data))) = p.chunks.range(..c.chunk_index).next_back() {
            if *off as u64 + data.len() as u64 > c.offset as u64 {
                return outcome(ChunkOutcome::Inconsistent);
            }
        }
        if let Some((_, (off, _))) = p.chunks.range(c.chunk_index + 1..).next() {
            if end > *off as u64 {
                return outcome(ChunkOutcome::Inconsistent);
            }
        }
        p.chunks
            .insert(c.chunk_index, (c.offset, c.payload.clone()));
        if let Some(d) = datagram {
            p.datagrams.insert(c.chunk_index, d.clone());
        }
        p.bytes += c.payload.len();
        p.last_arrival = now;
        self.bytes += c.payload.len();
        if p.chunks.len() < p.chunk_count as usize {
            return outcome(ChunkOutcome::Stored);
        }
        let Some(p) = self.frames.remove(&c.frame_id) else {
            return outcome(ChunkOutcome::Inconsistent);
        };
        self.bytes -= p.bytes;
        if p.bytes != p.frame_size as usize {
            return outcome(ChunkOutcome::Inconsistent);
        }
        let assemble = datagram.is_none();
        let mut jpeg = BytesMut::with_capacity(if assemble { p.bytes } else { 0 });
        let mut expected = 0u64;
        for (off, data) in p.chunks.values() {
            if *off as u64 != expected {
                return outcome(ChunkOutcome::Inconsistent);
            }
            if assemble {
                jpeg.extend_from_slice(data);
            }
            expected += data.len() as u64;
        }
        let frame = Frame {
            frame_id: c.frame_id,
            pts: p.pts,
            width: p.width,
            height: p.height,
            jpeg: jpeg.freeze(),
        };
        (
            ChunkOutcome::Complete(frame),
            p.datagrams.into_values().collect(),
        )
    }

    fn make_room(&mut self, incoming: usize) {
        while !self.frames.is_empty()
            && (self.frames.len() >= self.limits.max_frames
                || self.bytes + incoming > self.limits.max_bytes)
        {
            // Evict the frame with the oldest pts.
            let Some((&id, _)) = self.frames.iter().min_by_key(|(_, p)| p.pts) else {
                break;
            };
            self.remove(id);
            self.evicted += 1;
        }
    }

    /// Forgets a frame (dropped by the jitter buffer).
    pub fn remove(&mut self, frame_id: u32) -> Option<Partial> {
        let p = self.frames.remove(&frame_id)?;
        self.bytes -= p.bytes;
        Some(p)
    }

    /// The frame `frame_id` under reassembly, if any.
    pub fn get(&self, frame_id: u32) -> Option<&Partial> {
        self.frames.get(&frame_id)
    }

    /// Frames under reassembly.
    pub fn partials(&self) -> impl Iterator<Item = (&u32, &Partial)> {
        self.frames.iter()
    }

    /// Number of frames under reassembly.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when no frame is under reassembly.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetizer::Packetizer;
    use crate::proto::wire::{Body, Packet};

    fn chunks(size: usize) -> (Bytes, Vec<(SeqNo, VideoChunk)>) {
        let mut p = Packetizer::new(9, 300, 1000, 0);
        let jpeg = Bytes::from((0..size).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        let (_, cs) = p.packetize_frame(3000, 64, 48, &jpeg).unwrap();
        let v = cs
            .into_iter()
            .map(|c| match Packet::decode(&c.datagram).unwrap().body {
                Body::Video(v) => (SeqNo(c.seq as u64), v),
                _ => unreachable!(),
            })
            .collect();
        (jpeg, v)
    }

    #[test]
    fn any_order_with_duplicates_gives_the_exact_frame() {
        let t = Instant::now();
        let (jpeg, mut cs) = chunks(2000);
        cs.reverse();
        let mut r = Reassembler::default();
        let n = cs.len();
        for (i, (s, c)) in cs.iter().enumerate() {
            let out = r.insert(t, *s, c);
            if i + 1 < n {
                assert_eq!(out, ChunkOutcome::Stored);
                assert_eq!(r.insert(t, *s, c), ChunkOutcome::Duplicate);
            } else {
                match out {
                    ChunkOutcome::Complete(f) => assert_eq!(f.jpeg, jpeg),
                    o => panic!("{o:?}"),
                }
            }
        }
        assert_eq!(r.bytes(), 0);
        assert!(r.is_empty());
    }

    #[test]
    fn inconsistent_chunks_are_refused() {
        let t = Instant::now();
        let (_, cs) = chunks(2000);
        let mut r = Reassembler::default();
        r.insert(t, cs[0].0, &cs[0].1);
        let mut bad = cs[1].1.clone();
        bad.pts += 1;
        assert_eq!(r.insert(t, cs[1].0, &bad), ChunkOutcome::Inconsistent);
        let mut bad = cs[1].1.clone();
        bad.offset -= 1;
        assert_eq!(r.insert(t, cs[1].0, &bad), ChunkOutcome::Inconsistent);
        let missing: Vec<u16> = r.partials().next().unwrap().1.missing().collect();
        assert_eq!(missing.len(), cs.len() - 1);
    }

    #[test]
    fn datagrams_of_a_frame_come_back_in_chunk_order() {
        let t = Instant::now();
        let (_, cs) = chunks(5000);
        // Each chunk's "datagram" is tagged with its index.
        let datagram = |i: usize| Bytes::from(vec![i as u8; 3]);
        let mut r = Reassembler::default();
        let order: Vec<usize> = (0..cs.len()).rev().collect();
        for (n, &i) in order.iter().enumerate() {
            let out = r.insert_datagram(t, cs[i].0, &cs[i].1, &datagram(i));
            if n + 1 < order.len() {
                assert!(matches!(out, DatagramOutcome::Stored), "{out:?}");
                let again = r.insert_datagram(t, cs[i].0, &cs[i].1, &datagram(i));
                assert!(matches!(again, DatagramOutcome::Duplicate), "{again:?}");
            } else {
                let DatagramOutcome::Complete(d) = out else {
                    panic!("{out:?}");
                };
                assert_eq!(d, (0..cs.len()).map(datagram).collect::<Vec<_>>());
            }
        }
        assert!(r.is_empty());
        let mut bad = cs[0].1.clone();
        bad.offset += 1;
        r.insert_datagram(t, cs[1].0, &cs[1].1, &datagram(1));
        let out = r.insert_datagram(t, cs[0].0, &bad, &datagram(0));
        assert!(matches!(out, DatagramOutcome::Inconsistent), "{out:?}");
    }

    #[test]
    fn memory_is_bounded() {
        let t = Instant::now();
        let mut r = Reassembler::new(ReassemblyLimits {
            max_frames: 4,
            max_bytes: 10_000,
        });
        for id in 0..100u32 {
            let c = VideoChunk {
                frame_id: id,
                pts: id as u64,
                frame_size: 1_000_000,
                width: 8,
                height: 8,
                chunk_index: 0,
                chunk_count: 1000,
                offset: 0,
                payload: Bytes::from(vec![0; 1000]),
            };
            r.insert(t, SeqNo(id as u64 * 1000), &c);
            assert!(r.len() <= 4 && r.bytes() <= 10_000);
        }
        assert_eq!(r.evicted, 96);
    }
}
