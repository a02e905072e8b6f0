//! The phases: which run in what order, and one phase run and tidied up after.

mod bare;
mod cluster;
mod drain;
mod latency;

use crate::Bench;
use crate::broker::cleanup;
use crate::report::{Drain, Latency, Skipped};
use drain::DrainSpec;

/// The `amqp.memory_budget` of the big phase's second drain: so large that the prefetch
/// alone bounds what is in flight, as before the budget existed.
const HUGE_BUDGET: u64 = 4_000_000_000;

/// What a phase produced.
pub enum Measured {
    Drain(Drain),
    /// The cluster phase's drains, each with its own bare rate.
    Drains(Vec<Drain>),
    Latency(Latency),
    Skipped(Skipped),
}

impl From<Result<Drain, Skipped>> for Measured {
    fn from(result: Result<Drain, Skipped>) -> Self {
        result.map_or_else(Measured::Skipped, Measured::Drain)
    }
}

impl From<Result<Latency, Skipped>> for Measured {
    fn from(result: Result<Latency, Skipped>) -> Self {
        result.map_or_else(Measured::Skipped, Measured::Latency)
    }
}

impl Bench {
    /// The phases to run, in order, with their backlog (0 for the latency phases).
    pub fn plan(&self) -> Vec<(String, u64)> {
        let n = self.args.events;
        let mut phases: Vec<(String, u64)> = Vec::new();
        for phase in &self.args.phases {
            if phase == "latency" {
                // The broker's own share first, then the worker, then batching if it exists.
                phases.push(("latency-bare".into(), 0));
                phases.push(("latency".into(), 0));
                if self.args.phases.iter().any(|p| p == "batched") {
                    phases.push(("latency-batched".into(), 0));
                }
            } else if phase == "big" {
                // The default budget, then one so large that only the prefetch bounds it.
                phases.push(("big".into(), self.args.big_events));
                phases.push(("big-huge".into(), self.args.big_events));
            } else {
                phases.push((phase.clone(), n));
            }
        }
        if self.args.rss_200k {
            // Before the latency phases, so the table's drains come first.
            let at = phases
                .iter()
                .position(|(p, _)| p.starts_with("latency"))
                .unwrap_or(phases.len());
            phases.insert(at, ("single".into(), 200_000));
        }
        phases
    }

    /// Runs one phase, then deletes its queues and exchange, so that the broker has nothing
    /// of it left to tidy while the next one is measured.
    pub async fn phase(&mut self, phase: &str, events: u64) -> Result<Measured, String> {
        let result = match phase {
            "bare" => self.bare(events).await.map(Measured::Drain),
            "single" | "batched" => {
                let spec = self.small_drain(phase, events);
                self.worker_drain(&spec).await.map(Measured::from)
            }
            "big" | "big-huge" => {
                let spec = big_drain(phase == "big-huge", events);
                self.worker_drain(&spec).await.map(Measured::from)
            }
            "cluster" => self.cluster().await.map(|r| match r {
                Ok(drains) => Measured::Drains(drains),
                Err(skipped) => Measured::Skipped(skipped),
            }),
            "latency-bare" => self.latency_bare().await.map(Measured::Latency),
            "latency" => self.latency(false).await.map(Measured::from),
            "latency-batched" => self.latency(true).await.map(Measured::from),
            other => Err(format!("unknown phase {other}")),
        };
        if let Err(e) = cleanup(&self.args.amqp_url, &self.topologies).await {
            eprintln!("cleanup after {phase}: {e}");
        }
        result
    }

    /// The single or batched drain of `events` sample events, labelled with its size when it
    /// is not the `--events` backlog.
    fn small_drain(&self, phase: &str, events: u64) -> DrainSpec {
        let batched = phase == "batched";
        let name = if batched { "batched" } else { "single" };
        DrainSpec {
            name,
            label: if events == self.args.events {
                name.to_string()
            } else {
                format!("{name} ({}k)", events / 1000)
            },
            events,
            batched,
            big: false,
            memory_budget: None,
        }
    }
}

/// The big drain of `events` events of ~450 kB, with the shipped budget or [`HUGE_BUDGET`].
fn big_drain(huge: bool, events: u64) -> DrainSpec {
    DrainSpec {
        name: if huge { "big-huge" } else { "big" },
        label: if huge {
            "big, budget 4 GB".into()
        } else {
            "big".into()
        },
        events,
        batched: false,
        big: true,
        memory_budget: huge.then_some(HUGE_BUDGET),
    }
}
