//! Wrap-safe sequence numbers (proto-spec.md §4).
//!
//! On the wire a flow's sequence number is a `u32` that wraps. In memory it is extended to a
//! [`SeqNo`] (`u64`) that never wraps, as str0m does: a received wire value is placed at the
//! extension closest to the last extended value (serial-number arithmetic, RFC 1982).

use std::fmt;

/// An extended (never-wrapping) sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(pub u64);

impl SeqNo {
    /// The wire form: the low 32 bits.
    pub fn wire(self) -> u32 {
        self.0 as u32
    }

    /// The next sequence number.
    #[must_use]
    pub fn next(self) -> SeqNo {
        SeqNo(self.0.wrapping_add(1))
    }

    /// `self + n`.
    #[must_use]
    pub fn plus(self, n: u64) -> SeqNo {
        SeqNo(self.0.wrapping_add(n))
    }

    /// Extends a wire value to the [`SeqNo`] closest to `self` (the latest extended value).
    ///
    /// Values within 2^31 ahead of `self` are taken as newer, the rest as older. An older
    /// value that would fall below zero stays in the first epoch.
    pub fn extend(self, wire: u32) -> SeqNo {
        let last = self.0;
        let last_wire = last as u32;
        let diff = wire.wrapping_sub(last_wire) as i32;
        let candidate = (last as i128) + diff as i128;
        if candidate < 0 {
            SeqNo(wire as u64)
        } else {
            SeqNo(candidate as u64)
        }
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Serial-number comparison of two wire values (RFC 1982): true when `a` is newer than `b`.
pub fn wire_newer(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

/// Extends incoming wire sequence numbers of one flow to [`SeqNo`]s.
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    last: Option<SeqNo>,
}

impl SeqExtender {
    /// Extends `wire`, and remembers it if it is the newest seen.
    pub fn extend(&mut self, wire: u32) -> SeqNo {
        match self.last {
            None => {
                // Start in epoch 1 so that values just before the first one (reordered
                // datagrams across a wrap) still extend below it without going negative.
                let s = SeqNo((1u64 << 32) | wire as u64);
                self.last = Some(s);
                s
            }
            Some(last) => {
                let s = last.extend(wire);
                if s > last {
                    self.last = Some(s);
                }
                s
            }
        }
    }

    /// The newest extended value seen so far.
    pub fn last(&self) -> Option<SeqNo> {
        self.last
    }

    /// Forgets everything (a new source).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn extends_across_the_wrap() {
        let mut x = SeqExtender::default();
        let a = x.extend(u32::MAX - 1);
        let b = x.extend(u32::MAX);
        let c = x.extend(0);
        let d = x.extend(1);
        assert!(a < b && b < c && c < d);
        assert_eq!(d.0 - a.0, 3);
        // A late datagram from before the wrap is still older.
        assert!(x.extend(u32::MAX - 5) < a);
    }

    #[test]
    fn serial_comparison() {
        assert!(wire_newer(1, 0));
        assert!(wire_newer(0, u32::MAX));
        assert!(!wire_newer(u32::MAX, 0));
        assert!(!wire_newer(7, 7));
    }

    proptest! {
        #[test]
        fn extension_preserves_order_near_the_wrap(start in any::<u32>(), steps in proptest::collection::vec(-1000i64..1000, 1..200)) {
            let mut x = SeqExtender::default();
            let base = x.extend(start);
            for s in steps {
                let wire = (start as i64 + s) as u32;
                let e = x.extend(wire);
                prop_assert_eq!(e.wire(), wire);
                prop_assert_eq!(e.0 as i64 - base.0 as i64, s);
            }
        }

        #[test]
        fn wire_newer_is_antisymmetric(a in any::<u32>(), d in 1u32..(1 << 31)) {
            let b = a.wrapping_add(d);
            prop_assert!(wire_newer(b, a));
            prop_assert!(!wire_newer(a, b));
        }
    }
}
