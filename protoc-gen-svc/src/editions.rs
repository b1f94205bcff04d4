//! Editions support for the plugin route: a file written with
//! `edition = "2023"` is lowered to the proto2 or proto3 descriptor that
//! has the same wire format and field presence, because prost-build and
//! prost-reflect read only proto2 and proto3.
//!
//! Feature resolution follows the editions rules: edition defaults, then
//! file, message, oneof and field `features`, innermost winning. Then:
//! - a file in which no field has IMPLICIT presence becomes proto2
//!   (EXPLICIT presence is proto2 `optional`, LEGACY_REQUIRED is `required`,
//!   DELIMITED message fields are groups);
//! - a file with IMPLICIT presence and no LEGACY_REQUIRED or DELIMITED
//!   field becomes proto3, EXPLICIT presence turning into proto3 `optional`
//!   (with its synthetic oneof);
//! - a file with both becomes proto2, its IMPLICIT fields proto2 `optional`
//!   (the wire format is the same) marked with a field-level
//!   `features.field_presence = IMPLICIT`, which validators read to treat a
//!   zero as unset, as the original file says;
//! - repeated scalar fields always get an explicit `packed` option from
//!   `repeated_field_encoding`.
//!
//! The embedded descriptor set then holds the lowered file, which has the
//! same wire format as the original.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value};

use crate::error::{Diagnostic, Result};

/// `google.protobuf.Edition` numbers.
pub const EDITION_PROTO2: i32 = 998;
/// Highest edition the generator reads.
pub const EDITION_2023: i32 = 1000;

const LABEL_REQUIRED: i32 = 2;
const LABEL_REPEATED: i32 = 3;
const TYPE_GROUP: i32 = 10;
const TYPE_MESSAGE: i32 = 11;
const TYPE_STRING: i32 = 9;
const TYPE_BYTES: i32 = 12;

const PRESENCE_EXPLICIT: i32 = 1;
const PRESENCE_IMPLICIT: i32 = 2;
const PRESENCE_REQUIRED: i32 = 3;
const ENCODING_PACKED: i32 = 1;
const MESSAGE_DELIMITED: i32 = 2;

/// The resolved features that change generated code.
#[derive(Clone, Copy)]
struct Features {
    presence: i32,
    repeated_encoding: i32,
    message_encoding: i32,
}

impl Features {
    const EDITION_2023: Features =
        Features { presence: PRESENCE_EXPLICIT, repeated_encoding: ENCODING_PACKED, message_encoding: 1 };

    /// Applies the `features` of an options message on top of these.
    fn merge(self, element: &DynamicMessage) -> Features {
        let Some(features) = get_message(element, "options").and_then(|o| get_message(&o, "features")) else {
            return self;
        };
        let pick = |name: &str, current: i32| get_enum(&features, name).filter(|v| *v != 0).unwrap_or(current);
        Features {
            presence: pick("field_presence", self.presence),
            repeated_encoding: pick("repeated_field_encoding", self.repeated_encoding),
            message_encoding: pick("message_encoding", self.message_encoding),
        }
    }
}

/// descriptor.proto with the editions fields, from the embedded compiler.
fn schema() -> Option<&'static MessageDescriptor> {
    static SCHEMA: OnceLock<Option<MessageDescriptor>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use protox::file::FileResolver;
            let file = protox::file::GoogleFileResolver::new().open_file("google/protobuf/descriptor.proto").ok()?;
            let mut pool = DescriptorPool::new();
            pool.add_file_descriptor_proto(file.file_descriptor_proto().clone()).ok()?;
            pool.get_message_by_name("google.protobuf.FileDescriptorProto")
        })
        .as_ref()
}

