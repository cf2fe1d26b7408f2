//! Groups inside groups under `Hierarchical`, end to end on tokio's paused clock: a class's cap
//! across its addresses, a guarantee beside a greedy class and what it leaves unused, the
//! statistics of every level, and refusals.

mod common;
#[path = "common/shares.rs"]
mod shares;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fairio::{Error, Hierarchical, Scheduler, Weight, Weighted};
use tokio::time::sleep;

use common::{flood_with, snapshot};
use shares::{config, measure, member};

const MIB: u64 = 1 << 20;

/// Class -> address -> connection: a class capped at 2 MiB/s of 8 with five addresses of one
/// to five connections holds its cap within 1%, each address gets a fifth of it whatever its
/// number of connections, and the other class gets the rest.
#[tokio::test(start_paused = true)]
async fn a_class_cap_holds_across_its_addresses() {
    let limit = 8 * MIB;
    let sched = Scheduler::with_policy(config(limit), Hierarchical).unwrap();
    let class = sched.group().unwrap();
    class.set_caps(None, Some(2 * MIB)).unwrap();
    let other = sched.group().unwrap();
    let mut counts = Vec::new();
    let mut of = Vec::new();
    for a in 0..5 {
        let address = class.subgroup().unwrap();
        for _ in 0..=a {
            counts.push(member(&sched, &address, Weight::default()).1);
            of.push(a);
        }
    }
    counts.push(member(&sched, &other, Weight::default()).1);
    of.push(5);
    let rates = measure(&counts, 1.0, 4.0).await;
    let mut per = [0f64; 6];
    for (r, &a) in rates.iter().zip(&of) {
        per[a] += r;
    }
    let class_rate: f64 = per[..5].iter().sum();
    println!("class {class_rate:.0} B/s by address {per:?}");
    assert!(
        (class_rate / (2 * MIB) as f64 - 1.0).abs() <= 0.01,
        "class at {class_rate:.0} B/s"
    );
    for (a, p) in per[..5].iter().enumerate() {
        assert!(
            (p / class_rate - 0.2).abs() <= 0.01,
            "address {a}: {:.4}",
            p / class_rate
        );
    }
    assert!(
        class_rate + per[5] >= 0.98 * limit as f64,
        "only {:.0} used",
        class_rate + per[5]
    );
    // The class's statistics count every address's connections.
    let stat = class.stat();
    let counted: u64 = snapshot(&counts[..15]).iter().sum();
    assert!(
        stat.total_recv >= counted,
        "{} < {counted}",
        stat.total_recv
    );
    assert_eq!(class.subgroups().len(), 5);
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// `EqualShare` nests as deep as groups do: a class capped at 2 MiB/s of 8 holds its cap
/// across two addresses of one and three connections, each address gets half of it, and the
/// group beside the class gets the rest.
#[tokio::test(start_paused = true)]
async fn equal_share_nests_too() {
    let limit = 8 * MIB;
    let sched = Scheduler::with_policy(config(limit), fairio::EqualShare).unwrap();
    let class = sched.group().unwrap();
    class.set_caps(None, Some(2 * MIB)).unwrap();
    let other = sched.group().unwrap();
    let (one, three) = (class.subgroup().unwrap(), class.subgroup().unwrap());
    let mut counts = vec![member(&sched, &one, ()).1];
    counts.extend((0..3).map(|_| member(&sched, &three, ()).1));
    counts.push(member(&sched, &other, ()).1);
    let rates = measure(&counts, 1.0, 4.0).await;
    let (to_one, to_three) = (rates[0], rates[1..4].iter().sum::<f64>());
    let to_class = to_one + to_three;
    println!(
        "class {to_class:.0} B/s ({to_one:.0} + {to_three:.0}), other {:.0}",
        rates[4]
    );
    assert!(
        (to_class / (2 * MIB) as f64 - 1.0).abs() <= 0.01,
        "class at {to_class:.0} B/s"
    );
    assert!(
        (to_one / to_class - 0.5).abs() <= 0.01,
        "the lone address got {:.4} of the class",
        to_one / to_class
    );
    assert!(
        rates[4] >= 0.98 * (6 * MIB) as f64,
        "the other group at {:.0} B/s",
        rates[4]
    );
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// A class guaranteed 6 MiB/s of 8 beside a greedy one gets its guarantee and half of the
/// rest.
#[tokio::test(start_paused = true)]
async fn a_guarantee_is_met_beside_a_greedy_class() {
    let limit = 8 * MIB;
    let sched = Scheduler::with_policy(config(limit), Hierarchical).unwrap();
    let (gold, greedy) = (sched.group().unwrap(), sched.group().unwrap());
    gold.set_guarantees(None, Some(6 * MIB)).unwrap();
    assert_eq!(gold.guarantees(), (None, Some(6 * MIB)));
    let mut counts = vec![member(&sched, &gold, Weight::default()).1];
    counts.extend((0..3).map(|_| member(&sched, &greedy, Weight::default()).1));
    let rates = measure(&counts, 1.0, 4.0).await;
    let (to_gold, to_greedy): (f64, f64) = (rates[0], rates[1..].iter().sum());
    println!("gold {to_gold:.0} B/s, greedy {to_greedy:.0} B/s");
    let want = 7.0 * MIB as f64;
    assert!(
        (to_gold / want - 1.0).abs() <= 0.02,
        "gold at {to_gold:.0} B/s, want {want:.0}"
    );
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// A guaranteed class whose reader takes only 1 MiB/s leaves the rest of its guarantee to the
/// greedy class.
#[tokio::test(start_paused = true)]
async fn an_unused_guarantee_goes_to_the_others() {
    let limit = 8 * MIB;
    let sched = Scheduler::with_policy(config(limit), Hierarchical).unwrap();
    let (gold, greedy) = (sched.group().unwrap(), sched.group().unwrap());
    gold.set_guarantees(None, Some(6 * MIB)).unwrap();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    flood_with(theirs, 64 * 1024);
    let conn = sched.register_in(&gold, ours, Weight::default()).unwrap();
    let slow = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&slow);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1024];
        while let Ok(n) = conn.read(&mut buf).await {
            c.fetch_add(n as u64, Ordering::Relaxed);
            sleep(Duration::from_secs_f64(1024.0 / MIB as f64)).await;
        }
    });
    let mut counts = vec![slow];
    counts.extend((0..3).map(|_| member(&sched, &greedy, Weight::default()).1));
    let rates = measure(&counts, 1.0, 4.0).await;
    let to_greedy: f64 = rates[1..].iter().sum();
    println!("slow gold {:.0} B/s, greedy {to_greedy:.0} B/s", rates[0]);
    assert!(
        to_greedy >= 0.98 * (limit - MIB) as f64,
        "greedy got {to_greedy:.0} B/s of the {} left",
        limit - MIB
    );
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// Guarantees that can never fit are refused, and a refused call changes neither direction;
/// `Weighted` nests and keeps guarantees too, and the window quota, which keeps none, says so.
#[tokio::test]
async fn impossible_guarantees_are_refused() {
    let sched = Scheduler::with_policy(config(8 * MIB), Hierarchical).unwrap();
    let class = sched.group().unwrap();
    class.set_caps(Some(MIB), Some(4 * MIB)).unwrap();
    let inside = class.subgroup().unwrap();
    // Upload fits, download does not: neither is taken.
    let err = inside
        .set_guarantees(Some(MIB / 2), Some(5 * MIB))
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig(ref m) if m.contains("download")),
        "{err}"
    );
    assert_eq!(inside.guarantees(), (None, None));
    // The upload half was rolled back: a sibling may still take the whole upload cap.
    let sibling = class.subgroup().unwrap();
    sibling.set_guarantees(Some(MIB), None).unwrap();
    // A cap below what the groups inside are guaranteed is refused too.
    assert!(class.set_caps(Some(MIB / 2), Some(4 * MIB)).is_err());
    assert_eq!(class.caps(), (Some(MIB), Some(4 * MIB)));
    assert!(matches!(
        inside.set_guarantees(Some(0), None),
        Err(Error::InvalidConfig(_))
    ));
    sched.shutdown(None).await;

    let weighted = Scheduler::with_policy(config(8 * MIB), Weighted).unwrap();
    let g = weighted.group().unwrap();
    g.set_caps(None, Some(2 * MIB)).unwrap();
    let sub = g.subgroup().unwrap();
    assert_eq!(sub.parent().map(|p| p.id()), Some(g.id()));
    sub.set_guarantees(None, Some(MIB)).unwrap();
    assert!(sub.set_guarantees(None, Some(3 * MIB)).is_err());
    assert_eq!(sub.guarantees(), (None, Some(MIB)));
    weighted.shutdown(None).await;

    let flat = Scheduler::with_policy(config(8 * MIB), fairio::WindowQuota).unwrap();
    let err = flat
        .group()
        .unwrap()
        .set_guarantees(None, Some(MIB))
        .unwrap_err();
    assert!(err.to_string().contains("no guarantees"), "{err}");
    flat.shutdown(None).await;
}

