//! The order of a merged list, following upstream's `normalizeElementOrder`.

use serde_json::Value;

/// Orders the items of a merged list.
///
/// `wanted` holds the identities whose order the patch dictates (its list items, or its
/// `$setElementOrder` list), `server` the identities of the list being patched; an item's
/// identity is its merge-key value, or the item itself when `merge_key` is `None` (primitive
/// lists).
///
/// Items named in `wanted` come in that order. The others ("server-only" items) keep their
/// relative order from `server`. The two sequences are then interleaved: before each wanted
/// item go the pending server-only items that preceded it in `server`. A wanted item that was
/// not in `server` (a new one) therefore goes before every pending server-only item, which is
/// why Kubernetes puts items added by a patch without `$setElementOrder` at the front.
pub(super) fn arrange(
    items: Vec<Value>,
    wanted: &[Value],
    server: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let total = items.len();
    let (mut from_patch, mut server_only): (Vec<Ranked>, Vec<Ranked>) = items
        .into_iter()
        .map(|item| {
            let identity = match merge_key {
                Some(key) => item.get(key),
                None => Some(&item),
            };
            let wanted = position(wanted, identity);
            let server = position(server, identity);
            Ranked {
                item,
                wanted,
                server,
            }
        })
        .partition(|ranked| ranked.wanted.is_some());
    // Both sorts are stable, so equal ranks (duplicates) keep their merged order. Server-only
    // items missing from `server` (an original item without its merge key) go last.
    from_patch.sort_by_key(|ranked| ranked.wanted);
    server_only.sort_by_key(|ranked| ranked.server.unwrap_or(usize::MAX));

    let mut arranged = Vec::with_capacity(total);
    let mut server_only = server_only.into_iter().peekable();
    for next in from_patch {
        while let Some(earlier) = server_only.next_if(|pending| precedes(pending, &next)) {
            arranged.push(earlier.item);
        }
        arranged.push(next.item);
    }
    arranged.extend(server_only.map(|ranked| ranked.item));
    arranged
}

struct Ranked {
    item: Value,
    /// Position of the item's identity in the patch's order.
    wanted: Option<usize>,
    /// Position of the item's identity in the list being patched.
    server: Option<usize>,
}

/// Whether `pending` was before `next` in the list being patched (both must have been in it).
fn precedes(pending: &Ranked, next: &Ranked) -> bool {
    matches!((pending.server, next.server), (Some(a), Some(b)) if a < b)
}

fn position(identities: &[Value], identity: Option<&Value>) -> Option<usize> {
    let identity = identity?;
    identities
        .iter()
        .position(|candidate| candidate == identity)
}
