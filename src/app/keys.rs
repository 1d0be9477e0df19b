//! Keys at the command line (proto-spec.md §8.1): `--key-file FILE` or `FRAMECAST_KEY` on
//! serve, relay and play (never a key as an argument, where `ps` would show it), and
//! `framecast keygen`.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::proto::secure::Keys;

/// The environment variable that may hold a key file's text instead of `--key-file`.
pub const KEY_ENV: &str = "FRAMECAST_KEY";

/// How long a refused node keeps asking before it gives up with an error: a relay that is
/// restarting, or a publisher that is leaving, gets this long to sort itself out.
pub const RETRY_WINDOW: Duration = Duration::from_secs(3);

/// The key options of serve, relay and play.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// Encrypt and authenticate every datagram with the keys in this file (made by
    /// `framecast keygen`); or put the file's text in FRAMECAST_KEY. Without keys the
    /// stream is unauthenticated.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

impl KeyArgs {
    /// The keys, from `--key-file` or `FRAMECAST_KEY`; `None` when neither is given.
    pub fn load(&self) -> anyhow::Result<Option<Keys>> {
        if let Some(p) = &self.key_file {
            let text = std::fs::read_to_string(p).with_context(|| {
                format!(
                    "--key-file {}: cannot read it; make one with `framecast keygen --out {}`",
                    p.display(),
                    p.display()
                )
            })?;
            if let Ok(m) = std::fs::metadata(p) {
                if m.permissions().mode() & 0o077 != 0 {
                    log::warn!(
                        "--key-file {}: readable by other users; `chmod 600` it",
                        p.display()
                    );
                }
            }
            let keys = Keys::parse(&text)
                .map_err(|e| anyhow::anyhow!("--key-file {}: {e}", p.display()))?;
            return Ok(Some(keys));
        }
        match std::env::var(KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => {
                // Accept `;` between lines, since a variable holds one line easily.
                let keys = Keys::parse(&text.replace(';', "\n"))
                    .map_err(|e| anyhow::anyhow!("{KEY_ENV}: {e}"))?;
                Ok(Some(keys))
            }
            _ => Ok(None),
        }
    }
}

/// 32 bytes from the operating system's random source.
pub fn os_random() -> anyhow::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("cannot read /dev/urandom for random keys")?;
    Ok(b)
}

/// The seed of a node's secure layer: from the OS, or from `--seed` in tests.
pub fn layer_seed(seed: Option<u64>) -> anyhow::Result<[u8; 32]> {
    match seed {
        Some(s) => {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&s.to_be_bytes());
            b[8] = 0x5e;
            Ok(b)
        }
        None => os_random(),
    }
}

/// `framecast keygen` options.
#[derive(clap::Args, Debug, Clone)]
pub struct KeygenArgs {
    /// Write the new key file here (mode 0600; an existing file is never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Instead of a new key, write the view-only part of this key file: it lets viewers
    /// (and relays that only forward) watch, not publish.
    #[arg(long, value_name = "FILE")]
    pub view_from: Option<PathBuf>,
}

/// Writes a key file; returns what was written.
pub fn keygen(a: &KeygenArgs) -> anyhow::Result<Keys> {
    let keys = match &a.view_from {
        Some(p) => KeyArgs {
            key_file: Some(p.clone()),
        }
        .load()?
        .expect("a path was given")
        .view_part(),
        None => Keys::from_publish(os_random()?),
    };
    write_key_file(&a.out, &keys)?;
    Ok(keys)
}

fn write_key_file(path: &Path, keys: &Keys) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "keygen --out {}: the file exists; keygen never overwrites a key (remove it first, or pick another name)",
                path.display()
            ),
            _ => anyhow::anyhow!("keygen --out {}: cannot create it: {e}", path.display()),
        })?;
    f.write_all(keys.to_file().as_bytes())
        .with_context(|| format!("keygen --out {}: cannot write it", path.display()))?;
    Ok(())
}

/// Fails unless `keys` may do what the role needs.
pub fn require_publish(keys: &Option<Keys>, what: &str) -> anyhow::Result<()> {
    if keys.as_ref().is_some_and(|k| !k.can_publish()) {
        bail!(
            "{what}: the key file holds only the view key; publishing needs the publish key (the file `framecast keygen` wrote)"
        );
    }
    Ok(())
}

/// The status-line word for a node's keys.
pub fn auth_label(keyed: bool) -> &'static str {
    if keyed {
        "encrypted"
    } else {
        "unauthenticated"
    }
}

/// Tracks refusals from a peer so that a role gives up, with one clear line, once it has
/// been refused for [`RETRY_WINDOW`] without a break.
#[derive(Debug, Default)]
pub struct RefusalWatch {
    first: Option<std::time::Instant>,
    last: Option<std::time::Instant>,
    why: String,
}

impl RefusalWatch {
    /// Notes a refusal at `now`, explained by `why`; true for the first of a run (to log).
    pub fn refused(&mut self, now: std::time::Instant, why: String) -> bool {
        let first = self.first.is_none();
        if first {
            self.first = Some(now);
        }
        self.last = Some(now);
        self.why = why;
        first
    }

    /// Forgets the refusals (the peer accepted).
    pub fn accepted(&mut self) {
        self.first = None;
        self.last = None;
    }

    /// The error to exit with, once refusals have lasted the retry window; refusals that
    /// stopped for a while are forgotten.
    pub fn verdict(&mut self, now: std::time::Instant) -> Option<String> {
        let (first, last) = (self.first?, self.last?);
        if now.saturating_duration_since(last) > RETRY_WINDOW {
            self.accepted();
            return None;
        }
        (now.saturating_duration_since(first) >= RETRY_WINDOW).then(|| self.why.clone())
    }
}

/// Words for a REJECT reason (§6.3) in an error line.
pub fn reject_words(r: crate::proto::wire::RejectReason) -> &'static str {
    use crate::proto::wire::RejectReason::*;
    match r {
        UnknownStream => "no stream of that name (unknown_stream)",
        Full => "the relay is full (full)",
        BadToken => "stale token (bad_token)",
        AuthRequired => {
            "the peer requires keys (auth_required); give this side the key file with --key-file or FRAMECAST_KEY"
        }
        NameTaken => {
            "another publisher already feeds this name (name_taken); pick another --name or stop the other publisher"
        }
    }
}

/// Words for a secure-layer refusal (§8.3) in an error line.
pub fn refuse_words(r: crate::proto::secure::RefuseReason) -> String {
    use crate::proto::secure::RefuseReason::*;
    match r {
        BadKey => "wrong key (bad_key): this side's key file does not match the peer's".into(),
        NoKey => "the peer holds no key for this (no_key): publishing needs the peer to hold the publish key".into(),
        other => other.describe().into(),
    }
}
