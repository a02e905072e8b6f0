//! Secrets never show. Every path by which text leaves the real binary is searched for
//! distinctive secret values, a 3-byte one included: `--help`, config errors from `check` and
//! `run`, the output of `webhooks`, `render`, `test`, `check` and `dlq show`, the worker's log
//! lines in both formats (third-party `log` lines included, before and after a SIGHUP reload),
//! dead-letter headers and `/metrics`. What the binary cannot reach (`Debug` of the loaded
//! config) is checked through the library. Each path is its own assertion, naming the path and
//! the secret it found.

use crate::binary::{Finished, Relay};
use crate::harness::{TestApp, app, child_env, closed_port};
use crate::support::logzio::{Scripted, TEST_TOKEN};
use std::path::Path;
use std::time::{Duration, Instant};
use webhook_relay::broker::dead_letter::{DeadLetterInfo, header_text};
use webhook_relay::config::{self, Env};
use webhook_relay::model::event::{Trigger, sample};

const WAIT: Duration = Duration::from_secs(20);

/// `${SEGMENT}`: a URL path segment.
const PATH_SECRET: &str = "pathSecret-7f4e9a1c";
/// `${FRAG}`: the URL's fragment.
const FRAG_SECRET: &str = "fragSecret-c0ffee42";
/// `${URL_PASSWORD}`: the URL's userinfo password.
const URL_PASSWORD: &str = "urlPassword-b16b00b5";
/// `${HDR}`: the value of header `X-Path` (not named like a credential).
const HEADER_SECRET: &str = "headerSecret-ab12cd34";
/// Written into the file as `api_key=…`: an inline credential.
const INLINE_KEY: &str = "inlineKey-5eed1e55";
/// The broker password, from the environment.
const AMQP_PASSWORD: &str = "amqpPassword-9d8c7b6a";
/// `${SHORT}`, in the query as `k=${SHORT}`: shorter than the free-text threshold, masked
/// where it stands whole (here, a URL part).
const SHORT: &str = "Zq9";
/// `${WEBHOOK_HOST}`: the URL's host. It resolves to the listener, and reqwest names it in its
/// own `log` line ("starting new connection"), which only the log writer can scrub.
const HOST: &str = "localhost";

/// The variables the webhook below reads, besides the harness's `LOGZIO_TOKEN`.
const SECRET_ENV: [(&str, &str); 6] = [
    ("SEGMENT", PATH_SECRET),
    ("FRAG", FRAG_SECRET),
    ("URL_PASSWORD", URL_PASSWORD),
    ("HDR", HEADER_SECRET),
    ("SHORT", SHORT),
    ("WEBHOOK_HOST", HOST),
];

/// Every secret the webhook holds, with what it is, for the failure message.
const WEBHOOK_SECRETS: [(&str, &str); 8] = [
    ("path segment ${SEGMENT}", PATH_SECRET),
    ("fragment ${FRAG}", FRAG_SECRET),
    ("userinfo password ${URL_PASSWORD}", URL_PASSWORD),
    ("header value ${HDR}", HEADER_SECRET),
    ("inline api_key", INLINE_KEY),
    ("short query value ${SHORT}", SHORT),
    ("host ${WEBHOOK_HOST}", HOST),
    ("token ${LOGZIO_TOKEN}", TEST_TOKEN),
];

/// A webhook with a secret in every part of its URL and in a header.
const WEBHOOK: &str = r#"
[[webhook]]
name = "everywhere"
url = "https://relay:${URL_PASSWORD}@${WEBHOOK_HOST}:@PORT0@/${SEGMENT}/in?token=${LOGZIO_TOKEN}&type=apono&k=${SHORT}&api_key=inlineKey-5eed1e55#${FRAG}"
headers = { X-Path = "${HDR}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

/// How every display shows that URL.
fn shown_url(port: u16) -> String {
    format!("https://relay:***@***:{port}/***/in?token=***&type=apono&k=***&api_key=***#***")
}

/// The URL as the endpoint got it, for an endpoint that quotes it back.
fn real_url(port: u16) -> String {
    format!(
        "https://relay:{URL_PASSWORD}@{HOST}:{port}/{PATH_SECRET}/in?token={TEST_TOKEN}\
         &type=apono&k={SHORT}&api_key={INLINE_KEY}#{FRAG_SECRET}"
    )
}

/// Fails with the path and the secret when `text` holds any of `secrets`.
#[track_caller]
fn assert_hidden(path: &str, text: &str, secrets: &[(&str, &str)]) {
    for (what, secret) in secrets {
        assert!(
            !text.contains(secret),
            "{path}: the {what} `{secret}` shows in:\n{text}"
        );
    }
}

/// What a finished run printed, both streams.
fn printed(finished: &Finished) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        finished.stdout, finished.stderr
    )
}

