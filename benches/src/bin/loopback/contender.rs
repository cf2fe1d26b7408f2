//! The contenders, and the one place where a contender becomes a fairio policy type.

use fairio::{EqualShare, Policy, Weight, Weighted, WindowQuota};

/// What moves the bytes in a run: raw tokio, fairio under one of its policies, or one shared
/// async-speed-limit limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Contender {
    Raw,
    Equal,
    Weighted,
    Window,
    Asl,
    /// Raw tokio with each connection pacing itself to an equal part of the limit (a sleep
    /// after each 64 KiB read or write): no sharing at all, the cheapest way to hold a limit,
    /// to tell what a limit costs the kernel from what fairio adds (overhead rows under a
    /// limit only).
    Paced,
}

impl Contender {
    pub(crate) const ALL: [Self; 5] = [
        Self::Raw,
        Self::Equal,
        Self::Weighted,
        Self::Window,
        Self::Asl,
    ];
    pub(crate) const LIMITERS: [Self; 4] = [Self::Equal, Self::Weighted, Self::Window, Self::Asl];

    /// Its name in the JSON rows and for `--only`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw-tokio",
            Self::Equal => "fairio-equal",
            Self::Weighted => "fairio-weighted",
            Self::Window => "fairio-window",
            Self::Asl => "async-speed-limit",
            Self::Paced => "raw-paced",
        }
    }

    /// Whether it runs a fairio scheduler.
    pub(crate) fn is_fairio(self) -> bool {
        matches!(self, Self::Equal | Self::Weighted | Self::Window)
    }
}

/// Code generic over fairio's policy; [`with_policy`] runs it with the policy a contender names.
/// (A trait, not a closure: a closure cannot be generic over `P`.)
pub(crate) trait WithPolicy {
    type Output;

    /// Runs with `policy`; `params` turns a connection's weight into its parameters under it.
    async fn call<P: Policy>(self, policy: P, params: fn(u32) -> P::Params) -> Self::Output;
}

/// Runs `f` under the policy `c` names. Raw tokio and async-speed-limit build no scheduler:
/// `EqualShare` only fills in the type parameter for them.
pub(crate) async fn with_policy<F: WithPolicy>(c: Contender, f: F) -> F::Output {
    match c {
        Contender::Weighted => {
            f.call(Weighted, |w| Weight::new(w).unwrap_or_default())
                .await
        }
        Contender::Window => f.call(WindowQuota, |_| ()).await,
        Contender::Equal | Contender::Raw | Contender::Asl | Contender::Paced => {
            f.call(EqualShare, |_| ()).await
        }
    }
}
