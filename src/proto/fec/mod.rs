//! Erasure-coded FEC over one video frame's chunks (proto-spec.md §7.6).
//!
//! A frame of K data chunks (every chunk `chunk_len` bytes but the last, which is shorter or
//! equal) is coded as K systematic shards of `shard_len` bytes (`chunk_len` rounded up to even,
//! short chunks padded with zeros) plus `parity_count` parity symbols computed with
//! Leopard-RS Reed-Solomon over GF(2^16) as implemented by the `reed-solomon-simd` crate 3.x
//! (`DefaultRateEncoder::new(K, parity_count, shard_len, ..)`, the crate's default rate
//! selection, as its `ReedSolomonEncoder` makes it). Parity symbol `i` depends only on the
//! frame and on `(K, parity_count)`, so any node holding the whole frame computes the same
//! bytes: a relay can send parity index `i` to every subscriber and hand out fresh indexes on
//! request. Any K of the K + parity_count symbols restore the frame.
//!
//! Everything here is pure and bounded: counts and sizes are checked against [`MAX_FEC_DATA`],
//! [`MAX_PARITY`] and [`MAX_SHARD_LEN`] before anything is allocated, and the decoder stores
//! only the symbols that actually arrive. Hostile indexes or lengths give a [`FecError`].

use std::sync::atomic::{AtomicBool, Ordering};

use reed_solomon_simd::engine::{DefaultEngine, Engine, Naive};
use reed_solomon_simd::rate::{DefaultRateDecoder, DefaultRateEncoder, RateDecoder, RateEncoder};

pub mod msg;
pub mod sizing;
pub mod source;

#[cfg(test)]
mod tests;

/// Most data chunks of a frame coded with FEC; larger frames are sent without parity.
pub const MAX_FEC_DATA: usize = 1024;
/// Most parity symbols of one frame (`parity_count` ≤ this).
pub const MAX_PARITY: usize = 1024;
/// Largest shard: a chunk payload of the largest datagram (`MAX_DATAGRAM` − 48), even.
pub const MAX_SHARD_LEN: usize = 8952;
/// Smallest parity space a sender gives a frame (see [`parity_space`]).
pub const MIN_PARITY_SPACE: usize = 32;

/// The number of parity symbols a sender defines for a frame of `k` data chunks:
/// `clamp(2k, MIN_PARITY_SPACE, MAX_PARITY)`. Every round asks for fresh indexes, so the
/// space must cover the proactive share plus several rounds whose answers a loss burst took
/// (with R = k, bursts of 4 at 10 % used it up); the receiver falls back to NACKs of data
/// chunks when a frame's parity is used up.
pub fn parity_space(k: usize) -> usize {
    (2 * k).clamp(MIN_PARITY_SPACE, MAX_PARITY)
}

/// Set once [`warm_up`] has built the SIMD coder's tables.
static TABLES_BUILT: AtomicBool = AtomicBool::new(false);

/// Whether the SIMD coder's tables are built ([`warm_up`]). Until they are, frames are coded
/// and restored with the crate's `Naive` engine, which needs only small tables (under 1 ms to
/// build) and gives the same bytes (the same field arithmetic) at about ten times the cost per
/// frame: 1.2 ms against 0.1 ms for a 720p frame of 39 chunks with 78 parity symbols. Without
/// it, the first frame coded would wait for the SIMD tables: 8 MiB, 15-25 ms of CPU. The
/// choice changes no output, only its cost, so the core stays deterministic.
pub fn tables_built() -> bool {
    TABLES_BUILT.load(Ordering::Acquire)
}

