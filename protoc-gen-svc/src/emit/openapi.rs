//! OpenAPI 3.1 documents of the services' HTTP bindings: `target=openapi`
//! writes `<service-name>/openapi.json`, and the generated server serves the
//! same document at `/openapi.json` on its HTTP port.
//!
//! Paths, parameters and bodies follow the bindings as the runtime serves
//! them: path fields as path parameters (named `a_b` for the field `a.b`;
//! a field matching several segments is one parameter whose slashes are
//! sent percent-encoded, with a `pattern`), the other fields as query parameters (nested fields as
//! `a.b`, repeated ones by repeating the key) unless the body holds every
//! field, bodies and responses in the canonical proto3 JSON mapping (64-bit
//! integers as strings, enums by name), errors as `google.rpc.Status`.
//! Schemas come from the messages, with proto comments as descriptions and
//! the protovalidate rules that JSON Schema can state as keywords.

use std::collections::{BTreeMap, HashMap};

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value as Proto};
use serde_json::{Map, Value, json};

use crate::ir::{self, HttpBody, PathSegment};

/// The document of every service of `packages` with HTTP bindings, by
/// full name.
pub fn documents(pool: &DescriptorPool, set: &[u8], packages: &[ir::Package]) -> HashMap<String, String> {
    packages
        .iter()
        .flat_map(|p| &p.services)
        .filter_map(|s| document(pool, set, s).map(|d| (s.full_name.clone(), d)))
        .collect()
}