/// A test app with [`WEBHOOK`] and its variables.
fn webhook_app(test: &str) -> crate::harness::AppBuilder {
    SECRET_ENV
        .iter()
        .fold(app(test).webhook(WEBHOOK), |builder, (name, value)| {
            builder.env(name, value)
        })
}

/// Waits until `check` holds for what `relay` printed on stderr so far.
async fn wait_stderr(relay: &Relay, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check(&relay.stderr_so_far()) {
        assert!(
            Instant::now() < deadline,
            "waiting for {what}; stderr so far:\n{}",
            relay.stderr_so_far()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every subcommand path of the CLI, the root included.
fn command_paths(command: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for sub in command.get_subcommands() {
        let mut path = prefix.clone();
        path.push(sub.get_name().to_string());
        command_paths(sub, path, out);
    }
}

/// `--help` of every subcommand names the variables an option reads, never their values.
#[tokio::test]
async fn help_never_prints_env_values() {
    let rabbitmq_url = format!("amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/%2f");
    let config_dir = format!("/nonexistent/{PATH_SECRET}");
    let env = [
        ("RABBITMQ_URL", rabbitmq_url.as_str()),
        ("WEBHOOK_RELAY_CONFIG", config_dir.as_str()),
    ];
    let mut paths = Vec::new();
    command_paths(&webhook_relay::cli::command(), Vec::new(), &mut paths);
    assert!(paths.len() > 10, "{paths:?}");
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let finished = Relay::spawn(&args, &env).exit_within(WAIT).await;
        let shown = printed(&finished);
        let label = format!("`webhook-relay {}`", args.join(" "));
        assert_eq!(finished.code(), Some(0), "{label}:\n{shown}");
        assert_hidden(
            &label,
            &shown,
            &[
                ("RABBITMQ_URL password", AMQP_PASSWORD),
                ("WEBHOOK_RELAY_CONFIG value", PATH_SECRET),
            ],
        );
        if path == ["demo"] {
            assert!(shown.contains("[env: RABBITMQ_URL]"), "{label}:\n{shown}");
        }
    }
}

/// Config errors name the file, key and variable, and say what was expected, but never show
/// a value from the environment or from a secret position of a file: for `check` and `run`.
#[tokio::test]
async fn config_errors_never_echo_secret_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let relay =
        "[amqp]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\n[server]\nlisten = \"\"\n";
    std::fs::write(dir.path().join("relay.toml"), relay).unwrap();
    std::fs::create_dir(dir.path().join("webhooks")).unwrap();
    let dir_arg = dir.path().to_str().expect("UTF-8 temp dir");
    let secrets = [
        ("broker password", AMQP_PASSWORD),
        ("distinctive value", PATH_SECRET),
    ];

    let overrides = [
        (
            "RELAY__AMQP__URLS",
            format!("amqp://relay:{AMQP_PASSWORD}@broker-2:5672/%2f"),
            "expected a sequence",
        ),
        (
            "RELAY__AMQP__URL",
            format!("https://relay:{AMQP_PASSWORD}@{PATH_SECRET}/"),
            "not an amqp:// or amqps:// URL",
        ),
        (
            "RELAY__DELIVERY__TIMEOUT",
            PATH_SECRET.to_string(),
            "not a duration",
        ),
        (
            "RELAY__AMQP__PREFETCH",
            PATH_SECRET.to_string(),
            "expected an integer",
        ),
    ];
    for (variable, value, expected) in &overrides {
        for (command, code) in [("check", 1), ("run", 2)] {
            let finished = Relay::spawn(
                &[command, "--config", dir_arg],
                &[(*variable, value.as_str())],
            )
            .exit_within(WAIT)
            .await;
            let shown = printed(&finished);
            let label = format!("`{command}` with a bad {variable}");
            assert_eq!(finished.code(), Some(code), "{label}:\n{shown}");
            assert!(
                shown.contains(variable) && shown.contains(expected),
                "{label} names the variable and what was expected:\n{shown}"
            );
            assert_hidden(&label, &shown, &secrets);
        }
    }

    let files = [
        (
            "a syntax error on the amqp.url line of relay.toml",
            format!("[amqp]\nurl = \"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/%2f\n"),
            None,
            "line 2",
        ),
        (
            "a string where relay.toml's amqp.urls wants a list",
            format!("[amqp]\nurls = \"amqp://relay:{AMQP_PASSWORD}@broker-2/\"\n"),
            None,
            "amqp.urls",
        ),
        (
            "a webhook whose headers are one string",
            relay.to_string(),
            Some(format!(
                "[[webhook]]\nname = \"h\"\nurl = \"https://h/\"\nheaders = \"X-Api-Key: {PATH_SECRET}\"\n\
                 body_template = '{{}}'\n"
            )),
            "headers: invalid type",
        ),
    ];
    for (label, relay_text, webhook, expected) in &files {
        std::fs::write(dir.path().join("relay.toml"), relay_text).unwrap();
        if let Some(text) = webhook {
            std::fs::write(dir.path().join("webhooks/h.toml"), text).unwrap();
        }
        let finished = Relay::spawn(&["check", "--config", dir_arg], &[] as &[(&str, &str)])
            .exit_within(WAIT)
            .await;
        let shown = printed(&finished);
        assert_eq!(finished.code(), Some(1), "{label}:\n{shown}");
        assert!(shown.contains(expected), "{label}:\n{shown}");
        assert_hidden(&format!("`check` with {label}"), &shown, &secrets);
    }
}

/// `webhooks`, `render`, `test` and `check`, as text and JSON, show the URL with every part
/// that holds a secret masked, the secret header as `***`, and a response that quotes the URL
/// back scrubbed; with `RUST_LOG=debug`, reqwest's own log lines are scrubbed too.
#[tokio::test]
async fn cli_output_masks_every_url_part_and_header() {
    let app = webhook_app("secrets-cli").build().await;
    let port = app.listener().port();
    // The first `test` gets an answer that quotes the request back, in body and header.
    let echo = format!("you sent {} with X-Path {HEADER_SECRET}", real_url(port));
    app.listener().push_response(
        Scripted::status(200)
            .with_header("X-Echo", real_url(port))
            .with_body(echo),
    );
    let commands: [&[&str]; 8] = [
        &["webhooks"],
        &["--json", "webhooks"],
        &["render", "everywhere"],
        &["--json", "render", "everywhere"],
        &["test", "everywhere"],
        &["--json", "test", "everywhere"],
        &["check"],
        &["--json", "check"],
    ];
    for args in commands {
        let finished = run_cli(&app, args).await;
        let shown = printed(&finished);
        let label = format!("`webhook-relay {}`", args.join(" "));
        assert_eq!(finished.code(), Some(0), "{label}:\n{shown}");
        assert_hidden(&label, &shown, &WEBHOOK_SECRETS);
        if args.contains(&"check") {
            assert!(
                shown.contains("`${SHORT}` is a secret shorter than 4 bytes"),
                "{label} warns about the short secret:\n{shown}"
            );
        } else {
            assert!(
                finished.stdout.contains(&shown_url(port)),
                "{label} shows the URL as {}:\n{shown}",
                shown_url(port)
            );
        }
        if args.contains(&"render") {
            assert!(
                shown.contains("X-Path: ***") || shown.contains("\"X-Path\",\n      \"***\""),
                "{label} masks the header:\n{shown}"
            );
        }
        if args.contains(&"test") {
            assert!(
                finished.stderr.contains("starting new connection"),
                "{label}: reqwest's own log line (where the host would show) is written:\n{shown}"
            );
        }
    }
    let requests = app.listener().requests();
    assert_eq!(requests.len(), 2, "both `test` runs sent the request");
    assert_eq!(
        requests[0].path,
        format!("/{PATH_SECRET}/in"),
        "the real URL was used"
    );
    app.finish().await;
}

/// Runs the binary on `app`'s config with `RUST_LOG=debug`, to its exit.
async fn run_cli(app: &TestApp, args: &[&str]) -> Finished {
    let dir = app.config_dir().to_str().expect("UTF-8 temp dir");
    let mut all = args.to_vec();
    all.extend(["--config", dir]);
    Relay::spawn(&all, &child_env(app, &[("RUST_LOG", "debug")]))
        .exit_within(WAIT)
        .await
}

/// The running worker, with JSON logs at debug level: an endpoint that quotes the URL back
/// in a 400 leaves it masked in the dead letter's headers (and in `dlq show`), no log line
/// shows a secret (reqwest's `log` lines included) and every line stays JSON, and `/metrics`
/// names no secret, broker host or broker user.
#[tokio::test]
async fn worker_logs_dead_letters_and_metrics_hide_secrets() {
    let metrics_port = closed_port();
    let app = webhook_app("secrets-worker")
        .relay_extra(&format!(
            "\n[log]\nformat = \"json\"\n\n[server]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ))
        .build()
        .await;
    let port = app.listener().port();
    let echo = format!("no such path {} {HEADER_SECRET}", real_url(port));
    assert!(
        echo.len() < 200,
        "the echo fits in the error's 200-character snippet"
    );
    app.listener()
        .push_response(Scripted::status(400).with_body(echo));
    let mut relay = Relay::run(app.config_dir(), &child_env(&app, &[("RUST_LOG", "debug")]));
    app.publish(&sample(Trigger::RequestApproved)).await;

    let dlq = app.config.amqp.dead_letter_queue.clone();
    let deadline = Instant::now() + WAIT;
    while app.ready_count(&dlq).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no dead letter; stderr:\n{}",
            relay.stderr_so_far()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let show = run_cli(&app, &["dlq", "show", "1"]).await;
    assert_eq!(show.code(), Some(0), "{}", printed(&show));
    assert!(
        show.stdout.contains("x-relay-last-error"),
        "{}",
        printed(&show)
    );
    assert_hidden("`dlq show`", &printed(&show), &WEBHOOK_SECRETS);

    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "stderr:\n{}", relay.stderr_so_far());
    let info = DeadLetterInfo::from_properties(&letters[0].properties);
    let last_error = info.last_error.clone().unwrap_or_default();
    assert!(
        last_error.contains("no such path https://relay:***@***:"),
        "the quoted URL is in the error, masked: {last_error}"
    );
    let headers: String = letters[0]
        .properties
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .keys()
                .map(|name| {
                    let value = header_text(table, name.as_str()).unwrap_or_default();
                    format!("{name}: {value}\n")
                })
                .collect()
        })
        .unwrap_or_default();
    assert_hidden("dead-letter headers", &headers, &WEBHOOK_SECRETS);

    let metrics = get_metrics(metrics_port).await;
    assert!(
        metrics.contains("relay_dead_letters_total"),
        "/metrics counted the dead letter:\n{metrics}"
    );
    assert_hidden("/metrics", &metrics, &WEBHOOK_SECRETS);
    assert_hidden(
        "/metrics",
        &metrics,
        &[
            ("broker user", "guest"),
            ("broker host", "127.0.0.1"),
            ("broker port", "5672"),
        ],
    );

    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    assert_eq!(finished.code(), Some(0), "{}", finished.stderr);
    for line in finished.stderr_lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("a scrubbed log line is no longer JSON ({e}): {line}"));
    }
    assert!(
        finished.stderr.contains("starting new connection"),
        "reqwest's own log line (where the host would show) is written:\n{}",
        finished.stderr
    );
    assert_hidden("JSON log lines", &finished.stderr, &WEBHOOK_SECRETS);
    app.finish().await;
}

