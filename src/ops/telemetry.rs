//! The tracing subscriber: log lines on stderr (stdout stays free for command output), levels
//! from `RUST_LOG`, as human-readable lines or one JSON object per line (`[log] format`).
//! With the `otel` cargo feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also
//! exported over OTLP/HTTP.
//!
//! Every line is scrubbed on its way out: the fmt layers write through a [`RedactingWriter`],
//! which holds each formatted event until it is complete, masks it with the current
//! [`SharedRedactor`] and only then writes it. This covers the worker's own events and
//! everything third-party crates log, through `tracing` or through the `log` crate (lapin's
//! TCP layer, rustls, reqwest), since `try_init` bridges `log` records into the same
//! subscriber. The CLI hands the same handle to config reloads, so a reloaded config's secrets
//! are masked from then on.

use crate::config::LogFormat;
use crate::redact::{Redactor, SharedRedactor};
use std::io::{IsTerminal, Write};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps trace export running; dropping it flushes and stops the exporter.
#[must_use = "dropping the guard stops trace export"]
pub struct Guard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber once; later calls do nothing. `default_filter` applies when
/// `RUST_LOG` is unset, e.g. `"info"`. With [`LogFormat::Auto`], lines are JSON when stdout is
/// not a terminal (a container, a pipe), human-readable when it is. Every line is scrubbed
/// with `redactor` as it is at the time of the line.
///
/// lapin's own channel-level lines are off by default: every one of those errors also reaches
/// the worker as a returned error, which it logs once with what it was doing (a queue whose
/// arguments changed would otherwise print lapin's raw line before the worker's clear one).
/// `RUST_LOG` overrides this like everything else.
pub fn init(default_filter: &str, format: LogFormat, redactor: SharedRedactor) -> Guard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_filter},lapin::channel=off")));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let json_layer = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(false)
            .with_writer(RedactingWriter::new(
                std::io::stderr,
                redactor.clone(),
                true,
            ))
    });
    let pretty_layer = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .with_writer(RedactingWriter::new(
                std::io::stderr,
                redactor.clone(),
                false,
            ))
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(json_layer)
        .with(pretty_layer);

    #[cfg(feature = "otel")]
    {
        use tracing_subscriber::Layer as _;
        let (layer, provider) = otel::layer();
        // Exported spans are not text the writer can scrub: only the relay's own spans and
        // events go out (their fields are secret-free by construction), never a library's
        // event, which may name a secret host or quote a URL.
        let layer = layer.map(|layer| {
            layer.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target().starts_with("webhook_relay")
            }))
        });
        let _ = registry.with(layer).try_init();
        Guard { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = registry.try_init();
        Guard {}
    }
}

/// A [`MakeWriter`] that scrubs every event with a [`SharedRedactor`] before handing it to
/// `inner` (stderr in the binary). JSON events are scrubbed line by line so that each stays a
/// valid JSON object ([`crate::redact::Redactor::scrub_json`]).
#[derive(Clone, Debug)]
pub struct RedactingWriter<M> {
    inner: M,
    redactor: SharedRedactor,
    json: bool,
}

impl<M> RedactingWriter<M> {
    /// Scrubs with `redactor`; `json` when each line is one JSON object.
    pub fn new(inner: M, redactor: SharedRedactor, json: bool) -> Self {
        RedactingWriter {
            inner,
            redactor,
            json,
        }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<M> {
    type Writer = RedactedEvent<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedEvent {
            buf: Vec::new(),
            redactor: self.redactor.current(),
            json: self.json,
            inner: self.inner.make_writer(),
        }
    }
}

/// One event's text, held until the event is complete (the writer is dropped), then scrubbed
/// and written to `W` in one piece, so a secret split across two writes is still caught.
pub struct RedactedEvent<W: Write> {
    buf: Vec<u8>,
    redactor: Redactor,
    json: bool,
    inner: W,
}

impl<W: Write> Write for RedactedEvent<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for RedactedEvent<W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let scrubbed = if self.json {
            text.split_inclusive('\n')
                .map(|line| match line.strip_suffix('\n') {
                    Some(body) => self.redactor.scrub_json(body) + "\n",
                    None => self.redactor.scrub_json(line),
                })
                .collect()
        } else {
            self.redactor.scrub(&text)
        };
        // Nowhere to report a failed log write.
        let _ = self.inner.write_all(scrubbed.as_bytes());
        let _ = self.inner.flush();
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    type Layer<S> = tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

    /// The export layer when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; nothing otherwise.
    pub(super) fn layer<S>() -> (Option<Layer<S>>, Option<SdkTracerProvider>)
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return (None, None);
        }
        // The exporter's HTTP client uses rustls like ours.
        crate::tls::install_crypto_provider();
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("warning: OpenTelemetry export is off: {e}");
                return (None, None);
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("webhook-relay")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("webhook-relay");
        (
            Some(tracing_opentelemetry::layer().with_tracer(tracer)),
            Some(provider),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex, PoisonError};
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects what is written, for assertions.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
                .into_owned()
        }
    }

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn emit_with(json: bool, redactor: &SharedRedactor, captured: &Captured) {
        let writer = RedactingWriter::new(captured.clone(), redactor.clone(), json);
        let layer = if json {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(writer)
                .boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .boxed()
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                error = "GET https://h/long-secret-1?token=abc&k=Zq",
                attempts = 1234,
                "sent long-secret-1 with \"quoted\" text"
            );
            tracing::info!(url = ?"https://h/later-secret", "after the reload");
        });
    }

    #[test]
    fn pretty_and_json_lines_are_scrubbed_and_json_stays_json() {
        for json in [false, true] {
            let redactor = SharedRedactor::new(Redactor::new(["long-secret-1", "Zq", "1234"]));
            let captured = Captured::default();
            emit_with(json, &redactor, &captured);
            let text = captured.text();
            for secret in ["long-secret-1", "token=abc", "k=Zq", "1234"] {
                assert!(!text.contains(secret), "json={json}: {secret} in {text}");
            }
            assert!(text.contains("token=***"), "json={json}: {text}");
            assert!(text.contains("later-secret"), "not yet a secret: {text}");
            if json {
                for line in text.lines() {
                    serde_json::from_str::<serde_json::Value>(line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                }
            }
        }
    }

    #[test]
    fn the_writer_follows_what_the_handle_learns() {
        let redactor = SharedRedactor::default();
        let captured = Captured::default();
        redactor.learn(&Redactor::new(["later-secret"]));
        emit_with(false, &redactor, &captured);
        let text = captured.text();
        assert!(!text.contains("later-secret"), "{text}");
        assert!(text.contains("https://h/***"), "{text}");
    }
}
