//! What the phases measured, and the tables printed and written from it.

use crate::args::Args;
use crate::proc::WORKER_BIN;
use std::fmt::Write as _;
use std::time::Duration;

/// What one drain phase measured.
#[derive(Debug, Clone)]
pub struct Drain {
    pub phase: String,
    pub events: u64,
    pub requests: Option<u64>,
    pub seconds: f64,
    /// Worker peak RSS in bytes (not for bare).
    pub peak_rss: Option<u64>,
    /// CPU of the consumer (the worker, or the bench process for bare) during the drain.
    pub cpu: Option<Duration>,
    /// Compared with the bare drains (events of the same kind); not for big events.
    pub versus_bare: bool,
    /// The events/s of its own bare drain, when it has one (the cluster phase's).
    pub bare_rate: Option<f64>,
    pub notes: Vec<String>,
}

impl Drain {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// What the latency phase measured.
#[derive(Debug, Clone)]
pub struct Latency {
    pub phase: String,
    pub rate: u64,
    pub measured: usize,
    pub missing: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    pub achieved_rate: f64,
    pub peak_rss: Option<u64>,
    pub cpu: Option<Duration>,
    pub notes: Vec<String>,
}

/// A phase that did not produce a number.
#[derive(Debug)]
pub struct Skipped {
    pub phase: String,
    pub why: String,
}

pub fn print_machine(args: &Args) {
    eprintln!("webhook-relay throughput benchmark");
    eprintln!("  worker   {WORKER_BIN}");
    eprintln!(
        "  broker   {}",
        webhook_relay::redact::redact_url(&args.amqp_url)
    );
    eprintln!(
        "  backlog  {} events per phase{}",
        args.events,
        if args.rss_200k {
            ", and 200,000 for the RSS check"
        } else {
            ""
        }
    );
    if args.phases.iter().any(|p| p == "big") {
        eprintln!(
            "  big      {} events of ~450 kB, with the shipped memory budget and with 4 GB",
            args.big_events
        );
    }
    eprintln!("  phases   {}", args.phases.join(", "));
}

fn bare_rate(drains: &[Drain]) -> Option<f64> {
    let bare: Vec<f64> = drains
        .iter()
        .filter(|d| d.phase == "bare")
        .map(Drain::rate)
        .collect();
    (!bare.is_empty()).then(|| bare.iter().sum::<f64>() / bare.len() as f64)
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn cpu_per_1k(cpu: Option<Duration>, events: u64) -> String {
    cpu.map_or("-".into(), |c| {
        format!("{:.0}", c.as_secs_f64() * 1000.0 * 1000.0 / events as f64)
    })
}

fn rows(drains: &[Drain]) -> Vec<[String; 8]> {
    let bare = bare_rate(drains);
    drains
        .iter()
        .map(|d| {
            [
                d.phase.clone(),
                d.events.to_string(),
                d.requests.map_or("-".into(), |r| r.to_string()),
                format!("{:.2}", d.seconds),
                format!("{:.0}", d.rate()),
                d.bare_rate
                    .or(bare.filter(|_| d.versus_bare))
                    .map_or("-".into(), |b| format!("{:.2}x", d.rate() / b)),
                d.peak_rss.map_or("-".into(), mb),
                cpu_per_1k(d.cpu, d.events),
            ]
        })
        .collect()
}

const HEADERS: [&str; 8] = [
    "phase",
    "events",
    "requests",
    "seconds",
    "events/s",
    "x bare",
    "peak RSS MB",
    "CPU ms/1k ev",
];

pub fn report(args: &Args, drains: &[Drain], latencies: &[Latency], skipped: &[Skipped]) -> String {
    let mut out = String::from("\nResults\n");
    let rows = rows(drains);
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(s, "{cell:<w$}  ", w = widths[i]);
            } else {
                let _ = write!(s, "{cell:>w$}  ", w = widths[i]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&HEADERS.map(String::from)));
    for row in &rows {
        out.push_str(&line(row));
    }
    for d in drains {
        for note in &d.notes {
            let _ = writeln!(out, "  {}: {note}", d.phase);
        }
    }
    for s in skipped {
        let _ = writeln!(out, "{}: {}", s.phase, s.why);
    }
    for l in latencies {
        let _ = writeln!(
            out,
            "\nLatency, publish to received, {} at {} events/s offered ({:.0} achieved), after a 1s warm-up: \
             {} events, p50 {}, p90 {}, p99 {}, p99.9 {}, max {}{}; worker peak RSS {} MB, CPU {} ms/1k events",
            l.phase,
            l.rate,
            l.achieved_rate,
            l.measured,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            if l.missing > 0 {
                format!(", {} missing", l.missing)
            } else {
                String::new()
            },
            l.peak_rss.map_or("-".into(), mb),
            cpu_per_1k(l.cpu, (l.rate * args.latency_seconds).max(1)),
        );
        for note in &l.notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    out
}

pub fn markdown(
    args: &Args,
    drains: &[Drain],
    latencies: &[Latency],
    skipped: &[Skipped],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n<!-- cargo bench --bench throughput -- --events {}{} --phases {} --big-events {} -->\n",
        args.events,
        if args.rss_200k { " --rss-200k" } else { "" },
        args.phases.join(","),
        args.big_events,
    );
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADERS.len()));
    for row in rows(drains) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    for s in skipped {
        let _ = writeln!(
            out,
            "| {} | {} | | | | | | |",
            s.phase,
            s.why.replace('|', "/")
        );
    }
    if !latencies.is_empty() {
        let _ = writeln!(
            out,
            "\n| latency | offered/s | events | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | CPU ms/1k ev |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for l in latencies {
            let f = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                l.phase,
                l.rate,
                l.measured,
                f(l.p50),
                f(l.p90),
                f(l.p99),
                f(l.p999),
                f(l.max),
                cpu_per_1k(l.cpu, (l.rate * args.latency_seconds).max(1)),
            );
        }
    }
    out
}
