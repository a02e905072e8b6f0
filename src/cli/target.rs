//! What `render` and `test` work on: a webhook found by name, and an event read from a file or
//! taken from the built-in samples.

use crate::config::{Config, Webhook};
use crate::model::event::{self, Event, Trigger};
use crate::pipeline::delivery::DeliveryRequest;
use std::path::Path;
use std::sync::Arc;

/// clap parser for a trigger name (either spelling).
pub fn parse_trigger(text: &str) -> Result<Trigger, String> {
    text.parse::<Trigger>().map_err(|e| e.to_string())
}

/// The event a command works on, and where it came from.
pub struct EventInput {
    /// The decoded event.
    pub event: Event,
    /// `built-in sample RequestApproved` or the file's path.
    pub source: String,
}

/// Reads `--event FILE`, or picks the built-in sample of `--trigger` or of the webhook's first
/// trigger.
pub fn event_input(
    file: Option<&Path>,
    trigger: Option<Trigger>,
    webhook: &Webhook,
) -> Result<EventInput, String> {
    match file {
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            event_from_bytes(&bytes, path.display().to_string())
        }
        None => {
            let trigger = trigger
                .or_else(|| webhook.triggers.first().copied())
                .unwrap_or(Trigger::RequestApproved);
            let bytes = event::sample(trigger).to_string();
            let event = event::decode(bytes.as_bytes(), None)
                .map_err(|e| format!("the built-in sample does not decode: {e}"))?;
            Ok(EventInput {
                event,
                source: format!("built-in sample {trigger}"),
            })
        }
    }
}

/// Decodes an event given as JSON text (a file's or a pasted one); `source` names it in the
/// message when it is not an event.
pub fn event_from_bytes(bytes: &[u8], source: String) -> Result<EventInput, String> {
    let event = event::decode(bytes, None)
        .map_err(|e| format!("{source}: not an access-request event: {e}"))?;
    Ok(EventInput { event, source })
}

/// The webhook named `name`, or a message listing the ones there are.
pub fn find_webhook<'a>(config: &'a Config, name: &str) -> Result<&'a Arc<Webhook>, String> {
    config.webhook(name).ok_or_else(|| {
        let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
        format!(
            "no webhook is called `{name}`; the config has: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )
    })
}

/// A webhook and the event a command shows or sends to it.
pub struct Target<'a> {
    /// The webhook, active or not.
    pub webhook: &'a Arc<Webhook>,
    /// The event.
    pub input: EventInput,
}

impl<'a> Target<'a> {
    /// Finds the webhook `name` and reads the event (see [`event_input`]). On failure prints
    /// the usage error and returns its exit code.
    pub fn resolve(
        config: &'a Config,
        name: &str,
        file: Option<&Path>,
        trigger: Option<Trigger>,
    ) -> Result<Self, u8> {
        let webhook = find_webhook(config, name).map_err(|e| super::usage_error(&e))?;
        let input = event_input(file, trigger, webhook).map_err(|e| super::usage_error(&e))?;
        Ok(Target { webhook, input })
    }

    /// The request the worker would make with `body` on a first attempt (not a retry, not a
    /// batch).
    pub fn request(&self, body: String) -> DeliveryRequest {
        DeliveryRequest {
            webhook: Arc::clone(self.webhook),
            event_id: self.input.event.id.clone(),
            body: body.into(),
            prior: None,
            batch_size: None,
        }
    }
}
