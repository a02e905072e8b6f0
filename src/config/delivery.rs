//! `[delivery]` and each webhook's `[webhook.delivery]`: timeouts, retries, concurrency and
//! the circuit breaker. A webhook starts from the `[delivery]` defaults and overrides only
//! the fields it names; the merged settings are checked the same way at both levels.

use super::duration;
use super::problem::{Findings, Place};
use serde::Deserialize;
use std::time::Duration;

/// Delivery settings as written in `[delivery]` or a webhook's `[webhook.delivery]`: every
/// field optional, so a webhook overrides only what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryOverrides {
    /// Per-attempt timeout.
    #[serde(with = "duration::option")]
    pub timeout: Option<Duration>,
    /// Attempts in all, the first included.
    pub max_attempts: Option<u32>,
    /// First backoff delay.
    #[serde(with = "duration::option")]
    pub initial_backoff: Option<Duration>,
    /// Longest backoff delay, also the cap on `Retry-After`.
    #[serde(with = "duration::option")]
    pub max_backoff: Option<Duration>,
    /// Longest time from the first attempt to giving up.
    #[serde(with = "duration::option")]
    pub max_elapsed: Option<Duration>,
    /// Most requests in flight to this webhook at once.
    pub concurrency: Option<u32>,
    /// How long to retry in process before parking the delivery in its retry queue.
    #[serde(with = "duration::option")]
    pub retry_window: Option<Duration>,
    /// Consecutive failures that open the webhook's circuit (0 turns the breaker off).
    pub circuit_failures: Option<u32>,
    /// How long an open circuit waits before letting one probe through.
    #[serde(with = "duration::option")]
    pub circuit_cooldown: Option<Duration>,
}

/// The delivery policy of one webhook, defaults and overrides merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Per-attempt timeout (connect + request + response body).
    pub timeout: Duration,
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
    /// First backoff delay; doubled per retry, with jitter.
    pub initial_backoff: Duration,
    /// Longest backoff delay, and the cap on a server's `Retry-After`.
    pub max_backoff: Duration,
    /// No attempt starts after this much time since the first failure, across restarts.
    pub max_elapsed: Duration,
    /// Most requests in flight to this webhook at once.
    pub concurrency: u32,
    /// In-process retries last at most this long; then the delivery moves to the webhook's
    /// durable retry queue and the input event can be acked.
    pub retry_window: Duration,
    /// Consecutive failures that open the circuit; 0 turns the breaker off.
    pub circuit_failures: u32,
    /// How long an open circuit sends deliveries straight to the retry queue before one probe
    /// is let through.
    pub circuit_cooldown: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(3600),
            concurrency: 64,
            retry_window: Duration::from_secs(5),
            circuit_failures: 10,
            circuit_cooldown: Duration::from_secs(30),
        }
    }
}

impl DeliverySettings {
    /// `self` with every field that `overrides` names replaced.
    pub fn with(self, overrides: &DeliveryOverrides) -> Self {
        DeliverySettings {
            timeout: overrides.timeout.unwrap_or(self.timeout),
            max_attempts: overrides.max_attempts.unwrap_or(self.max_attempts),
            initial_backoff: overrides.initial_backoff.unwrap_or(self.initial_backoff),
            max_backoff: overrides.max_backoff.unwrap_or(self.max_backoff),
            max_elapsed: overrides.max_elapsed.unwrap_or(self.max_elapsed),
            concurrency: overrides.concurrency.unwrap_or(self.concurrency),
            retry_window: overrides.retry_window.unwrap_or(self.retry_window),
            circuit_failures: overrides.circuit_failures.unwrap_or(self.circuit_failures),
            circuit_cooldown: overrides.circuit_cooldown.unwrap_or(self.circuit_cooldown),
        }
    }

