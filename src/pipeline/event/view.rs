//! The typed views of an event's payload that rules match on. Every field is read with
//! [`lenient`](super::lenient): absent, null or of the wrong type, it reads as `None` (or an
//! empty list) and never fails the decode.

use super::lenient::lenient;
use serde::Deserialize;

/// Typed subset of the payload used by rules. Every field is optional: events may omit or null
/// any of them, and a field of the wrong type reads as absent rather than failing the decode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EventView {
    /// `data`
    #[serde(deserialize_with = "lenient")]
    pub data: Option<DataView>,
}

/// Typed subset of `data`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DataView {
    /// `data.id`: the access request's id, shared by every event of one request.
    #[serde(deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `data.friendly_id`, e.g. `AR-123`.
    #[serde(deserialize_with = "lenient")]
    pub friendly_id: Option<String>,
    /// `data.requester`: who asked.
    #[serde(deserialize_with = "lenient")]
    pub requester: Option<PersonView>,
    /// `data.access_flow`: the policy that handled the request.
    #[serde(deserialize_with = "lenient")]
    pub access_flow: Option<RefView>,
    /// `data.access_bundle`; `None` when null or absent.
    #[serde(deserialize_with = "lenient")]
    pub access_bundle: Option<RefView>,
    /// `data.access_groups[]`, one per integration touched. Indexes line up with the raw
    /// array: an entry that is not an object reads as an all-`None` group.
    #[serde(deserialize_with = "lenient")]
    pub access_groups: Vec<AccessGroupView>,
}

/// A person: `data.requester`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PersonView {
    /// `id`
    #[serde(deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `name`
    #[serde(deserialize_with = "lenient")]
    pub name: Option<String>,
    /// `email`
    #[serde(deserialize_with = "lenient")]
    pub email: Option<String>,
}

/// An `{id, name}` reference: an access flow, an access bundle or a permission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RefView {
    /// `id`
    #[serde(deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `name`
    #[serde(deserialize_with = "lenient")]
    pub name: Option<String>,
}

/// One entry of `data.access_groups[]`: the access requested in one integration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AccessGroupView {
    /// `integration`
    #[serde(deserialize_with = "lenient")]
    pub integration: Option<IntegrationView>,
    /// `resource_types[]`; indexes line up with the raw array.
    #[serde(deserialize_with = "lenient")]
    pub resource_types: Vec<ResourceTypeView>,
    /// `access_units[]`; indexes line up with the raw array.
    #[serde(deserialize_with = "lenient")]
    pub access_units: Vec<AccessUnitView>,
}

/// `data.access_groups[].integration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IntegrationView {
    /// `id`
    #[serde(deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `type`, e.g. `postgresql`.
    #[serde(rename = "type", deserialize_with = "lenient")]
    pub kind: Option<String>,
    /// `name`, e.g. `prod-postgres`.
    #[serde(deserialize_with = "lenient")]
    pub name: Option<String>,
}

/// A resource type: `data.access_groups[].resource_types[]` and
/// `data.access_groups[].access_units[].resource.type`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ResourceTypeView {
    /// `id`
    #[serde(deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `name`, e.g. `Database`.
    #[serde(deserialize_with = "lenient")]
    pub name: Option<String>,
    /// `display_path`, e.g. `Postgresql/Database`.
    #[serde(deserialize_with = "lenient")]
    pub display_path: Option<String>,
}

/// One entry of `data.access_groups[].access_units[]`: a permission on a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AccessUnitView {
    /// `resource`
    #[serde(deserialize_with = "lenient")]
    pub resource: Option<ResourceView>,
    /// `permission`
    #[serde(deserialize_with = "lenient")]
    pub permission: Option<RefView>,
}

/// `data.access_groups[].access_units[].resource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ResourceView {
    /// `id`
    #[serde(deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `name`, e.g. `orders`.
    #[serde(deserialize_with = "lenient")]
    pub name: Option<String>,
    /// `path`, e.g. `prod-postgres/orders`.
    #[serde(deserialize_with = "lenient")]
    pub path: Option<String>,
    /// `type`: the resource's type.
    #[serde(rename = "type", deserialize_with = "lenient")]
    pub kind: Option<ResourceTypeView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::event::{Trigger, sample};

    #[test]
    fn view_reads_the_matching_fields() {
        let view = EventView::deserialize(&sample(Trigger::RequestApproved)).unwrap();
        let data = view.data.unwrap();
        assert_eq!(data.id.as_deref(), Some("req-5f2c9a"));
        assert_eq!(data.friendly_id.as_deref(), Some("AR-1042"));
        let requester = data.requester.unwrap();
        assert_eq!(requester.email.as_deref(), Some("dana@example.com"));
        assert_eq!(
            data.access_flow.unwrap().name.as_deref(),
            Some("Production DB access")
        );
        assert_eq!(
            data.access_bundle.unwrap().name.as_deref(),
            Some("DBA bundle")
        );
        let group = &data.access_groups[0];
        let integration = group.integration.as_ref().unwrap();
        assert_eq!(integration.kind.as_deref(), Some("postgresql"));
        assert_eq!(integration.name.as_deref(), Some("prod-postgres"));
        assert_eq!(group.resource_types[0].name.as_deref(), Some("Database"));
        let unit = &group.access_units[0];
        let resource = unit.resource.as_ref().unwrap();
        assert_eq!(resource.path.as_deref(), Some("prod-postgres/orders"));
        assert_eq!(
            resource.kind.as_ref().unwrap().display_path.as_deref(),
            Some("Postgresql/Database")
        );
        assert_eq!(
            unit.permission.as_ref().unwrap().name.as_deref(),
            Some("readonly")
        );
    }
}
