//! Bounded hand-over queues that never block the sender: when full, the oldest item is
//! dropped (and counted) to make room for the newest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

/// The sending end of a bounded drop-oldest queue. It keeps a receiving end of its own to
/// evict the oldest item when the queue is full, so `push` never blocks and never fails
/// while the consumer is slow; items pushed after the consumer is gone are dropped too.
#[derive(Debug)]
pub struct DropOldest<T> {
    tx: Sender<T>,
    evict: Receiver<T>,
    dropped: Arc<AtomicU64>,
}

impl<T> DropOldest<T> {
    /// A queue holding at most `capacity` items (at least 1); returns the sender and the
    /// consumer's end. The consumer sees the channel disconnected once the sender is dropped
    /// and the queue drained.
    pub fn new(capacity: usize) -> (DropOldest<T>, Receiver<T>) {
        let (tx, rx) = bounded(capacity.max(1));
        let q = DropOldest {
            tx,
            evict: rx.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (q, rx)
    }

    /// Queues `item`, evicting the oldest queued item if the queue is full. Returns the
    /// evicted item, if any, so its buffers can be reused. Never blocks.
    pub fn push(&self, item: T) -> Option<T> {
        match self.tx.try_send(item) {
            Ok(()) => None,
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(TrySendError::Full(item)) => {
                // The consumer may take the oldest meanwhile: then there is room already.
                let old = self.evict.try_recv().ok();
                if old.is_some() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = self.tx.try_send(item) {
                    // Another sender filled it again: drop the newest instead.
                    drop(e.into_inner());
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                old
            }
        }
    }

    /// Items dropped so far (evicted, or refused after the consumer went away).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_its_oldest_item() {
        let (q, rx) = DropOldest::new(2);
        assert!(q.is_empty());
        assert!(rx.try_recv().is_err(), "nothing queued, nothing to take");
        assert_eq!(q.push(2), None);
        assert_eq!(q.push(3), None);
        assert_eq!(q.push(4), Some(2), "the oldest gives way");
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(), 1);
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Ok(4));
        drop(q);
        assert!(rx.recv().is_err(), "the consumer sees the end");
    }

    #[test]
    fn pushing_after_the_consumer_left_drops_and_counts() {
        let (q, rx) = DropOldest::new(1);
        drop(rx);
        // The queue's own receiving end keeps the channel open: the item is queued, then
        // evicted by the next one.
        assert_eq!(q.push(1), None);
        assert_eq!(q.push(2), Some(1));
        assert_eq!(q.dropped(), 1);
    }
}
