//! Loom models of the permit hand-off, on the [`Tokens`] policy (no clock):
//! `RUSTFLAGS="--cfg loom" cargo test -p fairio --lib --release loom_tests`.

mod loom_tests {
    use std::num::NonZeroU64;

    use loom::sync::Arc;
    use loom::thread;

    use super::super::tokens::{TURN, Tokens};

    use super::super::{Direction, Way};

    /// Two callers, a budget of 4 bytes, each asking for 4. Whoever the arbiter chooses first
    /// takes them all inline (fast path); the other parks. The first moves 3 and drops its
    /// permit: the byte left goes back, the arbiter chooses the parked caller, and its wake is
    /// never lost, whatever the interleaving (loom reports a deadlock if it were). Exactly the
    /// budget moves.
    #[test]
    fn a_refund_reaches_the_parked_caller() {
        loom::model(|| {
            let d = Arc::new(Direction::new(Way::Upload, &Tokens, NonZeroU64::new(4)));
            let keys = [d.register(()), d.register(())];
            let callers: Vec<_> = keys
                .into_iter()
                .map(|key| {
                    let d = Arc::clone(&d);
                    thread::spawn(move || {
                        loom::future::block_on(async {
                            let mut p = d.acquire(key, 4).await.expect("limited");
                            let moved = p.bytes().min(3);
                            assert!(moved > 0);
                            p.spend(moved);
                            moved
                        })
                    })
                })
                .collect();
            let moved: Vec<u64> = callers.into_iter().map(|c| c.join().unwrap()).collect();
            assert_eq!(moved.iter().sum::<u64>(), 4, "{moved:?}");
            assert_eq!(d.lock().arbiter.unused_budget(), 0);
        });
    }

    /// A caller parked for budget while another thread changes the limit: it is woken, asks
    /// again and is served under the new limit. A permit taken under the old limit moves
    /// nothing once the new one is in force, and what it held is never given to the new
    /// budget: in every interleaving the new budget ends exactly at the new limit less what
    /// was moved under it.
    #[test]
    fn a_limit_change_voids_old_permits_and_wakes_the_parked() {
        loom::model(|| {
            let d = Arc::new(Direction::new(Way::Upload, &Tokens, NonZeroU64::new(TURN)));
            let (a, b) = (d.register(()), d.register(()));
            let old = d.take(a);
            assert_eq!(old.bytes(), 0);
            // a holds the whole old budget.
            let held = loom::future::block_on(d.acquire(a, TURN)).expect("limited");
            let g0 = held.generation();
            let waiter = {
                let d = Arc::clone(&d);
                thread::spawn(move || {
                    loom::future::block_on(async {
                        let mut p = d.acquire(b, 3).await.expect("still limited");
                        let got = p.bytes();
                        p.spend(got);
                        (p.generation(), got)
                    })
                })
            };
            let changer = {
                let d = Arc::clone(&d);
                thread::spawn(move || d.set_limit(NonZeroU64::new(5)))
            };
            changer.join().unwrap();
            // The old permit is void now, and giving it back adds nothing.
            assert_eq!(held.bytes(), 0);
            drop(held);
            let (g, got) = waiter.join().unwrap();
            assert_ne!(g, g0, "served under the new limit only");
            assert_eq!(got, 3);
            assert_eq!(d.lock().arbiter.unused_budget(), 5 - 3);
        });
    }

    /// A pump takes what the ledger holds while another thread changes the limit: whatever the
    /// interleaving, bytes granted under the old limit never come out as a permit of the new
    /// one (the permit's generation is read under the lock that voids the ledger).
    #[test]
    fn a_take_racing_a_limit_change_never_passes_old_bytes_off_as_new() {
        loom::model(|| {
            let d = Arc::new(Direction::new(Way::Upload, &Tokens, NonZeroU64::new(TURN)));
            let a = d.register(());
            d.request(a, TURN, d.generation());
            let g0 = d.generation();
            let changer = {
                let d = Arc::clone(&d);
                thread::spawn(move || d.set_limit(NonZeroU64::new(5)))
            };
            let p = d.take(a);
            let (g, bytes) = (p.generation(), p.bytes);
            changer.join().unwrap();
            assert!(
                g == g0 || bytes == 0,
                "{bytes} old bytes taken as generation {g}"
            );
            drop(p);
            // Nothing of the old budget reached the new one.
            assert_eq!(d.lock().arbiter.unused_budget(), 5);
        });
    }
}