/// The document of `service`, or `None` when it has no binding.
pub fn document(pool: &DescriptorPool, set: &[u8], service: &ir::Service) -> Option<String> {
    if service.methods.iter().all(|m| m.http.is_empty()) {
        return None;
    }
    let descriptor = pool.get_service_by_name(&service.full_name)?;
    let mut cx = Cx {
        comments: Comments::new(set),
        schemas: BTreeMap::new(),
        rules: pool.get_extension_by_name("buf.validate.field"),
    };
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    // OpenAPI paths of one shape are one path: later bindings take the
    // parameter names of the first.
    let mut shapes: HashMap<String, (String, Vec<String>)> = HashMap::new();
    let mut secured = false;
    for method in &service.methods {
        let Some(md) = descriptor.methods().find(|d| d.name() == method.name) else { continue };
        for (i, binding) in method.http.iter().enumerate() {
            let (path, names, shape) = openapi_path(binding);
            let (path, names) = shapes.entry(shape).or_insert((path, names)).clone();
            let id = match i {
                0 => format!("{}_{}", service.name, method.name),
                n => format!("{}_{}_{}", service.name, method.name, n + 1),
            };
            let mut op = Map::new();
            op.insert("operationId".into(), json!(id));
            op.insert("tags".into(), json!([service.name]));
            if let Some(text) = cx.comments.of(&md.parent_file().name().to_owned(), md.path()) {
                op.insert("description".into(), json!(text));
            }
            op.insert("parameters".into(), Value::Array(cx.parameters(&md.input(), binding, &names)));
            if let Some(body) = cx.request_body(&md.input(), binding) {
                op.insert("requestBody".into(), body);
            }
            op.insert("responses".into(), cx.responses(&md.output(), binding, method.server_streaming));
            if method.policy.requires_auth {
                secured = true;
                op.insert("security".into(), json!([{ "bearerAuth": [] }]));
            }
            let item = paths.entry(path.clone()).or_default();
            let verb = binding.method.to_ascii_lowercase();
            match item.get_mut(&verb) {
                // Two templates that differ only inside a variable's
                // pattern are one OpenAPI operation; the first is
                // described, the other named in its description.
                Some(first) => {
                    let also = format!("Also `{} {}` ({id}).", binding.method, binding.template);
                    let text = first
                        .get("description")
                        .and_then(Value::as_str)
                        .map_or(also.clone(), |d| format!("{d}\n\n{also}"));
                    first["description"] = json!(text);
                }
                None => {
                    item.insert(verb, Value::Object(op));
                }
            }
        }
    }
    cx.schemas.insert("google.rpc.Status".into(), status_schema());
    let mut components = Map::new();
    components.insert("schemas".into(), Value::Object(cx.schemas.into_iter().collect()));
    if secured {
        components.insert(
            "securitySchemes".into(),
            json!({ "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } }),
        );
    }
    let version = service.full_name.split('.').rev().nth(1).filter(|p| p.starts_with('v')).unwrap_or("unversioned");
    let mut info = Map::new();
    info.insert("title".into(), json!(service.full_name));
    info.insert("version".into(), json!(version));
    if let Some(text) = cx.comments.of(&descriptor.parent_file().name().to_owned(), descriptor.path()) {
        info.insert("description".into(), json!(text));
    }
    let doc = json!({
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": components,
    });
    Some(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")
}

/// The OpenAPI path of a binding, its parameters' names, and its shape
/// (the path with the names left out).
fn openapi_path(binding: &ir::HttpBinding) -> (String, Vec<String>, String) {
    let (mut path, mut shape, mut names) = (String::new(), String::new(), Vec::new());
    for segment in &binding.path {
        path.push('/');
        shape.push('/');
        match segment {
            PathSegment::Literal(l) => {
                path.push_str(l);
                shape.push_str(l);
            }
            PathSegment::Any | PathSegment::Rest => {
                // Unnamed wildcards: a parameter the server ignores.
                let name = format!("_{}", names.len());
                path.push_str(&format!("{{{name}}}"));
                shape.push_str("{}");
                names.push(name);
            }
            PathSegment::Field { path: field, .. } => {
                // `a_b` for the field `a.b`: tools fill path templates in
                // with format strings, which read a dot as an attribute.
                let name = field.join("_");
                path.push_str(&format!("{{{name}}}"));
                shape.push_str("{}");
                names.push(name);
            }
        }
    }
    if let Some(verb) = &binding.verb {
        path.push(':');
        path.push_str(verb);
        shape.push(':');
        shape.push_str(verb);
    }
    (path, names, shape)
}

/// A regular expression for what a variable's pattern matches.
fn pattern_regex(pattern: &[PathSegment]) -> String {
    let parts: Vec<String> = pattern
        .iter()
        .map(|s| match s {
            PathSegment::Literal(l) => regex_escape(l),
            PathSegment::Any => "[^/]+".to_owned(),
            PathSegment::Rest => ".*".to_owned(),
            PathSegment::Field { .. } => String::new(),
        })
        .collect();
    format!("^{}$", parts.join("/"))
}

fn regex_escape(text: &str) -> String {
    text.chars().flat_map(|c| if "\\.+*?()|[]{}^$".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

struct Cx {
    comments: Comments,
    schemas: BTreeMap<String, Value>,
    rules: Option<prost_reflect::ExtensionDescriptor>,
}

impl Cx {
    fn parameters(&mut self, input: &MessageDescriptor, binding: &ir::HttpBinding, names: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        let mut bound = Vec::new();
        let mut index = 0;
        for segment in &binding.path {
            let (name, schema, description) = match segment {
                PathSegment::Literal(_) => continue,
                PathSegment::Any | PathSegment::Rest => (
                    &names[index],
                    json!({ "type": "string", "pattern": if matches!(segment, PathSegment::Rest) { ".*" } else { "^[^/]+$" } }),
                    "Any value; the server does not read it.".to_owned(),
                ),
                PathSegment::Field { path, pattern } => {
                    bound.push(path.join("."));
                    let field = crate::annotations::http::resolve(input, path).ok();
                    let mut schema =
                        field.as_ref().map_or_else(|| json!({ "type": "string" }), |f| self.scalar_schema(f));
                    let spans = pattern.len() != 1 || pattern.iter().any(|s| matches!(s, PathSegment::Rest));
                    let mut text = format!("The request field `{}`.", path.join("."));
                    if spans || !matches!(pattern.as_slice(), [PathSegment::Any]) {
                        schema = json!({ "type": "string", "pattern": pattern_regex(pattern) });
                        text.push_str(" Its slashes may be sent as they are or percent-encoded (%2F).");
                    }
                    if let Some(comment) = field.and_then(|f| self.field_comment(&f)) {
                        text = format!("{comment}\n\n{text}");
                    }
                    (&names[index], schema, text)
                }
            };
            index += 1;
            out.push(
                json!({ "name": name, "in": "path", "required": true, "schema": schema, "description": description }),
            );
        }
        if binding.body != HttpBody::All {
            let skip_top = match &binding.body {
                HttpBody::Field(f) => Some(f.clone()),
                _ => None,
            };
            let mut chain = vec![input.full_name().to_owned()];
            self.query_parameters(input, ("", ""), &bound, skip_top.as_deref(), &mut chain, &mut out);
        }
        out
    }

    /// Query parameters for the fields of `message` (under `prefix`, its
    /// proto and its JSON path) that the path does not bind: scalars,
    /// enums, repeated ones, and the fields of singular messages (not
    /// recursively into a message already in `chain`).
    fn query_parameters(
        &mut self,
        message: &MessageDescriptor,
        prefix: (&str, &str),
        bound: &[String],
        skip: Option<&str>,
        chain: &mut Vec<String>,
        out: &mut Vec<Value>,
    ) {
        let join =
            |prefix: &str, name: &str| if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") };
        for field in message.fields() {
            let proto_path = join(prefix.0, field.name());
            if bound.contains(&proto_path) || (prefix.0.is_empty() && skip == Some(field.name())) || field.is_map() {
                continue;
            }
            let name = join(prefix.1, field.json_name());
            match field.kind() {
                Kind::Message(inner) if !well_known_scalar(inner.full_name()) => {
                    if field.is_list() || chain.contains(&inner.full_name().to_owned()) || chain.len() > 3 {
                        continue;
                    }
                    chain.push(inner.full_name().to_owned());
                    self.query_parameters(&inner, (&proto_path, &name), bound, None, chain, out);
                    chain.pop();
                }
                _ => {
                    let mut schema = self.scalar_schema(&field);
                    if field.is_list() {
                        schema = json!({ "type": "array", "items": schema });
                    }
                    let mut parameter = json!({ "name": name, "in": "query", "schema": schema });
                    if field.is_list() {
                        parameter["explode"] = json!(true);
                    }
                    if let Some(text) = self.field_comment(&field) {
                        parameter["description"] = json!(text);
                    }
                    out.push(parameter);
                }
            }
        }
    }

    fn request_body(&mut self, input: &MessageDescriptor, binding: &ir::HttpBinding) -> Option<Value> {
        let schema = match &binding.body {
            HttpBody::None => return None,
            HttpBody::Field(name) => self.field_schema(&input.get_field_by_name(name)?),
            HttpBody::All => {
                // The whole message but the top-level fields the path sets.
                let bound: Vec<String> = binding
                    .path
                    .iter()
                    .filter_map(|s| match s {
                        PathSegment::Field { path, .. } if path.len() == 1 => Some(path[0].clone()),
                        _ => None,
                    })
                    .collect();
                if bound.is_empty() { self.reference(input) } else { self.object_schema(input, &bound) }
            }
        };
        Some(json!({ "content": { "application/json": { "schema": schema } } }))
    }

    fn responses(&mut self, output: &MessageDescriptor, binding: &ir::HttpBinding, streaming: bool) -> Value {
        let schema = match binding.response_body.as_deref().and_then(|f| output.get_field_by_name(f)) {
            Some(field) => self.field_schema(&field),
            None => self.reference(output),
        };
        let status = json!({ "$ref": "#/components/schemas/google.rpc.Status" });
        let ok = if streaming {
            json!({
                "description": "The response messages as they come: one JSON object per line, `result` holding a message, or `error` the status of a call that failed after it began; with `Accept: text/event-stream`, one `data:` event per message and an `event: error` at a failure.",
                "content": {
                    "application/x-ndjson": { "schema": {
                        "type": "object",
                        "properties": { "result": schema, "error": status },
                    } },
                    "text/event-stream": { "schema": { "type": "string" } },
                },
            })
        } else {
            json!({ "description": "The response.", "content": { "application/json": { "schema": schema } } })
        };
        json!({
            "200": ok,
            "default": {
                "description": "The call failed: its gRPC status, the HTTP status mapped from its code.",
                "content": { "application/json": { "schema": status } },
            },
        })
    }

    /// `{"$ref": ...}` to the schema of `message`, added to the components.
    fn reference(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(schema) = well_known(message.full_name()) {
            return schema;
        }
        let name = message.full_name().to_owned();
        if !self.schemas.contains_key(&name) {
            self.schemas.insert(name.clone(), Value::Null); // being built: cycles stop here
            let schema = self.object_schema(message, &[]);
            self.schemas.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// The object schema of `message` without the fields named in `skip`.
    fn object_schema(&mut self, message: &MessageDescriptor, skip: &[String]) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields().filter(|f| !skip.iter().any(|s| s == f.name())) {
            let mut schema = self.field_schema(&field);
            if let Some(text) = self.field_comment(&field) {
                schema = with_description(schema, text);
            }
            if self.rule(&field, &["required"]).and_then(|v| v.as_bool()) == Some(true) {
                required.push(json!(field.json_name()));
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = json!({ "type": "object", "properties": properties, "additionalProperties": false });
        if !required.is_empty() {
            schema["required"] = Value::Array(required);
        }
        if let Some(text) = self.comments.of(&message.parent_file().name().to_owned(), message.path()) {
            schema["description"] = json!(text);
        }
        schema
    }

    fn field_schema(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field(),
                _ => return json!({ "type": "object" }),
            };
            let mut schema = json!({ "type": "object", "additionalProperties": self.single_schema(&value) });
            self.constrain_map(field, &mut schema);
            return schema;
        }
        let single = self.single_schema(field);
        if field.is_list() {
            let mut schema = json!({ "type": "array", "items": single });
            self.constrain_list(field, &mut schema);
            return schema;
        }
        single
    }

    /// The schema of one value of `field` (an element, for a list).
    fn single_schema(&mut self, field: &FieldDescriptor) -> Value {
        match field.kind() {
            Kind::Message(m) => self.reference(&m),
            _ => self.scalar_schema(field),
        }
    }

    fn scalar_schema(&mut self, field: &FieldDescriptor) -> Value {
        let mut schema = match field.kind() {
            Kind::Message(m) => return well_known(m.full_name()).unwrap_or_else(|| json!({ "type": "string" })),
            Kind::Enum(e) => {
                let names: Vec<Value> = e.values().map(|v| json!(v.name())).collect();
                json!({ "type": "string", "enum": names })
            }
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX })
            }
            Kind::Uint32 | Kind::Fixed32 => json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX }),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$" })
            }
            Kind::Uint64 | Kind::Fixed64 => json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$" }),
            Kind::Float | Kind::Double => json!({
                "anyOf": [{ "type": "number" }, { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] }],
            }),
        };
        self.constrain_scalar(field, &mut schema);
        schema
    }

    /// The protovalidate rules of `field` that JSON Schema states.
    fn constrain_scalar(&self, field: &FieldDescriptor, schema: &mut Value) {
        let group = match field.kind() {
            Kind::String => "string",
            Kind::Int32 => "int32",
            Kind::Sint32 => "sint32",
            Kind::Sfixed32 => "sfixed32",
            Kind::Uint32 => "uint32",
            Kind::Fixed32 => "fixed32",
            Kind::Float => "float",
            Kind::Double => "double",
            Kind::Enum(_) => "enum",
            _ => return,
        };
        let get = |name: &str| self.rule(field, &[group, name]);
        if group == "string" {
            for (rule, keyword) in [("min_len", "minLength"), ("max_len", "maxLength")] {
                if let Some(n) = get(rule).and_then(|v| v.as_u64()) {
                    schema[keyword] = json!(n);
                }
            }
            if let Some(n) = get("len").and_then(|v| v.as_u64()) {
                schema["minLength"] = json!(n);
                schema["maxLength"] = json!(n);
            }
            if let Some(p) = get("pattern").and_then(|v| v.as_str().map(str::to_owned)) {
                schema["pattern"] = json!(p);
            }
            for (rule, format) in [
                ("email", "email"),
                ("uuid", "uuid"),
                ("uri", "uri"),
                ("hostname", "hostname"),
                ("ipv4", "ipv4"),
                ("ipv6", "ipv6"),
            ] {
                if get(rule).and_then(|v| v.as_bool()) == Some(true) {
                    schema["format"] = json!(format);
                }
            }
            if let Some(c) = get("const").and_then(|v| v.as_str().map(str::to_owned)) {
                schema["const"] = json!(c);
            }
            return;
        }
        if group == "enum" {
            return;
        }
        let number =
            |v: Value| v.as_f64().or_else(|| v.as_i64().map(|n| n as f64)).or_else(|| v.as_u64().map(|n| n as f64));
        for (rule, keyword) in
            [("gt", "exclusiveMinimum"), ("gte", "minimum"), ("lt", "exclusiveMaximum"), ("lte", "maximum")]
        {
            if let Some(n) = get(rule).and_then(number) {
                schema[keyword] = json!(n);
            }
        }
    }

    fn constrain_list(&self, field: &FieldDescriptor, schema: &mut Value) {
        for (rule, keyword) in [("min_items", "minItems"), ("max_items", "maxItems")] {
            if let Some(n) = self.rule(field, &["repeated", rule]).and_then(|v| v.as_u64()) {
                schema[keyword] = json!(n);
            }
        }
        if self.rule(field, &["repeated", "unique"]).and_then(|v| v.as_bool()) == Some(true) {
            schema["uniqueItems"] = json!(true);
        }
    }

    fn constrain_map(&self, field: &FieldDescriptor, schema: &mut Value) {
        for (rule, keyword) in [("min_pairs", "minProperties"), ("max_pairs", "maxProperties")] {
            if let Some(n) = self.rule(field, &["map", rule]).and_then(|v| v.as_u64()) {
                schema[keyword] = json!(n);
            }
        }
    }

    /// A set value of `field`'s `(buf.validate.field)` rules, by path.
    fn rule(&self, field: &FieldDescriptor, path: &[&str]) -> Option<Value> {
        let ext = self.rules.as_ref()?;
        let options = field.options();
        if !options.has_extension(ext) {
            return None;
        }
        let mut current: DynamicMessage = options.get_extension(ext).as_message()?.clone();
        for (i, name) in path.iter().enumerate() {
            if !current.has_field_by_name(name) {
                return None;
            }
            let value = current.get_field_by_name(name)?.into_owned();
            if i + 1 == path.len() {
                return Some(match value {
                    Proto::Bool(b) => json!(b),
                    Proto::I32(n) => json!(n),
                    Proto::I64(n) => json!(n),
                    Proto::U32(n) => json!(n),
                    Proto::U64(n) => json!(n),
                    Proto::F32(n) => json!(n),
                    Proto::F64(n) => json!(n),
                    Proto::String(s) => json!(s),
                    _ => return None,
                });
            }
            current = value.as_message()?.clone();
        }
        None
    }

    fn field_comment(&mut self, field: &FieldDescriptor) -> Option<String> {
        self.comments.of(&field.parent_file().name().to_owned(), field.path())
    }
}

