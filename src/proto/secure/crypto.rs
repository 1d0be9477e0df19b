//! The primitives of the secure layer (proto-spec.md §8.2): the key schedule (HKDF-SHA256),
//! the handshake proof (HMAC-SHA256), ChaCha20-Poly1305 sealing of datagrams and the replay
//! window. Pure functions and small values: no I/O, no clock, no RNG.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of every key: publish, view and session keys (bytes).
pub const KEY_LEN: usize = 32;
/// Length of a handshake random (client_random, server_random) and of a cookie (bytes).
pub const RANDOM_LEN: usize = 16;
/// Length of the handshake proof (bytes): a truncated HMAC-SHA256.
pub const PROOF_LEN: usize = 16;
/// Length of the Poly1305 tag that ends a sealed datagram (bytes).
pub const TAG_LEN: usize = 16;

/// What a session's key lets its client do (proto-spec.md §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Publish streams (a `serve` pushing into a relay): proved with the publish key.
    Publish = 1,
    /// Watch streams (a viewer, or a relay pulling): proved with the view key.
    View = 2,
}

impl Role {
    /// The role for a wire value.
    pub fn from_u8(v: u8) -> Option<Role> {
        match v {
            1 => Some(Role::Publish),
            2 => Some(Role::View),
            _ => None,
        }
    }
}

/// The keys a node holds (proto-spec.md §8.1). The view key is derived from the publish key,
/// so a publisher's key file also lets it (and its viewers) watch; a view-only file cannot
/// publish, since HKDF does not run backwards.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    publish: Option<[u8; KEY_LEN]>,
    view: [u8; KEY_LEN],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        f.debug_struct("Keys")
            .field("publish", &self.publish.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a key file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// A line is neither `publish HEX` nor `view HEX` (64 hex digits).
    #[error("line {0}: expected `publish <64 hex digits>` or `view <64 hex digits>`")]
    BadLine(usize),
    /// No key at all.
    #[error(
        "no key in it (expected a `publish` or a `view` line; make one with `framecast keygen`)"
    )]
    Empty,
    /// A `view` line that is not the view key of the `publish` line.
    #[error("its view key does not belong to its publish key")]
    Mismatch,
}

impl Keys {
    /// Keys from a publish key: the view key is derived from it.
    pub fn from_publish(publish: [u8; KEY_LEN]) -> Keys {
        Keys {
            view: view_key(&publish),
            publish: Some(publish),
        }
    }

    /// View-only keys.
    pub fn view_only(view: [u8; KEY_LEN]) -> Keys {
        Keys {
            publish: None,
            view,
        }
    }

    /// The key that proves `role`, if held.
    pub fn for_role(&self, role: Role) -> Option<&[u8; KEY_LEN]> {
        match role {
            Role::Publish => self.publish.as_ref(),
            Role::View => Some(&self.view),
        }
    }

    /// Whether these keys may publish.
    pub fn can_publish(&self) -> bool {
        self.publish.is_some()
    }

    /// The view-only keys these keys imply.
    pub fn view_part(&self) -> Keys {
        Keys::view_only(self.view)
    }

