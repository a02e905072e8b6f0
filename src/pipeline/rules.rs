//! Which webhooks an event matches. Pure functions of (event, config): no I/O.
//!
//! A webhook matches when it is active, the event's trigger is one of its triggers, and every
//! filter it lists matches. Inside one filter the values are OR-ed: `integration_names =
//! ["a", "b"]` matches an event touching `a` or `b`. Values compare exactly, except e-mail
//! addresses, which compare case-insensitively.

use crate::config::{Filters, Webhook};
use crate::model::event::{DataView, Event, Trigger};
use std::fmt;
use std::sync::Arc;

/// Why a webhook does not match an event; `render` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The webhook is inactive.
    Inactive,
    /// The event's trigger is not one of the webhook's triggers.
    Trigger {
        /// The event's trigger.
        event: Trigger,
        /// The webhook's triggers.
        webhook: Vec<Trigger>,
    },
    /// A filter found none of its values in the event.
    Filter {
        /// The filter's name, e.g. `integration_names`.
        filter: &'static str,
        /// The values the filter accepts.
        wanted: Vec<String>,
        /// The values the event has at that place.
        found: Vec<String>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Inactive => f.write_str("the webhook is inactive"),
            Mismatch::Trigger { event, webhook } if webhook.is_empty() => {
                write!(f, "trigger {event}: the webhook has no triggers")
            }
            Mismatch::Trigger { event, webhook } => {
                let names: Vec<&str> = webhook.iter().map(|t| t.as_str()).collect();
                write!(
                    f,
                    "trigger {event} is not one of the webhook's triggers ({})",
                    names.join(", ")
                )
            }
            Mismatch::Filter {
                filter,
                wanted,
                found,
            } => write!(
                f,
                "filter {filter} wants one of {wanted:?}, the event has {found:?}"
            ),
        }
    }
}

/// Whether `webhook` takes `event`, and if not, the first reason why not.
pub fn check(webhook: &Webhook, event: &Event) -> Result<(), Mismatch> {
    if !webhook.is_active() {
        return Err(Mismatch::Inactive);
    }
    check_ignoring_status(webhook, event)
}

/// [`check`] without the status test, for `render`/`test` of an inactive webhook.
pub fn check_ignoring_status(webhook: &Webhook, event: &Event) -> Result<(), Mismatch> {
    if !webhook.triggers.contains(&event.trigger) {
        return Err(Mismatch::Trigger {
            event: event.trigger,
            webhook: webhook.triggers.clone(),
        });
    }
    check_filters(&webhook.filters, event.view.data.as_ref())
}

/// The webhooks that take `event`, in config order.
pub fn matching(webhooks: &[Arc<Webhook>], event: &Event) -> Vec<Arc<Webhook>> {
    webhooks
        .iter()
        .filter(|w| check(w, event).is_ok())
        .cloned()
        .collect()
}

fn check_filters(filters: &Filters, data: Option<&DataView>) -> Result<(), Mismatch> {
    for (filter, wanted) in filters.listed() {
        let found = values_at(filter, data);
        let hit = found.iter().any(|value| {
            wanted.iter().any(|w| {
                if filter == "requester_emails" {
                    w.eq_ignore_ascii_case(value)
                } else {
                    w == value
                }
            })
        });
        if !hit {
            return Err(Mismatch::Filter {
                filter,
                wanted: wanted.to_vec(),
                found,
            });
        }
    }
    Ok(())
}