/// Lowers an encoded editions `FileDescriptorProto`; returns `None` for
/// proto2 and proto3 files, which need nothing.
pub fn lower(bytes: &[u8], syntax: Option<&str>, name: &str) -> Result<Option<Vec<u8>>> {
    if syntax != Some("editions") {
        return Ok(None);
    }
    let fail = |message: String, hint: &str| Diagnostic::new(format!("file {name}"), message, hint).in_file(name);
    let desc = schema().ok_or_else(|| fail("descriptor.proto schema is unavailable".into(), "report this bug"))?;
    let mut file = DynamicMessage::decode(desc.clone(), bytes)
        .map_err(|e| fail(format!("descriptor does not decode: {e}"), "re-run protoc or buf"))?;
    let edition = get_enum(&file, "edition").unwrap_or(0);
    if edition != EDITION_2023 {
        return Err(fail(
            format!("edition {} is not supported", edition_name(edition)),
            "protoc-gen-svc reads proto2, proto3 and edition 2023; use edition = \"2023\"",
        )
        .into());
    }
    let base = Features::EDITION_2023.merge(&file);
    let implicit = any_implicit(&file, "message_type", base);
    let mixed = implicit && needs_proto2(&file, "message_type", base);
    let proto3 = implicit && !mixed;
    let mut errors = Vec::new();
    let file_name = name.to_owned();
    for_each_message(&mut file, "message_type", base, &mut |m, features| {
        lower_message(m, features, proto3, mixed, &mut errors)
    });
    if let Some(Value::List(exts)) = file.get_field_by_name_mut("extension") {
        for ext in exts.iter_mut() {
            if let Value::Message(f) = ext {
                let features = base.merge(f);
                if let Err(problem) = lower_field(f, features, proto3) {
                    errors.push((format!("extension {}", get_string(f, "name")), problem));
                }
            }
        }
    }
    if proto3 {
        check_open_enums(&file, &file_name, &mut errors);
    }
    if !errors.is_empty() {
        return Err(crate::Error {
            diagnostics: errors
                .into_iter()
                .map(|(element, message)| {
                    Diagnostic::new(
                        element,
                        message,
                        "set features.field_presence = EXPLICIT on the file, or avoid mixing IMPLICIT presence with required or delimited fields in one file",
                    )
                    .in_file(file_name.clone())
                })
                .collect(),
        });
    }
    file.clear_field_by_name("edition");
    file.set_field_by_name("syntax", Value::String(if proto3 { "proto3" } else { "proto2" }.into()));
    Ok(Some(prost::Message::encode_to_vec(&file)))
}

fn edition_name(n: i32) -> String {
    match n {
        998 => "proto2".into(),
        999 => "proto3".into(),
        1000 => "2023".into(),
        1001 => "2024".into(),
        0 => "(unset)".into(),
        other => other.to_string(),
    }
}

/// Whether any singular, non-message field outside a oneof resolves to
/// IMPLICIT presence.
fn any_implicit(parent: &DynamicMessage, list: &str, inherited: Features) -> bool {
    any_field(parent, list, inherited, &|f, features| {
        let ty = get_enum(f, "type").unwrap_or(0);
        get_enum(f, "label") != Some(LABEL_REPEATED)
            && ty != TYPE_MESSAGE
            && ty != TYPE_GROUP
            && !f.has_field_by_name("oneof_index")
            && features.presence == PRESENCE_IMPLICIT
    })
}

/// Whether any field needs proto2 to be expressed: LEGACY_REQUIRED
/// presence, or DELIMITED message encoding.
fn needs_proto2(parent: &DynamicMessage, list: &str, inherited: Features) -> bool {
    any_field(parent, list, inherited, &|f, features| {
        let ty = get_enum(f, "type").unwrap_or(0);
        (get_enum(f, "label") != Some(LABEL_REPEATED) && features.presence == PRESENCE_REQUIRED)
            || (ty == TYPE_MESSAGE && features.message_encoding == MESSAGE_DELIMITED)
    })
}

/// Whether `test` holds for a field (with its resolved features) of any
/// message in `parent`'s `list`, nested messages included.
fn any_field(
    parent: &DynamicMessage,
    list: &str,
    inherited: Features,
    test: &dyn Fn(&DynamicMessage, Features) -> bool,
) -> bool {
    let Some(Value::List(messages)) = parent.get_field_by_name(list).map(|v| v.into_owned()) else { return false };
    messages.iter().filter_map(|m| m.as_message()).any(|m| {
        let features = inherited.merge(m);
        let fields = match m.get_field_by_name("field").map(|v| v.into_owned()) {
            Some(Value::List(fields)) => fields,
            _ => Vec::new(),
        };
        fields.iter().filter_map(|f| f.as_message()).any(|f| test(f, features.merge(f)))
            || any_field(m, "nested_type", features, test)
    })
}