fn with_description(mut schema: Value, text: String) -> Value {
    if schema.get("$ref").is_some() {
        // Siblings of $ref are allowed in OpenAPI 3.1 (JSON Schema 2020-12).
        schema["description"] = json!(text);
        return schema;
    }
    if let Value::Object(map) = &mut schema {
        map.insert("description".into(), json!(text));
    }
    schema
}

/// Whether a well-known message is a single JSON value in the mapping
/// (and so a path or query value).
fn well_known_scalar(name: &str) -> bool {
    well_known(name).is_some_and(|s| s.get("type").and_then(Value::as_str) != Some("object"))
}

/// The JSON shape of the well-known types in the proto3 mapping.
fn well_known(name: &str) -> Option<Value> {
    Some(match name {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$" }),
        "google.protobuf.FieldMask" => json!({ "type": "string" }),
        "google.protobuf.Struct" => json!({ "type": "object" }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({ "type": "array" }),
        "google.protobuf.Empty" => json!({ "type": "object", "additionalProperties": false }),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "required": ["@type"],
        }),
        "google.protobuf.StringValue" => json!({ "type": "string" }),
        "google.protobuf.BytesValue" => json!({ "type": "string", "contentEncoding": "base64" }),
        "google.protobuf.BoolValue" => json!({ "type": "boolean" }),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => json!({ "type": "integer" }),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+$" })
        }
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => json!({
            "anyOf": [{ "type": "number" }, { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] }],
        }),
        _ => return None,
    })
}

fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "A gRPC status (google.rpc.Status): the code, a message for developers, and details such as buf.validate.Violations, google.rpc.BadRequest or google.rpc.RetryInfo.",
        "properties": {
            "code": { "type": "integer", "format": "int32", "description": "The gRPC status code." },
            "message": { "type": "string" },
            "details": { "type": "array", "items": {
                "type": "object",
                "properties": { "@type": { "type": "string" } },
                "required": ["@type"],
            } },
        },
        "required": ["code", "message"],
    })
}

/// Leading comments of descriptors, by file and path, read from the
/// request's source info when first asked for.
struct Comments {
    files: HashMap<String, prost_types::FileDescriptorProto>,
    by_file: HashMap<String, HashMap<Vec<i32>, String>>,
}

impl Comments {
    fn new(set: &[u8]) -> Comments {
        let files = crate::source::set_files(set)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|bytes| prost_types::FileDescriptorProto::decode(bytes).ok())
            .map(|f| (f.name().to_owned(), f))
            .collect();
        Comments { files, by_file: HashMap::new() }
    }

    fn of(&mut self, file: &String, path: &[i32]) -> Option<String> {
        let files = &self.files;
        let locations = self.by_file.entry(file.clone()).or_insert_with(|| {
            let info = files.get(file).and_then(|f| f.source_code_info.as_ref());
            info.map(|i| {
                i.location
                    .iter()
                    .filter_map(|l| {
                        let text = l.leading_comments.as_deref()?.trim();
                        (!text.is_empty())
                            .then(|| (l.path.clone(), text.lines().map(str::trim).collect::<Vec<_>>().join("\n")))
                    })
                    .collect()
            })
            .unwrap_or_default()
        });
        locations.get(path).cloned()
    }
}