/// A group inside another keeps it alive, and what its members moved stays in its parent's
/// statistics once it is gone.
#[tokio::test(start_paused = true)]
async fn a_subgroups_totals_stay_in_its_parent() {
    let sched = Scheduler::with_policy(config(8 * MIB), Hierarchical).unwrap();
    let class = sched.group().unwrap();
    let address = class.subgroup().unwrap();
    let (conn, count) = member(&sched, &address, Weight::default());
    sleep(Duration::from_millis(500)).await;
    conn.close(Some(Duration::from_millis(10))).await.ok();
    drop(conn);
    sleep(Duration::from_millis(100)).await;
    let moved = count.load(Ordering::Relaxed);
    assert!(moved > 0);
    drop(address);
    assert!(class.subgroups().is_empty());
    assert!(class.stat().total_recv >= moved, "{:?}", class.stat());
    sched.shutdown(None).await;
}

/// A connection moved from a class capped at 1 MiB/s into one capped at 4 MiB/s takes the new
/// cap from its next permit, without a byte lost or a reconnect; what it moved before stays in
/// the old class's statistics. `Weighted` moves it too; the window quota refuses the move and
/// changes nothing.
#[tokio::test(start_paused = true)]
async fn a_connection_moves_to_another_class() {
    let sched = Scheduler::with_policy(config(8 * MIB), Hierarchical).unwrap();
    let (small, big) = (sched.group().unwrap(), sched.group().unwrap());
    small.set_caps(None, Some(MIB)).unwrap();
    big.set_caps(None, Some(4 * MIB)).unwrap();
    let (conn, count) = member(&sched, &small, Weight::default());
    let before = measure(std::slice::from_ref(&count), 0.5, 2.0).await[0];
    assert!((before / MIB as f64 - 1.0).abs() <= 0.02, "{before:.0} B/s");
    conn.move_to(&big).unwrap();
    assert_eq!(conn.group().map(|g| g.id()), Some(big.id()));
    assert!(small.members().is_empty());
    assert_eq!(big.members(), vec![conn.id()]);
    let kept = small.stat().total_recv;
    let after = measure(std::slice::from_ref(&count), 0.5, 2.0).await[0];
    assert!(
        (after / (4 * MIB) as f64 - 1.0).abs() <= 0.02,
        "{after:.0} B/s"
    );
    assert_eq!(
        small.stat().total_recv,
        kept,
        "the old class keeps what it moved"
    );
    assert!(big.stat().total_recv > 0);
    // Counted once: before the move in the old class, after it in the new one.
    assert_eq!(
        small.stat().total_recv + big.stat().total_recv,
        conn.stat().total_recv
    );
    // Moving twice to the same group does nothing; a closed connection is not moved.
    conn.move_to(&big).unwrap();
    conn.close(Some(Duration::from_millis(10))).await.ok();
    sleep(Duration::from_millis(50)).await;
    assert!(matches!(conn.move_to(&small), Err(Error::ConnectionClosed)));
    sched.shutdown(None).await;

    let weighted = Scheduler::with_policy(config(8 * MIB), Weighted).unwrap();
    let (a, b) = (weighted.group().unwrap(), weighted.group().unwrap());
    let (conn, _) = member(&weighted, &a, Weight::default());
    conn.move_to(&b).unwrap();
    assert_eq!(conn.group().map(|g| g.id()), Some(b.id()));
    weighted.shutdown(None).await;

    let flat = Scheduler::with_policy(config(8 * MIB), fairio::WindowQuota).unwrap();
    let (a, b) = (flat.group().unwrap(), flat.group().unwrap());
    let (conn, _) = member(&flat, &a, ());
    assert!(matches!(conn.move_to(&b), Err(Error::InvalidConfig(_))));
    assert_eq!(conn.group().map(|g| g.id()), Some(a.id()));
    flat.shutdown(None).await;
}
