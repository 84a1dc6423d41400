//! Lists: merged item by item, merged as sets, or replaced, per the field's strategy.

use serde_json::Value;

use super::order::arrange;
use super::path::Path;
use super::{json_type, merge_fields, new_value, Directive, Object, Result, PATCH};
use crate::{FieldStrategy, PatchError, PatchMeta};

/// What a merged list holds. Upstream merges only lists whose items all have one type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Items {
    Objects,
    Primitives,
}

/// Merges list `patch` into `original` (`meta` describes the items).
pub(super) fn merge_list<M: PatchMeta>(
    original: Vec<Value>,
    patch: &[Value],
    strategy: &FieldStrategy,
    meta: Option<&M>,
    path: &Path,
) -> Result<Vec<Value>> {
    if !strategy.merge {
        return replace_list(patch, meta, path);
    }
    match items_of(&original, patch, path)? {
        None => Ok(original),
        Some(Items::Primitives) => Ok(merge_primitives(original, patch)),
        Some(Items::Objects) => {
            merge_objects(original, patch, merge_key(strategy, path)?, meta, path)
        }
    }
}

/// A list without the merge strategy is replaced by the patch's list, whose items are applied
/// to nothing to resolve their directives.
fn replace_list<M: PatchMeta>(
    patch: &[Value],
    meta: Option<&M>,
    path: &Path,
) -> Result<Vec<Value>> {
    let plain = FieldStrategy::default();
    patch
        .iter()
        .filter_map(|item| new_value(item, &plain, meta, path).transpose())
        .collect()
}

/// The kind of items of a list to merge, `None` when both lists are empty.
fn items_of(original: &[Value], patch: &[Value], path: &Path) -> Result<Option<Items>> {
    let mut all = original.iter().chain(patch);
    let Some(first) = all.next() else {
        return Ok(None);
    };
    let items = match first {
        Value::Object(_) => Items::Objects,
        Value::Array(_) => return Err(path.invalid("lists of lists cannot be merged")),
        Value::Null => return Err(path.invalid("a list with the merge strategy cannot hold null")),
        _ => Items::Primitives,
    };
    if let Some(odd) =
        all.find(|item| std::mem::discriminant(*item) != std::mem::discriminant(first))
    {
        return Err(path.invalid(format!(
            "cannot merge a list holding both {} and {}",
            json_type(first),
            json_type(odd)
        )));
    }
    Ok(Some(items))
}

fn merge_key<'s>(strategy: &'s FieldStrategy, path: &Path) -> Result<&'s str> {
    strategy
        .merge_key
        .as_deref()
        .ok_or_else(|| path.invalid("a list of objects cannot be merged without a merge key"))
}

/// Primitive lists merge as ordered sets: every value once, ordered by [`arrange`].
fn merge_primitives(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let server = original.clone();
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for value in original.into_iter().chain(patch.iter().cloned()) {
        if !merged.contains(&value) {
            merged.push(value);
        }
    }
    arrange(merged, patch, &server, None)
}

/// Lists of objects merge item by item, matched by the value of `key`.
fn merge_objects<M: PatchMeta>(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    meta: Option<&M>,
    path: &Path,
) -> Result<Vec<Value>> {
    // Directive items first: deletions apply before any merge, whatever their position.
    let mut replace = false;
    let mut updates: Vec<&Object> = Vec::with_capacity(patch.len());
    for item in patch {
        let item = item
            .as_object()
            .ok_or_else(|| path.invalid("a list of objects cannot be merged with other values"))?;
        match Directive::of(item, path)? {
            None => updates.push(item),
            Some(Directive::Delete) => {
                let id = key_of(item, key, path)?;
                original.retain(|existing| existing.get(key) != Some(id));
            }
            Some(Directive::Replace) => replace = true,
            Some(Directive::Merge) => {
                return Err(path.invalid("$patch: merge is not supported on list items"));
            }
        }
    }

    if replace {
        // `{"$patch": "replace"}` among the items: the list becomes exactly the other items.
        return updates
            .into_iter()
            .map(|item| {
                let id = key_of(item, key, path)?;
                Ok(Value::Object(merge_fields(
                    Object::new(),
                    item,
                    meta,
                    &path.item(key, id),
                )?))
            })
            .collect();
    }

    let server: Vec<Value> = original
        .iter()
        .filter_map(|item| item.get(key))
        .cloned()
        .collect();
    let mut wanted = Vec::with_capacity(updates.len());
    for item in updates {
        let id = key_of(item, key, path)?;
        let item_path = path.item(key, id);
        let existing = original.iter_mut().find_map(|existing| match existing {
            Value::Object(existing) if existing.get(key) == Some(id) => Some(existing),
            _ => None,
        });
        match existing {
            Some(existing) => {
                let current = std::mem::take(existing);
                *existing = merge_fields(current, item, meta, &item_path)?;
            }
            None => original.push(Value::Object(merge_fields(
                Object::new(),
                item,
                meta,
                &item_path,
            )?)),
        }
        wanted.push(id.clone());
    }
    Ok(arrange(original, &wanted, &server, Some(key)))
}

