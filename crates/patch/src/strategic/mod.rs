//! Kubernetes strategic merge patch, with the semantics of the API server's
//! `k8s.io/apimachinery/pkg/util/strategicpatch` (`StrategicMergePatch`): a JSON merge patch
//! whose lists can merge item by item, steered by per-field metadata and by directives
//! embedded in the patch.
//!
//! Deliberate differences from upstream, all about values the patch adds where the document
//! has nothing (or something of another shape) to merge with: upstream copies such values
//! mostly verbatim, so directives nested in them can leak into the stored object and a new map
//! carrying `$patch: replace` is dropped. Here such a value is applied to nothing instead: its
//! directives take effect and never reach the result.
//!
//! As upstream does, `$retainKeys` is honoured wherever it appears, so
//! [`FieldStrategy::retain_keys`] does not affect how a patch applies: it only tells a patch
//! *generator* where to emit the directive.

mod list;
mod order;
mod path;

use serde_json::{Map, Value};

use crate::{FieldStrategy, PatchError, PatchMeta};
use path::Path;

type Result<T> = std::result::Result<T, PatchError>;
type Object = Map<String, Value>;

/// `$patch: merge | replace | delete`, on a map or a list item.
const PATCH: &str = "$patch";
/// `$retainKeys: [..]`: drop the other fields of the map being patched.
const RETAIN_KEYS: &str = "$retainKeys";
/// `$setElementOrder/<field>: [..]`: the order of the merged list `<field>`.
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
/// `$deleteFromPrimitiveList/<field>: [..]`: values to remove from the primitive list `<field>`.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Applies the strategic merge patch `patch` to `original`, with field strategies from `meta`
/// (the metadata of the document's kind).
///
/// - Maps merge recursively; `null` deletes a key.
/// - A list whose field has the merge strategy merges with the original list: lists of objects
///   item by item, matched by the field's merge key; lists of primitives as a set. Any other
///   list replaces the original one.
/// - Directives: `$patch` (`replace` or `delete` a map; in a merged list, `{"$patch": "replace"}`
///   replaces the list and `{"$patch": "delete", <key>: ..}` removes an item), `$retainKeys`,
///   `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`. They never appear in the
///   result.
/// - Merged lists are ordered as Kubernetes orders them: by `$setElementOrder` when given,
///   otherwise by the order of the patch's items, interleaved with the untouched items.
///
/// A malformed patch (an unknown directive, a list item without its merge key, a list where
/// the document has a map, ...) is [`PatchError::Invalid`]; a document that is not a JSON object
/// is [`PatchError::Failed`].
pub fn strategic_merge_patch<M: PatchMeta>(
    original: &Value,
    patch: &Value,
    meta: &M,
) -> Result<Value> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Invalid(format!(
            "a strategic merge patch must be a JSON object, not {}",
            json_type(patch)
        )));
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        // Upstream patches an absent document as an empty one.
        Value::Null => Object::new(),
        other => {
            return Err(PatchError::Failed(format!(
                "the document to patch must be a JSON object, not {}",
                json_type(other)
            )))
        }
    };
    merge_map(original, patch, Some(meta), &Path::Root).map(Value::Object)
}

/// The value of a `$patch` directive.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Directive {
    Merge,
    Replace,
    Delete,
}

impl Directive {
    /// The directive of a map (or list item) of the patch, `None` when it has none.
    fn of(patch: &Object, path: &Path) -> Result<Option<Self>> {
        match patch.get(PATCH) {
            None => Ok(None),
            Some(Value::String(value)) => match value.as_str() {
                "merge" => Ok(Some(Self::Merge)),
                "replace" => Ok(Some(Self::Replace)),
                "delete" => Ok(Some(Self::Delete)),
                other => Err(path.invalid(format!(
                    "unknown $patch directive {other:?} (expected \"replace\", \"delete\" or \"merge\")"
                ))),
            },
            Some(other) => Err(path.invalid(format!("$patch must be a string, not {}", json_type(other)))),
        }
    }
}

/// Merges the map `patch` into the existing map `original`.
fn merge_map<M: PatchMeta>(
    original: Object,
    patch: &Object,
    meta: Option<&M>,
    path: &Path,
) -> Result<Object> {
    match Directive::of(patch, path)? {
        None | Some(Directive::Merge) => merge_fields(original, patch, meta, path),
        Some(Directive::Replace) => merge_fields(Object::new(), patch, meta, path),
        // Upstream empties the map rather than removing the field that holds it.
        Some(Directive::Delete) => Ok(Object::new()),
    }
}

/// The map that `patch` creates where there was none; `None` when it deletes itself.
fn new_map<M: PatchMeta>(patch: &Object, meta: Option<&M>, path: &Path) -> Result<Option<Object>> {
    match Directive::of(patch, path)? {
        Some(Directive::Delete) => Ok(None),
        _ => merge_fields(Object::new(), patch, meta, path).map(Some),
    }
}

