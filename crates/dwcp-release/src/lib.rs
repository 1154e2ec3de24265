//! DWCP release controls.
//!
//! [`split`] decides which version a user sees during a rollout (sticky,
//! monotone in the weight); [`analysis`] decides whether the canary is
//! worse than the stable version, with a sequential test that stays valid
//! however often it is looked at; [`rollout`] turns those into decisions
//! (advance, hold, promote, abort) with the numbers behind each;
//! [`simulate`] replays seeded rollouts against synthetic traffic to
//! measure false aborts and detection times.
//!
//! [`flags`] evaluates feature flags written in flagd's flag-definition
//! format (the JSON that flagd, the OpenFeature flag daemon, serves), with
//! the JSONLogic targeting rules and flagd's custom operators
//! (`fractional`, `sem_ver`, `starts_with`, `ends_with`). It is a pure
//! library: it never reads files and only reads the clock when the caller
//! does not supply the time, so every decision can be replayed in tests.
//! Conformance is checked against flagd's own evaluator scenarios in
//! `tests/flagd_conformance.rs`.

#![warn(missing_docs)]

pub mod analysis;
pub mod experiment;
pub mod flags;
pub mod rollout;
pub mod simulate;
pub mod split;
