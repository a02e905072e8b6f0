//! The command line of the throughput bench.

use std::path::PathBuf;

/// Every phase `--phases` accepts.
const PHASES: [&str; 6] = ["bare", "single", "batched", "big", "latency", "cluster"];

#[derive(Debug, Clone)]
pub struct Args {
    pub events: u64,
    pub rss_200k: bool,
    pub phases: Vec<String>,
    /// Backlog of the big phase.
    pub big_events: u64,
    /// Backlog of the cluster phase's fast-sink drains (a fifth of it for the slow sink).
    pub cluster_events: u64,
    pub latency_seconds: u64,
    pub latency_rate: u64,
    pub rust_log: String,
    pub amqp_url: String,
    pub markdown: Option<PathBuf>,
    pub perf: Option<PathBuf>,
}

impl Args {
    pub const USAGE: &'static str = "\
usage: cargo bench --bench throughput -- [options]
  --events N            backlog per phase (default 50000)
  --rss-200k            also drain a 200,000-event backlog through the single phase (RSS check)
  --phases LIST         comma-separated, from bare,single,batched,big,latency,cluster
                        (default bare,single,batched,bare,big,latency)
  --big-events N        backlog of the big phase, events of ~450 kB each (default 300); big
                        drains it twice, with the shipped amqp.memory_budget and with 4 GB
  --cluster-events N    backlog of the cluster phase's fast-sink drains, a fifth of it for the
                        20 ms sink (default 20000); the cluster phase runs only when asked for
                        (--phases cluster) and needs scripts/cluster up
  --latency-seconds S   length of the steady-rate phase, warm-up second included (default 11)
  --rate R              events/s offered in the latency phase (default 1000)
  --rust-log FILTER     RUST_LOG of the worker (default warn)
  --markdown FILE       append the markdown results to FILE
  --perf DIR            record the worker with `perf record --call-graph dwarf` during each worker drain
                        (slows it down: numbers of such a run are not comparable)";

    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args = Args {
            events: 50_000,
            rss_200k: false,
            phases: ["bare", "single", "batched", "bare", "big", "latency"]
                .map(String::from)
                .to_vec(),
            big_events: 300,
            cluster_events: 20_000,
            latency_seconds: 11,
            latency_rate: 1000,
            rust_log: "warn".into(),
            amqp_url: std::env::var("RABBITMQ_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            markdown: None,
            perf: None,
        };
        while let Some(arg) = argv.next() {
            let mut value = |name: &str| argv.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                // cargo bench passes --bench to every bench binary.
                "--bench" => {}
                "--events" => args.events = number(&value("--events")?)?,
                "--rss-200k" => args.rss_200k = true,
                "--phases" => args.phases = phases(&value("--phases")?)?,
                "--big-events" => args.big_events = number(&value("--big-events")?)?,
                "--cluster-events" => {
                    args.cluster_events = number(&value("--cluster-events")?)?.max(5)
                }
                "--latency-seconds" => args.latency_seconds = number(&value("--latency-seconds")?)?,
                "--rate" => args.latency_rate = number(&value("--rate")?)?.max(1),
                "--rust-log" => args.rust_log = value("--rust-log")?,
                "--markdown" => args.markdown = Some(value("--markdown")?.into()),
                "--perf" => args.perf = Some(value("--perf")?.into()),
                "-h" | "--help" => return Err("help".into()),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if args.events == 0 {
            return Err("--events must be at least 1".into());
        }
        if args.big_events == 0 {
            return Err("--big-events must be at least 1".into());
        }
        Ok(args)
    }
}

/// The phases of a `--phases` list, in order.
fn phases(list: &str) -> Result<Vec<String>, String> {
    let phases: Vec<String> = list
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    for phase in &phases {
        if !PHASES.contains(&phase.as_str()) {
            return Err(format!("unknown phase `{phase}`"));
        }
    }
    Ok(phases)
}

fn number(text: &str) -> Result<u64, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))
}
