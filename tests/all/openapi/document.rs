//! The OpenAPI document as the tests read it: its operations with their
//! parameters, responses and security, `$ref`s followed, and a check of
//! JSON values against its schemas. The check knows the part of JSON
//! Schema 2020-12 the document uses, and is stricter in one way: an object
//! may hold only the properties its schema names (unless the schema says
//! `additionalProperties`), so a field the API adds must be documented.

use std::collections::BTreeSet;

use serde_json::Value;

/// The HTTP methods a path item may hold.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

pub struct Document {
    pub root: Value,
}

/// One method of one path.
pub struct Operation<'a> {
    /// Upper case, as in `wasmcron::api::routes()`.
    pub method: String,
    /// The path template, `{name}` for a parameter.
    pub path: String,
    pub spec: &'a Value,
    document: &'a Document,
}

impl Document {
    /// The document the host serves.
    pub fn served() -> Document {
        let root = serde_json::from_str(wasmcron::api::OPENAPI).expect("openapi.json is JSON");
        Document { root }
    }

    /// `value`, or what its `$ref` points at, followed to the end.
    pub fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(target) = value.get("$ref").and_then(Value::as_str) {
            value = self.target(target);
        }
        value
    }

    fn target(&self, reference: &str) -> &Value {
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("$ref {reference}: only local refs"));
        self.root.pointer(pointer).unwrap_or_else(|| panic!("$ref {reference} points at nothing"))
    }

    pub fn operations(&self) -> Vec<Operation<'_>> {
        let paths = self.root["paths"].as_object().expect("paths");
        let mut operations = Vec::new();
        for (path, item) in paths {
            for method in METHODS {
                if let Some(spec) = item.get(method) {
                    operations.push(Operation {
                        method: method.to_uppercase(),
                        path: path.clone(),
                        spec,
                        document: self,
                    });
                }
            }
        }
        operations
    }

    /// The operation that answers `method` on the concrete `path` (no query).
    pub fn operation_for(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let fits = |template: &str| {
            let (template, path): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
            template.len() == path.len()
                && template.iter().zip(&path).all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
        };
        self.operations().into_iter().find(|op| op.method == method && fits(&op.path))
    }

    /// Every way `value` breaks `schema`, each with its JSON pointer; none if it fits.
    pub fn violations(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut found = Vec::new();
        self.check(schema, value, "", true, &mut found);
        found
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, closed: bool, found: &mut Vec<String>) {
        let here = |what: String| format!("{}: {what}", if at.is_empty() { "/" } else { at });
        // The closed-object check is made here, once, over the properties
        // named by the schema, its `$ref` and its `allOf`: not below.
        if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
            self.check(self.target(target), value, at, false, found);
        }
        for member in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.check(member, value, at, false, found);
        }
        if let Some(branches) = schema.get("anyOf").and_then(Value::as_array)
            && !branches.iter().any(|branch| self.violations_at(branch, value, at, closed).is_empty())
        {
            found.push(here(format!("{value} fits none of anyOf")));
        }
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            let fitting = branches.iter().filter(|branch| self.violations_at(branch, value, at, closed).is_empty());
            if fitting.count() != 1 {
                found.push(here(format!("{value} does not fit exactly one of oneOf")));
            }
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                many => many.as_array().expect("type: a string or an array").iter().filter_map(Value::as_str).collect(),
            };
            if !types.iter().any(|name| is_type(value, name)) {
                found.push(here(format!("{value} is not of type {types:?}")));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            found.push(here(format!("{value} is not one of {allowed:?}")));
        }
        if let Some(constant) = schema.get("const")
            && constant != value
        {
            found.push(here(format!("{value} is not {constant}")));
        }
        check_format(schema, value, &here, found);
        check_bounds(schema, value, &here, found);
        if let Value::Object(object) = value {
            for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let name = name.as_str().expect("required: names");
                if !object.contains_key(name) {
                    found.push(here(format!("required property {name:?} is missing")));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, property) in properties.into_iter().flatten() {
                if let Some(value) = object.get(name) {
                    self.check(property, value, &format!("{at}/{name}"), true, found);
                }
            }
            if closed && schema.get("additionalProperties").is_none() {
                let known = self.property_names(schema);
                for name in object.keys().filter(|name| known.as_ref().is_some_and(|known| !known.contains(*name))) {
                    found.push(here(format!("property {name:?} is not in the document")));
                }
            }
        }
        if let (Value::Array(items), Some(schema)) = (value, schema.get("items")) {
            for (index, item) in items.iter().enumerate() {
                self.check(schema, item, &format!("{at}/{index}"), true, found);
            }
        }
    }

    fn violations_at(&self, schema: &Value, value: &Value, at: &str, closed: bool) -> Vec<String> {
        let mut found = Vec::new();
        self.check(schema, value, at, closed, &mut found);
        found
    }

    /// The properties `schema` names, with its `$ref`'s and `allOf`'s;
    /// none if it names no properties at all (an open object).
    fn property_names(&self, schema: &Value) -> Option<BTreeSet<String>> {
        let mut names: Option<BTreeSet<String>> = None;
        let mut add = |more: Option<BTreeSet<String>>| {
            if let Some(more) = more {
                names.get_or_insert_default().extend(more);
            }
        };
        add(schema.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()));
        if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
            add(self.property_names(self.target(target)));
        }
        for member in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            add(self.property_names(member));
        }
        names
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        other => panic!("type {other:?} is not a JSON Schema type"),
    }
}

