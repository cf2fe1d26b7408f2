//! The [`Policy`] and [`Arbiter`] traits, and the [`Decision`] an arbiter makes.

use std::num::NonZeroU64;
use std::time::Instant;

use crate::Key;
use crate::class::ClassError;

/// A bandwidth-sharing policy, chosen at build time as the scheduler's type parameter.
///
/// A policy is a factory: the scheduler asks it for one [`Arbiter`] per direction (upload and
/// download), each holding that direction's state. The hot path calls the arbiter through
/// static dispatch and allocates nothing per grant.
pub trait Policy: Send + Sync + 'static {
    /// Per-connection parameters: `()` for [`EqualShare`](crate::EqualShare), a
    /// [`Weight`](crate::Weight) for [`Weighted`](crate::Weighted).
    type Params: Clone + Send + Sync + Default + 'static;

    /// The per-direction state machine.
    type Arbiter: Arbiter<Params = Self::Params>;

    /// A new arbiter for one direction, with a global `limit` in bytes per second (`None`:
    /// unlimited), starting at `now`.
    fn arbiter(&self, limit: Option<NonZeroU64>, now: Instant) -> Self::Arbiter;
}

/// What an arbiter decides when asked who moves next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The connection `key` may move up to `bytes` bytes now.
    Grant {
        /// Who.
        key: Key,
        /// How many bytes at most; never 0.
        bytes: u64,
    },
    /// Nobody may move before `until`; ask again then (or sooner, after any change).
    Wait {
        /// The earliest time a grant may be possible.
        until: Instant,
    },
    /// No connection wants to move.
    Idle,
}

