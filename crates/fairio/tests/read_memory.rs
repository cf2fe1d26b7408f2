//! Small reads under a download limit cost memory in proportion to their payload: 100-byte
//! messages that nobody reads used to hold a whole 64 KiB read buffer each (645 MB of heap for
//! 1 MiB queued). The heap is measured with a counting allocator, so this file is a test
//! binary of its own, with one test. Paused clock.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use fairio::{Config, Scheduler};
use tokio::io::AsyncWriteExt;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the counter only records
// the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as `GlobalAlloc::realloc` requires, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The peer sends 100-byte messages 1 ms apart and nobody reads, until `payload` bytes are
/// queued: the heap may grow by at most twice that, plus one read buffer and some change.
async fn small_messages_nobody_reads(queue: Option<usize>, payload: u64) {
    let sched = Scheduler::new(
        Config::new(64 * 1024)
            .max_download_speed(Some(1 << 30))
            .read_queue_size(queue),
    )
    .unwrap();
    let (ours, mut peer) = tokio::io::duplex(64 * 1024);
    let conn = sched.register(ours).unwrap();
    let writer = tokio::spawn(async move {
        let msg = [7u8; 100];
        loop {
            if peer.write_all(&msg).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let base = LIVE.load(Ordering::Relaxed);
    let base_recv = conn.stat().total_recv;
    // Bounded: 100 bytes a millisecond (a little less, with the writes) reach `payload`
    // within about payload / 100 ms.
    for _ in 0..(payload / 25 + 1000) {
        if conn.stat().total_recv - base_recv >= payload {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let queued = conn.stat().total_recv - base_recv;
    assert!(queued >= payload, "only {queued} bytes queued");
    let grown = LIVE.load(Ordering::Relaxed) - base;
    let allowed = 2 * queued as isize + 256 * 1024;
    assert!(
        grown <= allowed,
        "{queued} bytes queued grew the heap by {grown} bytes (allowed {allowed})"
    );
    writer.abort();
    sched.shutdown(Some(Duration::ZERO)).await;
}

#[tokio::test(start_paused = true)]
async fn small_reads_cost_their_payload() {
    // Up to a chunk short of the bound: the queue takes no chunk beyond it.
    small_messages_nobody_reads(Some(1 << 20), (1 << 20) - 4096).await;
    // Unbounded, the pump queues at most two read buffers ahead of a reader (128 KiB).
    small_messages_nobody_reads(None, (1 << 17) - 4096).await;
}
