//! Failure ("chaos") tests: the real worker, in-process or as the real binary, against the
//! real RabbitMQ and real HTTPS listeners on 127.0.0.1, while endpoints hang or flap, workers
//! are SIGKILLed, the broker closes every connection or restarts, and the input is garbage.
//!
//! Every scenario checks by event id that each published event reached each matching webhook
//! at least once, or sits in the dead-letter queue with the right reason, and prints how many
//! duplicates there were. Scenarios run one at a time (some stop the broker), each with its
//! own exchange and queues, deleted at the end.

#[path = "../support/bulk.rs"]
mod bulk;
#[path = "../support/mod.rs"]
mod support;
#[path = "../support/tools.rs"]
mod tools;

mod common;
mod relay;

mod broker;
mod endpoint;
mod input;
mod process;