/// The event's values at the place a filter looks.
fn values_at(filter: &str, data: Option<&DataView>) -> Vec<String> {
    let Some(data) = data else {
        return Vec::new();
    };
    let groups = data.access_groups.iter();
    let values: Vec<&Option<String>> = match filter {
        "integration_names" => groups
            .filter_map(|g| g.integration.as_ref())
            .map(|i| &i.name)
            .collect(),
        "integration_types" => groups
            .filter_map(|g| g.integration.as_ref())
            .map(|i| &i.kind)
            .collect(),
        "resource_types" => groups
            .flat_map(|g| g.resource_types.iter())
            .map(|r| &r.name)
            .collect(),
        "permissions" => groups
            .flat_map(|g| g.access_units.iter())
            .filter_map(|u| u.permission.as_ref())
            .map(|p| &p.name)
            .collect(),
        "access_flow_names" => data.access_flow.iter().map(|f| &f.name).collect(),
        "bundle_names" => data.access_bundle.iter().map(|b| &b.name).collect(),
        "requester_emails" => data.requester.iter().map(|r| &r.email).collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = values.into_iter().flatten().cloned().collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Status;
    use crate::model::event::{decode, sample};

    fn webhook(status: Status, triggers: &[Trigger], filters: Filters) -> Webhook {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("webhooks")).unwrap();
        let triggers: Vec<String> = triggers.iter().map(|t| format!("\"{t}\"")).collect();
        let status = match status {
            Status::Active => "active",
            Status::Inactive => "inactive",
        };
        std::fs::write(
            dir.path().join("webhooks/w.toml"),
            format!(
                "[[webhook]]\nname = \"w\"\nstatus = \"{status}\"\nurl = \"https://h/\"\n\
                 triggers = [{}]\nbody_template = '{{}}'\n",
                triggers.join(", ")
            ),
        )
        .unwrap();
        let config = crate::config::load(dir.path(), &crate::config::Env::default()).unwrap();
        let mut hook = Arc::try_unwrap(config.webhooks.into_iter().next().unwrap()).unwrap();
        hook.filters = filters;
        hook
    }

    fn event(trigger: Trigger) -> Event {
        decode(sample(trigger).to_string().as_bytes(), None).unwrap()
    }

    fn some(values: &[&str]) -> Option<Vec<String>> {
        Some(values.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn trigger_must_be_listed() {
        let hook = webhook(
            Status::Active,
            &[Trigger::RequestApproved],
            Filters::default(),
        );
        assert_eq!(check(&hook, &event(Trigger::RequestApproved)), Ok(()));
        assert!(matches!(
            check(&hook, &event(Trigger::RequestCreated)),
            Err(Mismatch::Trigger { .. })
        ));
    }

    #[test]
    fn inactive_matches_nothing() {
        let hook = webhook(
            Status::Inactive,
            &[Trigger::RequestApproved],
            Filters::default(),
        );
        assert_eq!(
            check(&hook, &event(Trigger::RequestApproved)),
            Err(Mismatch::Inactive)
        );
        assert_eq!(
            check_ignoring_status(&hook, &event(Trigger::RequestApproved)),
            Ok(())
        );
    }

    #[test]
    fn every_filter_kind_matches_the_sample_and_rejects_others() {
        let ok: [(&str, Filters); 7] = [
            (
                "integration_names",
                Filters {
                    integration_names: some(&["prod-postgres"]),
                    ..Default::default()
                },
            ),
            (
                "integration_types",
                Filters {
                    integration_types: some(&["postgresql"]),
                    ..Default::default()
                },
            ),
            (
                "resource_types",
                Filters {
                    resource_types: some(&["Database"]),
                    ..Default::default()
                },
            ),
            (
                "access_flow_names",
                Filters {
                    access_flow_names: some(&["Production DB access"]),
                    ..Default::default()
                },
            ),
            (
                "bundle_names",
                Filters {
                    bundle_names: some(&["DBA bundle"]),
                    ..Default::default()
                },
            ),
            (
                "requester_emails",
                Filters {
                    requester_emails: some(&["DANA@example.com"]),
                    ..Default::default()
                },
            ),
            (
                "permissions",
                Filters {
                    permissions: some(&["readonly"]),
                    ..Default::default()
                },
            ),
        ];
        for (name, filters) in ok {
            let hook = webhook(Status::Active, &[Trigger::RequestApproved], filters.clone());
            assert_eq!(
                check(&hook, &event(Trigger::RequestApproved)),
                Ok(()),
                "{name}"
            );
            // The same filter with only a value the sample lacks does not match.
            let mut miss = filters;
            for values in [
                &mut miss.integration_names,
                &mut miss.integration_types,
                &mut miss.resource_types,
                &mut miss.access_flow_names,
                &mut miss.bundle_names,
                &mut miss.requester_emails,
                &mut miss.permissions,
            ]
            .into_iter()
            .flatten()
            {
                *values = vec!["something-else".into()];
            }
            let hook = webhook(Status::Active, &[Trigger::RequestApproved], miss);
            match check(&hook, &event(Trigger::RequestApproved)) {
                Err(Mismatch::Filter { filter, .. }) => assert_eq!(filter, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn values_inside_a_filter_are_ored_and_filters_are_anded() {
        let filters = Filters {
            integration_names: some(&["other", "prod-postgres"]),
            permissions: some(&["admin", "readonly"]),
            ..Default::default()
        };
        let hook = webhook(Status::Active, &[Trigger::RequestApproved], filters);
        assert_eq!(check(&hook, &event(Trigger::RequestApproved)), Ok(()));

        let filters = Filters {
            integration_names: some(&["prod-postgres"]),
            permissions: some(&["admin"]),
            ..Default::default()
        };
        let hook = webhook(Status::Active, &[Trigger::RequestApproved], filters);
        let err = check(&hook, &event(Trigger::RequestApproved)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "filter permissions wants one of [\"admin\"], the event has [\"readonly\"]"
        );
    }

    #[test]
    fn a_missing_field_never_matches_a_filter() {
        let filters = Filters {
            bundle_names: some(&["DBA bundle"]),
            ..Default::default()
        };
        let hook = webhook(Status::Active, &[Trigger::RequestApproved], filters);
        let mut raw = sample(Trigger::RequestApproved);
        raw["data"]["access_bundle"] = serde_json::Value::Null;
        let event = decode(raw.to_string().as_bytes(), None).unwrap();
        assert!(matches!(check(&hook, &event), Err(Mismatch::Filter { .. })));
    }
}