/// Marks a field lowered to proto2 `optional` as having IMPLICIT presence
/// in its edition (`options.features.field_presence`).
fn mark_implicit(f: &mut DynamicMessage) {
    let Some(options_desc) = f.descriptor().get_field_by_name("options").and_then(|o| o.kind().as_message().cloned())
    else {
        return;
    };
    let Some(features_desc) = options_desc.get_field_by_name("features").and_then(|o| o.kind().as_message().cloned())
    else {
        return;
    };
    let mut options = get_message(f, "options").unwrap_or_else(|| DynamicMessage::new(options_desc));
    let mut features = get_message(&options, "features").unwrap_or_else(|| DynamicMessage::new(features_desc));
    features.set_field_by_name("field_presence", Value::EnumNumber(PRESENCE_IMPLICIT));
    options.set_field_by_name("features", Value::Message(features));
    f.set_field_by_name("options", Value::Message(options));
}

fn for_each_message(
    parent: &mut DynamicMessage,
    list: &str,
    inherited: Features,
    visit: &mut dyn FnMut(&mut DynamicMessage, Features),
) {
    if let Some(Value::List(messages)) = parent.get_field_by_name_mut(list) {
        for m in messages.iter_mut() {
            if let Value::Message(m) = m {
                let features = inherited.merge(m);
                visit(m, features);
                for_each_message(m, "nested_type", features, visit);
            }
        }
    }
}

fn lower_message(
    m: &mut DynamicMessage,
    features: Features,
    proto3: bool,
    mixed: bool,
    errors: &mut Vec<(String, String)>,
) {
    let map_entry = get_message(m, "options").and_then(|o| o.get_field_by_name("map_entry").and_then(|v| v.as_bool()))
        == Some(true);
    let message_name = get_string(m, "name");
    let mut synthetic = Vec::new();
    let real_oneofs = match m.get_field_by_name("oneof_decl").map(|v| v.into_owned()) {
        Some(Value::List(l)) => l.len(),
        _ => 0,
    };
    if let Some(Value::List(fields)) = m.get_field_by_name_mut("field") {
        for f in fields.iter_mut() {
            if let Value::Message(f) = f {
                let resolved = features.merge(f);
                let in_oneof = f.has_field_by_name("oneof_index");
                let name = get_string(f, "name");
                let element = format!("field {message_name}.{name}");
                if map_entry {
                    continue;
                }
                if let Err(problem) = lower_field(f, resolved, proto3) {
                    errors.push((element, problem));
                    continue;
                }
                let ty = get_enum(f, "type").unwrap_or(0);
                if mixed
                    && resolved.presence == PRESENCE_IMPLICIT
                    && !in_oneof
                    && get_enum(f, "label") != Some(LABEL_REPEATED)
                    && ty != TYPE_MESSAGE
                    && ty != TYPE_GROUP
                {
                    mark_implicit(f);
                }
                if proto3 && wants_proto3_optional(f, resolved, in_oneof) {
                    f.set_field_by_name("proto3_optional", Value::Bool(true));
                    f.set_field_by_name("oneof_index", Value::I32((real_oneofs + synthetic.len()) as i32));
                    synthetic.push(format!("_{name}"));
                }
            }
        }
    }
    if !synthetic.is_empty() {
        let Some(oneof_desc) =
            m.descriptor().get_field_by_name("oneof_decl").and_then(|f| f.kind().as_message().cloned())
        else {
            return;
        };
        let mut decls = match m.get_field_by_name("oneof_decl").map(|v| v.into_owned()) {
            Some(Value::List(l)) => l,
            _ => Vec::new(),
        };
        for name in synthetic {
            let mut decl = DynamicMessage::new(oneof_desc.clone());
            decl.set_field_by_name("name", Value::String(name));
            decls.push(Value::Message(decl));
        }
        m.set_field_by_name("oneof_decl", Value::List(decls));
    }
}

