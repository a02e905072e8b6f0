//! The pipeline stages of one message: decode the event, pick the webhooks it matches, render
//! their bodies, batch and deliver them, and say how each delivery ended. Nothing here knows
//! AMQP: the broker layer feeds the stages and settles what they return.

pub mod batch;
pub mod delivery;
pub mod event;
pub mod outcome;
pub mod rules;
pub mod template;
