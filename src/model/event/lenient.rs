//! Lenient field reading for the views: a value that is null or of the wrong type reads as
//! absent instead of failing the enclosing struct, so one odd field never invalidates an event.
//!
//! One rule, written once in [`Lenient`]'s `Deserialize`. A view opts a field in with
//! `#[serde(deserialize_with = "lenient")]` on a `#[serde(default)]` struct; the field's type
//! ([`LenientField`]) says what an unreadable value becomes, and a missing field takes the
//! struct's default.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// Reads a field of type `F` leniently; the `deserialize_with` target of every view field.
/// Fails only when the input itself is broken (malformed JSON), never because of a value's type.
pub(super) fn lenient<'de, D, F>(deserializer: D) -> Result<F, D::Error>
where
    D: Deserializer<'de>,
    F: LenientField<'de>,
{
    F::read(deserializer)
}

/// A field type [`lenient`] can read, and what it reads when the value is null or not what the
/// type expects.
pub(super) trait LenientField<'de>: Sized {
    /// Reads the field from `deserializer`, turning a value of the wrong type into a default.
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

/// `None` for null or a value that does not deserialise as `T`.
impl<'de, T: Deserialize<'de>> LenientField<'de> for Option<T> {
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Lenient::deserialize(deserializer).map(|Lenient(value)| value)
    }
}

/// Empty for anything but an array; an element that does not deserialise as `T` becomes
/// `T::default()`, so indexes keep matching the raw array.
impl<'de, T: Deserialize<'de> + Default> LenientField<'de> for Vec<T> {
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items: Option<Vec<Lenient<T>>> = Option::read(deserializer)?;
        Ok(items
            .unwrap_or_default()
            .into_iter()
            .map(|Lenient(item)| item.unwrap_or_default())
            .collect())
    }
}

/// A value of any type read as a `T`: `Lenient(Some(t))` when it deserialises as `T`,
/// `Lenient(None)` when it is null or anything else. The value is always read to its end, so
/// the enclosing deserializer stays consistent.
struct Lenient<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(LenientVisitor(PhantomData))
            .map(Lenient)
    }
}

/// Sees whatever the input holds and offers it to `T`; `T`'s refusal is `None`. Sequences and
/// maps are always read to their end so that the enclosing deserializer stays consistent.
struct LenientVisitor<T>(PhantomData<T>);

/// `T` from a self-contained deserializer, its error discarded.
fn attempt<'de, T, E, D>(deserializer: D) -> Option<T>
where
    T: Deserialize<'de>,
    E: de::Error,
    D: Deserializer<'de, Error = E>,
{
    T::deserialize(deserializer).ok()
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(de::value::BorrowedStrDeserializer::new(
            v,
        )))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Option::read(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        Option::read(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let value = T::deserialize(ArrayOnly(&mut seq)).ok();
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(value)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let value = T::deserialize(de::value::MapAccessDeserializer::new(&mut map)).ok();
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(value)
    }
}

/// A sequence offered to `T` as an array only. Serde's derived structs also accept an array
/// of their fields in order; an array where an object belongs is a wrong type here.
struct ArrayOnly<A>(A);

impl<'de, A: SeqAccess<'de>> Deserializer<'de> for ArrayOnly<A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_seq(self.0)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Seq, &visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::RefView;
    use serde_json::{Value, json};

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(default)]
    struct Probe {
        #[serde(deserialize_with = "lenient")]
        text: Option<String>,
        #[serde(deserialize_with = "lenient")]
        count: Option<u32>,
        #[serde(deserialize_with = "lenient")]
        nested: Option<RefView>,
        #[serde(deserialize_with = "lenient")]
        list: Vec<RefView>,
        #[serde(deserialize_with = "lenient")]
        after: Option<String>,
    }

    /// Decodes `input` both from a parsed `Value` and straight from text.
    fn probe(input: Value) -> Probe {
        let from_value = Probe::deserialize(&input).unwrap();
        let from_text: Probe = serde_json::from_str(&input.to_string()).unwrap();
        assert_eq!(from_value, from_text, "{input}");
        from_value
    }

    #[test]
    fn lenient_keeps_well_typed_values() {
        let p = probe(json!({
            "text": "a", "count": 3, "nested": {"id": "i", "name": "n"},
            "list": [{"id": "x"}], "after": "z"
        }));
        assert_eq!(p.text.as_deref(), Some("a"));
        assert_eq!(p.count, Some(3));
        assert_eq!(p.nested.unwrap().name.as_deref(), Some("n"));
        assert_eq!(p.list.len(), 1);
        assert_eq!(p.list[0].id.as_deref(), Some("x"));
        assert_eq!(p.after.as_deref(), Some("z"));
    }

    #[test]
    fn lenient_turns_missing_null_and_wrong_types_into_none() {
        assert_eq!(probe(json!({})), Probe::default());
        assert_eq!(
            probe(json!({"text": null, "count": null, "nested": null, "list": null})),
            Probe::default()
        );
        let wrong = [
            json!(true),
            json!(-1),
            json!(1.5),
            json!(u64::MAX),
            json!([1, "two", {"three": 3}]),
            json!({"a": [1, 2], "b": {"c": null}}),
        ];
        for value in wrong {
            let p = probe(json!({
                "text": value, "count": value, "nested": value, "list": value,
                "after": "still read"
            }));
            assert_eq!(p.text, None, "{value}");
            assert_eq!(p.count, None, "{value}");
            // An object is the right type for `nested`, with none of its fields.
            let nested = value.is_object().then(RefView::default);
            assert_eq!(p.nested, nested, "{value}");
            // An array is the right type for `list`; its non-object entries read as defaults.
            let entries = value.as_array().map_or(0, Vec::len);
            assert_eq!(p.list, vec![RefView::default(); entries], "{value}");
            // The skipped value was read to its end: the next field is intact.
            assert_eq!(p.after.as_deref(), Some("still read"), "{value}");
        }
        let p = probe(json!({"text": 7, "count": "7", "nested": "n", "list": {"id": "x"}}));
        assert_eq!(p, Probe::default());
    }

    #[test]
    fn lenient_vec_keeps_indexes_aligned() {
        let p = probe(json!({"list": [1, {"id": "b"}, "c", {"id": 4, "name": "d"}]}));
        assert_eq!(
            p.list,
            [
                RefView::default(),
                RefView {
                    id: Some("b".into()),
                    name: None
                },
                RefView::default(),
                RefView {
                    id: None,
                    name: Some("d".into())
                },
            ]
        );
    }
}
