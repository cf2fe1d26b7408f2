//! The direction's hand-offs on the [`Tokens`] policy: who gets a permit, who is woken, and
//! what goes back.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::tokens::{TURN, Tokens};
use super::*;
use crate::testing::waker;

fn dir(budget: u64) -> Direction<Tokens> {
    Direction::new(Way::Download, &Tokens, NonZeroU64::new(budget))
}

fn poll<'a, P: Policy>(
    d: &'a Direction<P>,
    w: &Waker,
    key: Key,
    want: u64,
) -> Poll<Option<Permit<'a, P>>> {
    d.poll_acquire(&Context::from_waker(w), key, want)
}

/// Fast path: with budget, the caller leaves with its permit from its first poll, and nobody
/// is woken, itself included.
#[tokio::test]
async fn a_caller_with_budget_takes_its_permit_inline_and_wakes_nobody() {
    let d = dir(100);
    let (a, b) = (d.register(()), d.register(()));
    let (ca, wa) = waker();
    let (cb, wb) = waker();
    // b asked before and was parked with nothing granted (no budget then).
    d.set_limit(NonZeroU64::new(1));
    let _b_first = poll(&d, &wb, b, 1);
    d.set_limit(NonZeroU64::new(100));
    let woken_by_change = cb.get();
    let Poll::Ready(Some(p)) = poll(&d, &wa, a, 8) else {
        panic!("budget is there");
    };
    assert_eq!(p.bytes(), 8);
    assert_eq!(ca.get(), 0, "the caller is not woken");
    assert_eq!(cb.get(), woken_by_change, "nor is anyone else");
}

/// A caller finds no budget and parks; a permit dropped elsewhere gives bytes back, the
/// arbiter chooses the caller, and the caller (only it) is woken, and takes them.
#[tokio::test]
async fn a_refund_wakes_the_chosen_waiter_only() {
    let d = dir(TURN);
    let (a, b, c) = (d.register(()), d.register(()), d.register(()));
    let (_, wa) = waker();
    let (cb, wb) = waker();
    let (cc, wc) = waker();
    let Poll::Ready(Some(mut pa)) = poll(&d, &wa, a, TURN) else {
        panic!("the whole budget for a");
    };
    assert!(poll(&d, &wb, b, 3).is_pending());
    assert!(poll(&d, &wc, c, 3).is_pending());
    assert!(d.lock().timer_at.is_some(), "the timer waits for budget");
    pa.spend(TURN - 3);
    drop(pa);
    assert_eq!(cb.get(), 1, "b is chosen and woken");
    assert_eq!(
        cc.get(),
        0,
        "c, not chosen (the budget went to b), sleeps on"
    );
    let Poll::Ready(Some(pb)) = poll(&d, &wb, b, 3) else {
        panic!("b takes what it was granted");
    };
    assert_eq!(pb.bytes(), 3);
    // b's permit, unused, goes back: now c is chosen.
    drop(pb);
    assert_eq!(cc.get(), 1);
}

/// A change of the limit voids every permit: one taken before it moves nothing and gives
/// nothing back, and the parked caller is woken to ask again.
#[tokio::test]
async fn a_permit_of_an_older_limit_moves_nothing_and_gives_nothing_back() {
    let d = dir(TURN);
    let (a, b) = (d.register(()), d.register(()));
    let (_, wa) = waker();
    let (cb, wb) = waker();
    let Poll::Ready(Some(pa)) = poll(&d, &wa, a, TURN) else {
        panic!("budget is there");
    };
    assert!(poll(&d, &wb, b, 5).is_pending());
    d.set_limit(NonZeroU64::new(4));
    assert_eq!(cb.get(), 1, "the parked caller is woken by the change");
    assert_ne!(pa.generation(), d.generation());
    assert_eq!(pa.bytes(), 0, "void");
    drop(pa);
    // The new budget is exactly the new limit: the old permit gave nothing back.
    let Poll::Ready(Some(pb)) = poll(&d, &wb, b, 100) else {
        panic!("asks again under the new limit");
    };
    assert_eq!(pb.bytes(), 4);
    assert_eq!(pb.generation(), d.generation());
}

