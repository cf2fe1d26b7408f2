//! [`Node`]: one class of the tree (a group of any depth) or one connection (a leaf).

use std::num::NonZeroU64;

use super::pace::Pace;
use super::queues::Queues;
use crate::slab::Key;
use crate::tuning::{GRANT_HORIZON_NANOS, floor};

/// Virtual time is bytes over weight, scaled so that weights up to `u32::MAX` keep precision.
const VSCALE: u64 = 1 << 32;

/// Guaranteed virtual time is bytes over the guarantee (bytes per second), scaled so that
/// guarantees up to terabytes per second keep precision.
const GSCALE: u64 = 1 << 56;

/// `bytes × scale / over`, in the 128-bit virtual times.
fn virtual_bytes(bytes: u64, scale: u64, over: u64) -> u128 {
    match bytes.checked_mul(scale) {
        Some(p) => u128::from(p / over),
        None => u128::from(bytes) * u128::from(scale) / u128::from(over),
    }
}

/// A group's two virtual clocks: where a child back from idle starts, beyond its guarantee and
/// within it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Clocks {
    /// The start of the last turn given beyond the guarantees (virtual time).
    pub(crate) shared: u128,
    /// The start of the last turn given on a guarantee (guaranteed virtual time).
    pub(crate) guaranteed: u128,
}

/// What a node is.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A connection, with the bytes it could move now; and how many levels its last grant was
    /// charged at (`depth`, from the leaf up) and at which of them to a guarantee (bit `i` of
    /// `path`: the `i`th node from the leaf up), so that bytes it gives back go where they
    /// were charged.
    Leaf { demand: u64, path: u64, depth: u32 },
    /// A group.
    Group {
        children: Vec<Key>,
        /// The children with bytes to move, in the walk's orders.
        queues: Queues,
        /// How many children have bytes to move below them.
        active: usize,
        /// The sum of those children's weights: a grant's size is shared by weight at each
        /// level, so that it is a horizon's worth of the node's share.
        weights: u64,
        /// Where a child back from idle starts, so it neither catches up nor falls behind.
        clocks: Clocks,
        /// Removed by its owner: it goes with its last child, and takes no new one.
        orphaned: bool,
    },
}

#[derive(Debug)]
pub(crate) struct Node<P> {
    pub(crate) parent: Option<Key>,
    /// Where this node sits in its parent's children.
    pub(crate) slot: usize,
    pub(crate) params: P,
    pub(crate) weight: u32,
    pub(crate) guarantee: Option<Pace>,
    pub(crate) ceiling: Option<Pace>,
    /// Bytes moved beyond the guarantee, over the weight, scaled by [`VSCALE`].
    pub(crate) vtime: u128,
    /// Bytes moved on the guarantee, over it, scaled by [`GSCALE`]: among siblings owed
    /// guaranteed bytes, the smallest goes first, so guarantees that do not fit in their
    /// parent's allowance are met in proportion.
    pub(crate) gtime: u128,
    /// The bytes of its last grant beyond the guarantee.
    pub(crate) last: u64,
    /// Queued at its group's clock although ahead of it (back from idle): its next turn
    /// beyond its guarantee does not move the group's clock, which the others' turns keep.
    pub(crate) jumped: bool,
    /// When it last lost its bytes to move (nanoseconds on the clock).
    pub(crate) idle_since: u64,
    /// Moves on whenever the node's entries in its parent's queues go stale.
    pub(crate) ticket: u64,
    pub(crate) kind: Kind,
}

impl<P> Node<P> {
    pub(crate) fn new(parent: Option<Key>, params: P, weight: u32, kind: Kind) -> Self {
        Self {
            parent,
            slot: 0,
            params,
            weight: weight.max(1),
            guarantee: None,
            ceiling: None,
            vtime: 0,
            gtime: 0,
            last: 0,
            jumped: false,
            idle_since: 0,
            ticket: 0,
            kind,
        }
    }

    /// Whether it has bytes to move, itself or below it.
    pub(crate) fn active(&self) -> bool {
        match &self.kind {
            Kind::Leaf { demand, .. } => *demand > 0,
            Kind::Group { active, .. } => *active > 0,
        }
    }

    pub(crate) fn guarantee_rate(&self) -> Option<NonZeroU64> {
        self.guarantee.map(|p| p.rate())
    }

    pub(crate) fn ceiling_rate(&self) -> Option<NonZeroU64> {
        self.ceiling.map(|p| p.rate())
    }

    /// Where this node starts among its siblings owed guaranteed bytes, and among the others.
    pub(crate) fn starts(&self, clocks: Clocks) -> Clocks {
        Clocks {
            shared: self.vtime.max(clocks.shared),
            guaranteed: self.gtime.max(clocks.guaranteed),
        }
    }

