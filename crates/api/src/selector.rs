//! Label selectors (`labelSelector=`) and field selectors (`fieldSelector=`), parsed from their
//! string form and from `metav1.LabelSelector` objects.

use crate::meta::Pointer;
use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    Equals,
    NotEquals,
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    /// The operand of `=` and `!=`.
    value: String,
}

impl Requirement {
    fn matches(&self, labels: &Map<String, Value>) -> bool {
        let actual = labels.get(&self.key).and_then(Value::as_str);
        match &self.operator {
            Operator::Equals => actual == Some(self.value.as_str()),
            Operator::NotEquals => actual != Some(self.value.as_str()),
            Operator::In(values) => actual.is_some_and(|a| values.iter().any(|v| v == a)),
            Operator::NotIn(values) => actual.is_none_or(|a| values.iter().all(|v| v != a)),
            Operator::Exists => actual.is_some(),
            Operator::DoesNotExist => actual.is_none(),
            Operator::GreaterThan(n) => actual.and_then(|a| a.parse::<i64>().ok()).is_some_and(|a| a > *n),
            Operator::LessThan(n) => actual.and_then(|a| a.parse::<i64>().ok()).is_some_and(|a| a < *n),
        }
    }
}

/// A label selector: all requirements must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the string form: `a=b,c!=d,e in (f,g),h notin (i),j,!k,l>3`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self { requirements })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    /// A null or absent selector is `None`, which by Kubernetes convention selects nothing.
    pub fn from_object(selector: &Value) -> Result<Option<Self>, SelectorError> {
        let Some(selector) = selector.as_object() else { return Ok(None) };
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels {
                let value = value.as_str().ok_or_else(|| SelectorError(format!("matchLabels[{key}] is not a string")))?;
                requirements.push(Requirement { key: key.clone(), operator: Operator::Equals, value: value.into() });
            }
        }
        for expression in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
            let key = expression.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
            let values: Vec<String> = expression
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let operator = match expression.get("operator").and_then(Value::as_str).unwrap_or_default() {
                "In" => Operator::In(values),
                "NotIn" => Operator::NotIn(values),
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError(format!("{other:?} is not a valid label selector operator"))),
            };
            requirements.push(Requirement { key, operator, value: String::new() });
        }
        Ok(Some(Self { requirements }))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object with these `metadata.labels` is selected.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let empty = Map::new();
        let labels = labels.unwrap_or(&empty);
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether `object` (a whole API object) is selected by its labels.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(object.at("/metadata/labels").and_then(Value::as_object))
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form, as the scale subresource's `status.selector` reports it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for r in &self.requirements {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match &r.operator {
                Operator::Equals => write!(f, "{}={}", r.key, r.value)?,
                Operator::NotEquals => write!(f, "{}!={}", r.key, r.value)?,
                Operator::In(v) => write!(f, "{} in ({})", r.key, v.join(","))?,
                Operator::NotIn(v) => write!(f, "{} notin ({})", r.key, v.join(","))?,
                Operator::Exists => write!(f, "{}", r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
                Operator::GreaterThan(n) => write!(f, "{}>{n}", r.key)?,
                Operator::LessThan(n) => write!(f, "{}<{n}", r.key)?,
            }
        }
        Ok(())
    }
}

/// Splits on commas that are not inside a parenthesised value set.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    let invalid = || SelectorError(format!("{part:?} is not a valid label selector requirement"));
    let requirement = |key: &str, operator, value: &str| {
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(invalid());
        }
        Ok(Requirement { key: key.to_string(), operator, value: value.trim().to_string() })
    };
    if let Some(key) = part.strip_prefix('!') {
        return requirement(key, Operator::DoesNotExist, "");
    }
    for (token, is_in) in [(" notin ", false), (" in ", true)] {
        if let Some(at) = part.find(token) {
            let set = part[at + token.len()..].trim();
            let inner = set.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(invalid)?;
            let values = inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
            let operator = if is_in { Operator::In(values) } else { Operator::NotIn(values) };
            return requirement(&part[..at], operator, "");
        }
    }
    for (token, operator) in [("!=", Operator::NotEquals), ("==", Operator::Equals), ("=", Operator::Equals)] {
        if let Some((key, value)) = part.split_once(token) {
            return requirement(key, operator, value);
        }
    }
    for (token, greater) in [(">", true), ("<", false)] {
        if let Some((key, value)) = part.split_once(token) {
            let n = value.trim().parse::<i64>().map_err(|_| invalid())?;
            return requirement(key, if greater { Operator::GreaterThan(n) } else { Operator::LessThan(n) }, "");
        }
    }
    requirement(part, Operator::Exists, "")
}

/// A field selector: `metadata.name=x,spec.nodeName!=`. Only `=`, `==` and `!=` exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses and checks every field against `supported` (Kubernetes rejects unknown fields with
    /// `field label not supported: X`).
    pub fn parse(text: &str, supported: impl Fn(&str) -> bool) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError(format!("invalid selector: '{part}'; can't understand '{part}'")));
            };
            let field = field.trim();
            if !supported(field) {
                return Err(SelectorError(format!("field label not supported: {field}")));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value this selector requires for `field` (e.g. `metadata.name`), if it pins one.
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|(f, equal, _)| f == field && *equal).map(|(_, _, v)| v.as_str())
    }

    /// Whether the object is selected, given how to read a field's value.
    pub fn matches(&self, field_value: impl Fn(&str) -> String) -> bool {
        self.terms.iter().all(|(field, equal, value)| (field_value(field) == *value) == *equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selector_string_forms() {
        let l = labels(json!({"app":"web","tier":"front","n":"5"}));
        let yes = ["app=web", "app==web", "app!=db", "tier in (front, back)", "x notin (a)", "app", "!x", "n>3", "n<6",
                   "app=web,tier in (front)", ""];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(Some(&l)), "{s}");
        }
        let no = ["app=db", "app!=web", "tier notin (front)", "x", "!app", "n>5", "app=web,tier=back"];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(Some(&l)), "{s}");
        }
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("n>x").is_err());
    }

    #[test]
    fn label_selector_objects() {
        let s = LabelSelector::from_object(&json!({"matchLabels":{"app":"web"},
            "matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]}]})).unwrap().unwrap();
        assert!(s.matches(Some(&labels(json!({"app":"web","tier":"a"})))));
        assert!(!s.matches(Some(&labels(json!({"app":"web"})))));
        assert_eq!(s.to_string(), "app=web,tier in (a,b)");
        assert_eq!(LabelSelector::from_object(&Value::Null).unwrap(), None);
        assert!(LabelSelector::from_object(&json!({})).unwrap().unwrap().matches(None));
    }

    #[test]
    fn field_selectors() {
        let supported = |f: &str| f == "metadata.name" || f == "spec.nodeName";
        let s = FieldSelector::parse("metadata.name=a,spec.nodeName!=", supported).unwrap();
        assert_eq!(s.required_value("metadata.name"), Some("a"));
        assert!(s.matches(|f| if f == "metadata.name" { "a".into() } else { "n1".into() }));
        assert!(!s.matches(|f| if f == "metadata.name" { "a".into() } else { String::new() }));
        assert_eq!(
            FieldSelector::parse("status.bogus=x", supported).unwrap_err().0,
            "field label not supported: status.bogus"
        );
    }
}