/// A permit in hand takes what the arbiter grants its connection meanwhile (a write under way
/// uses the next turn without asking again), and only that.
#[tokio::test]
async fn a_permit_tops_up_with_later_grants() {
    let d = dir(3 * TURN);
    let a = d.register(());
    let (_, w) = waker();
    let Poll::Ready(Some(mut p)) = poll(&d, &w, a, 2 * TURN) else {
        panic!("budget is there");
    };
    // Granted in one decision: the whole demand, in turns.
    assert_eq!(p.bytes(), 2 * TURN);
    p.spend(TURN + 3);
    d.request(a, 4, d.generation());
    p.top_up();
    assert_eq!(p.bytes(), TURN - 3 + 4);
    p.top_up();
    assert_eq!(p.bytes(), TURN - 3 + 4, "nothing more was granted");
    assert_eq!(
        d.take(a).bytes(),
        0,
        "the ledger was emptied into the permit"
    );
    let rest = p.bytes();
    drop(p);
    assert_eq!(
        d.lock().arbiter.unused_budget(),
        3 * TURN - (2 * TURN + 4) + rest
    );
}

/// What the arbiter granted a connection that did not take it goes back when it withdraws,
/// and when it leaves.
#[tokio::test]
async fn withdrawn_and_departed_grants_go_back() {
    let d = dir(2 * TURN);
    let (a, b) = (d.register(()), d.register(()));
    d.request(a, TURN, d.generation());
    d.request(b, TURN, d.generation());
    assert_eq!(d.lock().arbiter.unused_budget(), 0);
    d.withdraw(a);
    assert_eq!(d.lock().arbiter.unused_budget(), TURN);
    d.deregister(b);
    assert_eq!(d.lock().arbiter.unused_budget(), 2 * TURN);
    assert_eq!(d.take(a).bytes(), 0);
}

/// Without a limit nobody takes permits.
#[tokio::test]
async fn without_a_limit_there_is_no_permit() {
    let d = Direction::new(Way::Upload, &Tokens, None);
    let a = d.register(());
    let (_, w) = waker();
    assert!(matches!(poll(&d, &w, a, 1), Poll::Ready(None)));
}

/// The pump takes a grant, a second one lands in the ledger (decided by the timer, or on
/// another thread), then the pump asks for the rest of what it holds: the second grant counts,
/// and no more than the bytes asked for are granted in all.
#[tokio::test(start_paused = true)]
async fn a_grant_that_lands_before_a_request_is_not_granted_twice() {
    use fairio_policy::EqualShare;

    let want = 1 << 20;
    // 64 KiB a millisecond: the request takes many.
    let d = Direction::new(Way::Download, &EqualShare, NonZeroU64::new(64 << 20));
    let key = d.register(());
    let generation = d.generation();
    d.request(key, want, generation);
    // Lets time pass until the ledger holds something; what it holds, or 0 if nothing comes.
    async fn landed(d: &Direction<EqualShare>, key: Key) -> u64 {
        // Bounded: a grant's budget comes within a millisecond.
        for _ in 0..100 {
            let held = d.lock().ledger.held(key);
            if held > 0 {
                return held;
            }
            tokio::time::advance(std::time::Duration::from_millis(1)).await;
            d.refilled();
        }
        0
    }
    /// Takes what the ledger holds, all spent.
    fn spend_all(d: &Direction<EqualShare>, key: Key) -> u64 {
        let mut p = d.take(key);
        let n = p.bytes();
        p.spend(n);
        n
    }
    assert!(landed(&d, key).await > 0);
    let first = spend_all(&d, key);
    assert!(first < want, "{first}");
    let second = landed(&d, key).await;
    assert!(second > 0, "a second grant lands in the ledger");
    d.request(key, want - first, generation);
    let mut granted = first;
    // Bounded: every grant is at least one byte of what is asked.
    for _ in 0..10_000 {
        if landed(&d, key).await == 0 {
            break;
        }
        granted += spend_all(&d, key);
    }
    assert_eq!(granted, want, "granted {granted} for {want} asked");
}

