//! The pipeline stages of one message after it is decoded ([`crate::model::event`]): pick the
//! webhooks it matches, batch and deliver their rendered bodies, and say how each delivery
//! ended. Nothing here knows AMQP: the broker layer feeds the stages and settles what they
//! return.

pub mod batch;
pub mod delivery;
pub mod outcome;
pub mod rules;
