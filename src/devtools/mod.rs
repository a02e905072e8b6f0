//! Development tools: the built-in demo, a local HTTPS listener that answers like Logz.io, and
//! throwaway certificates for loopback HTTPS. Used by `demo`, `fake-logzio` and the tests;
//! the worker itself never needs them.

pub mod demo;
pub mod devcert;
pub mod local_logzio;
