//! The command-line flags of `framecast netsim` ([`NetsimArgs`]) and their checks: the link
//! impairments as a [`LinkConfig`] and the run time.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;

use crate::sim::netem::{GilbertElliott, LinkConfig};

/// Command-line flags of `framecast netsim`. Percentages are `0..=100`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct NetsimArgs {
    /// Address to receive client datagrams on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Address to forward client datagrams to; its replies go back to the client.
    #[arg(long, value_name = "ADDR")]
    pub forward: SocketAddr,
    /// Loss in percent, each direction.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub loss: f64,
    /// Mean loss burst length in datagrams: with it, `--loss` follows a Gilbert-Elliott
    /// burst model instead of independent losses.
    #[arg(long, value_name = "LEN")]
    pub burst: Option<f64>,
    /// One-way delay in milliseconds, each direction.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub delay: u64,
    /// Jitter in milliseconds (uniform +/- around `--delay`; never reorders by itself).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub jitter: u64,
    /// Percentage of datagrams held back by `--reorder-delay` so later ones overtake them.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub reorder: f64,
    /// Extra delay of a reordered datagram, in milliseconds.
    #[arg(long, default_value_t = 20, value_name = "MS")]
    pub reorder_delay: u64,
    /// Percentage of datagrams delivered twice.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub duplicate: f64,
    /// Bottleneck rate in kbit/s, each direction (unlimited when absent).
    #[arg(long, value_name = "N")]
    pub rate_kbps: Option<u64>,
    /// Bottleneck queue size in bytes (tail drop), used with `--rate-kbps`.
    #[arg(long, default_value_t = crate::sim::netem::DEFAULT_QUEUE_BYTES, value_name = "BYTES")]
    pub queue_bytes: usize,
    /// Seed of the impairments: the same seed and the same traffic give the same losses.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// Stop after this many seconds (runs until interrupted when absent).
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Write figures as JSON to this file at exit.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<std::path::PathBuf>,
}

impl NetsimArgs {
    /// Flags for a perfect proxy from `listen` to `forward` (every impairment off, seed 1):
    /// the same values as the command-line defaults.
    pub fn new(listen: SocketAddr, forward: SocketAddr) -> Self {
        Self {
            listen,
            forward,
            loss: 0.0,
            burst: None,
            delay: 0,
            jitter: 0,
            reorder: 0.0,
            reorder_delay: 20,
            duplicate: 0.0,
            rate_kbps: None,
            queue_bytes: crate::sim::netem::DEFAULT_QUEUE_BYTES,
            seed: 1,
            duration: None,
            stats_json: None,
        }
    }

    /// The emulator config both directions use, after checking the flags' ranges.
    pub fn link_config(&self) -> anyhow::Result<LinkConfig> {
        let loss = percent("--loss", self.loss)?;
        let reorder = percent("--reorder", self.reorder)?;
        let duplicate = percent("--duplicate", self.duplicate)?;
        let (loss, burst) = match self.burst {
            None => (loss, None),
            Some(len) if len.is_finite() && len >= 1.0 => {
                (0.0, Some(GilbertElliott::new(loss, len)))
            }
            Some(len) => bail!("--burst must be a mean burst length of at least 1, not {len}"),
        };
        let rate_bps = match self.rate_kbps {
            None => None,
            Some(0) => bail!("--rate-kbps must be above 0 (leave it out for no limit)"),
            Some(kbps) => Some(kbps.saturating_mul(1000)),
        };
        Ok(LinkConfig {
            delay: Duration::from_millis(self.delay),
            jitter: Duration::from_millis(self.jitter),
            loss,
            burst,
            reorder,
            reorder_delay: Duration::from_millis(self.reorder_delay),
            duplicate,
            rate_bps,
            queue_bytes: self.queue_bytes,
        })
    }

    /// `--duration` as a [`Duration`], after checking it.
    pub fn run_time(&self) -> anyhow::Result<Option<Duration>> {
        match self.duration {
            None => Ok(None),
            Some(s) => Duration::try_from_secs_f64(s).map(Some).map_err(|_| {
                anyhow::anyhow!("--duration must be a number of seconds >= 0, not {s}")
            }),
        }
    }
}

fn percent(flag: &str, pct: f64) -> anyhow::Result<f64> {
    if !(0.0..=100.0).contains(&pct) {
        bail!("{flag} must be a percentage between 0 and 100, not {pct}");
    }
    Ok(pct / 100.0)
}
