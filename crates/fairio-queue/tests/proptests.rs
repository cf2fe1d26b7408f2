//! Property tests of the byte queue against a simple model: for any sequence of push,
//! push_now, pop, read, close and cancellations, and any bound,
//! - every byte comes out, in order, exactly once, and none is lost after close;
//! - the size never exceeds the bound except for a single oversized item;
//! - `push_now` returns false exactly when the item does not fit (room, or an earlier waiter);
//! - waiters complete first come, first served, and no wake-up is lost.

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use fairio_queue::{ByteQueue, Closed, TryPopError};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio_test::task::{Spawn, spawn};

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    PushNow(usize),
    Pop(Option<usize>),
    Read(usize),
    TryPop,
    Close,
    DropPush(Index),
    DropPop(Index),
}

fn bound() -> impl Strategy<Value = Option<usize>> {
    prop::option::weighted(0.85, 1..400usize)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..300usize).prop_map(Op::Push),
        4 => (0..300usize).prop_map(Op::PushNow),
        3 => prop::option::of(1..300usize).prop_map(Op::Pop),
        2 => (1..300usize).prop_map(Op::Read),
        2 => Just(Op::TryPop),
        1 => Just(Op::Close),
        1 => any::<Index>().prop_map(Op::DropPush),
        1 => any::<Index>().prop_map(Op::DropPop),
    ]
}

struct PendingPush {
    seq: u64,
    msg: Bytes,
    fut: Spawn<BoxFut<Result<(), Closed<Bytes>>>>,
}

struct PendingPop {
    seq: u64,
    max: usize,
    fut: Spawn<BoxFut<Option<Bytes>>>,
}

struct Harness {
    q: Arc<ByteQueue>,
    bound: Option<usize>,
    next_byte: u64,
    next_seq: u64,
    closed: bool,
    accepted: Vec<u8>,
    received: Vec<u8>,
    pushes: Vec<PendingPush>,
    pops: Vec<PendingPop>,
    last_push_done: Option<u64>,
    last_pop_done: Option<u64>,
}

impl Harness {
    fn new(bound: Option<usize>) -> Self {
        Self {
            q: Arc::new(ByteQueue::with_bound(bound.and_then(NonZeroUsize::new))),
            bound,
            next_byte: 0,
            next_seq: 0,
            closed: false,
            accepted: Vec::new(),
            received: Vec::new(),
            pushes: Vec::new(),
            pops: Vec::new(),
            last_push_done: None,
            last_pop_done: None,
        }
    }

    /// A message whose bytes are unique enough that reordering shows.
    fn msg(&mut self, len: usize) -> Bytes {
        let start = self.next_byte;
        self.next_byte += len as u64;
        (start..start + len as u64)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into()
    }

    fn size(&self) -> usize {
        self.accepted.len() - self.received.len()
    }

