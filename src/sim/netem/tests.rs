//! Unit tests of the seeded link emulator: delay, jitter, random and burst loss, rate limit,
//! duplication, reordering, in-flight cap and clock handling.

use super::*;

const MS: Duration = Duration::from_millis(1);

/// Drains everything due at `now`.
fn drain<T: Clone>(link: &mut Link<T>, now: Instant) -> Vec<T> {
    std::iter::from_fn(|| link.poll_recv(now)).collect()
}

/// Runs the link to completion, returning (delivery time, item) in delivery order.
fn run_out<T: Clone>(link: &mut Link<T>) -> Vec<(Instant, T)> {
    simulate(link, Vec::new())
}

/// Feeds `sends` (time, item, size; times non-decreasing) into the link while draining
/// deliveries in time order, as a driver would, until nothing is left in flight.
fn simulate<T: Clone>(link: &mut Link<T>, sends: Vec<(Instant, T, usize)>) -> Vec<(Instant, T)> {
    let mut sends = sends.into_iter().peekable();
    let mut out = Vec::new();
    loop {
        let next_send = sends.peek().map(|s| s.0);
        match (link.poll_timeout(), next_send) {
            (Some(t), s) if s.is_none_or(|s| t <= s) => {
                out.extend(drain(link, t).into_iter().map(|item| (t, item)));
            }
            (_, Some(_)) => {
                if let Some((t, item, size)) = sends.next() {
                    link.send(t, item, size);
                }
            }
            (_, None) => return out,
        }
    }
}

#[test]
fn zero_config_delivers_everything_in_order_at_the_exact_time() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default(), 1);
    assert_eq!(link.poll_timeout(), None);
    for i in 0..100u32 {
        let now = t0 + MS * i;
        link.send(now, i, 1200);
        assert_eq!(link.poll_timeout(), Some(now));
        assert_eq!(link.poll_recv(now), Some(i));
        assert_eq!(link.poll_recv(now), None);
    }
    // Several at the same instant come out FIFO.
    for i in 0..10u32 {
        link.send(t0 + MS * 200, i, 10);
    }
    assert_eq!(drain(&mut link, t0 + MS * 200), (0..10).collect::<Vec<_>>());
    let s = link.stats();
    assert_eq!((s.sent, s.delivered, s.dropped()), (110, 110, 0));
}

#[test]
fn fixed_delay_is_exact() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::delayed(20 * MS), 1);
    link.send(t0, 'a', 1);
    link.send(t0 + 5 * MS, 'b', 1);
    assert_eq!(link.poll_timeout(), Some(t0 + 20 * MS));
    assert_eq!(link.poll_recv(t0 + 19 * MS), None);
    assert_eq!(drain(&mut link, t0 + 20 * MS), vec!['a']);
    assert_eq!(link.poll_timeout(), Some(t0 + 25 * MS));
    assert_eq!(drain(&mut link, t0 + 30 * MS), vec!['b']);
}

fn count_lost(cfg: LinkConfig, seed: u64, n: u32) -> LinkStats {
    let t0 = Instant::now();
    let mut link = Link::new(cfg, seed);
    for i in 0..n {
        link.send(t0, i, 100);
        drain(&mut link, t0);
    }
    link.stats()
}

#[test]
fn random_loss_rate_is_within_tolerance_and_deterministic() {
    let n = 100_000;
    let a = count_lost(LinkConfig::lossy(10.0), 42, n);
    let b = count_lost(LinkConfig::lossy(10.0), 42, n);
    let c = count_lost(LinkConfig::lossy(10.0), 43, n);
    // Expected 10_000 lost, sigma ~95: 5 sigma tolerance.
    assert!((9_525..=10_475).contains(&a.lost), "lost {}", a.lost);
    assert_eq!(a, b, "same seed, same outcome");
    assert_ne!(a.lost, c.lost, "another seed, another outcome");
    assert_eq!(a.lost + a.delivered, u64::from(n));
    assert_eq!(a.burst_lost, 0);
    // Extremes draw nothing and are exact.
    assert_eq!(count_lost(LinkConfig::lossy(0.0), 1, 1000).lost, 0);
    assert_eq!(count_lost(LinkConfig::lossy(100.0), 1, 1000).lost, 1000);
}

