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

/// The limits in force, one per member.
fn limits(members: &[&Member]) -> Vec<u64> {
    members
        .iter()
        .map(|m| m.lease().download.map_or(0, |d| d.limit))
        .collect()
}

/// Samples the members' limits every 20 ms until `done` holds of them (the protocol has
/// reached the state) or `within` has passed; at every sample, the limits in force add up to
/// at most the fleet limit (the protocol's safety, which no round can break however late it
/// comes). Returns the limits that satisfied `done`.
///
/// The test waits on the state, not on a number of seconds: a late round on a loaded machine
/// delays it, and only a state never reached fails.
async fn until(
    members: &[&Member],
    what: &str,
    within: Duration,
    done: impl Fn(&[u64]) -> bool,
) -> Vec<u64> {
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < within {
        let l = limits(members);
        let sum: u64 = l.iter().sum();
        assert!(
            sum <= LIMIT + members.len() as u64,
            "{what}: the limits in force {l:?} add up to {sum}, above {LIMIT}"
        );
        if done(&l) {
            println!("{what}: {l:?} after {:.2} s", start.elapsed().as_secs_f64());
            return l;
        }
        last = l;
        sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not reached within {within:?}; the limits were {last:?}");
}

/// Whether `got` is within 5% of `want`.
fn close(got: u64, want: f64) -> bool {
    (got as f64 / want - 1.0).abs() <= 0.05
}

/// How long a state may take: ten times the rounds it needs on an idle machine.
const PATIENCE: Duration = Duration::from_secs(30);

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
    let members = [&m_busy, &m_light, &m_idle];
    let scheds = [&busy, &light, &idle];
    let received = || {
        scheds
            .iter()
            .map(|s| s.global_stat().total_recv)
            .sum::<u64>()
    };

    // The light member's lease comes down to what it uses (a tenth, and 5% more: its peak of
    // ten intervals), the busy one's is the rest; the idle one keeps only the floor, and the
    // whole limit is leased.
    let light_share = LIMIT as f64 / 10.0;
    let light_ok = |l: u64| l as f64 >= 0.95 * light_share && (l as f64) < 2.0 * light_share;
    until(&members, "idle asleep", PATIENCE, |l| {
        light_ok(l[1]) && close(l[0] + l[1], LIMIT as f64) && l[2] < LIMIT / 20
    })
    .await;
    // From here the leases have settled: what the peers receive is counted against the limit
    // (before, the schedulers ran unlimited until their members joined).
    let (settled, base) = (Instant::now(), received());

    // The idle member wakes: it and the busy one split what the light one leaves.
    wake.store(true, Ordering::Relaxed);
    let woke = Instant::now();
    let l = until(&members, "all three busy", PATIENCE, |l| {
        let rest = (LIMIT - l[1]) as f64 / 2.0;
        light_ok(l[1])
            && close(l[0], rest)
            && close(l[2], rest)
            && close(l.iter().sum(), LIMIT as f64)
    })
    .await;
    println!(
        "the woken member had its part {:.2} s after the wake ({} intervals of {REFRESH:?})",
        woke.elapsed().as_secs_f64(),
        (woke.elapsed().as_secs_f64() / REFRESH.as_secs_f64()).ceil()
    );
    assert!(l[2] > LIMIT / 4);

    // The woken member dies (no goodbye): once its entry lapses, the busy one takes what the
    // light one leaves.
    drop(m_idle);
    idle.set_max_download_speed(Some(1));
    let members = [&m_busy, &m_light];
    until(&members, "one gone", PATIENCE, |l| {
        light_ok(l[1]) && close(l[0] + l[1], LIMIT as f64)
    })
    .await;

    // What the peers received since the leases settled is within the fleet limit: the limit
    // over the time, and half a second's worth for the members' bursts.
    let secs = settled.elapsed().as_secs_f64();
    let got = (received() - base) as f64;
    println!(
        "received {got:.0} B in {secs:.2} s: {:.4} of the limit",
        got / secs / LIMIT as f64
    );
    assert!(got <= LIMIT as f64 * (secs + 0.5), "{got} B in {secs:.2} s");
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
    let refs: Vec<&Member> = members.iter().collect();
    let by_weight = |l: &[u64]| {
        close(l[0], LIMIT as f64 / 4.0)
            && close(l[1], LIMIT as f64 / 4.0)
            && close(l[2], LIMIT as f64 / 2.0)
    };
    until(&refs, "weights 1, 1, 2", PATIENCE, by_weight).await;

    // Redis goes: every member holds its safe share (a third: the members it last saw), and
    // the limits in force never add up beyond the limit meanwhile (`until` checks each sample).
    redis.kill();
    let safe = LIMIT / 3;
    until(&refs, "Redis gone", PATIENCE, |_| {
        members.iter().all(|m| {
            let d = m.lease().download.unwrap();
            (d.mode, d.limit) == (Mode::Fallback, safe)
        })
    })
    .await;

    // Redis back, empty: fair leases again.
    redis.restart();
    until(&refs, "Redis back", PATIENCE, |l| {
        by_weight(l)
            && members
                .iter()
                .all(|m| m.lease().download.unwrap().mode != Mode::Fallback)
    })
    .await;
}

