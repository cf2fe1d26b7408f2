//! Groups end to end on tokio's paused clock: per-host fairness, a capped group's surplus, a
//! group joining, a slow member whose part stays in its group, weights and caps changed at run
//! time, and the group's statistics and members.

mod common;
#[path = "common/shares.rs"]
mod shares;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fairio::{Connection, EqualShare, Policy, Scheduler, Weight, Weighted};
use tokio::io::DuplexStream;
use tokio::time::sleep;

use common::flood_with;
use shares::{config, measure, member};

const KIB: u64 = 1024;
const MIB: u64 = 1 << 20;

#[tokio::test(start_paused = true)]
async fn a_host_with_eight_connections_and_one_with_one_split_half_and_half() {
    let limit = 8 * MIB;
    let sched = Scheduler::new(config(limit)).unwrap();
    let (a, b) = (sched.group().unwrap(), sched.group().unwrap());
    let mut counts: Vec<_> = (0..8).map(|_| member(&sched, &a, ()).1).collect();
    counts.push(member(&sched, &b, ()).1);
    let rates = measure(&counts, 1.0, 4.0).await;
    let host_a: f64 = rates[..8].iter().sum();
    let host_b = rates[8];
    let total = host_a + host_b;
    println!("host A {host_a:.0} B/s over 8 connections, host B {host_b:.0} B/s");
    assert!(
        total >= 0.98 * limit as f64,
        "only {total:.0} of {limit} B/s used"
    );
    assert!(
        (host_b / total - 0.5).abs() <= 0.01,
        "host B got {:.4}",
        host_b / total
    );
    // Within host A, equal shares.
    for r in &rates[..8] {
        assert!((r / (host_a / 8.0) - 1.0).abs() <= 0.03, "{rates:?}");
    }
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

#[tokio::test(start_paused = true)]
async fn a_capped_group_gives_its_surplus_to_the_others() {
    let limit = 8 * MIB;
    let sched = Scheduler::new(config(limit)).unwrap();
    let (capped, free) = (sched.group().unwrap(), sched.group().unwrap());
    capped.set_caps(None, Some(MIB)).unwrap();
    assert_eq!(capped.caps(), (None, Some(MIB)));
    let mut counts: Vec<_> = (0..4).map(|_| member(&sched, &capped, ()).1).collect();
    counts.extend((0..2).map(|_| member(&sched, &free, ()).1));
    let rates = measure(&counts, 1.0, 4.0).await;
    let (c, f): (f64, f64) = (rates[..4].iter().sum(), rates[4..].iter().sum());
    println!("capped group {c:.0} B/s, the other {f:.0} B/s");
    assert!(
        c <= 1.01 * MIB as f64 && c >= 0.97 * MIB as f64,
        "capped group at {c:.0}"
    );
    assert!(c + f >= 0.98 * limit as f64, "only {:.0} used", c + f);
    // Lifting the cap at run time: half and half.
    capped.set_caps(None, None).unwrap();
    let rates = measure(&counts, 0.5, 2.0).await;
    let c: f64 = rates[..4].iter().sum();
    let total: f64 = rates.iter().sum();
    assert!(
        (c / total - 0.5).abs() <= 0.02,
        "after the lift: {:.4}",
        c / total
    );
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

#[tokio::test(start_paused = true)]
async fn a_group_joining_takes_its_share_within_100_ms() {
    let limit = 4 * MIB;
    let sched = Scheduler::new(config(limit)).unwrap();
    let old = sched.group().unwrap();
    let _old: Vec<_> = (0..4).map(|_| member(&sched, &old, ())).collect();
    sleep(Duration::from_secs(1)).await;
    let new = sched.group().unwrap();
    let (_conn, count) = member(&sched, &new, ());
    sleep(Duration::from_millis(100)).await;
    let at = count.load(Ordering::Relaxed);
    sleep(Duration::from_secs(1)).await;
    let got = (count.load(Ordering::Relaxed) - at) as f64;
    let share = limit as f64 / 2.0;
    println!(
        "the new group moved {got:.0} B in the second after its first 100 ms (share {share:.0})"
    );
    assert!(
        got >= 0.9 * share,
        "the new group got {got:.0} of {share:.0}"
    );
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// A reader that takes `rate` bytes per second from the connection: a slow application.
fn slow_reader<P: Policy>(conn: Connection<P>, rate: u64) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1024];
        let pause = Duration::from_secs_f64(1024.0 / rate as f64);
        while let Ok(n) = conn.read(&mut buf).await {
            c.fetch_add(n as u64, Ordering::Relaxed);
            sleep(pause).await;
        }
    });
    count
}

