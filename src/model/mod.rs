//! The models the rest is written in terms of: the access-request event (triggers, identity,
//! decoding, typed views, schema, samples) and the compiled body template. Pure: no I/O, no
//! config. The config compiles templates and parses triggers when it loads, and the pipeline
//! stages use both; so this layer sits below the config.

pub mod event;
pub mod template;
