//! Bodies of the FEC messages, PARITY (type 4) and FEC_REQUEST (type 24), proto-spec.md §6.7
//! and §6.8: the bytes between the 16-byte common header and the CRC trailer, as free functions
//! that `wire/` encodes and decodes through (`Body::Parity`, `Body::FecRequest`); decoding
//! never panics and allocates nothing but the returned entries (bounded by
//! [`MAX_FEC_REQUESTS`]).

use crate::proto::fec::{FecError, FecParams};
use crate::proto::wire::{MAX_DIMENSION, MAX_FRAME_BYTES};

/// Packet type of a parity symbol.
pub const TYPE_PARITY: u8 = 4;
/// Packet type of a request for more symbols.
pub const TYPE_FEC_REQUEST: u8 = 24;
/// Fixed fields of a PARITY body before the symbol.
pub const PARITY_HEADER_LEN: usize = 28;
/// Most entries in one FEC_REQUEST.
pub const MAX_FEC_REQUESTS: usize = 32;
/// Bytes of one FEC_REQUEST entry.
pub const FEC_REQUEST_ENTRY_LEN: usize = 8;

/// Why a FEC message body is refused (counted as the §3 reason named in each variant).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MsgError {
    /// Shorter than its fixed fields (`truncated`).
    #[error("body of {len} bytes, need {need}")]
    Truncated {
        /// Body length.
        len: usize,
        /// Bytes its fixed fields need.
        need: usize,
    },
    /// A field out of its range (`invalid_field`).
    #[error("field {field} = {value} is invalid")]
    Invalid {
        /// Field name as in proto-spec.md.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The code shape or symbol is inconsistent (`invalid_field`).
    #[error("{source}")]
    Fec {
        /// What the FEC bounds say.
        #[from]
        source: FecError,
    },
}

/// A PARITY body (§6.7). The header's seq is the sequence number of chunk 0 of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parity<'a> {
    /// Frame identifier, as in the frame's VIDEO chunks.
    pub frame_id: u32,
    /// Presentation time, 90 kHz.
    pub pts: u64,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// The frame's code shape (K = chunk_count, chunk_len, parity_count, frame_size).
    pub params: FecParams,
    /// Index of this parity symbol, < parity_count.
    pub index: u16,
    /// The symbol, `params.shard_len()` bytes.
    pub symbol: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Appends the PARITY body to `out`.
pub fn encode_parity(p: &Parity<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.frame_id.to_be_bytes());
    out.extend_from_slice(&p.pts.to_be_bytes());
    out.extend_from_slice(&(p.params.frame_size() as u32).to_be_bytes());
    out.extend_from_slice(&p.width.to_be_bytes());
    out.extend_from_slice(&p.height.to_be_bytes());
    out.extend_from_slice(&(p.params.k() as u16).to_be_bytes());
    out.extend_from_slice(&(p.params.chunk_len() as u16).to_be_bytes());
    out.extend_from_slice(&(p.params.parity_count() as u16).to_be_bytes());
    out.extend_from_slice(&p.index.to_be_bytes());
    out.extend_from_slice(p.symbol);
}

