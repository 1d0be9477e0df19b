//! The secure layer's datagrams (proto-spec.md §8.3–§8.4): SEALED (type 32) and the
//! handshake HELLO (33), COOKIE (34), ACCEPT (35) and REFUSE (36). Each starts with the
//! common header of §3; the handshake messages end with the §3 CRC, a SEALED datagram with
//! its Poly1305 tag instead.

use super::crypto::{PROOF_LEN, RANDOM_LEN, Role, TAG_LEN};
use crate::proto::wire::{CRC_LEN, HEADER_LEN, MAGIC, VERSION, crc32};

/// Packet type of a sealed datagram (§8.4).
pub const SEALED: u8 = 32;
/// Packet type of HELLO (§8.3).
pub const HELLO: u8 = 33;
/// Packet type of COOKIE (§8.3).
pub const COOKIE: u8 = 34;
/// Packet type of ACCEPT (§8.3).
pub const ACCEPT: u8 = 35;
/// Packet type of REFUSE (§8.3).
pub const REFUSE: u8 = 36;
/// A HELLO is padded to at least this many bytes, so that no answer to it (COOKIE 52,
/// ACCEPT 68, REFUSE 37 bytes) is larger than the request (anti-amplification, §8.3).
pub const MIN_HELLO_LEN: usize = 96;
/// Bytes a sealed datagram adds to the datagram it carries: its header and its tag.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Why a server refused a handshake or a sealed datagram (REFUSE, §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefuseReason {
    /// The proof did not verify: the client holds a different key.
    BadKey = 1,
    /// The server holds no key for the role asked (e.g. a relay with only the view key,
    /// asked to accept a publisher).
    NoKey = 2,
    /// A sealed datagram for a session the server does not know (it restarted, or evicted
    /// the session): handshake again.
    UnknownSession = 3,
    /// The server's session table is full.
    Full = 4,
}

impl RefuseReason {
    fn from_u8(v: u8) -> Option<RefuseReason> {
        Some(match v {
            1 => RefuseReason::BadKey,
            2 => RefuseReason::NoKey,
            3 => RefuseReason::UnknownSession,
            4 => RefuseReason::Full,
            _ => return None,
        })
    }

    /// A few words for people.
    pub fn describe(self) -> &'static str {
        match self {
            RefuseReason::BadKey => "wrong key",
            RefuseReason::NoKey => "the peer holds no key for this (a view key cannot publish)",
            RefuseReason::UnknownSession => "unknown session",
            RefuseReason::Full => "the peer's session table is full",
        }
    }
}

/// A decoded handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Client → server: the first (no cookie) or the second (cookie and proof) request.
    Hello {
        /// The role the client asks for.
        role: Role,
        /// The client's random for this handshake.
        client_random: [u8; RANDOM_LEN],
        /// The cookie from COOKIE, echoed, and the proof of the role key.
        cookie: Option<([u8; RANDOM_LEN], [u8; PROOF_LEN])>,
    },
    /// Server → client: the address-validation cookie.
    Cookie {
        /// The client's random, echoed.
        client_random: [u8; RANDOM_LEN],
        /// Opaque, to echo in the next HELLO.
        cookie: [u8; RANDOM_LEN],
    },
    /// Server → client: the session is set up.
    Accept {
        /// The session id (carried in every SEALED of the session).
        sid: u32,
        /// The client's random, echoed.
        client_random: [u8; RANDOM_LEN],
        /// The server's random for the session.
        server_random: [u8; RANDOM_LEN],
        /// Poly1305 tag proving the server holds the role key (§8.3).
        tag: [u8; TAG_LEN],
    },
    /// Server → client: refused.
    Refuse {
        /// The session concerned (UnknownSession), else 0.
        sid: u32,
        /// Why.
        reason: RefuseReason,
        /// The client's random of the refused HELLO (zeros for UnknownSession).
        client_random: [u8; RANDOM_LEN],
    },
}

/// The common header (§3) with `ptype`, flags and reserved 0.
pub fn header(ptype: u8, ssrc: u32, seq: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..2].copy_from_slice(&MAGIC.to_be_bytes());
    h[2] = VERSION;
    h[3] = ptype;
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h[12..16].copy_from_slice(&seq.to_be_bytes());
    h
}

/// The associated data an ACCEPT's tag covers: its header and both randoms.
pub fn accept_aad(
    sid: u32,
    client_random: &[u8; RANDOM_LEN],
    server_random: &[u8; RANDOM_LEN],
) -> Vec<u8> {
    let mut v = header(ACCEPT, sid, 0).to_vec();
    v.extend_from_slice(client_random);
    v.extend_from_slice(server_random);
    v
}

impl Msg {
    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = match self {
            Msg::Hello {
                role,
                client_random,
                cookie,
            } => {
                let mut v = header(HELLO, 0, 0).to_vec();
                v.push(*role as u8);
                v.extend_from_slice(client_random);
                match cookie {
                    None => v.push(0),
                    Some((c, p)) => {
                        v.push(RANDOM_LEN as u8);
                        v.extend_from_slice(c);
                        v.extend_from_slice(p);
                    }
                }
                v.resize(MIN_HELLO_LEN - CRC_LEN, 0);
                v
            }
            Msg::Cookie {
                client_random,
                cookie,
            } => {
                let mut v = header(COOKIE, 0, 0).to_vec();
                v.extend_from_slice(client_random);
                v.extend_from_slice(cookie);
                v
            }
            Msg::Accept {
                sid,
                client_random,
                server_random,
                tag,
            } => {
                let mut v = accept_aad(*sid, client_random, server_random);
                v.extend_from_slice(tag);
                v
            }
            Msg::Refuse {
                sid,
                reason,
                client_random,
            } => {
                let mut v = header(REFUSE, *sid, 0).to_vec();
                v.push(*reason as u8);
                v.extend_from_slice(client_random);
                v
            }
        };
        let crc = crc32(&v);
        v.extend_from_slice(&crc.to_be_bytes());
        v
    }

    /// Decodes a handshake datagram; `None` for anything malformed (never a panic).
    pub fn decode(d: &[u8]) -> Option<Msg> {
        if d.len() < HEADER_LEN + CRC_LEN || d[..2] != MAGIC.to_be_bytes() || d[2] != VERSION {
            return None;
        }
        let n = d.len() - CRC_LEN;
        if crc32(&d[..n]).to_be_bytes() != d[n..] {
            return None;
        }
        let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        let body = &d[HEADER_LEN..n];
        let arr = |b: &[u8], at: usize| -> Option<[u8; 16]> { b.get(at..at + 16)?.try_into().ok() };
        match d[3] {
            HELLO => {
                if d.len() < MIN_HELLO_LEN {
                    return None;
                }
                let role = Role::from_u8(*body.first()?)?;
                let client_random = arr(body, 1)?;
                let cookie = match *body.get(17)? {
                    0 => None,
                    16 => Some((arr(body, 18)?, arr(body, 34)?)),
                    _ => return None,
                };
                Some(Msg::Hello {
                    role,
                    client_random,
                    cookie,
                })
            }
            COOKIE => Some(Msg::Cookie {
                client_random: arr(body, 0)?,
                cookie: arr(body, 16)?,
            }),
            ACCEPT => Some(Msg::Accept {
                sid: ssrc,
                client_random: arr(body, 0)?,
                server_random: arr(body, 16)?,
                tag: arr(body, 32)?,
            }),
            REFUSE => Some(Msg::Refuse {
                sid: ssrc,
                reason: RefuseReason::from_u8(*body.first()?)?,
                client_random: arr(body, 1)?,
            }),
            _ => None,
        }
    }
}
