//! Integration tests: the real worker (in-process through the library, or the real binary)
//! against the real RabbitMQ and real HTTPS listeners on 127.0.0.1. Every test has its own
//! exchange and queues on the shared broker and deletes them at the end.

/// The programmable HTTPS endpoint of the endpoint tests (`tests/it` only, so the chaos
/// binary does not carry it unused).
#[path = "../support/endpoint.rs"]
mod endpoint_server;
#[path = "../support/mod.rs"]
mod support;

mod binary;
mod harness;

mod batch;
mod cli;
mod delivery;
mod deploy;
mod endpoints;
mod hostile;
mod observability;
mod process;
mod recipes;
mod resilience;
mod retry;
mod secrets;
mod templates;
mod terminal;
mod topology;