/// One direction's scheduling state: which waiting connection may move how many bytes next,
/// and when.
///
/// An arbiter never reads a clock: every method that depends on time takes `now`, in the style
/// of quinn-proto, so that tests drive it exhaustively on a virtual clock. `now` must not go
/// backwards; an earlier `now` is treated as the latest one seen.
///
/// The caller (the scheduler) keeps each connection's *demand* up to date: how many bytes it
/// could move right now. It then calls [`next`](Self::next) until it gets a [`Decision::Wait`]
/// or [`Decision::Idle`], moves the granted bytes, and asks again after the wait, or as soon as
/// anything changes (a demand, a limit, a connection joining or leaving).
pub trait Arbiter: Send + 'static {
    /// Per-connection parameters, as [`Policy::Params`].
    type Params;

    /// Adds a connection, idle (no demand), with an optional cap of its own in bytes per second.
    fn insert(&mut self, params: Self::Params, cap: Option<NonZeroU64>, now: Instant) -> Key;

    /// Removes a connection; its share goes to the others. Unknown keys are ignored.
    fn remove(&mut self, key: Key);

    /// Changes a connection's parameters (its weight, say); effective from its next grant.
    fn set_params(&mut self, key: Key, params: Self::Params);

    /// Changes a connection's own cap; effective from its next grant.
    fn set_cap(&mut self, key: Key, cap: Option<NonZeroU64>, now: Instant);

    /// Changes the global limit; effective from the next decision, without a fresh burst.
    fn set_limit(&mut self, limit: Option<NonZeroU64>, now: Instant);

    /// The global limit in force.
    fn limit(&self) -> Option<NonZeroU64>;

    /// Sets how many bytes the connection could move now. A connection with no demand stays in
    /// the round until its next turn (so that one refilling its queue at once keeps its place),
    /// then leaves it and loses any unused turn: it stores up no burst.
    fn set_demand(&mut self, key: Key, bytes: u64, now: Instant);

    /// The connection's demand as the arbiter knows it (lowered by every grant).
    fn demand(&self, key: Key) -> u64;

    /// Decides who moves next. A grant lowers the connection's demand by its size.
    fn next(&mut self, now: Instant) -> Decision;

    /// Returns the part of a grant that was not used (a read that found fewer bytes), so that
    /// the global budget is not lost.
    fn unused(&mut self, key: Key, bytes: u64);

    /// How many connections are registered.
    fn len(&self) -> usize;

    /// Adds a group: connections added into it with [`insert_into`](Self::insert_into) share
    /// one part of the limit, split among the groups by their `params` (a weight under
    /// [`Weighted`](crate::Weighted)), each up to its own `cap`; within the group the part is
    /// split among its connections by theirs. What a connection cannot use goes to the others
    /// of its group first, and what a group cannot use to the other groups. A connection added
    /// with [`insert`](Self::insert) is a group of its own.
    ///
    /// The default keeps the arbiter flat (as [`WindowQuota`](crate::WindowQuota) does): the
    /// group is a name only, its parameters and cap are ignored, and its connections are shared
    /// as if added with `insert`.
    fn insert_group(&mut self, params: Self::Params, cap: Option<NonZeroU64>, now: Instant) -> Key {
        let _ = (params, cap, now);
        Key::FLAT_GROUP
    }

    /// Adds a connection into `group`, idle, with its own parameters and cap. An unknown group
    /// adds it as a group of its own.
    fn insert_into(
        &mut self,
        group: Key,
        params: Self::Params,
        cap: Option<NonZeroU64>,
        now: Instant,
    ) -> Key {
        let _ = group;
        self.insert(params, cap, now)
    }

    /// Removes a group once its last connection has been removed (at once if it has none).
    /// Unknown keys are ignored.
    fn remove_group(&mut self, group: Key) {
        let _ = group;
    }

    /// Changes a group's parameters; effective from its next grant.
    fn set_group_params(&mut self, group: Key, params: Self::Params) {
        let _ = (group, params);
    }

    /// Changes a group's cap; effective from its next grant.
    fn set_group_cap(&mut self, group: Key, cap: Option<NonZeroU64>, now: Instant) {
        let _ = (group, cap, now);
    }

    /// Adds a group inside `parent` (a group made by [`insert_group`](Self::insert_group) or by
    /// this method), with its parameters and its own cap. Its part comes out of its parent's.
    ///
    /// The default suits arbiters of two levels: the group is added beside its parent, as
    /// [`insert_group`](Self::insert_group) would add it. [`Htb`](crate::Htb) nests it.
    fn insert_group_in(
        &mut self,
        parent: Key,
        params: Self::Params,
        cap: Option<NonZeroU64>,
        now: Instant,
    ) -> Key {
        let _ = parent;
        self.insert_group(params, cap, now)
    }

    /// Changes a group's cap, saying why it cannot (a cap below what the group, or its
    /// children, are guaranteed). The default changes it as
    /// [`set_group_cap`](Self::set_group_cap) does, which cannot fail.
    ///
    /// # Errors
    ///
    /// [`ClassError`] from arbiters with guarantees; the cap is then unchanged.
    fn try_set_group_cap(
        &mut self,
        group: Key,
        cap: Option<NonZeroU64>,
        now: Instant,
    ) -> Result<(), ClassError> {
        self.set_group_cap(group, cap, now);
        Ok(())
    }

    /// Moves a connection into another group, keeping its key, its demand and its own cap: a
    /// client whose address a reload puts in another class.
    ///
    /// # Errors
    ///
    /// [`ClassError::Unsupported`] by arbiters that cannot (the default);
    /// [`ClassError::NoSuchNode`] for an unknown connection or group.
    fn move_into(&mut self, key: Key, group: Key, now: Instant) -> Result<(), ClassError> {
        let _ = (key, group, now);
        Err(ClassError::Unsupported)
    }

    /// Changes the rate a group is guaranteed while it has bytes to move (`None`: none).
    ///
    /// # Errors
    ///
    /// [`ClassError::Unsupported`] by arbiters without guarantees (the default);
    /// [`Htb`](crate::Htb) refuses a guarantee that can never fit.
    fn set_group_guarantee(
        &mut self,
        group: Key,
        rate: Option<NonZeroU64>,
        now: Instant,
    ) -> Result<(), ClassError> {
        let _ = (group, rate, now);
        Err(ClassError::Unsupported)
    }

    /// Whether no connection is registered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
