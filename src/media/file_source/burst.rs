//! The queue between a file's video encoder and the thread that sends its frames on time.
//!
//! A file source decodes and compresses frames ahead of time in bursts and a pacer sends each
//! when `start + pts` comes. Decoding one frame per frame interval, as the pacing alone would
//! have it, starts every frame on a core whose caches and branch predictors the sleep in
//! between has cooled: FFmpeg's own H.264 decoding of a 720p30 clip took about 30 % more CPU
//! paced at real time (`ffmpeg -re`) than run flat out, and `serve`'s whole CPU per frame
//! fell by about 11 % with bursts of 6 to 8 frames. So the encoder fills the queue to its
//! capacity, then rests until the pacer has drained it to the refill mark: one cold start per
//! burst instead of one per frame. Frames still leave at their time; only when they are
//! compressed moves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How often a waiting side looks at the halt flag.
const POLL: Duration = Duration::from_millis(50);

/// A bounded queue that its producer fills in bursts (see the module docs). One producer and
/// one consumer; either side's end is seen by the other.
#[derive(Debug)]
pub(super) struct BurstQueue<T> {
    state: Mutex<State<T>>,
    /// An item was pushed, or the producer is done.
    pushed: Condvar,
    /// The queue drained to the refill mark, or the consumer is gone.
    drained: Condvar,
    /// Items the producer fills the queue to.
    capacity: usize,
    /// Items left when the producer starts filling again.
    refill_at: usize,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    /// The producer is filling (not resting until the queue drains).
    filling: bool,
    /// The producer is done: nothing more will be pushed.
    closed: bool,
    /// The consumer is gone: nothing more will be popped.
    gone: bool,
}

impl<T> BurstQueue<T> {
    /// A queue filled to `capacity` items (at least 1) at a time, refilled once `refill_at`
    /// (less than `capacity`) are left.
    pub(super) fn new(capacity: usize, refill_at: usize) -> BurstQueue<T> {
        let capacity = capacity.max(1);
        BurstQueue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                filling: true,
                closed: false,
                gone: false,
            }),
            pushed: Condvar::new(),
            drained: Condvar::new(),
            capacity,
            refill_at: refill_at.min(capacity - 1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A side that panicked left nothing half-done under the lock worth refusing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on `cv` until `ready` gives a value (checked under the lock, first at once),
    /// looking at `halt` at least every [`POLL`]; `None` if halted first.
    fn wait_until<R>(
        &self,
        cv: &Condvar,
        halt: &AtomicBool,
        mut ready: impl FnMut(&mut State<T>) -> Option<R>,
    ) -> Option<R> {
        let mut s = self.lock();
        loop {
            if halt.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(r) = ready(&mut s) {
                return Some(r);
            }
            s = cv
                .wait_timeout(s, POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Producer: waits until the queue takes another item (at once while a burst is being
    /// filled; after a burst, once the consumer has drained it to the refill mark). False if
    /// the consumer is gone or `halt` is set.
    pub(super) fn wait_for_room(&self, halt: &AtomicBool) -> bool {
        self.wait_until(&self.drained, halt, |s| {
            (s.gone || s.filling).then_some(!s.gone)
        })
        .unwrap_or(false)
    }

    /// Producer: adds an item (the burst ends when the queue is full). False, and the item
    /// is dropped, if the consumer is gone.
    pub(super) fn push(&self, item: T) -> bool {
        let mut s = self.lock();
        if s.gone {
            return false;
        }
        s.items.push_back(item);
        if s.items.len() >= self.capacity {
            s.filling = false;
        }
        self.pushed.notify_one();
        true
    }

    /// Producer: nothing more will be pushed; the consumer takes what is queued, then ends.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.pushed.notify_one();
    }

    /// Consumer: the next item, waiting for it; `None` once the producer is done and the
    /// queue empty, or when `halt` is set.
    pub(super) fn pop(&self, halt: &AtomicBool) -> Option<T> {
        // Empty: the producer is filling (it was told at the refill mark at the latest).
        self.wait_until(&self.pushed, halt, |s| match s.items.pop_front() {
            Some(item) => {
                if !s.filling && s.items.len() <= self.refill_at {
                    s.filling = true;
                    self.drained.notify_one();
                }
                Some(Some(item))
            }
            None => s.closed.then_some(None),
        })
        .flatten()
    }

    /// Items queued now.
    pub(super) fn queued(&self) -> usize {
        self.lock().items.len()
    }

    /// The producer's end of the queue: closes it when dropped, also by a panic (the
    /// consumer would otherwise wait for items forever).
    pub(super) fn producer(&self) -> End<'_, T> {
        End {
            queue: self,
            producer: true,
        }
    }

    /// The consumer's end of the queue: leaves it when dropped, also by a panic (the
    /// producer would otherwise wait for room forever).
    pub(super) fn consumer(&self) -> End<'_, T> {
        End {
            queue: self,
            producer: false,
        }
    }

    /// Consumer: nothing more will be popped; the producer stops.
    pub(super) fn leave(&self) {
        let mut s = self.lock();
        s.gone = true;
        s.items.clear();
        self.drained.notify_one();
    }
}

/// One side's end of a queue ([`BurstQueue::producer`], [`BurstQueue::consumer`]): ends
/// that side when dropped.
#[derive(Debug)]
pub(super) struct End<'a, T> {
    queue: &'a BurstQueue<T>,
    producer: bool,
}