/// What a slow member of a group cannot use goes to its own group first: the group keeps half.
#[tokio::test(start_paused = true)]
async fn a_slow_members_part_stays_in_its_group() {
    let limit = 2 * MIB;
    let sched = Scheduler::new(config(limit)).unwrap();
    let (a, b) = (sched.group().unwrap(), sched.group().unwrap());
    let (_fast, fast) = member(&sched, &a, ());
    let (ours, theirs): (_, DuplexStream) = tokio::io::duplex(64 * 1024);
    flood_with(theirs, 64 * 1024);
    let slow = slow_reader(sched.register_in(&a, ours, ()).unwrap(), 50 * KIB);
    let (_other, other) = member(&sched, &b, ());
    let rates = measure(&[fast, slow, other], 2.0, 4.0).await;
    println!(
        "fast {:.0}, slow {:.0}, other host {:.0} B/s",
        rates[0], rates[1], rates[2]
    );
    let half = limit as f64 / 2.0;
    assert!(
        (rates[0] + rates[1]) / half >= 0.97,
        "host A moved {:?}",
        rates
    );
    assert!(
        (rates[2] / half - 1.0).abs() <= 0.03,
        "host B moved {:?}",
        rates
    );
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

#[tokio::test(start_paused = true)]
async fn group_weights_change_at_run_time() {
    let limit = 4 * MIB;
    let sched = Scheduler::with_policy(config(limit), Weighted).unwrap();
    let w = |n| Weight::new(n).unwrap();
    let (a, b) = (
        sched.group_with(w(1)).unwrap(),
        sched.group_with(w(3)).unwrap(),
    );
    // Member weights inside a group split the group's part, not the whole limit.
    let counts = vec![
        member(&sched, &a, w(1)).1,
        member(&sched, &a, w(4)).1,
        member(&sched, &b, w(1)).1,
    ];
    let rates = measure(&counts, 1.0, 3.0).await;
    let total: f64 = rates.iter().sum();
    let shares: Vec<f64> = rates.iter().map(|r| r / total).collect();
    println!("weights 1 (1, 4) and 3 (1): {shares:?}");
    let expected = [0.25 / 5.0, 0.25 * 4.0 / 5.0, 0.75];
    for (s, e) in shares.iter().zip(expected) {
        assert!((s - e).abs() <= 0.01, "{shares:?}");
    }
    a.set_params(w(3));
    assert_eq!(a.params(), w(3));
    let rates = measure(&counts, 0.5, 2.0).await;
    let total: f64 = rates.iter().sum();
    let host_a = (rates[0] + rates[1]) / total;
    assert!(
        (host_a - 0.5).abs() <= 0.02,
        "after the change: {host_a:.4}"
    );
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

#[tokio::test(start_paused = true)]
async fn a_groups_statistics_count_closed_members_and_it_lists_the_open_ones() {
    let sched = Scheduler::new(config(MIB)).unwrap();
    let g = sched.group().unwrap();
    let (first, _) = member(&sched, &g, ());
    let (second, _) = member(&sched, &g, ());
    assert_eq!(g.members(), vec![first.id(), second.id()]);
    sleep(Duration::from_secs(2)).await;
    let before = g.stat().total_recv;
    assert_eq!(before, first.stat().total_recv + second.stat().total_recv);
    assert!(before >= MIB, "{before}");
    first.close(None).await.unwrap();
    let closed = first.stat().total_recv;
    // Bounded: the task ends within a few turns of the paused clock.
    for _ in 0..100 {
        if g.members().len() == 1 {
            break;
        }
        sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(g.members(), vec![second.id()]);
    sleep(Duration::from_secs(1)).await;
    let stat = g.stat();
    assert_eq!(stat.total_recv, closed + second.stat().total_recv);
    assert!(stat.total_recv >= before);
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

#[tokio::test]
async fn a_group_of_another_scheduler_is_refused() {
    let one = Scheduler::new(config(MIB)).unwrap();
    let two: Scheduler<EqualShare> = Scheduler::new(config(MIB)).unwrap();
    let g = one.group().unwrap();
    let (ours, _theirs) = tokio::io::duplex(1024);
    assert!(matches!(
        two.register_in(&g, ours, ()),
        Err(fairio::Error::InvalidConfig(_))
    ));
    assert!(g.set_caps(Some(0), None).is_err());
    one.shutdown(None).await;
    assert!(matches!(one.group(), Err(fairio::Error::SchedulerClosed)));
    two.shutdown(None).await;
}

#[tokio::test(start_paused = true)]
async fn groups_by_key_are_made_on_first_use_and_go_with_their_last_connection() {
    let sched = Scheduler::new(config(MIB)).unwrap();
    let by: fairio::GroupsBy<&str> = fairio::GroupsBy::new(&sched);
    let mut conns = Vec::new();
    for key in ["a", "a", "b"] {
        let (ours, theirs) = tokio::io::duplex(1024);
        conns.push((by.register(key, ours).unwrap(), theirs));
    }
    assert_eq!(by.len(), 2);
    assert_eq!(
        conns[0].0.group().unwrap().id(),
        conns[1].0.group().unwrap().id()
    );
    assert_ne!(
        conns[0].0.group().unwrap().id(),
        conns[2].0.group().unwrap().id()
    );
    let (b, _) = conns.pop().unwrap();
    b.close(None).await.unwrap();
    drop(b);
    // Bounded: the connection's task ends within a few turns.
    for _ in 0..100 {
        if by.len() == 1 {
            break;
        }
        sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(by.len(), 1, "b's group went with its connection");
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// A cap imposed on a group whose members are already moving holds their sum.
#[tokio::test(start_paused = true)]
async fn a_cap_imposed_at_run_time_holds_the_groups_sum() {
    let limit = 8 * MIB;
    let sched = Scheduler::new(config(limit)).unwrap();
    let (g, other) = (sched.group().unwrap(), sched.group().unwrap());
    let mut counts: Vec<_> = (0..2).map(|_| member(&sched, &g, ()).1).collect();
    counts.push(member(&sched, &other, ()).1);
    let _ = measure(&counts, 1.0, 1.0).await;
    g.set_caps(None, Some(MIB)).unwrap();
    let rates = measure(&counts, 0.5, 2.0).await;
    let capped = rates[0] + rates[1];
    println!("after the cap: {rates:?}");
    assert!((capped / MIB as f64 - 1.0).abs() <= 0.02, "{rates:?}");
    assert!(
        ((capped + rates[2]) / limit as f64 - 1.0).abs() <= 0.02,
        "{rates:?}"
    );
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// `init` runs with no lock held: it may ask the map for its size or another key's group (a
/// deadlock when `init` ran under the map's lock). Run on a thread of its own so that a
/// deadlock fails the test rather than hanging it.
#[test]
fn group_init_may_use_the_map() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in = rt.enter();
        let sched = Scheduler::new(config(MIB)).unwrap();
        let by: fairio::GroupsBy<u32> = fairio::GroupsBy::new(&sched);
        let mut seen = None;
        let one = by
            .group_init(1, |_| {
                seen = Some(by.len());
                by.group(2).unwrap();
            })
            .unwrap();
        let _ = tx.send((seen, by.len(), one.id() == by.group(1).unwrap().id()));
    });
    let (seen, len, same) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("group_init deadlocked");
    assert_eq!(seen, Some(0));
    // Group 2 went with its only handle, inside init; group 1 lives.
    assert_eq!(len, 1);
    assert!(same);
}

/// Two callers making the same key's group at once (each `init` waits for the other) end
/// with one group, which both get.
#[test]
fn racing_group_inits_end_with_one_group() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sched = rt.block_on(async { Scheduler::new(config(MIB)).unwrap() });
    let by: fairio::GroupsBy<u32> = fairio::GroupsBy::new(&sched);
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..2 {
        let (by, barrier, tx) = (by.clone(), Arc::clone(&barrier), tx.clone());
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            let _in = handle.enter();
            let g = by
                .group_init(7, |_| {
                    barrier.wait();
                })
                .unwrap();
            let _ = tx.send(g);
        });
    }
    let a = rx.recv_timeout(Duration::from_secs(30)).expect("deadlock");
    let b = rx.recv_timeout(Duration::from_secs(30)).expect("deadlock");
    assert_eq!(a.id(), b.id());
    assert_eq!(by.len(), 1);
}
