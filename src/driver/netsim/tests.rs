//! Unit tests of the proxy's flags (parsing into a link config, refusals naming the flag) and
//! of the upstream sockets' address family.

use clap::Parser;

use super::proxy::upstream_bind_addr;
use super::*;
use crate::sim::netem::{GilbertElliott, LinkConfig};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: NetsimArgs,
}

fn parse(extra: &[&str]) -> anyhow::Result<NetsimArgs> {
    let base = [
        "netsim",
        "--listen",
        "127.0.0.1:0",
        "--forward",
        "127.0.0.1:9",
    ];
    let argv = base.iter().chain(extra).copied();
    Ok(Cli::try_parse_from(argv)?.args)
}

#[test]
fn flags_parse_into_a_link_config() -> anyhow::Result<()> {
    let args = parse(&[
        "--loss",
        "5",
        "--delay",
        "30",
        "--jitter",
        "4",
        "--reorder",
        "1",
        "--duplicate",
        "0.5",
        "--rate-kbps",
        "2000",
        "--seed",
        "9",
        "--duration",
        "1.5",
    ])?;
    let cfg = args.link_config()?;
    assert_eq!(cfg.loss, 0.05);
    assert_eq!(cfg.burst, None);
    assert_eq!(cfg.delay, Duration::from_millis(30));
    assert_eq!(cfg.jitter, Duration::from_millis(4));
    assert_eq!(cfg.reorder, 0.01);
    assert_eq!(cfg.duplicate, 0.005);
    assert_eq!(cfg.rate_bps, Some(2_000_000));
    assert_eq!(args.seed, 9);
    assert_eq!(args.run_time()?, Some(Duration::from_millis(1500)));

    let burst = parse(&["--loss", "10", "--burst", "4"])?.link_config()?;
    assert_eq!(burst.loss, 0.0);
    assert_eq!(burst.burst, Some(GilbertElliott::new(0.1, 4.0)));

    let defaults = parse(&[])?;
    assert_eq!(
        defaults,
        NetsimArgs::new(defaults.listen, defaults.forward),
        "NetsimArgs::new matches the command-line defaults"
    );
    assert_eq!(
        defaults.link_config()?,
        LinkConfig {
            reorder_delay: Duration::from_millis(20),
            ..LinkConfig::default()
        }
    );
    Ok(())
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let cases: [(&[&str], &str); 5] = [
        (&["--loss", "150"], "--loss"),
        (&["--duplicate=-1"], "--duplicate"),
        (&["--burst", "0.5"], "--burst"),
        (&["--rate-kbps", "0"], "--rate-kbps"),
        (&["--duration=-2"], "--duration"),
    ];
    for (flags, name) in cases {
        let err = parse(flags)
            .and_then(|a| Netsim::bind(&a).map(|_| ()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(name), "{flags:?} gave {err:?}");
    }
}

#[test]
fn upstream_sockets_follow_the_forward_family() -> anyhow::Result<()> {
    let bind_for = |forward: &str| -> anyhow::Result<String> {
        Ok(upstream_bind_addr(forward.parse()?).to_string())
    };
    assert_eq!(bind_for("127.0.0.1:5000")?, "127.0.0.1:0");
    assert_eq!(bind_for("[::1]:5000")?, "[::1]:0");
    assert_eq!(bind_for("192.0.2.1:5000")?, "0.0.0.0:0");
    assert_eq!(bind_for("[2001:db8::1]:5000")?, "[::]:0");
    Ok(())
}
