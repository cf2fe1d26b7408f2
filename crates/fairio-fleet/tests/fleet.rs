//! Three members, each with its own scheduler and in-process peers, share a fleet download
//! limit through a real `redis-server`: one backlogged, one light (10% of the limit), one idle
//! that wakes up; then one leaves; then Redis is killed and restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fairio::{Config, Scheduler};
use fairio_fleet::{Fleet, Member, Mode};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep};

const LIMIT: u64 = 4 << 20;

/// The tests measure rates on a 2-core machine: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const REFRESH: Duration = Duration::from_millis(200);
const TTL: Duration = Duration::from_millis(600);

fn scheduler() -> Scheduler {
    Scheduler::new(Config::new(16 * 1024).read_queue_size(Some(64 * 1024))).unwrap()
}

/// A connection whose peer sends `rate` bytes per second (`None`: as fast as it can) once `go`
/// is set, read as fast as it arrives.
fn peer(sched: &Scheduler, rate: Option<u64>, go: Arc<AtomicBool>) {
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let conn = sched.register(ours).unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while conn.read(&mut buf).await.is_ok() {}
    });
    tokio::spawn(async move {
        while !go.load(Ordering::Relaxed) {
            sleep(Duration::from_millis(5)).await;
        }
        match rate {
            None => {
                let chunk = vec![1u8; 16 * 1024];
                while theirs.write_all(&chunk).await.is_ok() {}
            }
            Some(r) => {
                // A fiftieth of a second's worth fifty times a second, skipping (not catching
                // up) a tick missed while a write waited: a steady producer.
                let chunk = vec![1u8; usize::try_from(r / 50).unwrap()];
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    if theirs.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
}

fn fleet(redis: &fairio_fleet::testing::Redis, weight: u32) -> Fleet {
    Fleet::new(redis.url(), "test")
        .download(Some(LIMIT))
        .weight(weight)
        .refresh(REFRESH)
        .ttl(TTL)
        .expected_members(3)
}

/// Bytes per second each scheduler received over `secs`, while the members' limits are
/// sampled every 20 ms: the largest sum of the limits in force seen.
async fn measure(scheds: &[&Scheduler], members: &[&Member], secs: f64) -> (Vec<f64>, u64) {
    let before: Vec<u64> = scheds.iter().map(|s| s.global_stat().total_recv).collect();
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let sum: u64 = members
            .iter()
            .map(|m| m.lease().download.map_or(0, |d| d.limit))
            .sum();
        peak = peak.max(sum);
        sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let rates = scheds
        .iter()
        .zip(before)
        .map(|(s, b)| (s.global_stat().total_recv - b) as f64 / secs)
        .collect();
    (rates, peak)
}

fn check_total(rates: &[f64], what: &str) {
    let total: f64 = rates.iter().sum();
    println!(
        "{what}: {rates:.0?}, total {:.4} of the limit",
        total / LIMIT as f64
    );
    assert!(
        (total / LIMIT as f64 - 1.0).abs() <= 0.03,
        "{what}: total {total:.0} vs {LIMIT}"
    );
}

fn near(got: f64, want: f64, what: &str) {
    assert!(
        (got / want - 1.0).abs() <= 0.05,
        "{what}: {got:.0} vs {want:.0}"
    );
}

// Its figures are shares over wall-clock seconds of a protocol that refreshes every 200 ms,
// and on a loaded 2-core machine a late round moves them past the tolerances now and then
// (2 of 5 runs on the code of 2b10048, before the read-through; 0 of 5 after). `.ci/run` runs
// it on its own, with up to three attempts, and prints every failed one.
#[ignore = "timing-sensitive on a loaded machine: .ci/run runs it alone, up to three attempts"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_fairly_and_absorb_one_that_leaves() {
    let _one_at_a_time = SERIAL.lock().await;
    let redis = fairio_fleet::testing::Redis::start();
    let on = Arc::new(AtomicBool::new(true));
    let wake = Arc::new(AtomicBool::new(false));
    let (busy, light, idle) = (scheduler(), scheduler(), scheduler());
    for _ in 0..4 {
        peer(&busy, None, Arc::clone(&on));
    }
    peer(&light, Some(LIMIT / 10), Arc::clone(&on));
    for _ in 0..2 {
        peer(&idle, None, Arc::clone(&wake));
    }
    let m_busy = fleet(&redis, 1).join(&busy).unwrap();
    let m_light = fleet(&redis, 1).join(&light).unwrap();
    let m_idle = fleet(&redis, 1).join(&idle).unwrap();
    let scheds = [&busy, &light, &idle];

    // Starting from nothing, members converge in a few rounds (a lease grows once the others
    // have reported that they shrank), and the light member's start-up backlog leaves its
    // demand's memory (ten intervals).
    sleep(Duration::from_secs(3)).await;
    let (rates, peak) = measure(&scheds, &[&m_busy, &m_light, &m_idle], 2.0).await;
    check_total(&rates, "idle asleep");
    near(rates[1], LIMIT as f64 / 10.0, "the light member");
    assert!(peak <= LIMIT + 3, "limits in force added up to {peak}");

    // The idle member wakes: within two intervals the busy and the woken split what the light
    // one leaves.
    wake.store(true, Ordering::Relaxed);
    sleep(2 * REFRESH).await;
    let (rates, peak) = measure(&scheds, &[&m_busy, &m_light, &m_idle], 1.0).await;
    println!("two intervals after the wake: {rates:.0?}");
    let rest = (LIMIT as f64 - rates[1]) / 2.0;
    near(rates[1], LIMIT as f64 / 10.0, "the light member");
    near(rates[0], rest, "the busy member");
    near(rates[2], rest, "the woken member");
    assert!(peak <= LIMIT + 3, "limits in force added up to {peak}");
    let (rates, peak) = measure(&scheds, &[&m_busy, &m_light, &m_idle], 2.0).await;
    check_total(&rates, "all three busy");
    assert!(peak <= LIMIT + 3, "limits in force added up to {peak}");

    // The woken member dies (no goodbye): absorbed within two intervals and the TTL.
    drop(m_idle);
    idle.set_max_download_speed(Some(1));
    sleep(2 * REFRESH + TTL + Duration::from_millis(100)).await;
    let (rates, peak) = measure(&scheds[..2], &[&m_busy, &m_light], 2.0).await;
    check_total(&rates, "one gone");
    near(
        rates[0],
        LIMIT as f64 - rates[1],
        "the busy member after the other left",
    );
    assert!(peak <= LIMIT + 2, "limits in force added up to {peak}");
    m_busy.leave().await.unwrap();
    m_light.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_members_hold_their_safe_share_and_recover_when_it_returns() {
    let _one_at_a_time = SERIAL.lock().await;
    let mut redis = fairio_fleet::testing::Redis::start();
    let on = Arc::new(AtomicBool::new(true));
    let scheds = [scheduler(), scheduler(), scheduler()];
    let mut members = Vec::new();
    for (i, s) in scheds.iter().enumerate() {
        for _ in 0..2 {
            peer(s, None, Arc::clone(&on));
        }
        members.push(fleet(&redis, if i == 2 { 2 } else { 1 }).join(s).unwrap());
    }
    let sched_refs: Vec<&Scheduler> = scheds.iter().collect();
    let member_refs: Vec<&Member> = members.iter().collect();
    sleep(Duration::from_secs(1)).await;
    let (rates, _) = measure(&sched_refs, &member_refs, 1.0).await;
    check_total(&rates, "weights 1, 1, 2");
    near(rates[2], LIMIT as f64 / 2.0, "the weight-2 member");

    redis.kill();
    let killed = Instant::now();
    // Within one TTL (and the interval in which a member notices), every member holds its
    // safe share; meanwhile the limits in force never add up beyond the limit.
    let safe = LIMIT / 3;
    let mut peak = 0;
    while killed.elapsed() < REFRESH + TTL + Duration::from_millis(100) {
        let sum: u64 = members
            .iter()
            .map(|m| m.lease().download.unwrap().limit)
            .sum();
        peak = peak.max(sum);
        sleep(Duration::from_millis(10)).await;
    }
    for m in &members {
        let d = m.lease().download.unwrap();
        assert_eq!((d.mode, d.limit), (Mode::Fallback, safe), "{d:?}");
    }
    let (rates, peak_after) = measure(&sched_refs, &member_refs, 1.0).await;
    check_total(&rates, "Redis gone");
    for r in &rates {
        near(*r, safe as f64, "a member at its safe share");
    }
    println!(
        "limits in force while Redis was gone: at most {} of {LIMIT}",
        peak.max(peak_after)
    );
    assert!(
        peak.max(peak_after) <= LIMIT,
        "limits in force added up to {peak}"
    );

    // Redis back, empty: fair leases again within two intervals.
    redis.restart();
    sleep(2 * REFRESH + Duration::from_millis(50)).await;
    let leases: Vec<u64> = members
        .iter()
        .map(|m| m.lease().download.unwrap().limit)
        .collect();
    println!("leases two intervals after the restart: {leases:?}");
    for (l, want) in leases.iter().zip([LIMIT / 4, LIMIT / 4, LIMIT / 2]) {
        near(*l as f64, want as f64, "a lease after the restart");
    }
    let (rates, peak) = measure(&sched_refs, &member_refs, 1.0).await;
    check_total(&rates, "Redis back");
    assert!(peak <= LIMIT + 3, "limits in force added up to {peak}");
}