fn check_format(schema: &Value, value: &Value, here: &dyn Fn(String) -> String, found: &mut Vec<String>) {
    let fits = match (schema.get("format").and_then(Value::as_str), value) {
        (Some("date-time"), Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        (Some("int32"), Value::Number(n)) => n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        (Some("int64"), Value::Number(n)) => n.as_i64().is_some(),
        _ => true,
    };
    if !fits {
        found.push(here(format!("{value} is not a {}", schema["format"])));
    }
}

fn check_bounds(schema: &Value, value: &Value, here: &dyn Fn(String) -> String, found: &mut Vec<String>) {
    if let Some(number) = value.as_f64() {
        if schema.get("minimum").and_then(Value::as_f64).is_some_and(|min| number < min) {
            found.push(here(format!("{value} is below the minimum {}", schema["minimum"])));
        }
        if schema.get("maximum").and_then(Value::as_f64).is_some_and(|max| number > max) {
            found.push(here(format!("{value} is above the maximum {}", schema["maximum"])));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema.get("minLength").and_then(Value::as_u64).is_some_and(|min| length < min) {
            found.push(here(format!("{value} is shorter than {}", schema["minLength"])));
        }
        if schema.get("maxLength").and_then(Value::as_u64).is_some_and(|max| length > max) {
            found.push(here(format!("{value} is longer than {}", schema["maxLength"])));
        }
    }
}

impl Operation<'_> {
    /// `GET /api/v1/jobs/{job}`, for messages.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Its parameters and its path's, `$ref`s followed.
    pub fn parameters(&self) -> Vec<&Value> {
        let item = &self.document.root["paths"][&self.path];
        item.get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(self.spec.get("parameters").and_then(Value::as_array).into_iter().flatten())
            .map(|parameter| self.document.resolve(parameter))
            .collect()
    }

    /// The parameters that are `in` this place (`path`, `query`, `header`).
    pub fn parameters_in(&self, place: &str) -> Vec<&Value> {
        self.parameters().into_iter().filter(|p| p["in"] == place).collect()
    }

    pub fn query_names(&self) -> BTreeSet<String> {
        self.parameters_in("query").iter().map(|p| p["name"].as_str().expect("a name").to_owned()).collect()
    }

    /// Whether it needs a bearer token: its own `security`, or the document's.
    pub fn secured(&self) -> bool {
        let security = self.spec.get("security").unwrap_or(&self.document.root["security"]);
        security.as_array().is_some_and(|requirements| !requirements.is_empty())
    }

    /// The documented response for `status`, `$ref`s followed.
    pub fn response(&self, status: u16) -> Option<&Value> {
        self.spec["responses"].get(status.to_string()).map(|response| self.document.resolve(response))
    }

    pub fn statuses(&self) -> BTreeSet<u16> {
        let responses = self.spec["responses"].as_object().expect("responses");
        responses
            .keys()
            .map(|status| status.parse().unwrap_or_else(|_| panic!("{}: status {status}", self.name())))
            .collect()
    }

    /// The path with each path parameter's example, or `value` for `name`
    /// (already percent-encoded as it should go on the wire).
    pub fn path_with(&self, name: Option<&str>, value: &str) -> String {
        let mut path = self.path.clone();
        for parameter in self.parameters_in("path") {
            let parameter_name = parameter["name"].as_str().expect("a name");
            let example = if Some(parameter_name) == name { value.to_owned() } else { encode(&example_of(parameter)) };
            path = path.replace(&format!("{{{parameter_name}}}"), &example);
        }
        path
    }

    /// The path with each path parameter's example.
    pub fn example_path(&self) -> String {
        self.path_with(None, "")
    }
}

/// A parameter's example, as text.
pub fn example_of(parameter: &Value) -> String {
    let example = parameter
        .get("example")
        .or_else(|| parameter["schema"].get("example"))
        .unwrap_or_else(|| panic!("parameter {} has no example", parameter["name"]));
    match example {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes all but unreserved characters (and `:`), for a path
/// segment or a query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
