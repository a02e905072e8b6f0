//! Cluster tests: workers on the local 3-node RabbitMQ cluster (`scripts/cluster`, nodes on
//! 127.0.0.1:5701-5703) with quorum queues, while the node a worker is connected to stops,
//! the node leading the input queue stops, every node restarts in turn, a worker's
//! connection is cut, and a node holding dead letters and parked deliveries stops; and
//! workers with `amqp.management_url` connect to the input queue's leader, before and after
//! it moves.
//!
//! Every scenario publishes its events first, checks by event id that each one reached each
//! matching webhook at least once (or sits in the dead-letter queue), and that the
//! duplicates stay within the prefetch of each worker for each fault. Scenarios run one at a
//! time (they stop nodes), each with its own exchange and queues, deleted at the end. They
//! never touch the default broker on 5672.
//!
//! The cluster is started by the first scenario (`scripts/cluster up`, a no-op when it is
//! up). Without `rabbitmq-server` installed, scenarios are skipped with a message, unless
//! `CLUSTER_REQUIRE` is set (`.ci/run` sets it), which makes them fail instead.

// Shared with tests/it and tests/chaos: not every helper is used here.
#[path = "../support/bulk.rs"]
mod bulk;
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;
#[path = "../support/tools.rs"]
mod tools;

mod common;

mod connection;
mod leader;
mod node_loss;
mod parked;
