//! The built-in sample events: one per trigger, all events of one access request.

use super::Trigger;
use serde_json::Value;
use std::sync::LazyLock;

/// The reference sample, a `RequestApproved` event; see [`sample`].
pub(super) const SAMPLE_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/sample-event.json"
));

static SAMPLE: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(SAMPLE_TEXT).expect("schema/sample-event.json is JSON"));

/// A complete built-in sample event for `trigger`, shaped like the vendor's schema.
///
/// All samples are events of one request (same `data.id`) at different `event_time`s, so
/// their derived identities differ. `RequestApproved` is the reference sample unchanged.
pub fn sample(trigger: Trigger) -> serde_json::Value {
    let mut event = SAMPLE.clone();
    event["event_type"] = Value::from(trigger.as_str());
    let data = &mut event["data"];
    let event_time = match trigger {
        Trigger::RequestCreated => {
            data["revocation_date"] = Value::Null;
            data["approvals"][0]["status"] = Value::from("pending");
            1764064797.75
        }
        Trigger::RequestApproved => 1764064800.123456,
        Trigger::RequestRejected => {
            data["revocation_date"] = Value::Null;
            data["approvals"][0]["status"] = Value::from("rejected");
            1764064800.5
        }
        Trigger::RequestGranted => 1764064801.25,
        Trigger::RequestExpired => 1764068400.5,
        Trigger::RequestFailed => {
            data["revocation_date"] = Value::Null;
            1764064801.75
        }
        Trigger::Manual => 1764064900.0,
    };
    event["event_time"] = Value::from(event_time);
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_reflect_their_trigger() {
        let reference: Value = serde_json::from_str(SAMPLE_TEXT).unwrap();
        assert_eq!(sample(Trigger::RequestApproved), reference);
        let status = |t| sample(t)["data"]["approvals"][0]["status"].clone();
        assert_eq!(status(Trigger::RequestCreated), "pending");
        assert_eq!(status(Trigger::RequestRejected), "rejected");
        for trigger in [Trigger::RequestGranted, Trigger::RequestExpired] {
            assert!(sample(trigger)["data"]["revocation_date"].is_number());
        }
        for trigger in [
            Trigger::RequestCreated,
            Trigger::RequestRejected,
            Trigger::RequestFailed,
        ] {
            assert!(sample(trigger)["data"]["revocation_date"].is_null());
        }
    }
}
