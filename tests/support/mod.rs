//! Helpers shared by the test binaries (`tests/it`, `tests/chaos`, `tests/cluster`): the
//! harness (one test's exchange, queues, listeners and config), the real binary as a child
//! process, the local Logz.io listener, and a TCP proxy that can cut connections.

pub mod child;
pub mod harness;
pub mod logzio;
pub mod proxy;