/// A TCP relay to `port` whose connections take `first` to give their first answer and
/// `delay` for every later one: setting up a connection costs more than a request on one that
/// is up, as it does for a busy process (a handshake, the script to load, tasks that wait for
/// a core).
async fn slow_relay(port: u16, first: Duration, delay: Duration) -> u16 {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// Copies `from` to `to`, each chunk `delay` after it was read, the first `first` after.
    async fn delayed(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        first: Duration,
        delay: Duration,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut wait = first;
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0 || tx.send((Instant::now() + wait, buf[..n].to_vec())).is_err() {
                    break;
                }
                wait = delay;
            }
        });
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            // Redis may be down (the test kills it): the client's connection just ends.
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(delayed(cr, sw, Duration::ZERO, Duration::ZERO));
            tokio::spawn(delayed(sr, cw, first, delay));
        }
    });
    relay
}

/// A connection to Redis gives its first answer after 150 ms and later ones after 20 ms: a
/// report's 100 ms timeout holds for a request on a connection that is up, not for setting one
/// up. The member leases, falls back when Redis goes, and leases again when it comes back
/// empty. (With the report's timeout on the setup, and a new connection after every failed
/// report, it never leased at all: the soak's proxy at 10,000 clients stayed on its safe share
/// after Redis restarted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_still_leases_and_leases_again_after_a_restart() {
    let _one_at_a_time = SERIAL.lock().await;
    let mut redis = fairio_fleet::testing::Redis::start();
    let relay = slow_relay(
        redis.port,
        Duration::from_millis(150),
        Duration::from_millis(20),
    )
    .await;
    let on = Arc::new(AtomicBool::new(true));
    let sched = scheduler();
    peer(&sched, None, Arc::clone(&on));
    let member = Fleet::new(format!("redis://127.0.0.1:{relay}/0"), "slow")
        .download(Some(LIMIT))
        .refresh(REFRESH)
        .ttl(TTL)
        .expected_members(2)
        .join(&sched)
        .unwrap();
    let mode = || member.lease().download.unwrap().mode;
    until(&[&member], "leased through a slow Redis", PATIENCE, |_| {
        mode() == Mode::Leased
    })
    .await;
    redis.kill();
    until(&[&member], "Redis gone", PATIENCE, |_| {
        mode() == Mode::Fallback
    })
    .await;
    redis.restart();
    until(&[&member], "Redis back", PATIENCE, |_| {
        mode() == Mode::Leased
    })
    .await;
}

/// A TCP relay to Redis that the test steers: it counts the connections it accepted, delays
/// the next `slow` answers by 150 ms each, and after `cut` swallows for ever what Redis sends
/// on the connections it had then (a dropped route: no answer, no error, no end), while new
/// connections go through.
#[derive(Default)]
struct Relay {
    accepted: std::sync::atomic::AtomicUsize,
    slow: std::sync::atomic::AtomicUsize,
    /// The answers delivered late, so far.
    delayed: std::sync::atomic::AtomicUsize,
    cuts: std::sync::atomic::AtomicUsize,
}

impl Relay {
    async fn start(port: u16) -> (Arc<Self>, u16) {
        use tokio::io::AsyncReadExt;
        use tokio::net::{TcpListener, TcpStream};

        let relay = Arc::new(Self::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap().port();
        let me = Arc::clone(&relay);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                me.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await else {
                    continue;
                };
                let born = me.cuts.load(Ordering::SeqCst);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let me = Arc::clone(&me);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = sr.read(&mut buf).await {
                        if me.cuts.load(Ordering::SeqCst) != born {
                            continue;
                        }
                        let slow = me
                            .slow
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| s.checked_sub(1))
                            .is_ok();
                        if slow {
                            sleep(Duration::from_millis(150)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        if slow {
                            me.delayed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        (relay, at)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reports that come late (over the 100 ms timeout) fall back to the safe share but keep the
/// connection: once answers are quick again the member leases on it, with no new connection.
/// A connection that never answers again (a dropped route) is given up once its reports have
/// all been late for a TTL, and the member leases through a new one. (Before, it kept that
/// connection for ever and stayed on its safe share.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answers_keep_the_connection_and_a_dead_route_is_given_up() {
    let _one_at_a_time = SERIAL.lock().await;
    let redis = fairio_fleet::testing::Redis::start();
    let (relay, port) = Relay::start(redis.port).await;
    let on = Arc::new(AtomicBool::new(true));
    let sched = scheduler();
    peer(&sched, None, Arc::clone(&on));
    // A long TTL, so that two late rounds are far from giving the connection up even on a
    // loaded machine.
    let member = Fleet::new(format!("redis://127.0.0.1:{port}/0"), "late")
        .download(Some(LIMIT))
        .refresh(REFRESH)
        .ttl(Duration::from_secs(3))
        .expected_members(2)
        .join(&sched)
        .unwrap();
    let mode = || member.lease().download.unwrap().mode;
    until(&[&member], "leased", PATIENCE, |_| mode() == Mode::Leased).await;
    assert_eq!(relay.accepted(), 1);

    // Two answers 150 ms late: both reports time out (the member falls back for a round or
    // two, too short a time to be sure to see it: the relay counts them instead).
    relay.slow.store(2, Ordering::SeqCst);
    until(&[&member], "two late answers", PATIENCE, |_| {
        relay.delayed.load(Ordering::SeqCst) == 2
    })
    .await;
    until(&[&member], "quick answers again", PATIENCE, |_| {
        mode() == Mode::Leased
    })
    .await;
    assert_eq!(
        relay.accepted(),
        1,
        "a late answer dropped a connection that was up"
    );

    relay.cuts.fetch_add(1, Ordering::SeqCst);
    until(&[&member], "the route dropped", PATIENCE, |_| {
        mode() == Mode::Fallback
    })
    .await;
    until(&[&member], "leased on a new connection", PATIENCE, |_| {
        mode() == Mode::Leased
    })
    .await;
    assert_eq!(relay.accepted(), 2);
}
