//! The scenarios, one per module, each run by its `run(&Args)`; `main` lists them in the order
//! `all` runs them.

pub(crate) mod accuracy;
pub(crate) mod fairness;
pub(crate) mod groups;
pub(crate) mod join;
pub(crate) mod overhead;
pub(crate) mod relimit;
pub(crate) mod scale;
pub(crate) mod slow;
pub(crate) mod sparse;
pub(crate) mod stuck;
pub(crate) mod weighted;
