//! Micro-benchmark of the per-event CPU path without I/O: decode the published bytes, match
//! the webhooks, render the body, with the shipped config (`config/relay.toml` and the seed's
//! Logz.io webhook `config/webhooks/logzio.toml`) and the built-in sample events.
//!
//! `cargo bench --bench render`. The throughput benchmark (`benches/throughput/`) measures
//! the whole worker; this one guards the part of it that is pure computation, so a change that
//! makes it slower shows up here first.

// `criterion_group!` and `criterion_main!` generate public functions without docs.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use webhook_relay::config::{self, Config, Env};
use webhook_relay::model::event::{self, Trigger};
use webhook_relay::model::template::RenderInput;
use webhook_relay::pipeline::rules;

/// The shipped config folder, loaded as `run` would load it.
fn shipped_config() -> Config {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let env = Env::from_pairs([("LOGZIO_TOKEN", "bench-token")]);
    config::load(&dir, &env).unwrap_or_else(|e| panic!("the shipped config does not load:\n{e}"))
}

/// One published body per trigger, as the broker would hand them over.
fn bodies() -> Vec<Vec<u8>> {
    Trigger::ALL
        .into_iter()
        .map(|trigger| event::sample(trigger).to_string().into_bytes())
        .collect()
}

/// The whole per-event path as the worker runs it: the bytes of one event in, one rendered
/// body per matching webhook out (the event's JSON moved into one [`RenderInput`] that every
/// matching webhook's template reads).
fn decode_match_render(config: &Config, body: &[u8]) -> usize {
    let mut event = event::decode(body, None).expect("sample decodes");
    let hooks = rules::matching(&config.webhooks, &event);
    let raw = std::mem::replace(&mut event.raw, Arc::new(serde_json::Value::Null));
    let input = RenderInput::new(Arc::unwrap_or_clone(raw));
    let mut bytes = 0;
    for webhook in &hooks {
        bytes += webhook
            .template
            .render_input(&input)
            .expect("renders")
            .len();
    }
    bytes
}

fn per_event(c: &mut Criterion) {
    let config = shipped_config();
    assert_eq!(
        config.webhooks.len(),
        1,
        "the shipped config has one webhook"
    );
    let bodies = bodies();
    let approved = event::sample(Trigger::RequestApproved)
        .to_string()
        .into_bytes();
    let decoded = event::decode(&approved, None).expect("sample decodes");
    let webhook = config.webhooks[0].clone();

    let mut group = c.benchmark_group("per_event");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("decode_match_render", "seed"), |b| {
        let mut n = 0usize;
        b.iter(|| {
            n = (n + 1) % bodies.len();
            black_box(decode_match_render(&config, black_box(&bodies[n])))
        })
    });
    group.bench_function(BenchmarkId::new("decode", "sample"), |b| {
        b.iter(|| black_box(event::decode(black_box(&approved), None).expect("decodes")))
    });
    group.bench_function(BenchmarkId::new("match", "seed"), |b| {
        b.iter(|| black_box(rules::matching(&config.webhooks, black_box(&decoded))))
    });
    group.bench_function(BenchmarkId::new("render", "seed"), |b| {
        b.iter(|| {
            black_box(
                webhook
                    .template
                    .render(black_box(&decoded.raw))
                    .expect("renders"),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = per_event
}
criterion_main!(benches);