/// Builds the SIMD Reed-Solomon tables the coder shares process-wide (15-25 ms of CPU and
/// 8 MiB, once per process), then codes and restores a two-chunk frame with them. A relay and
/// a player call this before they stream, so that the first frame they repair pays nothing
/// for it (at a relay serving hundreds of viewers, that stall alone made frames late for all
/// of them); `serve` calls it on a thread of its own once parity may be needed. Returns
/// whether the frame came back whole (it always should).
pub fn warm_up() -> bool {
    drop(DefaultEngine::new());
    TABLES_BUILT.store(true, Ordering::Release);
    let chunks = [[1u8; 2], [2u8; 2]];
    let Ok(enc) = FecEncoder::new(&chunks, 1) else {
        return false;
    };
    let mut dec = FecDecoder::new(enc.params());
    let parity = enc.parity(0).map(<[u8]>::to_vec).unwrap_or_default();
    dec.add_data(0, &chunks[0]).is_ok()
        && dec.add_parity(0, &parity).is_ok()
        && dec.recover().is_ok_and(|r| r == [1])
        && dec.data(1) == Some(&chunks[1][..])
}

/// Why a frame cannot be coded or a symbol is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FecError {
    /// K outside `1..=MAX_FEC_DATA`.
    #[error("{k} data chunks: must be 1..={max}")]
    DataCount {
        /// Given number of data chunks.
        k: usize,
        /// [`MAX_FEC_DATA`].
        max: usize,
    },
    /// Parity count outside `1..=MAX_PARITY`.
    #[error("{count} parity symbols: must be 1..={max}")]
    ParityCount {
        /// Given parity count.
        count: usize,
        /// [`MAX_PARITY`].
        max: usize,
    },
    /// Chunk length 0 or beyond [`MAX_SHARD_LEN`].
    #[error("chunk length {chunk_len}: must be 1..={max}")]
    ChunkLen {
        /// Given chunk length.
        chunk_len: usize,
        /// [`MAX_SHARD_LEN`].
        max: usize,
    },
    /// The frame size does not fit K chunks of `chunk_len` (last one 1..=chunk_len bytes).
    #[error("frame of {frame_size} bytes does not tile {k} chunks of {chunk_len} bytes")]
    FrameSize {
        /// Given frame size.
        frame_size: u64,
        /// Data chunks.
        k: usize,
        /// Chunk length.
        chunk_len: usize,
    },
    /// A data chunk index ≥ K.
    #[error("data index {index} >= {k}")]
    DataIndex {
        /// Given index.
        index: usize,
        /// Data chunks.
        k: usize,
    },
    /// A parity index ≥ parity count.
    #[error("parity index {index} >= {count}")]
    ParityIndex {
        /// Given index.
        index: usize,
        /// Parity count.
        count: usize,
    },
    /// A symbol of the wrong length.
    #[error("symbol {index} (parity: {parity}) has {got} bytes, expected {expected}")]
    SymbolLen {
        /// Index of the symbol (data or parity).
        index: usize,
        /// Whether it is a parity symbol.
        parity: bool,
        /// Its length.
        got: usize,
        /// The length it must have.
        expected: usize,
    },
    /// Not enough symbols yet to restore the frame.
    #[error("{have} of {k} symbols: cannot restore yet")]
    NotEnough {
        /// Symbols held.
        have: usize,
        /// Symbols needed (K).
        k: usize,
    },
    /// The Reed-Solomon library refused (not expected once the bounds above hold).
    #[error("reed-solomon: {source}")]
    Codec {
        /// The library's error.
        #[from]
        source: reed_solomon_simd::Error,
    },
}

/// The shape of one frame's code, validated: every field is within bounds and consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecParams {
    k: usize,
    parity_count: usize,
    chunk_len: usize,
    frame_size: u64,
}