/// Decodes a PARITY body (the symbol runs to the end of `body`).
///
/// # Errors
/// [`MsgError::Truncated`] below 28 bytes; [`MsgError::Invalid`] for frame_size, width or
/// height out of range; [`MsgError::Fec`] when K, chunk_len, parity_count and frame_size do
/// not form a valid code, the index is ≥ parity_count or the symbol is not `shard_len` bytes.
pub fn decode_parity(body: &[u8]) -> Result<Parity<'_>, MsgError> {
    if body.len() < PARITY_HEADER_LEN {
        return Err(MsgError::Truncated {
            len: body.len(),
            need: PARITY_HEADER_LEN,
        });
    }
    let frame_id = be32(body, 0);
    let pts = u64::from_be_bytes(body[4..12].try_into().unwrap_or([0; 8]));
    let frame_size = be32(body, 12);
    if frame_size == 0 || frame_size > MAX_FRAME_BYTES {
        return Err(MsgError::Invalid {
            field: "frame_size",
            value: frame_size.into(),
        });
    }
    let width = be16(body, 16);
    let height = be16(body, 18);
    for (field, v) in [("width", width), ("height", height)] {
        if v == 0 || v > MAX_DIMENSION {
            return Err(MsgError::Invalid {
                field,
                value: v.into(),
            });
        }
    }
    let params = FecParams::new(
        be16(body, 20).into(),
        be16(body, 24).into(),
        be16(body, 22).into(),
        frame_size.into(),
    )?;
    let index = be16(body, 26);
    if usize::from(index) >= params.parity_count() {
        return Err(FecError::ParityIndex {
            index: index.into(),
            count: params.parity_count(),
        }
        .into());
    }
    let symbol = &body[PARITY_HEADER_LEN..];
    if symbol.len() != params.shard_len() {
        return Err(FecError::SymbolLen {
            index: index.into(),
            parity: true,
            got: symbol.len(),
            expected: params.shard_len(),
        }
        .into());
    }
    Ok(Parity {
        frame_id,
        pts,
        width,
        height,
        params,
        index,
        symbol,
    })
}

/// One entry of a FEC_REQUEST (§6.8): "send `count` parity symbols of frame `frame_id`,
/// indexes `from`, `from + 1`, …".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolRequest {
    /// The frame.
    pub frame_id: u32,
    /// First parity index wanted.
    pub from: u16,
    /// Symbols wanted, ≥ 1.
    pub count: u16,
}

/// Appends a FEC_REQUEST body with `reqs` (1..=[`MAX_FEC_REQUESTS`] entries; a caller with
/// more splits them over several requests).
///
/// # Errors
/// [`MsgError::Invalid`] for 0 or more than [`MAX_FEC_REQUESTS`] entries, or a count of 0.
pub fn encode_fec_request(reqs: &[SymbolRequest], out: &mut Vec<u8>) -> Result<(), MsgError> {
    if reqs.is_empty() || reqs.len() > MAX_FEC_REQUESTS {
        return Err(MsgError::Invalid {
            field: "count",
            value: reqs.len() as u64,
        });
    }
    if reqs.iter().any(|r| r.count == 0) {
        return Err(MsgError::Invalid {
            field: "symbols",
            value: 0,
        });
    }
    out.push(reqs.len() as u8);
    for r in reqs {
        out.extend_from_slice(&r.frame_id.to_be_bytes());
        out.extend_from_slice(&r.from.to_be_bytes());
        out.extend_from_slice(&r.count.to_be_bytes());
    }
    Ok(())
}

/// Decodes a FEC_REQUEST body. Bytes after the last entry are ignored (§3).
///
/// # Errors
/// [`MsgError::Truncated`] when the body is empty or shorter than its entries;
/// [`MsgError::Invalid`] for a count of 0 or above [`MAX_FEC_REQUESTS`], or an entry asking
/// for 0 symbols.
pub fn decode_fec_request(body: &[u8]) -> Result<Vec<SymbolRequest>, MsgError> {
    let Some(&n) = body.first() else {
        return Err(MsgError::Truncated { len: 0, need: 1 });
    };
    let n = usize::from(n);
    if n == 0 || n > MAX_FEC_REQUESTS {
        return Err(MsgError::Invalid {
            field: "count",
            value: n as u64,
        });
    }
    let need = 1 + n * FEC_REQUEST_ENTRY_LEN;
    if body.len() < need {
        return Err(MsgError::Truncated {
            len: body.len(),
            need,
        });
    }
    let mut reqs = Vec::with_capacity(n);
    for e in body[1..need].chunks_exact(FEC_REQUEST_ENTRY_LEN) {
        let r = SymbolRequest {
            frame_id: be32(e, 0),
            from: be16(e, 4),
            count: be16(e, 6),
        };
        if r.count == 0 {
            return Err(MsgError::Invalid {
                field: "symbols",
                value: 0,
            });
        }
        reqs.push(r);
    }
    Ok(reqs)
}
