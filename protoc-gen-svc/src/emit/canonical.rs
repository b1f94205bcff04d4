//! Deterministic protobuf encoding of a dynamic message: fields and
//! extensions in field-number order, map entries sorted by key, unknown
//! fields last in the order they were read, and empty `options` messages
//! left out. Used to make embedded descriptor sets byte-identical whichever
//! compiler produced them (compilers order option fields differently, some
//! write `options {}` where others write nothing, and maps have no order).

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value};

/// Encodes `message` canonically.
pub fn encode(message: &DynamicMessage) -> Vec<u8> {
    let mut out = Vec::new();
    write(message, &mut out);
    out
}

enum Slot<'a> {
    Field(prost_reflect::FieldDescriptor, &'a Value),
    Extension(prost_reflect::ExtensionDescriptor, &'a Value),
}

fn write(message: &DynamicMessage, out: &mut Vec<u8>) {
    let mut slots: Vec<(u32, Slot<'_>)> = message
        .fields()
        .map(|(f, v)| (f.number(), Slot::Field(f, v)))
        .chain(message.extensions().map(|(e, v)| (e.number(), Slot::Extension(e, v))))
        .collect();
    slots.sort_by_key(|(n, _)| *n);
    for (number, slot) in slots {
        let (kind, value) = match &slot {
            Slot::Field(f, v) => (f.kind(), *v),
            Slot::Extension(e, v) => (e.kind(), *v),
        };
        match (value, &kind) {
            (Value::Message(m), Kind::Message(_)) => {
                let empty_options = matches!(&slot, Slot::Field(f, _) if f.name() == "options") && encode(m).is_empty();
                if !empty_options {
                    write_message(number, is_group(&slot), m, out);
                }
            }
            (Value::List(items), Kind::Message(_)) => {
                for item in items {
                    if let Value::Message(m) = item {
                        write_message(number, is_group(&slot), m, out);
                    }
                }
            }
            (Value::Map(map), Kind::Message(entry)) => {
                let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let key_field = entry.map_entry_key_field();
                let value_field = entry.map_entry_value_field();
                for (k, v) in entries {
                    let mut e = DynamicMessage::new(entry.clone());
                    e.set_field(&key_field, k.clone().into());
                    e.set_field(&value_field, v.clone());
                    write_message(number, false, &e, out);
                }
            }
            _ => {
                // Scalars, strings, bytes, enums and their lists: let the
                // library encode a message holding just this field.
                let mut single = DynamicMessage::new(message.descriptor());
                match &slot {
                    Slot::Field(f, v) => single.set_field(f, (*v).clone()),
                    Slot::Extension(e, v) => single.set_extension(e, (*v).clone()),
                }
                single.encode_raw(out);
            }
        }
    }
    for unknown in message.unknown_fields() {
        unknown.encode(out);
    }
}

fn is_group(slot: &Slot<'_>) -> bool {
    match slot {
        Slot::Field(f, _) => f.is_group(),
        Slot::Extension(e, _) => e.is_group(),
    }
}

fn write_message(number: u32, group: bool, m: &DynamicMessage, out: &mut Vec<u8>) {
    let body = encode(m);
    if group {
        encode_key(number, WireType::StartGroup, out);
        out.extend_from_slice(&body);
        encode_key(number, WireType::EndGroup, out);
    } else {
        encode_key(number, WireType::LengthDelimited, out);
        encode_varint(body.len() as u64, out);
        out.extend_from_slice(&body);
    }
}
