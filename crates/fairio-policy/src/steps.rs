//! A bound on the steps of a test's simulated-time loop: a loop whose clock stops advancing
//! (a bug in the arbiter, or a mutant of it) fails at once instead of spinning for ever.

/// The steps a loop may still take.
pub(crate) struct Steps(u64);

impl Steps {
    /// A loop of at most `max` steps.
    pub(crate) fn new(max: u64) -> Self {
        Self(max)
    }

    /// Takes one step; panics once the bound is spent.
    pub(crate) fn step(&mut self) {
        self.0 = self
            .0
            .checked_sub(1)
            .expect("the loop made no progress within its bound of steps");
    }
}