impl FecParams {
    /// Checks a frame of `frame_size` bytes cut in `k` chunks of `chunk_len` bytes (the last
    /// `frame_size − (k−1) × chunk_len`, 1..=chunk_len bytes), with `parity_count` parity
    /// symbols.
    ///
    /// # Errors
    /// [`FecError::DataCount`], [`FecError::ParityCount`], [`FecError::ChunkLen`] or
    /// [`FecError::FrameSize`] when a value is out of bounds or they do not fit together.
    pub fn new(
        k: usize,
        parity_count: usize,
        chunk_len: usize,
        frame_size: u64,
    ) -> Result<FecParams, FecError> {
        if k == 0 || k > MAX_FEC_DATA {
            return Err(FecError::DataCount {
                k,
                max: MAX_FEC_DATA,
            });
        }
        if parity_count == 0 || parity_count > MAX_PARITY {
            return Err(FecError::ParityCount {
                count: parity_count,
                max: MAX_PARITY,
            });
        }
        if chunk_len == 0 || chunk_len > MAX_SHARD_LEN {
            return Err(FecError::ChunkLen {
                chunk_len,
                max: MAX_SHARD_LEN,
            });
        }
        // Bounded above: k ≤ 1024 and chunk_len ≤ 8952, no overflow.
        let before_last = (k as u64 - 1) * chunk_len as u64;
        if frame_size <= before_last || frame_size > before_last + chunk_len as u64 {
            return Err(FecError::FrameSize {
                frame_size,
                k,
                chunk_len,
            });
        }
        Ok(FecParams {
            k,
            parity_count,
            chunk_len,
            frame_size,
        })
    }

    /// Data chunks (K).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Parity symbols defined for the frame.
    pub fn parity_count(&self) -> usize {
        self.parity_count
    }

    /// Bytes of every data chunk but the last.
    pub fn chunk_len(&self) -> usize {
        self.chunk_len
    }

    /// Bytes of the whole frame.
    pub fn frame_size(&self) -> u64 {
        self.frame_size
    }

    /// Bytes of a shard and of a parity symbol: `chunk_len` rounded up to even.
    pub fn shard_len(&self) -> usize {
        self.chunk_len + (self.chunk_len & 1)
    }

    /// Bytes of data chunk `index` (the last one may be shorter).
    ///
    /// # Errors
    /// [`FecError::DataIndex`] when `index ≥ K`.
    pub fn data_len(&self, index: usize) -> Result<usize, FecError> {
        if index >= self.k {
            return Err(FecError::DataIndex { index, k: self.k });
        }
        if index + 1 < self.k {
            Ok(self.chunk_len)
        } else {
            // Fits: frame_size − (k−1)·chunk_len is in 1..=chunk_len (checked in `new`).
            Ok((self.frame_size - (self.k as u64 - 1) * self.chunk_len as u64) as usize)
        }
    }
}

/// Copies `data` into a zero-padded shard of `len` bytes.
fn padded(data: &[u8], len: usize) -> Vec<u8> {
    let mut s = vec![0u8; len];
    s[..data.len()].copy_from_slice(data);
    s
}

/// Computes the parity symbols of one frame. All `parity_count` symbols are computed at once
/// (encoding cost is near-linear, and the decoder needs the same `parity_count` anyway), then
/// handed out by index.
#[derive(Debug, Clone)]
pub struct FecEncoder {
    params: FecParams,
    /// `parity_count × shard_len` bytes, symbol i at `i × shard_len`.
    parity: Vec<u8>,
}

impl FecEncoder {
    /// Codes a frame given as its data chunk payloads in order, with `parity_count` parity
    /// symbols. The chunk length is the first chunk's; the frame size is their sum.
    ///
    /// # Errors
    /// The [`FecParams::new`] errors, or [`FecError::SymbolLen`] when a chunk other than the
    /// last differs from the first in length (the last must be 1..=chunk_len bytes).
    pub fn new<T: AsRef<[u8]>>(chunks: &[T], parity_count: usize) -> Result<FecEncoder, FecError> {
        let chunk_len = chunks.first().map_or(0, |c| c.as_ref().len());
        let frame_size: u64 = chunks.iter().map(|c| c.as_ref().len() as u64).sum();
        let params = FecParams::new(chunks.len(), parity_count, chunk_len, frame_size)?;
        for (index, c) in chunks.iter().enumerate() {
            let expected = params.data_len(index)?;
            if c.as_ref().len() != expected {
                return Err(FecError::SymbolLen {
                    index,
                    parity: false,
                    got: c.as_ref().len(),
                    expected,
                });
            }
        }
        let parity = if tables_built() {
            encode(DefaultEngine::new(), &params, chunks)?
        } else {
            encode(Naive::new(), &params, chunks)?
        };
        Ok(FecEncoder { params, parity })
    }