    fn fits(&self, len: usize) -> bool {
        !self.closed
            && (len == 0
                || (self.pushes.is_empty()
                    && (self.size() == 0 || self.bound.is_none_or(|b| self.size() + len <= b))))
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn push_done(&mut self, seq: u64, msg: &Bytes, r: Result<(), Closed<Bytes>>) {
        // Empty messages carry no bytes and are accepted at once, so they have no place in line.
        if !msg.is_empty() {
            assert!(
                self.last_push_done.is_none_or(|l| l < seq),
                "pushes completed out of order"
            );
            self.last_push_done = Some(seq);
        }
        match r {
            Ok(()) => self.accepted.extend_from_slice(msg),
            Err(Closed(back)) => {
                assert!(self.closed, "push failed on an open queue");
                assert_eq!(&back, msg, "a failed push must hand its message back");
            }
        }
    }

    fn pop_done(&mut self, seq: u64, max: usize, r: Option<Bytes>) {
        assert!(
            self.last_pop_done.is_none_or(|l| l < seq),
            "pops completed out of order"
        );
        self.last_pop_done = Some(seq);
        match r {
            Some(chunk) => {
                assert!(!chunk.is_empty() && chunk.len() <= max);
                self.received.extend_from_slice(&chunk);
            }
            None => assert!(self.closed && self.size() == 0, "pop ended early"),
        }
    }

    /// Polls woken futures, in arrival order, until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            let mut i = 0;
            while i < self.pushes.len() {
                if self.pushes[i].fut.is_woken() {
                    if let std::task::Poll::Ready(r) = self.pushes[i].fut.poll() {
                        let p = self.pushes.remove(i);
                        self.push_done(p.seq, &p.msg, r);
                        progress = true;
                        continue;
                    }
                }
                i += 1;
            }
            let mut i = 0;
            while i < self.pops.len() {
                if self.pops[i].fut.is_woken() {
                    if let std::task::Poll::Ready(r) = self.pops[i].fut.poll() {
                        let p = self.pops.remove(i);
                        self.pop_done(p.seq, p.max, r);
                        progress = true;
                        continue;
                    }
                }
                i += 1;
            }
            if !progress {
                return;
            }
        }
        panic!("did not settle");
    }

    fn check(&mut self) {
        // No lost wake-up: a future that is not woken must not be ready either.
        for p in &mut self.pushes {
            assert!(
                p.fut.poll().is_pending(),
                "a push was ready but never woken"
            );
        }
        for p in &mut self.pops {
            assert!(p.fut.poll().is_pending(), "a pop was ready but never woken");
        }
        let size = self.size();
        assert_eq!(self.q.len_bytes(), size, "bytes conserved");
        assert_eq!(
            self.received[..],
            self.accepted[..self.received.len()],
            "order kept"
        );
        if let Some(b) = self.bound {
            assert!(
                size <= b || self.q.len_items() == 1,
                "size {size} over bound {b}"
            );
        }
        if !self.pops.is_empty() {
            assert_eq!(size, 0, "a waiting popper while bytes are queued");
        }
        if let Some(head) = self.pushes.first() {
            let len = head.msg.len();
            assert!(
                size != 0 && self.bound.is_some_and(|b| size + len > b),
                "push stuck"
            );
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Push(len) => {
                let msg = self.msg(len);
                let fits = self.fits(len);
                let q = Arc::clone(&self.q);
                let m = msg.clone();
                let mut fut: Spawn<BoxFut<_>> = spawn(Box::pin(async move { q.push(m).await }));
                let seq = self.seq();
                match fut.poll() {
                    std::task::Poll::Ready(r) => {
                        assert!(fits || self.closed, "push completed without room");
                        self.push_done(seq, &msg, r);
                    }
                    std::task::Poll::Pending => {
                        assert!(!fits, "push waited though it fit");
                        self.pushes.push(PendingPush { seq, msg, fut });
                    }
                }
            }
            Op::PushNow(len) => {
                let msg = self.msg(len);
                let fits = self.fits(len);
                assert_eq!(self.q.push_now(msg.clone()), fits, "push_now of {len}");
                if fits {
                    self.accepted.extend_from_slice(&msg);
                }
            }
            Op::Pop(max) => {
                let max = max.unwrap_or(usize::MAX);
                let q = Arc::clone(&self.q);
                let nz = NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN);
                self.start_pop(max, Box::pin(async move { q.pop_max(nz).await }));
            }
            Op::Read(n) => {
                let q = Arc::clone(&self.q);
                self.start_pop(
                    n,
                    Box::pin(async move {
                        let mut buf = vec![0u8; n];
                        let k = q.read(&mut buf).await;
                        buf.truncate(k);
                        (k > 0).then(|| Bytes::from(buf))
                    }),
                );
            }
            Op::TryPop => {
                let expected = if !self.pops.is_empty() || (self.size() == 0 && !self.closed) {
                    Err(TryPopError::Empty)
                } else if self.size() == 0 {
                    Err(TryPopError::Closed)
                } else {
                    Ok(())
                };
                match self.q.try_pop() {
                    Ok(chunk) => {
                        assert_eq!(expected, Ok(()));
                        assert!(!chunk.is_empty());
                        self.received.extend_from_slice(&chunk);
                    }
                    Err(e) => assert_eq!(expected, Err(e)),
                }
            }
            Op::Close => {
                self.q.close();
                self.closed = true;
            }
            Op::DropPush(i) => {
                if !self.pushes.is_empty() {
                    let i = i.index(self.pushes.len());
                    drop(self.pushes.remove(i));
                }
            }
            Op::DropPop(i) => {
                if !self.pops.is_empty() {
                    let i = i.index(self.pops.len());
                    drop(self.pops.remove(i));
                }
            }
        }
        self.settle();
        self.check();
    }

    fn start_pop(&mut self, max: usize, fut: BoxFut<Option<Bytes>>) {
        let mut fut = spawn(fut);
        let seq = self.seq();
        let can_now = self.pops.is_empty() && (self.size() > 0 || self.closed);
        match fut.poll() {
            std::task::Poll::Ready(r) => {
                assert!(can_now, "pop completed while it should wait");
                self.pop_done(seq, max, r);
            }
            std::task::Poll::Pending => {
                assert!(!can_now, "pop waited though bytes were queued");
                self.pops.push(PendingPop { seq, max, fut });
            }
        }
    }

    /// Closes and drains: every accepted byte must come out.
    fn finish(mut self) {
        self.apply(Op::Close);
        assert!(self.pushes.is_empty(), "pushes left pending after close");
        assert!(self.pops.is_empty(), "pops left pending after close");
        for _ in 0..self.accepted.len() + 1 {
            match self.q.try_pop() {
                Ok(chunk) => self.received.extend_from_slice(&chunk),
                Err(e) => {
                    assert_eq!(e, TryPopError::Closed);
                    break;
                }
            }
        }
        assert_eq!(
            self.received, self.accepted,
            "every accepted byte comes out once"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn queue_matches_model(bound in bound(), ops in prop::collection::vec(op(), 0..80)) {
        let mut h = Harness::new(bound);
        for op in ops {
            h.apply(op);
        }
        h.finish();
    }

    #[test]
    fn push_now_fits_exactly(bound in 1..400usize, lens in prop::collection::vec(0..500usize, 1..60)) {
        let mut h = Harness::new(Some(bound));
        for (i, len) in lens.into_iter().enumerate() {
            h.apply(Op::PushNow(len));
            if i % 3 == 2 {
                h.apply(Op::Pop(Some(97)));
            }
        }
        h.finish();
    }
}