fn key_of<'i>(item: &'i Object, key: &str, path: &Path) -> Result<&'i Value> {
    item.get(key).ok_or_else(|| missing_key(key, path))
}

fn missing_key(key: &str, path: &Path) -> PatchError {
    path.invalid(format!(
        "a list item does not contain the merge key {key:?}"
    ))
}

/// Applies `$setElementOrder/<field>`: merges the patch's list for `field` (if any) and orders
/// the result by `order`, placing the items `order` does not name as [`arrange`] does.
pub(super) fn set_element_order<M: PatchMeta>(
    original: &mut Object,
    patch: &Object,
    field: &str,
    order: &Value,
    meta: Option<&M>,
    path: &Path,
) -> Result<()> {
    let order = order
        .as_array()
        .ok_or_else(|| path.invalid("$setElementOrder must be a list"))?;
    let patch_items = match patch.get(field) {
        None => None,
        Some(Value::Array(items)) => Some(items.as_slice()),
        Some(other) => {
            return Err(path.invalid(format!(
                "$setElementOrder orders a list, but the patch has {}",
                json_type(other)
            )))
        }
    };
    let current = match original.get_mut(field) {
        None => None,
        Some(Value::Array(items)) => Some(std::mem::take(items)),
        Some(other) => {
            return Err(path.invalid(format!(
                "$setElementOrder orders a list, but the document has {}",
                json_type(other)
            )))
        }
    };
    if current.is_none() && patch_items.is_none() {
        return Ok(());
    }
    let current = current.unwrap_or_default();

    let (strategy, child) = match meta {
        Some(meta) => meta.field(field),
        None => (FieldStrategy::default(), None),
    };
    let key = match items_of(&current, patch_items.unwrap_or_default(), path)? {
        Some(Items::Objects) => Some(merge_key(&strategy, path)?),
        Some(Items::Primitives) | None => None,
    };
    let order = identities(order, key, path)?;
    if let Some(items) = patch_items {
        check_order(items, &order, key, path)?;
    }
    let server = identities_lenient(&current, key);
    let merged = match patch_items {
        Some(items) => merge_list(current, items, &strategy, child.as_ref(), path)?,
        None => current,
    };
    original.insert(
        field.to_owned(),
        Value::Array(arrange(merged, &order, &server, key)),
    );
    Ok(())
}

/// The identities an order list names: merge-key values, or the values themselves.
fn identities(order: &[Value], key: Option<&str>, path: &Path) -> Result<Vec<Value>> {
    order
        .iter()
        .map(|entry| match key {
            None => Ok(entry.clone()),
            Some(key) => entry.get(key).cloned().ok_or_else(|| {
                path.invalid(format!(
                    "a $setElementOrder entry does not contain the merge key {key:?}"
                ))
            }),
        })
        .collect()
}

/// The identities of the document's items, skipping any without a merge key: those cannot be
/// named by a patch anyway.
fn identities_lenient(items: &[Value], key: Option<&str>) -> Vec<Value> {
    match key {
        None => items.to_vec(),
        Some(key) => items
            .iter()
            .filter_map(|item| item.get(key))
            .cloned()
            .collect(),
    }
}

/// The patch's items (bar those carrying a directive, which take no place in the list) must
/// appear in `$setElementOrder`, in the same relative order: otherwise the patch contradicts
/// itself.
fn check_order(items: &[Value], order: &[Value], key: Option<&str>, path: &Path) -> Result<()> {
    // Upstream skips the check for an empty order list.
    if order.is_empty() {
        return Ok(());
    }
    let mut remaining = order.iter();
    for item in items {
        if item.get(PATCH).is_some() {
            continue;
        }
        let id = match key {
            Some(key) => item.get(key).ok_or_else(|| missing_key(key, path))?,
            None => item,
        };
        if !remaining.any(|entry| entry == id) {
            return Err(path.invalid(
                "the list items of the patch are missing from $setElementOrder or in a different order",
            ));
        }
    }
    Ok(())
}

/// Applies `$deleteFromPrimitiveList/<field>`: removes every occurrence of the given values.
/// Like upstream, it applies whatever the field's strategy, and does nothing when the document
/// has no such list.
pub(super) fn delete_from_primitive_list(
    original: &mut Object,
    field: &str,
    values: &Value,
    path: &Path,
) -> Result<()> {
    let values = values
        .as_array()
        .filter(|values| values.iter().all(is_primitive))
        .ok_or_else(|| {
            path.invalid("$deleteFromPrimitiveList must be a list of primitive values")
        })?;
    let Some(Value::Array(items)) = original.get_mut(field) else {
        return Ok(());
    };
    if !items.iter().all(is_primitive) {
        return Err(
            path.invalid("$deleteFromPrimitiveList applies only to lists of primitive values")
        );
    }
    items.retain(|item| !values.contains(item));
    Ok(())
}

fn is_primitive(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}