    /// The frame's code shape.
    pub fn params(&self) -> FecParams {
        self.params
    }

    /// Parity symbol `index` (`shard_len` bytes).
    ///
    /// # Errors
    /// [`FecError::ParityIndex`] when `index ≥ parity_count`.
    pub fn parity(&self, index: usize) -> Result<&[u8], FecError> {
        if index >= self.params.parity_count {
            return Err(FecError::ParityIndex {
                index,
                count: self.params.parity_count,
            });
        }
        let n = self.params.shard_len();
        Ok(&self.parity[index * n..(index + 1) * n])
    }
}

/// The `parity_count × shard_len` parity bytes of `chunks` (checked against `params`), coded
/// with `engine` (any engine gives the same bytes; see [`tables_built`]).
fn encode<E: Engine, T: AsRef<[u8]>>(
    engine: E,
    params: &FecParams,
    chunks: &[T],
) -> Result<Vec<u8>, FecError> {
    let shard_len = params.shard_len();
    let mut enc = DefaultRateEncoder::new(params.k, params.parity_count, shard_len, engine, None)?;
    for c in chunks {
        let c = c.as_ref();
        if c.len() == shard_len {
            enc.add_original_shard(c)?;
        } else {
            enc.add_original_shard(padded(c, shard_len))?;
        }
    }
    let result = enc.encode()?;
    let mut parity = Vec::with_capacity(params.parity_count * shard_len);
    for s in result.recovery_iter() {
        parity.extend_from_slice(s);
    }
    Ok(parity)
}

/// What adding a symbol did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Stored; the frame still needs this many more symbols.
    Need(usize),
    /// Stored, and the frame can now be restored (or is complete).
    Ready,
    /// Already held, or not needed any more (the frame was restorable): ignored.
    Ignored,
}

/// Collects one frame's data chunks and parity symbols, in any order, and restores the
/// missing data chunks once any K symbols arrived. Memory: the symbols held (at most K).
#[derive(Debug, Clone)]
pub struct FecDecoder {
    params: FecParams,
    /// Data chunk payloads by index (trimmed, as received or restored).
    data: Vec<Option<Vec<u8>>>,
    /// Parity symbols held, by index.
    parity: Vec<(usize, Vec<u8>)>,
    have_data: usize,
}

impl FecDecoder {
    /// An empty decoder for a frame of this shape. Allocates K slots (bounded by
    /// [`MAX_FEC_DATA`]).
    pub fn new(params: FecParams) -> FecDecoder {
        FecDecoder {
            params,
            data: vec![None; params.k],
            parity: Vec::new(),
            have_data: 0,
        }
    }

    /// The frame's code shape.
    pub fn params(&self) -> FecParams {
        self.params
    }

    /// Symbols (data or parity) still needed before the frame can be restored; 0 when it can.
    pub fn needed(&self) -> usize {
        self.params
            .k
            .saturating_sub(self.have_data + self.parity.len())
    }

    /// Whether every data chunk is held (received or restored).
    pub fn is_complete(&self) -> bool {
        self.have_data == self.params.k
    }

