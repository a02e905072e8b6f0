//! Helpers shared by the integration tests: a TCP proxy that can cut connections, and the
//! local Logz.io listener.

pub mod logzio;
pub mod proxy;