    /// The longest a message can stay unacked because of this webhook: the in-process retry
    /// window (bounded by `max_elapsed`), plus one last attempt's timeout, plus the longest
    /// backoff sleep that may start inside the window.
    pub fn worst_case_hold(&self) -> Duration {
        self.retry_window.min(self.max_elapsed) + self.timeout
    }

    /// `self` if it is valid with a broker whose consumer timeout is `consumer_timeout`;
    /// otherwise `None`, with each problem recorded as a `delivery.…` field at `place`.
    pub(crate) fn validate(
        self,
        place: Place<'_>,
        consumer_timeout: Duration,
        found: &mut Findings,
    ) -> Option<Self> {
        found
            .fields(place, "delivery.", self.problems(consumer_timeout))
            .then_some(self)
    }

    /// Field-by-field and cross-field problems, as `(field, message)`.
    pub fn problems(&self, consumer_timeout: Duration) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.timeout.is_zero() {
            out.push(("timeout", "must be greater than 0".to_string()));
        }
        if self.max_attempts == 0 {
            out.push(("max_attempts", "must be at least 1".to_string()));
        }
        if self.initial_backoff.is_zero() {
            out.push(("initial_backoff", "must be greater than 0".to_string()));
        }
        if self.max_backoff < self.initial_backoff {
            out.push((
                "max_backoff",
                format!(
                    "{} is shorter than initial_backoff ({})",
                    duration::show(self.max_backoff),
                    duration::show(self.initial_backoff)
                ),
            ));
        }
        if self.concurrency == 0 {
            out.push(("concurrency", "must be at least 1".to_string()));
        }
        if self.worst_case_hold() >= consumer_timeout {
            out.push((
                "retry_window",
                format!(
                    "{} plus one attempt's timeout ({}) reaches the broker's consumer timeout ({}, \
                     amqp.consumer_timeout); the broker would close the channel on a message \
                     still being retried in process",
                    duration::show(self.retry_window.min(self.max_elapsed)),
                    duration::show(self.timeout),
                    duration::show(consumer_timeout)
                ),
            ));
        }
        if self.circuit_failures > 0 && self.circuit_cooldown.is_zero() {
            out.push(("circuit_cooldown", "must be greater than 0".to_string()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let defaults = DeliverySettings::default();
        let merged = defaults.with(&DeliveryOverrides {
            max_attempts: Some(3),
            ..DeliveryOverrides::default()
        });
        assert_eq!(merged.max_attempts, 3);
        assert_eq!(
            DeliverySettings {
                max_attempts: defaults.max_attempts,
                ..merged
            },
            defaults
        );
    }

    #[test]
    fn problems_name_the_field_at_its_place() {
        let settings = DeliverySettings {
            max_attempts: 0,
            max_backoff: Duration::from_millis(1),
            ..DeliverySettings::default()
        };
        let place = Place {
            file: Path::new("hooks.toml"),
            webhook: Some("hook"),
        };
        let mut found = Findings::default();
        assert!(
            settings
                .validate(place, Duration::from_secs(1800), &mut found)
                .is_none()
        );
        assert_eq!(
            found.finish().unwrap_err().to_string(),
            "hooks.toml: webhook `hook`: delivery.max_attempts: must be at least 1\n\
             hooks.toml: webhook `hook`: delivery.max_backoff: 1ms is shorter than \
             initial_backoff (500ms)"
        );
        let mut found = Findings::default();
        let valid = DeliverySettings::default();
        assert_eq!(
            valid.validate(place, Duration::from_secs(1800), &mut found),
            Some(valid)
        );
        assert!(!found.has_errors());
    }

    #[test]
    fn the_retry_window_must_end_before_the_consumer_timeout() {
        let settings = DeliverySettings::default();
        assert_eq!(settings.worst_case_hold(), Duration::from_secs(15));
        let problems = settings.problems(Duration::from_secs(15));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "retry_window");
        assert!(settings.problems(Duration::from_secs(16)).is_empty());
    }
}
