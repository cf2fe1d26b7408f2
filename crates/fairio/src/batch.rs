//! [`Batch`]: chunks taken from a write queue together, to go out in one vectored write.
//!
//! Small messages would otherwise cost one system call each. The batch holds at most
//! [`MAX_IOV`] chunks and as many bytes as the caller allows, so bytes in flight (taken from the
//! queue, not yet written) stay bounded as before.

use std::io::IoSlice;
use std::num::NonZeroUsize;

use bytes::{Buf, Bytes};
use fairio_queue::ByteQueue;

/// The most chunks gathered into one write: well under every platform's `IOV_MAX` (1024 on
/// Linux).
pub(crate) const MAX_IOV: usize = 64;

/// Chunks taken from the queue and not yet written, in order.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    chunks: Vec<Bytes>,
    /// Index of the first chunk not yet written in full.
    first: usize,
    /// Bytes not yet written.
    left: usize,
}

impl Batch {
    /// Takes chunks from the front of `q` until `max` bytes or [`MAX_IOV`] chunks are held, or
    /// the queue has nothing to give now. Returns the bytes taken. The batch must be empty.
    pub(crate) fn fill(&mut self, q: &ByteQueue, max: usize) -> usize {
        debug_assert!(self.is_empty());
        self.chunks.clear();
        self.first = 0;
        while self.chunks.len() < MAX_IOV {
            let Some(room) = NonZeroUsize::new(max - self.left) else {
                break;
            };
            let Ok(chunk) = q.try_pop_max(room) else {
                break;
            };
            self.left += chunk.len();
            self.chunks.push(chunk);
        }
        self.left
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// At most `max` unwritten bytes, as slices for a vectored write; returns how many of
    /// `iov` it set.
    pub(crate) fn slices<'a>(&'a self, iov: &mut [IoSlice<'a>; MAX_IOV], max: usize) -> usize {
        let mut left = max;
        let mut k = 0;
        for (slot, chunk) in iov.iter_mut().zip(&self.chunks[self.first..]) {
            if left == 0 {
                break;
            }
            let n = chunk.len().min(left);
            *slot = IoSlice::new(&chunk[..n]);
            left -= n;
            k += 1;
        }
        k
    }

    /// At most `max` bytes of the first unwritten chunk, for a plain write.
    pub(crate) fn front(&self, max: usize) -> &[u8] {
        self.chunks
            .get(self.first)
            .map_or(&[], |c| &c[..c.len().min(max)])
    }

    /// Bytes not yet written.
    pub(crate) fn len(&self) -> usize {
        self.left
    }

    /// Whether more than one chunk is left (a vectored write is worth making).
    pub(crate) fn is_gathered(&self) -> bool {
        self.chunks.len() - self.first > 1
    }

    /// Marks `n` bytes written, from the front. `n` must not exceed the bytes left.
    pub(crate) fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.left);
        self.left -= n.min(self.left);
        while n > 0 {
            let Some(chunk) = self.chunks.get_mut(self.first) else {
                return;
            };
            if n < chunk.len() {
                chunk.advance(n);
                return;
            }
            n -= chunk.len();
            // Release the written chunk's memory now, not when the batch is refilled.
            *chunk = Bytes::new();
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_of(msgs: &[&'static [u8]]) -> ByteQueue {
        let q = ByteQueue::unbounded();
        for m in msgs {
            assert!(q.push_now(Bytes::from_static(m)));
        }
        q
    }

    fn written(b: &Batch) -> Vec<u8> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let k = b.slices(&mut iov, usize::MAX);
        iov[..k].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn gathers_in_order_up_to_the_byte_bound() {
        let q = queue_of(&[b"abc", b"defg", b"hi"]);
        let mut b = Batch::default();
        assert_eq!(b.fill(&q, 5), 5);
        assert_eq!(written(&b), b"abcde");
        assert!(b.is_gathered());
        // The rest of the cut chunk stays at the front of the queue.
        assert_eq!(q.try_pop().unwrap(), Bytes::from_static(b"fg"));
    }

    #[test]
    fn advance_across_and_within_chunks() {
        let q = queue_of(&[b"abc", b"defg", b"hi"]);
        let mut b = Batch::default();
        assert_eq!(b.fill(&q, 100), 9);
        b.advance(4);
        assert_eq!(written(&b).len(), 5);
        assert_eq!(written(&b), b"efghi");
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let k = b.slices(&mut iov, 4);
        assert_eq!((k, &*iov[0], &*iov[1]), (2, &b"efg"[..], &b"h"[..]));
        assert_eq!(b.front(usize::MAX), b"efg");
        assert_eq!(b.front(2), b"ef");
        b.advance(3);
        assert!(!b.is_gathered());
        assert_eq!(b.front(usize::MAX), b"hi");
        b.advance(2);
        assert!(b.is_empty());
        assert_eq!(b.front(usize::MAX), b"");
        assert_eq!(b.fill(&q, 100), 0);
    }

    #[test]
    fn holds_at_most_max_iov_chunks() {
        let q = ByteQueue::unbounded();
        for _ in 0..MAX_IOV + 5 {
            assert!(q.push_now(Bytes::from_static(b"x")));
        }
        let mut b = Batch::default();
        assert_eq!(b.fill(&q, usize::MAX), MAX_IOV);
        assert_eq!(q.len_bytes(), 5);
    }
}