/// Lengths of runs of consecutive losses among `n` items sent one per millisecond.
fn loss_runs(cfg: LinkConfig, seed: u64, n: u32) -> (u64, Vec<u32>) {
    let t0 = Instant::now();
    let mut link = Link::new(cfg, seed);
    let mut runs = Vec::new();
    let mut run = 0;
    for i in 0..n {
        link.send(t0, i, 100);
        if link.poll_recv(t0).is_some() {
            if run > 0 {
                runs.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        runs.push(run);
    }
    let s = link.stats();
    (s.burst_lost + s.lost, runs)
}

#[test]
fn burst_loss_produces_runs() {
    let ge = GilbertElliott::new(0.1, 5.0);
    assert!((ge.mean_loss() - 0.1).abs() < 1e-12);
    assert!((ge.p_bad_to_good - 0.2).abs() < 1e-12);

    let (lost, runs) = loss_runs(LinkConfig::bursty(10.0, 5.0), 7, 100_000);
    let mean_run = lost as f64 / runs.len() as f64;
    assert!((8_000..=12_000).contains(&lost), "lost {lost}");
    assert!((4.0..=6.0).contains(&mean_run), "mean burst {mean_run}");
    assert!(runs.iter().any(|&r| r >= 15), "some long bursts");
    assert_eq!(loss_runs(LinkConfig::bursty(10.0, 5.0), 7, 100_000).0, lost);

    // Independent loss of the same rate has runs of about 1 / (1 - 0.1).
    let (lost, runs) = loss_runs(LinkConfig::lossy(10.0), 7, 100_000);
    let mean_run = lost as f64 / runs.len() as f64;
    assert!((1.0..=1.3).contains(&mean_run), "mean run {mean_run}");
}

#[test]
fn burst_constructor_clamps() {
    let never = GilbertElliott::new(0.0, 3.0);
    assert_eq!(never.p_good_to_bad, 0.0);
    assert_eq!(never.mean_loss(), 0.0);
    let always = GilbertElliott::new(1.0, 3.0);
    assert_eq!((always.p_good_to_bad, always.p_bad_to_good), (1.0, 0.0));
    assert_eq!(always.mean_loss(), 1.0);
    // Bursts of one item cannot lose more than half.
    let capped = GilbertElliott::new(0.9, 0.5);
    assert_eq!((capped.p_good_to_bad, capped.p_bad_to_good), (1.0, 1.0));
    assert!((capped.mean_loss() - 0.5).abs() < 1e-12);
    assert_eq!(GilbertElliott::new(f64::NAN, f64::NAN).mean_loss(), 0.0);
}

#[test]
fn rate_limit_spaces_deliveries_and_tail_drops() {
    let t0 = Instant::now();
    // 8 Mbit/s = 1 byte per microsecond: 1000 bytes take exactly 1 ms.
    let mut link = Link::new(LinkConfig::rate_limited(8_000_000, 5_000), 1);
    for i in 0..10u32 {
        link.send(t0, i, 1000);
    }
    // Idle link accepts one; then backlog 1000..4000 + 1000 <= 5000 accepts four more.
    assert_eq!(link.stats().queue_dropped, 5);
    // Half a millisecond later 500 bytes left the queue: 4500 + 1000 > 5000, dropped.
    link.send(t0 + MS / 2, 10, 1000);
    assert_eq!(link.stats().queue_dropped, 6);
    // At 1 ms the backlog is 4000 bytes: room for one more, departing at 6 ms.
    link.send(t0 + MS, 11, 1000);
    assert_eq!(link.stats().queue_dropped, 6);
    let out = run_out(&mut link);
    let expect: Vec<_> = [0, 1, 2, 3, 4, 11]
        .into_iter()
        .zip(1..)
        .map(|(item, k)| (t0 + MS * k, item))
        .collect();
    assert_eq!(out, expect);
    // An idle link accepts even an item larger than the queue.
    let t = t0 + MS * 100;
    link.send(t, 99, 8_000);
    assert_eq!(run_out(&mut link), vec![(t + MS * 8, 99)]);
    assert_eq!(link.stats().queue_dropped, 6);
}

#[test]
fn rate_limit_with_delay_adds_both() {
    let t0 = Instant::now();
    let cfg = LinkConfig {
        delay: 10 * MS,
        ..LinkConfig::rate_limited(800_000, 100_000)
    };
    let mut link = Link::new(cfg, 1);
    // 100 bytes at 800 kbit/s = 1 ms each.
    for i in 0..3u32 {
        link.send(t0, i, 100);
    }
    let times: Vec<_> = run_out(&mut link).into_iter().map(|(t, _)| t).collect();
    assert_eq!(times, vec![t0 + 11 * MS, t0 + 12 * MS, t0 + 13 * MS]);
}

#[test]
fn duplicate_delivers_twice() {
    let t0 = Instant::now();
    let cfg = LinkConfig {
        duplicate: 1.0,
        ..LinkConfig::default()
    };
    let mut link = Link::new(cfg, 1);
    for i in 0..3u32 {
        link.send(t0, i, 10);
    }
    assert_eq!(drain(&mut link, t0), vec![0, 0, 1, 1, 2, 2]);
    let s = link.stats();
    assert_eq!((s.sent, s.delivered, s.duplicated), (3, 6, 3));

    let cfg = LinkConfig {
        duplicate: 0.2,
        ..LinkConfig::default()
    };
    let s = count_lost(cfg, 5, 10_000);
    assert!((1_800..=2_200).contains(&s.duplicated), "{s:?}");
    assert_eq!(s.delivered, 10_000 + s.duplicated);
}

#[test]
fn reorder_actually_reorders() {
    let t0 = Instant::now();
    let cfg = LinkConfig {
        delay: 5 * MS,
        reorder: 0.1,
        reorder_delay: 10 * MS,
        ..LinkConfig::default()
    };
    let mut link = Link::new(cfg, 3);
    let sent_at: Vec<_> = (0..1000u32).map(|i| t0 + MS * i).collect();
    let sends = (0..1000u32)
        .map(|i| (sent_at[i as usize], i, 100))
        .collect();
    let out = simulate(&mut link, sends);
    assert_eq!(out.len(), 1000, "reordering loses nothing");
    let s = link.stats();
    assert!((60..=140).contains(&s.reordered), "{s:?}");
    let inversions = out.windows(2).filter(|w| w[0].1 > w[1].1).count();
    assert!(inversions > 0);
    // Each item arrives at exactly delay or delay + reorder_delay after it was sent.
    let held = out
        .iter()
        .filter(|(t, i)| {
            let d = *t - sent_at[*i as usize];
            assert!(d == 5 * MS || d == 15 * MS, "item {i} took {d:?}");
            d == 15 * MS
        })
        .count();
    assert_eq!(held as u64, s.reordered);
}

#[test]
fn jitter_stays_within_bounds_and_does_not_reorder() {
    let t0 = Instant::now();
    let cfg = LinkConfig {
        delay: 50 * MS,
        jitter: 10 * MS,
        ..LinkConfig::default()
    };
    // Dense traffic (1 ms apart): the FIFO clamp binds often. Sparse traffic (25 ms apart,
    // more than the 20 ms jitter window): it never binds and the full spread shows.
    for (spacing, seed) in [(MS, 11), (25 * MS, 12)] {
        let mut link = Link::new(cfg.clone(), seed);
        let sends = (0..10_000u32).map(|i| (t0 + spacing * i, i, 100)).collect();
        let out = simulate(&mut link, sends);
        assert_eq!(out.len(), 10_000);
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for (k, (t, i)) in out.iter().enumerate() {
            assert_eq!(*i as usize, k, "jitter alone keeps FIFO order");
            let d = *t - (t0 + spacing * *i);
            assert!((40 * MS..=60 * MS).contains(&d), "item {i} took {d:?}");
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(hi > 59 * MS, "spread {lo:?}..{hi:?}");
        if spacing > 20 * MS {
            assert!(lo < 41 * MS, "spread {lo:?}..{hi:?}");
        }
    }
}

#[test]
fn jitter_larger_than_delay_never_delivers_before_send() {
    let t0 = Instant::now();
    let cfg = LinkConfig {
        delay: MS,
        jitter: 10 * MS,
        ..LinkConfig::default()
    };
    let mut link = Link::new(cfg, 2);
    let sends = (0..1000u32).map(|i| (t0 + MS * i, i, 100)).collect();
    let out = simulate(&mut link, sends);
    assert_eq!(out.len(), 1000);
    for (t, i) in out {
        assert!(t >= t0 + MS * i);
    }
}

#[test]
fn in_flight_count_is_capped() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::delayed(Duration::from_secs(1)), 1);
    for i in 0..(MAX_IN_FLIGHT as u32 + 100) {
        link.send(t0, i, 1);
    }
    assert_eq!(link.in_flight(), MAX_IN_FLIGHT);
    assert_eq!(link.stats().queue_dropped, 100);
}

#[test]
fn time_going_backwards_is_clamped() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::delayed(10 * MS), 1);
    link.send(t0 + 5 * MS, 1u8, 1);
    link.send(t0, 2u8, 1);
    assert_eq!(
        run_out(&mut link),
        vec![(t0 + 15 * MS, 1), (t0 + 15 * MS, 2)]
    );
}

#[test]
fn set_config_applies_to_new_items_only() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::delayed(10 * MS), 1);
    link.send(t0, 1u8, 1);
    link.set_config(LinkConfig::lossy(100.0));
    assert_eq!(link.config().loss, 1.0);
    link.send(t0, 2u8, 1);
    assert_eq!(run_out(&mut link), vec![(t0 + 10 * MS, 1)]);
    assert_eq!(link.stats().lost, 1);
}
