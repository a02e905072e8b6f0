//! The tracing subscriber: log lines on stderr (stdout stays free for command output), levels
//! from `RUST_LOG`, as human-readable lines or one JSON object per line (`[log] format`).
//! With the `otel` cargo feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also
//! exported over OTLP/HTTP.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
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
/// not a terminal (a container, a pipe), human-readable when it is.
pub fn init(default_filter: &str, format: LogFormat) -> Guard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
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
            .with_writer(std::io::stderr)
    });
    let pretty_layer = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .with_writer(std::io::stderr)
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(json_layer)
        .with(pretty_layer);

    #[cfg(feature = "otel")]
    {
        let (layer, provider) = otel::layer();
        let _ = registry.with(layer).try_init();
        Guard { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = registry.try_init();
        Guard {}
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
        crate::delivery::install_crypto_provider();
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
