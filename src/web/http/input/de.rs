//! Checked `name=value` pairs into a handler's struct, and the names a struct reads.
//!
//! A small serde deserializer instead of `serde_urlencoded`, for two reasons: the value
//! deserializer knows its field's name, so a refusal says which field; and it knows the
//! field's type, so [`MultiLine`] fields may hold line breaks and one-line fields may not.

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeOwned, IntoDeserializer, Visitor, value::MapDeserializer},
    forward_to_deserialize_any,
};

use super::{BadInput, Problem};

/// The serde name by which a [`MultiLine`] asks for its value.
const MULTI_LINE: &str = "portcullis::MultiLine";

/// Text from a multi-line field (a textarea): line breaks and tabs allowed, other control
/// characters still refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultiLine(pub String);

impl MultiLine {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for MultiLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = MultiLine;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("text")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<MultiLine, E> {
                Ok(MultiLine(value.to_owned()))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<MultiLine, E> {
                Ok(MultiLine(value))
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<MultiLine, D::Error> {
                String::deserialize(deserializer).map(MultiLine)
            }
        }
        deserializer.deserialize_newtype_struct(MULTI_LINE, Text)
    }
}

impl de::Error for BadInput {
    /// serde's message may quote the value (a password, say): not kept, not logged.
    fn custom<T: std::fmt::Display>(_message: T) -> Self {
        BadInput::unnamed(Problem::Unreadable)
    }

    fn duplicate_field(field: &'static str) -> Self {
        BadInput::new(field, Problem::Repeated)
    }
}

/// Checked pairs into `T` (a struct of `String`, `Option<String>`, numbers, [`MultiLine`]).
pub fn from_pairs<T: DeserializeOwned>(pairs: Vec<(String, String)>) -> Result<T, BadInput> {
    let values = pairs
        .into_iter()
        .map(|(name, text)| (name.clone(), Value { name, text }));
    T::deserialize(MapDeserializer::<_, BadInput>::new(values))
}

/// One value, with its field's name for refusals.
struct Value {
    name: String,
    text: String,
}

impl Value {
    fn one_line(self) -> Result<String, BadInput> {
        if self.text.contains(['\n', '\r', '\t']) {
            return Err(BadInput::new(&self.name, Problem::LineBreak));
        }
        Ok(self.text)
    }

    fn number<N: std::str::FromStr>(&self) -> Result<N, BadInput> {
        self.text
            .trim()
            .parse()
            .map_err(|_| BadInput::new(&self.name, Problem::NotANumber))
    }
}

impl<'de> IntoDeserializer<'de, BadInput> for Value {
    type Deserializer = Value;
    fn into_deserializer(self) -> Value {
        self
    }
}

macro_rules! numbers {
    ($($method:ident => $visit:ident: $type:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BadInput> {
            visitor.$visit(self.number::<$type>()?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Value {
    type Error = BadInput;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BadInput> {
        visitor.visit_string(self.one_line()?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BadInput> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, BadInput> {
        if name == MULTI_LINE {
            // Control characters other than these three were refused when the pair was
            // checked.
            return visitor.visit_string(self.text);
        }
        visitor.visit_newtype_struct(self)
    }

    /// Fields the handler does not read: checked like one-line text, then dropped.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BadInput> {
        self.one_line()?;
        visitor.visit_unit()
    }

    numbers! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
    }

    forward_to_deserialize_any! {
        bool f32 f64 i128 u128 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct enum identifier
    }
}

/// The names of the fields `T` reads (a struct deriving `Deserialize`): what a route
/// declares as its query parameters or form fields, taken from the type itself so that
/// the route table cannot drift from the handlers.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    impl<'de> Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Found(fields)) => fields,
        Ok(_) => &[],
    }
}

/// Whether `field` of `T` is a [`MultiLine`]: it accepts a line break.
pub fn is_multi_line<T: DeserializeOwned>(field: &str) -> bool {
    from_pairs::<T>(vec![(field.to_owned(), "a\nb".to_owned())]).is_ok()
}
