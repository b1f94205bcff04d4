//! The request message of an HTTP call, from its path, query and JSON
//! body; the response message as JSON. Conversion itself is prost-reflect's
//! canonical proto3 JSON mapping: this module only places path and query
//! values, as JSON, where the mapping reads them.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, SerializeOptions,
};
use serde_json::{Map, Value};

use crate::codegen::{HttpBody, HttpRule};

/// Why a request cannot become a request message: said to the caller as
/// `INVALID_ARGUMENT`.
pub(super) type Problem = String;

/// The request message of a call to `rule`: the JSON body (all of it for
/// `body: "*"`, one field's value for `body: "field"`), the query
/// parameters (unless the body holds every field), then the path's fields.
pub(super) fn request(
    input: &MessageDescriptor,
    rule: &HttpRule,
    path_fields: &[(&'static [&'static str], String)],
    query: &[(String, String)],
    body: &[u8],
) -> Result<DynamicMessage, Problem> {
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice::<Value>(body).map_err(|e| format!("the body is not JSON: {e}"))?)
    };
    let mut object = match (rule.body, parsed) {
        (HttpBody::None, Some(_)) => {
            return Err(format!(
                "{} {} takes no body: send the fields as query parameters",
                rule.method, rule.template
            ));
        }
        (HttpBody::None, None) | (HttpBody::All, None) => Map::new(),
        (HttpBody::All, Some(Value::Object(map))) => map,
        (HttpBody::All, Some(other)) => return Err(format!("the body must be a JSON object, not {}", kind_of(&other))),
        (HttpBody::Field(_), None) => Map::new(),
        (HttpBody::Field(name), Some(value)) => {
            let field = input.get_field_by_name(name).ok_or_else(|| format!("no field {name}"))?;
            Map::from_iter([(field.json_name().to_owned(), value)])
        }
    };
    if rule.body != HttpBody::All {
        for (key, value) in query {
            let names: Vec<&str> = key.split('.').collect();
            let fields = resolve(input, &names).map_err(|p| format!("query parameter {key:?}: {p}"))?;
            if let HttpBody::Field(body) = rule.body
                && fields[0].name() == body
            {
                return Err(format!("query parameter {key:?} names the body field {body}: send it in the body"));
            }
            let value = scalar(fields.last().expect("resolve returns a field"), value)
                .map_err(|p| format!("query parameter {key:?}: {p}"))?;
            place(&mut object, &fields, value, true).map_err(|p| format!("query parameter {key:?}: {p}"))?;
        }
    }
    for (names, value) in path_fields {
        let fields = resolve(input, names).map_err(|p| format!("path field {}: {p}", names.join(".")))?;
        let value = scalar(fields.last().expect("resolve returns a field"), value)
            .map_err(|p| format!("path field {}: {p}", names.join(".")))?;
        place(&mut object, &fields, value, false).map_err(|p| format!("path field {}: {p}", names.join(".")))?;
    }
    DynamicMessage::deserialize_with_options(input.clone(), Value::Object(object), &DeserializeOptions::new())
        .map_err(|e| format!("the request does not fit {}: {e}", input.full_name()))
}

/// The fields named by `names` (proto or JSON names), from `message`
/// down through singular message fields.
fn resolve(message: &MessageDescriptor, names: &[&str]) -> Result<Vec<FieldDescriptor>, Problem> {
    let mut out = Vec::with_capacity(names.len());
    let mut current = message.clone();
    for (i, name) in names.iter().enumerate() {
        let field = current
            .get_field_by_name(name)
            .or_else(|| current.get_field_by_json_name(name))
            .ok_or_else(|| format!("{} has no field {name:?}", current.full_name()))?;
        if i + 1 < names.len() {
            match field.kind() {
                Kind::Message(inner) if !field.is_list() && !field.is_map() && !is_string_like(&inner) => {
                    current = inner;
                }
                _ => return Err(format!("{name:?} has no fields")),
            }
        }
        out.push(field);
    }
    Ok(out)
}

/// Messages whose JSON form is a string or number, which a path or query
/// value can therefore hold.
fn is_string_like(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
            | "google.protobuf.BoolValue"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.FloatValue"
            | "google.protobuf.DoubleValue"
    )
}

