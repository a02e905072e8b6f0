//! The typed views of an event's payload that rules match on. Every field is read with
//! [`lenient`]: absent, null or of the wrong type, it reads as `None` (or an empty list) and
//! never fails the decode. The `view!` macro declares each view, so no field can miss this.

use super::lenient::lenient;
use serde::Deserialize;

/// Declares a view: a struct deriving what every view derives, whose missing fields take their
/// default and whose every field is read with [`lenient`]. Field attributes (docs, `rename`)
/// pass through.
macro_rules! view {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_attr:meta])* $field_vis:vis $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
        #[serde(default)]
        $vis struct $name {
            $(
                $(#[$field_attr])*
                #[serde(deserialize_with = "lenient")]
                $field_vis $field: $ty,
            )*
        }
    };
}

view! {
    /// Typed subset of the payload used by rules. Every field is optional: events may omit or null
    /// any of them, and a field of the wrong type reads as absent rather than failing the decode.
    pub struct EventView {
        /// `data`
        pub data: Option<DataView>,
    }
}

view! {
    /// Typed subset of `data`.
    pub struct DataView {
        /// `data.id`: the access request's id, shared by every event of one request.
        pub id: Option<String>,
        /// `data.friendly_id`, e.g. `AR-123`.
        pub friendly_id: Option<String>,
        /// `data.requester`: who asked.
        pub requester: Option<PersonView>,
        /// `data.access_flow`: the policy that handled the request.
        pub access_flow: Option<RefView>,
        /// `data.access_bundle`; `None` when null or absent.
        pub access_bundle: Option<RefView>,
        /// `data.access_groups[]`, one per integration touched. Indexes line up with the raw
        /// array: an entry that is not an object reads as an all-`None` group.
        pub access_groups: Vec<AccessGroupView>,
    }
}

view! {
    /// A person: `data.requester`.
    pub struct PersonView {
        /// `id`
        pub id: Option<String>,
        /// `name`
        pub name: Option<String>,
        /// `email`
        pub email: Option<String>,
    }
}

view! {
    /// An `{id, name}` reference: an access flow, an access bundle or a permission.
    pub struct RefView {
        /// `id`
        pub id: Option<String>,
        /// `name`
        pub name: Option<String>,
    }
}

view! {
    /// One entry of `data.access_groups[]`: the access requested in one integration.
    pub struct AccessGroupView {
        /// `integration`
        pub integration: Option<IntegrationView>,
        /// `resource_types[]`; indexes line up with the raw array.
        pub resource_types: Vec<ResourceTypeView>,
        /// `access_units[]`; indexes line up with the raw array.
        pub access_units: Vec<AccessUnitView>,
    }
}

view! {
    /// `data.access_groups[].integration`.
    pub struct IntegrationView {
        /// `id`
        pub id: Option<String>,
        /// `type`, e.g. `postgresql`.
        #[serde(rename = "type")]
        pub kind: Option<String>,
        /// `name`, e.g. `prod-postgres`.
        pub name: Option<String>,
    }
}

view! {
    /// A resource type: `data.access_groups[].resource_types[]` and
    /// `data.access_groups[].access_units[].resource.type`.
    pub struct ResourceTypeView {
        /// `id`
        pub id: Option<String>,
        /// `name`, e.g. `Database`.
        pub name: Option<String>,
        /// `display_path`, e.g. `Postgresql/Database`.
        pub display_path: Option<String>,
    }
}

view! {
    /// One entry of `data.access_groups[].access_units[]`: a permission on a resource.
    pub struct AccessUnitView {
        /// `resource`
        pub resource: Option<ResourceView>,
        /// `permission`
        pub permission: Option<RefView>,
    }
}

view! {
    /// `data.access_groups[].access_units[].resource`.
    pub struct ResourceView {
        /// `id`
        pub id: Option<String>,
        /// `name`, e.g. `orders`.
        pub name: Option<String>,
        /// `path`, e.g. `prod-postgres/orders`.
        pub path: Option<String>,
        /// `type`: the resource's type.
        #[serde(rename = "type")]
        pub kind: Option<ResourceTypeView>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{Trigger, sample};

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
