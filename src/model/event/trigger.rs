//! [`Trigger`]: what an event reports happened, read from its `event_type` in either spelling.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The trigger an event fires: the `event_type` field, normalised.
/// `AccessRequestCreated` and the other `AccessRequest…` spellings parse as the same trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// `RequestCreated`
    RequestCreated,
    /// `RequestApproved`
    RequestApproved,
    /// `RequestRejected`
    RequestRejected,
    /// `RequestGranted`
    RequestGranted,
    /// `RequestExpired`
    RequestExpired,
    /// `RequestFailed`
    RequestFailed,
    /// `Manual`
    Manual,
}

impl Trigger {
    /// Every trigger, in the order the seed lists them.
    pub const ALL: [Trigger; 7] = [
        Trigger::RequestCreated,
        Trigger::RequestApproved,
        Trigger::RequestRejected,
        Trigger::RequestGranted,
        Trigger::RequestExpired,
        Trigger::RequestFailed,
        Trigger::Manual,
    ];

    /// The canonical name, e.g. `RequestCreated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::RequestCreated => "RequestCreated",
            Trigger::RequestApproved => "RequestApproved",
            Trigger::RequestRejected => "RequestRejected",
            Trigger::RequestGranted => "RequestGranted",
            Trigger::RequestExpired => "RequestExpired",
            Trigger::RequestFailed => "RequestFailed",
            Trigger::Manual => "Manual",
        }
    }

    /// The vendor's `AccessRequest…` spelling, e.g. `AccessRequestCreated`. `Manual` has no
    /// attested vendor spelling; `AccessRequestManual` is accepted for symmetry.
    pub fn access_request_name(self) -> &'static str {
        match self {
            Trigger::RequestCreated => "AccessRequestCreated",
            Trigger::RequestApproved => "AccessRequestApproved",
            Trigger::RequestRejected => "AccessRequestRejected",
            Trigger::RequestGranted => "AccessRequestGranted",
            Trigger::RequestExpired => "AccessRequestExpired",
            Trigger::RequestFailed => "AccessRequestFailed",
            Trigger::Manual => "AccessRequestManual",
        }
    }

    /// Parses a canonical name or its `AccessRequest…` spelling; `None` for anything else.
    /// Matching is exact: case and surrounding whitespace matter.
    pub fn parse(s: &str) -> Option<Trigger> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == s || t.access_request_name() == s)
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no trigger, e.g. a misspelt trigger in a webhook's config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger `{0}`, expected one of {names}", names = Trigger::ALL.map(Trigger::as_str).join(", "))]
pub struct UnknownTrigger(pub String);

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trigger::parse(s).ok_or_else(|| UnknownTrigger(s.to_owned()))
    }
}

/// Accepts the same names as [`Trigger::parse`]; anything else is an [`UnknownTrigger`] error.
impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(de::Error::custom)
    }
}

/// Serialises as the canonical name.
impl Serialize for Trigger {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trigger_names_round_trip_in_both_spellings() {
        for trigger in Trigger::ALL {
            assert_eq!(Trigger::parse(trigger.as_str()), Some(trigger));
            assert_eq!(Trigger::parse(trigger.access_request_name()), Some(trigger));
            assert_eq!(trigger.to_string(), trigger.as_str());
        }
        assert_eq!(
            Trigger::parse("AccessRequestCreated"),
            Some(Trigger::RequestCreated)
        );
    }

    #[test]
    fn trigger_parse_is_exact() {
        for bad in [
            "requestcreated",
            "REQUESTCREATED",
            " RequestCreated",
            "RequestCreated ",
            "AccessManual",
            "Created",
            "",
        ] {
            assert_eq!(Trigger::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn trigger_from_str_error_names_the_value_and_the_choices() {
        let err = "RequestApprove".parse::<Trigger>().unwrap_err();
        assert_eq!(err, UnknownTrigger("RequestApprove".into()));
        assert_eq!(
            err.to_string(),
            "unknown trigger `RequestApprove`, expected one of RequestCreated, RequestApproved, \
             RequestRejected, RequestGranted, RequestExpired, RequestFailed, Manual"
        );
        assert_eq!("Manual".parse::<Trigger>(), Ok(Trigger::Manual));
    }

    #[test]
    fn trigger_serde_uses_the_same_names() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Webhook {
            triggers: Vec<Trigger>,
        }
        let ok: Webhook =
            serde_json::from_str(r#"{"triggers": ["RequestGranted", "AccessRequestExpired"]}"#)
                .unwrap();
        assert_eq!(
            ok.triggers,
            [Trigger::RequestGranted, Trigger::RequestExpired]
        );
        let err = serde_json::from_str::<Webhook>(r#"{"triggers": ["RequestApprove"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown trigger `RequestApprove`, expected one of RequestCreated, "),
            "{err}"
        );
        assert_eq!(
            serde_json::to_value(Trigger::RequestFailed).unwrap(),
            json!("RequestFailed")
        );
    }
}