    /// Indexes of the data chunks not held.
    pub fn missing_data(&self) -> impl Iterator<Item = usize> + '_ {
        self.data
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_none())
            .map(|(i, _)| i)
    }

    /// Data chunk `index`, if held.
    pub fn data(&self, index: usize) -> Option<&[u8]> {
        self.data.get(index)?.as_deref()
    }

    fn added(&self) -> Added {
        match self.needed() {
            0 => Added::Ready,
            n => Added::Need(n),
        }
    }

    /// Adds data chunk `index` (its payload as sent, not padded).
    ///
    /// # Errors
    /// [`FecError::DataIndex`] or [`FecError::SymbolLen`]; nothing is stored then.
    pub fn add_data(&mut self, index: usize, payload: &[u8]) -> Result<Added, FecError> {
        let expected = self.params.data_len(index)?;
        if payload.len() != expected {
            return Err(FecError::SymbolLen {
                index,
                parity: false,
                got: payload.len(),
                expected,
            });
        }
        if self.data[index].is_some() {
            return Ok(Added::Ignored);
        }
        self.data[index] = Some(payload.to_vec());
        self.have_data += 1;
        if self.have_data + self.parity.len() > self.params.k {
            // A parity symbol is no longer needed: drop one to keep memory at K symbols.
            self.parity.pop();
        }
        Ok(self.added())
    }

    /// Adds parity symbol `index` (`shard_len` bytes).
    ///
    /// # Errors
    /// [`FecError::ParityIndex`] or [`FecError::SymbolLen`]; nothing is stored then.
    pub fn add_parity(&mut self, index: usize, symbol: &[u8]) -> Result<Added, FecError> {
        if index >= self.params.parity_count {
            return Err(FecError::ParityIndex {
                index,
                count: self.params.parity_count,
            });
        }
        let expected = self.params.shard_len();
        if symbol.len() != expected {
            return Err(FecError::SymbolLen {
                index,
                parity: true,
                got: symbol.len(),
                expected,
            });
        }
        if self.needed() == 0 || self.parity.iter().any(|(i, _)| *i == index) {
            return Ok(Added::Ignored);
        }
        self.parity.push((index, symbol.to_vec()));
        Ok(self.added())
    }

    /// Restores the missing data chunks, returning their indexes (ascending); afterwards
    /// [`Self::data`] holds every chunk. Does nothing when the frame is complete.
    ///
    /// # Errors
    /// [`FecError::NotEnough`] while [`Self::needed`] is not 0.
    pub fn recover(&mut self) -> Result<Vec<usize>, FecError> {
        if self.is_complete() {
            return Ok(Vec::new());
        }
        if self.needed() > 0 {
            return Err(FecError::NotEnough {
                have: self.have_data + self.parity.len(),
                k: self.params.k,
            });
        }
        if tables_built() {
            self.restore(DefaultEngine::new())
        } else {
            self.restore(Naive::new())
        }
    }

    /// [`Self::recover`] with `engine` (any engine restores the same bytes).
    fn restore<E: Engine>(&mut self, engine: E) -> Result<Vec<usize>, FecError> {
        let shard_len = self.params.shard_len();
        let mut dec = DefaultRateDecoder::new(
            self.params.k,
            self.params.parity_count,
            shard_len,
            engine,
            None,
        )?;
        for (i, d) in self.data.iter().enumerate() {
            if let Some(d) = d {
                if d.len() == shard_len {
                    dec.add_original_shard(i, d)?;
                } else {
                    dec.add_original_shard(i, padded(d, shard_len))?;
                }
            }
        }
        for (i, p) in &self.parity {
            dec.add_recovery_shard(*i, p)?;
        }
        let result = dec.decode()?;
        let mut restored = Vec::new();
        for (i, shard) in result.restored_original_iter() {
            let len = self.params.data_len(i)?;
            if self.data[i].is_none() {
                self.data[i] = Some(shard[..len].to_vec());
                restored.push(i);
            }
        }
        drop(result);
        self.have_data += restored.len();
        self.parity.clear();
        restored.sort_unstable();
        Ok(restored)
    }

    /// The whole frame (the data chunks concatenated), once complete.
    pub fn frame(&self) -> Option<Vec<u8>> {
        if !self.is_complete() {
            return None;
        }
        let mut out = Vec::with_capacity(self.params.frame_size as usize);
        for d in self.data.iter().flatten() {
            out.extend_from_slice(d);
        }
        Some(out)
    }
}