    /// Parses a key file: lines `publish HEX` and/or `view HEX` (64 hex digits each);
    /// blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<Keys, KeyFileError> {
        let (mut publish, mut view) = (None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(kind), Some(hex), None) = (it.next(), it.next(), it.next()) else {
                return Err(KeyFileError::BadLine(i + 1));
            };
            let key = parse_hex(hex).ok_or(KeyFileError::BadLine(i + 1))?;
            match kind {
                "publish" => publish = Some(key),
                "view" => view = Some(key),
                _ => return Err(KeyFileError::BadLine(i + 1)),
            }
        }
        match (publish, view) {
            (Some(p), v) => {
                let keys = Keys::from_publish(p);
                if v.is_some_and(|v| v != keys.view) {
                    return Err(KeyFileError::Mismatch);
                }
                Ok(keys)
            }
            (None, Some(v)) => Ok(Keys::view_only(v)),
            (None, None) => Err(KeyFileError::Empty),
        }
    }

    /// The key file text for these keys.
    pub fn to_file(&self) -> String {
        let mut s = String::from("# framecast keys (proto-spec.md §8.1); keep this file secret\n");
        if let Some(p) = &self.publish {
            s += &format!("publish {}\n", hex(p));
        }
        s += &format!("view {}\n", hex(&self.view));
        s
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<[u8; KEY_LEN]> {
    if s.len() != 2 * KEY_LEN || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// view_key = HKDF-SHA256(salt = empty, IKM = publish key, info = "framecast v1 view key").
pub fn view_key(publish: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(None, publish)
        .expand(b"framecast v1 view key", &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// The handshake proof of a role key (§8.3): the first 16 bytes of
/// HMAC-SHA256(role key, "framecast v1 hello" ‖ role ‖ client_random ‖ cookie).
pub fn proof(
    key: &[u8; KEY_LEN],
    role: Role,
    client_random: &[u8; RANDOM_LEN],
    cookie: &[u8; RANDOM_LEN],
) -> [u8; PROOF_LEN] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"framecast v1 hello");
    m.update(&[role as u8]);
    m.update(client_random);
    m.update(cookie);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; PROOF_LEN];
    out.copy_from_slice(&full[..PROOF_LEN]);
    out
}

/// Compares two byte strings in constant time (for proofs).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The two directional keys of a session (§8.2).
#[derive(Clone)]
pub struct SessionKeys {
    /// Key for datagrams from the client (the node that sent HELLO) to the server.
    pub c2s: [u8; KEY_LEN],
    /// Key for datagrams from the server to the client.
    pub s2c: [u8; KEY_LEN],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// The session key schedule (§8.2): PRK = HKDF-Extract(salt = client_random ‖ cookie ‖
/// server_random ‖ sid, IKM = role key); c2s = Expand(PRK, "framecast v1 c2s", 32),
/// s2c = Expand(PRK, "framecast v1 s2c", 32).
pub fn session_keys(
    key: &[u8; KEY_LEN],
    client_random: &[u8; RANDOM_LEN],
    cookie: &[u8; RANDOM_LEN],
    server_random: &[u8; RANDOM_LEN],
    sid: u32,
) -> SessionKeys {
    let mut salt = [0u8; 3 * RANDOM_LEN + 4];
    salt[..16].copy_from_slice(client_random);
    salt[16..32].copy_from_slice(cookie);
    salt[32..48].copy_from_slice(server_random);
    salt[48..].copy_from_slice(&sid.to_be_bytes());
    let hk = Hkdf::<Sha256>::new(Some(&salt), key);
    let mut k = SessionKeys {
        c2s: [0; KEY_LEN],
        s2c: [0; KEY_LEN],
    };
    hk.expand(b"framecast v1 c2s", &mut k.c2s)
        .expect("valid length");
    hk.expand(b"framecast v1 s2c", &mut k.s2c)
        .expect("valid length");
    k
}

/// One direction of a session: a ChaCha20-Poly1305 key.
#[derive(Clone)]
pub struct Sealer {
    aead: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// The 96-bit nonce of datagram `counter`: 4 zero bytes, then the counter as a big-endian
/// u64. Each direction has its own key and its counter never repeats, so no nonce repeats
/// under a key.
fn nonce(counter: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&u64::from(counter).to_be_bytes());
    Nonce::from(n)
}

impl Sealer {
    /// A sealer for one directional key.
    pub fn new(key: &[u8; KEY_LEN]) -> Sealer {
        Sealer {
            aead: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Encrypts `buf[aad_len..]` in place with `buf[..aad_len]` as associated data and
    /// appends the tag.
    pub fn seal(&self, counter: u32, buf: &mut Vec<u8>, aad_len: usize) {
        let (aad, msg) = buf.split_at_mut(aad_len);
        let tag = self
            .aead
            .encrypt_in_place_detached(&nonce(counter), aad, msg)
            .expect("a datagram is far below ChaCha20-Poly1305's message limit");
        buf.extend_from_slice(&tag);
    }

    /// Checks the tag at the end of `buf` and decrypts `buf[aad_len..len - TAG_LEN]` in
    /// place; on success returns the plaintext's range. `buf` is unchanged on failure.
    pub fn open(
        &self,
        counter: u32,
        buf: &mut [u8],
        aad_len: usize,
    ) -> Option<std::ops::Range<usize>> {
        if buf.len() < aad_len + TAG_LEN {
            return None;
        }
        let end = buf.len() - TAG_LEN;
        let tag = *Tag::from_slice(&buf[end..]);
        let (aad, msg) = buf[..end].split_at_mut(aad_len);
        self.aead
            .decrypt_in_place_detached(&nonce(counter), aad, msg, &tag)
            .ok()?;
        Some(aad_len..end)
    }
}

/// A sliding anti-replay window over a session direction's counters (after RFC 4303 §3.4.3
/// and RFC 6479): accepts each counter at most once, and none older than `WINDOW` behind
/// the newest accepted.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// Newest accepted counter + 1 (0: none yet).
    top: u64,
    /// Bit i: counter `top - 1 - i` was accepted.
    bits: [u64; WINDOW_WORDS],
}

const WINDOW_WORDS: usize = 16;
/// How far behind the newest accepted counter a datagram may still arrive (datagrams).
pub const WINDOW: u64 = 64 * WINDOW_WORDS as u64;

impl ReplayWindow {
    /// Whether `counter` would be accepted (checked before the tag, to save work; marked
    /// with [`ReplayWindow::accept`] only after the tag verifies).
    pub fn check(&self, counter: u32) -> bool {
        let c = u64::from(counter);
        if c >= self.top {
            return true;
        }
        let back = self.top - 1 - c;
        back < WINDOW && self.bits[(back / 64) as usize] & (1 << (back % 64)) == 0
    }

    /// Marks `counter` as seen; false if it was a replay or too old.
    pub fn accept(&mut self, counter: u32) -> bool {
        if !self.check(counter) {
            return false;
        }
        let c = u64::from(counter);
        if c >= self.top {
            self.shift(c + 1 - self.top);
            self.top = c + 1;
        }
        let back = self.top - 1 - c;
        self.bits[(back / 64) as usize] |= 1 << (back % 64);
        true
    }

    /// Moves the window by `n` counters (older bits move to higher positions).
    fn shift(&mut self, n: u64) {
        if n >= WINDOW {
            self.bits = [0; WINDOW_WORDS];
            return;
        }
        let (words, bits) = ((n / 64) as usize, (n % 64) as u32);
        for i in (0..WINDOW_WORDS).rev() {
            let src = i as isize - words as isize;
            let mut v = if src >= 0 {
                self.bits[src as usize] << bits
            } else {
                0
            };
            if bits > 0 && src >= 1 {
                v |= self.bits[src as usize - 1] >> (64 - bits);
            }
            self.bits[i] = v;
        }
    }
}
