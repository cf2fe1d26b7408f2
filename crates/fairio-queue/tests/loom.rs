//! Model checks of the queue's hand-offs with loom: every interleaving of a producer and a
//! consumer (and of close) is explored, and a lost wake-up shows as a deadlock.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p fairio-queue --test loom --release`
#![cfg(loom)]

use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::Bytes;
use fairio_queue::ByteQueue;
use loom::future::block_on;
use loom::thread;

fn bytes(n: usize) -> Bytes {
    Bytes::from(vec![1u8; n])
}

/// A pusher waiting for room is woken by the pop that makes it.
#[test]
fn a_waiting_pusher_is_woken_by_a_pop() {
    loom::model(|| {
        let q = Arc::new(ByteQueue::bounded(NonZeroUsize::new(4).unwrap()));
        assert!(q.push_now(bytes(4)));
        let p = Arc::clone(&q);
        let pusher = thread::spawn(move || block_on(p.push(bytes(2))).is_ok());
        let got = block_on(q.pop()).map(|b| b.len());
        assert_eq!(got, Some(4));
        assert!(pusher.join().unwrap());
        assert_eq!(q.len_bytes(), 2);
    });
}

/// A popper waiting for data is woken by the push, or by close.
#[test]
fn a_waiting_popper_is_woken_by_a_push_or_a_close() {
    loom::model(|| {
        let q = Arc::new(ByteQueue::unbounded());
        let p = Arc::clone(&q);
        let producer = thread::spawn(move || {
            assert!(p.push_now(bytes(3)));
            p.close();
        });
        let first = block_on(q.pop()).map(|b| b.len());
        let second = block_on(q.pop());
        producer.join().unwrap();
        assert_eq!(first, Some(3));
        assert_eq!(second, None);
    });
}

/// The read pump's back-pressure: `wait_below` is woken by the user's pop, and by close.
#[test]
fn wait_below_is_woken_by_the_pop_that_shrinks_the_queue() {
    loom::model(|| {
        let q = Arc::new(ByteQueue::unbounded());
        q.push_force(bytes(8)).unwrap();
        let c = Arc::clone(&q);
        let consumer = thread::spawn(move || block_on(c.pop()).map(|b| b.len()));
        assert!(block_on(q.wait_below(4)));
        assert_eq!(consumer.join().unwrap(), Some(8));
    });
    loom::model(|| {
        let q = Arc::new(ByteQueue::unbounded());
        q.push_force(bytes(8)).unwrap();
        let c = Arc::clone(&q);
        let closer = thread::spawn(move || c.close());
        // Either the close came first or it wakes the waiter: never a hang.
        let open = block_on(q.wait_below(4));
        closer.join().unwrap();
        assert!(!open);
    });
}

/// `readable` (the write pump's wait) and a concurrent push: the pump sees the chunk.
#[test]
fn readable_sees_a_concurrent_push() {
    loom::model(|| {
        let q = Arc::new(ByteQueue::unbounded());
        let p = Arc::clone(&q);
        let producer = thread::spawn(move || assert!(p.push_now(bytes(5))));
        assert!(block_on(q.readable()));
        assert_eq!(q.try_pop().unwrap().len(), 5);
        producer.join().unwrap();
    });
}

/// Abandoned poll-based pushers (a `ConnectionIo` whose caller gave up), one or two in a row
/// at the head of the line, hold up no one: the pusher behind them is woken by the pop that
/// makes room, whatever the interleaving, and a newcomer goes on after it.
#[test]
fn abandoned_lapsing_pollers_hold_up_no_one() {
    use std::task::{Context, Waker};

    use fairio_queue::Poller;

    for abandoned in 1..=2 {
        loom::model(move || {
            let q = Arc::new(ByteQueue::bounded(NonZeroUsize::new(4).unwrap()));
            assert!(q.push_now(bytes(4)));
            let mut cx = Context::from_waker(Waker::noop());
            let pollers: Vec<Poller> = (0..abandoned)
                .map(|_| {
                    let mut p = Poller::lapsing(Arc::clone(&q));
                    let mut msg = Some(bytes(2));
                    assert!(p.poll_push(&mut cx, &mut msg).is_pending());
                    p
                })
                .collect();
            let p = Arc::clone(&q);
            let pusher = thread::spawn(move || block_on(p.push(bytes(2))).is_ok());
            let got = block_on(q.pop()).map(|b| b.len());
            assert_eq!(got, Some(4));
            assert!(pusher.join().unwrap());
            assert!(q.push_now(bytes(1)), "a newcomer is not held up");
            drop(pollers);
        });
    }
}

/// Two poppers, a last chunk and a close: whichever is polled first, both finish (the second
/// sees the end).
#[test]
fn two_poppers_see_the_last_chunk_and_the_end() {
    loom::model(|| {
        let q = Arc::new(ByteQueue::unbounded());
        let p = Arc::clone(&q);
        let second = thread::spawn(move || block_on(p.pop()).map(|b| b.len()));
        q.push_force(bytes(3)).unwrap();
        q.close();
        let first = block_on(q.pop()).map(|b| b.len());
        let second = second.join().unwrap();
        let mut got = [first, second];
        got.sort();
        assert_eq!(got, [None, Some(3)]);
    });
}
