//! Test helpers shared by the runtime's integration tests.

pub mod two_memories;