/// `GET /metrics` on the worker's server, waiting for it to listen.
async fn get_metrics(port: u16) -> String {
    webhook_relay::tls::install_crypto_provider();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + WAIT;
    loop {
        match reqwest::get(&url).await {
            Ok(response) if response.status() == 200 => {
                return response.text().await.expect("metrics body");
            }
            other => {
                assert!(
                    Instant::now() < deadline,
                    "/metrics never answered: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// After SIGHUP, the log writer knows the new config's secrets: a webhook whose host becomes
/// `${RELOAD_HOST}` has it masked in reqwest's own `log` lines, a variable that was no secret
/// before the reload.
#[tokio::test]
async fn a_reloaded_configs_secrets_are_masked_in_logs() {
    let app = app("secrets-reload")
        .webhook(
            r#"
[[webhook]]
name = "reloaded"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .build()
        .await;
    let port = app.listener().port();
    let mut relay = Relay::run(
        app.config_dir(),
        &child_env(&app, &[("RUST_LOG", "debug"), ("RELOAD_HOST", HOST)]),
    );
    wait_stderr(&relay, "the worker to consume", |s| s.contains("consuming")).await;

    let reloaded = format!(
        "[[webhook]]\nname = \"reloaded\"\n\
         url = \"https://${{RELOAD_HOST}}:{port}/?token=${{LOGZIO_TOKEN}}&type=apono\"\n\
         triggers = [\"RequestApproved\"]\nbody_template = '{{\"id\": \"{{{{ data.id }}}}\"}}'\n"
    );
    std::fs::write(webhook_file(app.config_dir()), reloaded).unwrap();
    relay.hangup();
    wait_stderr(&relay, "the reload", |s| s.contains("config reloaded")).await;
    app.publish(&sample(Trigger::RequestApproved)).await;
    assert_eq!(
        app.listener().wait_for_accepted(1, WAIT).await.len(),
        1,
        "delivered through the reloaded URL; stderr:\n{}",
        relay.stderr_so_far()
    );
    wait_stderr(&relay, "the delivery's outcome", |s| {
        s.contains("starting new connection") && s.contains("delivered")
    })
    .await;
    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    assert_eq!(finished.code(), Some(0), "{}", finished.stderr);
    assert_hidden(
        "log lines after a reload",
        &finished.stderr,
        &[("host ${RELOAD_HOST} of the reloaded config", HOST)],
    );
    app.finish().await;
}

/// The harness writes the first webhook file as `webhooks/00.toml`.
fn webhook_file(dir: &Path) -> std::path::PathBuf {
    dir.join("webhooks").join("00.toml")
}

/// `Debug` of a loaded config, of its webhooks and of the environment it was read with shows
/// none of their secrets (library: no command prints it).
#[test]
fn debug_of_a_loaded_config_hides_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("relay.toml"),
        "[amqp]\nurl = \"amqp://guest:${AMQP_PASSWORD}@127.0.0.1:5672/%2f\"\n\
         [policy]\nallowed_ports = [8071]\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("webhooks")).unwrap();
    std::fs::write(
        dir.path().join("webhooks/a.toml"),
        WEBHOOK.replace("@PORT0@", "8071"),
    )
    .unwrap();
    let mut env = Env::from_pairs(SECRET_ENV);
    env.set("LOGZIO_TOKEN", TEST_TOKEN);
    env.set("AMQP_PASSWORD", AMQP_PASSWORD);
    let config = config::load(dir.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    let mut secrets = WEBHOOK_SECRETS.to_vec();
    secrets.push(("broker password", AMQP_PASSWORD));
    assert_hidden("Debug of Config", &format!("{config:?}"), &secrets);
    assert_hidden("Debug of Env", &format!("{env:?}"), &secrets);
    assert_hidden(
        "Debug of the webhook",
        &format!("{:?}", config.webhooks[0]),
        &secrets,
    );
}