    /// Whether its virtual time is ahead of its group's clock by no more than its last grant
    /// took: a node that went idle right after a grant the round had not caught up with.
    pub(crate) fn ahead_by_its_last(&self, clocks: Clocks) -> bool {
        let last = virtual_bytes(self.last, VSCALE, u64::from(self.weight));
        self.vtime <= clocks.shared.saturating_add(last)
    }

    /// The node has bytes to move again: if it rested longer than its ceiling's tolerance, the
    /// ceiling forgets what it could have let through meanwhile beyond a tolerance's worth. A
    /// pause shorter than that (a connection whose grant took all it asked for, and asks again)
    /// keeps the lateness the ceiling held.
    pub(crate) fn wake(&mut self, now: u64) {
        if let Some(c) = self.ceiling.as_mut() {
            let keep = tolerance(c.rate());
            if now.saturating_sub(self.idle_since) > keep {
                c.rest(now, keep);
            }
        }
    }

    /// Charges a grant of `bytes` at `now` that went through this node; `clocks` are its
    /// parent's.
    pub(crate) fn charge(&mut self, bytes: u64, guaranteed: bool, clocks: &mut Clocks, now: u64) {
        if let Some(c) = self.ceiling.as_mut() {
            c.charge(bytes, now);
        }
        let start = self.starts(*clocks);
        match self.guarantee.as_mut().filter(|_| guaranteed) {
            Some(g) => {
                let rate = g.rate().get();
                g.charge(bytes, now);
                clocks.guaranteed = start.guaranteed;
                self.gtime = start.guaranteed + virtual_bytes(bytes, GSCALE, rate);
            }
            None => {
                // A turn taken ahead of its virtual time (`jumped`) moves the clock no further
                // than it was: the clock floors where the next node back from idle starts,
                // which would otherwise start behind those queued before it, and lose.
                // (Taken here only: a turn on its guarantee first leaves the jump to the turn
                // beyond it that it was for.)
                if !std::mem::take(&mut self.jumped) {
                    clocks.shared = start.shared;
                }
                self.last = bytes;
                self.vtime = start.shared + virtual_bytes(bytes, VSCALE, u64::from(self.weight));
            }
        }
    }

    /// Gives back `bytes` of a grant through this node, to its guarantee if it was charged
    /// there (`guaranteed`), else to its virtual time.
    pub(crate) fn refund(&mut self, bytes: u64, guaranteed: bool, now: u64) {
        if let Some(c) = self.ceiling.as_mut() {
            c.refund(bytes, now);
        }
        if let Some(g) = self.guarantee.as_mut().filter(|_| guaranteed) {
            let rate = g.rate().get();
            g.refund(bytes, now);
            self.gtime = self
                .gtime
                .saturating_sub(virtual_bytes(bytes, GSCALE, rate));
        } else {
            let v = virtual_bytes(bytes, VSCALE, u64::from(self.weight));
            self.vtime = self.vtime.saturating_sub(v);
            // What it gave back does not count in how far ahead of the clock it may jump.
            self.last = self.last.saturating_sub(bytes);
        }
    }
}

/// How much time a ceiling keeps of what it could have let through while its node has bytes
/// to move and the scheduler asks late (a busy machine runs the timer late): ten grant
/// horizons. Asked 20 ms late, a ceiling that kept only its 5 ms tolerance let through 40% of
/// its rate. Kept longer, it would store up a burst while its node is held below its ceiling
/// by its siblings, and let it through above the ceiling once they stop. A node back from
/// idle keeps only its tolerance ([`Node::wake`]).
const CEILING_KEPT_WHILE_BUSY: u64 = 10 * GRANT_HORIZON_NANOS;

/// What a guarantee keeps owed: two grant horizons (10 ms), after idle too. Kept longer, a
/// guarantee held below its rate while guarantees did not fit (met in proportion) stays owed
/// for seconds once they do, and its node takes more than its share (an oracle case: 6%).
const GUARANTEE_KEPT: u64 = 2 * GRANT_HORIZON_NANOS;

/// A ceiling's pace: it may run one grant horizon (5 ms) ahead, and at least its floor.
pub(crate) fn ceiling_pace(rate: NonZeroU64, now: u64) -> Pace {
    Pace::new(rate, tolerance(rate), now).keeping(CEILING_KEPT_WHILE_BUSY)
}

/// A guarantee's pace: owed bytes while its arrival time is not ahead of now.
pub(crate) fn guarantee_pace(rate: NonZeroU64, now: u64) -> Pace {
    Pace::new(rate, 0, now).keeping(GUARANTEE_KEPT)
}

/// A ceiling's tolerance: one grant horizon, and at least the time of its floor.
pub(crate) fn tolerance(rate: NonZeroU64) -> u64 {
    let floor_nanos = u128::from(floor(rate)) * 1_000_000_000 / u128::from(rate.get());
    GRANT_HORIZON_NANOS.max(u64::try_from(floor_nanos).unwrap_or(u64::MAX))
}
