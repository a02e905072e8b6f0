//! Helpers shared by the test binaries (`tests/it`, `tests/chaos`, `tests/cluster`): the
//! harness (one test's exchange, queues, listeners and config), the real binary as a child
//! process, the local Logz.io listener, and a TCP proxy that can cut connections. More
//! files here are included by `#[path]` only where they are used: `endpoint.rs` (a
//! programmable HTTPS endpoint, `tests/it`), and `bulk.rs` (backlogs published with
//! confirms) and `tools.rs` (running `rabbitmqctl` or `scripts/cluster`) for `tests/chaos`
//! and `tests/cluster`.

pub mod child;
pub mod harness;
pub mod logzio;
pub mod proxy;