/// The timer sleeps until the earliest instant the arbiter named: a connection that waits for
/// the global budget (due in about 2 ms) is served then, though the timer was already set for a
/// later instant (another connection's cap, about 16 ms off). On the paused clock.
#[tokio::test(start_paused = true)]
async fn an_earlier_instant_brings_the_timer_forward() {
    use fairio_policy::EqualShare;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    let d = Arc::new(Direction::new(
        Way::Download,
        &EqualShare,
        NonZeroU64::new(1 << 20),
    ));
    let cancel = CancellationToken::new();
    let timer = tokio::spawn(Arc::clone(&d).run_timer(cancel.clone()));
    let (a, b) = (d.register(()), d.register(()));
    // 1 KiB/s: once its burst is spent, a waits about 16 ms for each 16-byte grant.
    d.set_cap(a, NonZeroU64::new(1024));
    tokio::time::advance(Duration::from_millis(100)).await;
    // Drains a permit at once, as a pump that moved every byte would.
    fn spent(p: Option<Permit<'_, EqualShare>>) {
        if let Some(mut p) = p {
            let n = p.bytes();
            p.spend(n);
        }
    }
    let (_, w) = waker();
    // Bounded: a's cap burst is 256 bytes, in grants of at least 16.
    for _ in 0..100 {
        match poll(&d, &w, a, 1 << 20) {
            Poll::Ready(p) => spent(p),
            Poll::Pending => break,
        }
    }
    let a_due = d.lock().timer_at.expect("a waits for its cap");
    // b takes the whole global budget, then waits for it, sooner than a's cap.
    for _ in 0..100 {
        match poll(&d, &w, b, 1 << 20) {
            Poll::Ready(p) => spent(p),
            Poll::Pending => break,
        }
    }
    let b_due = d.lock().timer_at.expect("b waits for the budget");
    let now = tokio::time::Instant::now().into_std();
    assert!(b_due < a_due, "{:?} then {:?}", b_due - now, a_due - now);
    assert!(a_due - now > Duration::from_millis(8), "{:?}", a_due - now);
    let served = tokio::time::timeout(Duration::from_millis(8), d.acquire(b, 1 << 20)).await;
    assert!(served.is_ok(), "b was not served before a's instant");
    drop(served);
    cancel.cancel();
    timer.await.unwrap();
}

/// A connection's weight changed at run time applies from its next turns: weights 1 and 3
/// (changed from 1) share the limit a quarter and three quarters. The limit reads back.
#[tokio::test(start_paused = true)]
async fn a_weight_changed_at_run_time_applies() {
    use fairio_policy::{Weight, Weighted};
    use std::time::Duration;

    let limit = NonZeroU64::new(1 << 20);
    let d = Direction::new(Way::Upload, &Weighted, limit);
    assert_eq!(d.limit(), limit);
    let w = |n| Weight::new(n).unwrap();
    let (a, b) = (d.register(w(1)), d.register(w(1)));
    d.set_params(b, w(3));
    // Both backlogged: each asks, takes and spends what it was granted, every millisecond.
    let take = |k: Key| {
        d.request(k, 1 << 30, d.generation());
        let mut p = d.take(k);
        let n = p.bytes();
        p.spend(n);
        n
    };
    let (mut got_a, mut got_b) = (0u64, 0u64);
    for _ in 0..2000 {
        got_a += take(a);
        got_b += take(b);
        tokio::time::advance(Duration::from_millis(1)).await;
        d.refilled();
    }
    let share = got_b as f64 / (got_a + got_b) as f64;
    assert!((share - 0.75).abs() < 0.02, "b's share {share:.4}");
}

/// A waiter whose demand another mover of the same connection would withdraw (the writer
/// going idle while a splice asks) keeps it when the flag says the splice has taken over:
/// the refund that follows grants it, and wakes it. Without the flag, it is withdrawn.
#[tokio::test]
async fn withdraw_unless_leaves_a_splices_demand() {
    for taken in [true, false] {
        let d = dir(TURN);
        let (a, b) = (d.register(()), d.register(()));
        let (_, wa) = waker();
        let (cb, wb) = waker();
        let Poll::Ready(Some(mut pa)) = poll(&d, &wa, a, TURN) else {
            panic!("the whole budget for a");
        };
        // b (the splice) asks, and parks.
        assert!(poll(&d, &wb, b, 3).is_pending());
        let flag = std::sync::atomic::AtomicUsize::new(usize::from(taken));
        d.withdraw_unless(b, || flag.load(Ordering::SeqCst) > 0);
        pa.spend(TURN - 3);
        drop(pa);
        assert_eq!(cb.get() > 0, taken, "taken {taken}: woken by the refund");
        assert_eq!(d.lock().ledger.held(b) > 0, taken, "taken {taken}");
    }
}