/// The value that `patch` creates where there was none (or where the document held something
/// it cannot merge with): the patch applied to nothing, so that its directives take effect and
/// the `null`s of its maps disappear. `None` when it deletes itself.
fn new_value<M: PatchMeta>(
    patch: &Value,
    strategy: &FieldStrategy,
    meta: Option<&M>,
    path: &Path,
) -> Result<Option<Value>> {
    Ok(match patch {
        Value::Object(patch) => new_map(patch, meta, path)?.map(Value::Object),
        Value::Array(items) => Some(Value::Array(list::merge_list(
            Vec::new(),
            items,
            strategy,
            meta,
            path,
        )?)),
        scalar => Some(scalar.clone()),
    })
}

/// Applies the fields and directives of the map `patch` to `original`, ignoring a `$patch`
/// directive (the caller has acted on it).
fn merge_fields<M: PatchMeta>(
    mut original: Object,
    patch: &Object,
    meta: Option<&M>,
    path: &Path,
) -> Result<Object> {
    if let Some(keep) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, patch, keep, path)?;
    }

    // A list with an explicit order is merged and ordered in one go; its entry in the patch is
    // then done with.
    let mut ordered = Vec::new();
    for (key, order) in patch {
        if let Some(field) = parallel_field(key, SET_ELEMENT_ORDER, path)? {
            list::set_element_order(&mut original, patch, field, order, meta, &path.field(field))?;
            ordered.push(field);
        }
    }

    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key == PATCH
            || key == RETAIN_KEYS
            || key.starts_with(SET_ELEMENT_ORDER)
            || ordered.contains(&key.as_str())
        {
            continue;
        }
        if let Some(field) = parallel_field(key, DELETE_FROM_PRIMITIVE_LIST, path)? {
            deletions.push((key, field, value));
        } else if value.is_null() {
            remove_field(&mut original, key);
        } else {
            merge_field(&mut original, key, value, meta, &path.field(key))?;
        }
    }
    // Deletions go last, so a value that the patch both adds and deletes ends up deleted
    // whatever the order of the keys.
    for (key, field, values) in deletions {
        list::delete_from_primitive_list(&mut original, field, values, &path.field(key))?;
    }
    Ok(original)
}

/// Merges the patch's value for field `key` into `original`.
fn merge_field<M: PatchMeta>(
    original: &mut Object,
    key: &str,
    patch: &Value,
    meta: Option<&M>,
    path: &Path,
) -> Result<()> {
    let (strategy, child) = match meta {
        Some(meta) => meta.field(key),
        None => (FieldStrategy::default(), None),
    };
    let child = child.as_ref();
    let Some(slot) = original.get_mut(key) else {
        if let Some(value) = new_value(patch, &strategy, child, path)? {
            original.insert(key.to_owned(), value);
        }
        return Ok(());
    };
    let merged = match (std::mem::take(slot), patch) {
        (Value::Object(current), Value::Object(patch)) => {
            Some(Value::Object(merge_map(current, patch, child, path)?))
        }
        (Value::Array(current), Value::Array(patch)) => Some(Value::Array(list::merge_list(
            current, patch, &strategy, child, path,
        )?)),
        // A map turned into a list or the reverse is a malformed patch when the schema knows
        // the field; a field of unknown structure is simply replaced, like any JSON merge patch.
        (current @ (Value::Object(_) | Value::Array(_)), Value::Object(_) | Value::Array(_))
            if child.is_some() =>
        {
            return Err(path.invalid(format!(
                "the patch has {} where the document has {}",
                json_type(patch),
                json_type(&current)
            )));
        }
        (_, patch) => new_value(patch, &strategy, child, path)?,
    };
    match merged {
        Some(value) => *slot = value,
        None => remove_field(original, key),
    }
    Ok(())
}

/// Applies `$retainKeys`: only the listed fields of `original` survive.
fn retain_keys(original: &mut Object, patch: &Object, keep: &Value, path: &Path) -> Result<()> {
    let keep: Vec<&str> = keep
        .as_array()
        .and_then(|names| names.iter().map(Value::as_str).collect())
        .ok_or_else(|| path.invalid("$retainKeys must be a list of field names"))?;
    // A patch that sets a field it also asks to drop contradicts itself; upstream rejects it.
    let stray = patch.iter().find(|(key, value)| {
        !value.is_null() && !is_directive(key) && !keep.contains(&key.as_str())
    });
    if let Some((key, _)) = stray {
        return Err(path.invalid(format!(
            "field {key:?} is set by the patch but missing from $retainKeys"
        )));
    }
    original.retain(|key, _| keep.contains(&key.as_str()));
    Ok(())
}

/// Removes `key`, keeping the order of the other fields even when serde_json preserves
/// insertion order (its `remove` then swaps the last field into the gap).
fn remove_field(map: &mut Object, key: &str) {
    map.retain(|existing, _| existing != key);
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// For a key `<prefix>/<field>` (a directive that goes beside the list `<field>`), the field;
/// `None` when the key does not start with `prefix`.
fn parallel_field<'k>(key: &'k str, prefix: &str, path: &Path) -> Result<Option<&'k str>> {
    let Some(rest) = key.strip_prefix(prefix) else {
        return Ok(None);
    };
    match rest.strip_prefix('/') {
        Some(field) if !field.is_empty() => Ok(Some(field)),
        _ => Err(path.invalid(format!(
            "malformed directive {key:?} (expected {prefix}/<field>)"
        ))),
    }
}

/// "a list", "an object", ...: for error messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