/// A path or query value as the JSON the mapping reads for `field`.
fn scalar(field: &FieldDescriptor, text: &str) -> Result<Value, Problem> {
    if field.is_map() {
        return Err(format!("{} is a map: send it in the body", field.name()));
    }
    let kind = match field.kind() {
        Kind::Message(m) if is_string_like(&m) => match m.full_name() {
            "google.protobuf.BoolValue" => Kind::Bool,
            "google.protobuf.Int32Value" => Kind::Int32,
            "google.protobuf.UInt32Value" => Kind::Uint32,
            "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => Kind::Double,
            _ => Kind::String,
        },
        Kind::Message(m) => {
            return Err(format!("{} is a message ({}): send it in the body", field.name(), m.full_name()));
        }
        other => other,
    };
    let number = |text: &str| -> Result<Value, Problem> {
        serde_json::from_str::<serde_json::Number>(text)
            .map(Value::Number)
            .map_err(|_| format!("{text:?} is not a number"))
    };
    Ok(match kind {
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("{text:?} is not true or false")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 => number(text)?,
        Kind::Float | Kind::Double if matches!(text, "NaN" | "Infinity" | "-Infinity") => {
            Value::String(text.to_owned())
        }
        Kind::Float | Kind::Double => number(text)?,
        Kind::Enum(_) if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !text.is_empty() => number(text)?,
        // 64-bit integers, strings, bytes (base64), enum names and the
        // string-valued well-known types are JSON strings.
        _ => Value::String(text.to_owned()),
    })
}

/// Puts `value` at the field path `fields` in `object`: appended for a
/// repeated field (query parameters repeat), replacing what the body said
/// for a path field.
fn place(
    object: &mut Map<String, Value>,
    fields: &[FieldDescriptor],
    value: Value,
    append: bool,
) -> Result<(), Problem> {
    let (last, parents) = fields.split_last().expect("a field path has a field");
    let mut current = object;
    for field in parents {
        let slot = take_key(current, field).unwrap_or_else(|| Value::Object(Map::new()));
        let entry = current.entry(field.json_name().to_owned()).or_insert(slot);
        current = match entry {
            Value::Object(map) => map,
            _ => return Err(format!("{} is not an object in the body", field.name())),
        };
    }
    let existing = take_key(current, last);
    let value = match (last.is_list(), existing) {
        (true, Some(Value::Array(mut items))) if append => {
            items.push(value);
            Value::Array(items)
        }
        (true, _) => Value::Array(vec![value]),
        (false, Some(_)) if append => return Err(format!("{} is given more than once", last.name())),
        (false, _) => value,
    };
    current.insert(last.json_name().to_owned(), value);
    Ok(())
}

/// Removes and returns `field`'s value from `object`, under its JSON name
/// or its proto name.
fn take_key(object: &mut Map<String, Value>, field: &FieldDescriptor) -> Option<Value> {
    let json = object.remove(field.json_name());
    let proto = if field.name() != field.json_name() { object.remove(field.name()) } else { None };
    json.or(proto)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `message` as canonical proto3 JSON: default values left out, 64-bit
/// integers as strings, enums by name. With `field`, only that field's
/// value (its default value when unset).
pub(super) fn response(message: &DynamicMessage, field: Option<&str>) -> Result<Vec<u8>, Problem> {
    let options = SerializeOptions::new();
    let Some(name) = field else { return to_json(message, &options) };
    let descriptor = message.descriptor();
    let field =
        descriptor.get_field_by_name(name).ok_or_else(|| format!("{} has no field {name}", descriptor.full_name()))?;
    // Messages and lists of them are written by the mapping itself, so
    // their fields keep their order; other values are taken from the
    // whole message's JSON.
    match &*message.get_field(&field) {
        prost_reflect::Value::Message(m) if !field.is_map() => return to_json(m, &options),
        prost_reflect::Value::List(items) if matches!(field.kind(), Kind::Message(_)) => {
            let mut out = vec![b'['];
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if let prost_reflect::Value::Message(m) = item {
                    out.extend(to_json(m, &options)?);
                }
            }
            out.push(b']');
            return Ok(out);
        }
        _ => {}
    }
    let full = to_json(message, &options.skip_default_fields(false))?;
    let mut map = serde_json::from_slice::<Map<String, Value>>(&full).map_err(|e| e.to_string())?;
    serde_json::to_vec(&map.remove(field.json_name()).unwrap_or(Value::Null)).map_err(|e| e.to_string())
}

/// `message` as JSON; an error when it cannot be written (an `Any`
/// holding a type the descriptors lack).
pub(super) fn to_json(message: &DynamicMessage, options: &SerializeOptions) -> Result<Vec<u8>, Problem> {
    let mut out = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut out, options)
        .map_err(|e| format!("{} cannot be written as JSON: {e}", message.descriptor().full_name()))?;
    Ok(out.into_inner())
}