fn wants_proto3_optional(f: &DynamicMessage, features: Features, in_oneof: bool) -> bool {
    let ty = get_enum(f, "type").unwrap_or(0);
    !in_oneof
        && get_enum(f, "label") != Some(LABEL_REPEATED)
        && ty != TYPE_MESSAGE
        && ty != TYPE_GROUP
        && features.presence == PRESENCE_EXPLICIT
}

/// Rewrites one field for the target syntax; `Err` explains what the target
/// cannot express.
fn lower_field(f: &mut DynamicMessage, features: Features, proto3: bool) -> std::result::Result<(), String> {
    let label = get_enum(f, "label").unwrap_or(1);
    let ty = get_enum(f, "type").unwrap_or(0);
    if label != LABEL_REPEATED && features.presence == PRESENCE_REQUIRED {
        if proto3 {
            return Err(
                "LEGACY_REQUIRED presence cannot be combined with IMPLICIT presence elsewhere in the file".into()
            );
        }
        f.set_field_by_name("label", Value::EnumNumber(LABEL_REQUIRED));
    }
    if ty == TYPE_MESSAGE && features.message_encoding == MESSAGE_DELIMITED {
        if proto3 {
            return Err(
                "DELIMITED message encoding cannot be combined with IMPLICIT presence elsewhere in the file".into()
            );
        }
        f.set_field_by_name("type", Value::EnumNumber(TYPE_GROUP));
    }
    if label == LABEL_REPEATED && ty != TYPE_MESSAGE && ty != TYPE_GROUP && ty != TYPE_STRING && ty != TYPE_BYTES {
        let packed = features.repeated_encoding == ENCODING_PACKED;
        let options_desc = f.descriptor().get_field_by_name("options").and_then(|o| o.kind().as_message().cloned());
        if let Some(options_desc) = options_desc {
            let mut options = get_message(f, "options").unwrap_or_else(|| DynamicMessage::new(options_desc));
            options.set_field_by_name("packed", Value::Bool(packed));
            f.set_field_by_name("options", Value::Message(options));
        }
    }
    Ok(())
}

fn check_open_enums(file: &DynamicMessage, name: &str, errors: &mut Vec<(String, String)>) {
    fn walk(parent: &DynamicMessage, errors: &mut Vec<(String, String)>, name: &str) {
        if let Some(Value::List(enums)) = parent.get_field_by_name("enum_type").map(|v| v.into_owned()) {
            for e in enums.iter().filter_map(|e| e.as_message()) {
                let first = match e.get_field_by_name("value").map(|v| v.into_owned()) {
                    Some(Value::List(values)) => {
                        values.first().and_then(|v| v.as_message()).and_then(|v| get_i32(v, "number"))
                    }
                    _ => None,
                };
                if first.is_some_and(|n| n != 0) {
                    errors.push((
                        format!("enum {}", get_string(e, "name")),
                        format!("first value is not zero, which {name} needs once lowered to proto3 (it has IMPLICIT presence fields)"),
                    ));
                }
            }
        }
        if let Some(Value::List(messages)) = parent
            .get_field_by_name("nested_type")
            .or_else(|| parent.get_field_by_name("message_type"))
            .map(|v| v.into_owned())
        {
            for m in messages.iter().filter_map(|m| m.as_message()) {
                walk(m, errors, name);
            }
        }
    }
    walk(file, errors, name);
}

fn get_message(m: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    if !m.has_field_by_name(name) {
        return None;
    }
    m.get_field_by_name(name).and_then(|v| v.as_message().cloned())
}

fn get_enum(m: &DynamicMessage, name: &str) -> Option<i32> {
    if !m.has_field_by_name(name) {
        return None;
    }
    m.get_field_by_name(name).and_then(|v| v.as_enum_number())
}

fn get_i32(m: &DynamicMessage, name: &str) -> Option<i32> {
    m.get_field_by_name(name).and_then(|v| v.as_i32())
}

fn get_string(m: &DynamicMessage, name: &str) -> String {
    m.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
