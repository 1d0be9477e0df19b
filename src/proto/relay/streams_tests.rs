use std::time::Duration;

use super::*;
use crate::proto::relay::test_util::addr;

fn cfg() -> RelayConfig {
    RelayConfig {
        max_streams: 2,
        publisher_timeout: Duration::from_secs(5),
        subscriber_timeout: Duration::from_secs(5),
        ..RelayConfig::default()
    }
}

#[test]
fn a_name_is_claimed_once_and_kept_by_its_publisher() {
    let t0 = Instant::now();
    let cfg = cfg();
    let mut t = StreamTable::default();
    let (p, q) = (addr(1), addr(2));
    assert_eq!(t.claim(t0, p, 7, "cam", &cfg), Claim::Created(0));
    assert_eq!(t.claim(t0, p, 7, "cam", &cfg), Claim::Owner(0));
    t.get_mut(0).last_heard = Some(t0);
    // Another publisher may not take a live name.
    assert_eq!(
        t.claim(t0 + Duration::from_secs(5), q, 8, "cam", &cfg),
        Claim::Refused
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn a_silent_publisher_is_taken_over_with_a_fresh_budget() {
    let t0 = Instant::now();
    let cfg = cfg();
    let mut t = StreamTable::default();
    let (p, q) = (addr(1), addr(2));
    assert_eq!(t.claim(t0, p, 7, "cam", &cfg), Claim::Created(0));
    let s = t.get_mut(0);
    s.last_heard = Some(t0);
    s.origin_in = 1000;
    s.origin_out = 10;
    let later = t0 + Duration::from_secs(5) + Duration::from_millis(1);
    assert_eq!(
        t.claim(later, q, 8, "cam", &cfg),
        Claim::TookOver {
            idx: 0,
            previous: p
        }
    );
    let s = t.get_mut(0);
    assert_eq!(s.origin.addr(), Some(q));
    assert_eq!((s.origin_in, s.origin_out), (0, 0));
    // (The relay notes the claimant's description as heard.)
    s.last_heard = Some(later);
    // The displaced publisher is now the stranger.
    assert_eq!(t.claim(later, p, 7, "cam", &cfg), Claim::Refused);
}

#[test]
fn local_and_pulled_names_are_never_claimed_and_the_table_is_bounded() {
    let t0 = Instant::now();
    let cfg = cfg();
    let mut t = StreamTable::default();
    t.add_local("cam", &cfg);
    assert_eq!(t.claim(t0, addr(1), 7, "cam", &cfg), Claim::Refused);
    assert!(t.add_upstream("up", addr(9), &cfg));
    assert!(!t.add_upstream("up2", addr(9), &cfg));
    assert_eq!(t.claim(t0, addr(9), 5, "up", &cfg), Claim::Owner(1));
    assert_eq!(t.claim(t0, addr(1), 7, "new", &cfg), Claim::Refused);
    assert!(t.pulls_other_than("cam"));
    assert!(!t.pulls_other_than("up"));
}

#[test]
fn idle_names_are_released_in_one_step() {
    let t0 = Instant::now();
    let s5 = Duration::from_secs(5);
    let ms = Duration::from_millis;
    let cfg = cfg();
    let mut t = StreamTable::default();
    let p = addr(1);
    assert_eq!(t.claim(t0, p, 7, "cam", &cfg), Claim::Created(0));
    assert!(t.add_upstream("up", addr(9), &cfg));
    t.get_mut(0).last_heard = Some(t0);
    assert_eq!(t.join("cam", addr(3)), Some(0));
    // Watched: kept however silent.
    assert_eq!(t.release_idle(t0, &cfg), vec![]);
    assert_eq!(t.release_idle(t0 + s5 + ms(1), &cfg).len(), 1);
    t.leave("cam", &addr(3));
    // Idle from the first look after the last member left.
    let t1 = t0 + s5 + ms(2);
    assert_eq!(t.release_idle(t1, &cfg), vec![]);
    let released = t.release_idle(t1 + s5 + ms(1), &cfg);
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].name, "cam");
    assert_eq!(released[0].bye, None);
    assert_eq!(t.len(), 0);
    // The name is free again.
    assert_eq!(
        t.claim(t1 + s5 + ms(1), addr(2), 8, "cam", &cfg),
        Claim::Created(0)
    );
}
