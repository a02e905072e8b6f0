//! Helpers shared by both test binaries (`tests/it` and `tests/chaos`): the harness (one
//! test's exchange, queues, listeners and config), the local Logz.io listener, and a TCP proxy
//! that can cut connections.

pub mod harness;
pub mod logzio;
pub mod proxy;