impl<T> std::ops::Deref for End<'_, T> {
    type Target = BurstQueue<T>;
    fn deref(&self) -> &BurstQueue<T> {
        self.queue
    }
}

impl<T> Drop for End<'_, T> {
    fn drop(&mut self) {
        if self.producer {
            self.queue.close();
        } else {
            self.queue.leave();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_fills_to_capacity_then_rests_until_the_refill_mark() {
        let q = BurstQueue::new(4, 1);
        let halt = AtomicBool::new(false);
        for i in 0..4 {
            assert!(q.wait_for_room(&halt));
            assert!(q.push(i));
        }
        // Full: resting. wait_for_room would block; the state says so.
        assert!(!q.lock().filling);
        assert_eq!(q.pop(&halt), Some(0));
        assert_eq!(q.pop(&halt), Some(1));
        assert!(!q.lock().filling, "3 and 2 left: above the refill mark");
        assert_eq!(q.pop(&halt), Some(2));
        assert!(q.lock().filling, "1 left: refill");
        assert!(q.wait_for_room(&halt));
        assert!(q.push(4));
        q.close();
        assert_eq!(q.pop(&halt), Some(3));
        assert_eq!(q.pop(&halt), Some(4));
        assert_eq!(q.pop(&halt), None, "closed and empty");
    }

    #[test]
    fn either_side_ending_ends_the_other() {
        let q = BurstQueue::new(2, 0);
        let halt = AtomicBool::new(false);
        assert!(q.push(1));
        q.leave();
        assert!(!q.wait_for_room(&halt));
        assert!(!q.push(2), "the consumer is gone");

        let q: BurstQueue<u8> = BurstQueue::new(2, 0);
        halt.store(true, Ordering::Relaxed);
        assert_eq!(q.pop(&halt), None, "halted");
        assert!(!q.wait_for_room(&halt));
    }

    #[test]
    fn a_side_that_panics_still_ends_the_other() {
        let halt = AtomicBool::new(false);
        let q = BurstQueue::new(2, 0);
        std::thread::scope(|s| {
            let producer = s.spawn(|| {
                let q = q.producer();
                q.push(1);
                panic!("the encoder failed");
            });
            let consumer = q.consumer();
            assert_eq!(consumer.pop(&halt), Some(1));
            assert_eq!(
                consumer.pop(&halt),
                None,
                "the producer's end closed the queue"
            );
            assert!(producer.join().is_err());
        });
        let q: BurstQueue<u8> = BurstQueue::new(2, 0);
        std::thread::scope(|s| {
            let consumer = s.spawn(|| {
                let _q = q.consumer();
                panic!("the sender failed");
            });
            assert!(consumer.join().is_err());
            let producer = q.producer();
            assert!(
                !producer.wait_for_room(&halt),
                "the consumer's end left the queue"
            );
        });
    }

    #[test]
    fn a_resting_producer_is_woken_by_the_consumer_across_threads() {
        let q = BurstQueue::new(3, 0);
        let halt = AtomicBool::new(false);
        let got = std::thread::scope(|s| {
            let consumer = s.spawn(|| {
                let mut got = Vec::new();
                while let Some(i) = q.pop(&halt) {
                    got.push(i);
                }
                got
            });
            for i in 0..10 {
                assert!(q.wait_for_room(&halt));
                assert!(q.push(i));
            }
            q.close();
            consumer.join().unwrap()
        });
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }
}
