//! Key ranges and revision bounds shared by both backends.

use crate::{Revision, StoreError};

/// The smallest string greater than every string that starts with `prefix`, or `None` if there is
/// none (empty prefix, or one made only of `char::MAX`).
///
/// Works on chars rather than bytes so the result is valid UTF-8 (SQLite binds it as TEXT); since
/// UTF-8 byte order equals code point order, it is also the exact upper bound in byte order (etcd).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The surrogates U+D800..U+DFFF are not chars: the successor of U+D7FF is U+E000.
        let next = if last == '\u{D7FF}' { Some('\u{E000}') } else { char::from_u32(last as u32 + 1) };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Where a listing starts: the first key `>= prefix` and `> start_after`.
pub(crate) enum Lower<'a> {
    /// Keys greater than or equal to this one.
    From(&'a str),
    /// Keys strictly greater than this one.
    After(&'a str),
}

pub(crate) fn lower_bound<'a>(prefix: &'a str, start_after: Option<&'a str>) -> Lower<'a> {
    match start_after {
        Some(after) if after >= prefix => Lower::After(after),
        _ => Lower::From(prefix),
    }
}

/// Checks that history at `requested` is still there. The compacted revision itself stays
/// readable (as in etcd): only older ones are gone.
pub(crate) fn check_not_compacted(requested: Revision, compacted: Revision) -> Result<(), StoreError> {
    if requested < compacted {
        return Err(StoreError::Compacted { requested, compacted });
    }
    Ok(())
}

/// Checks that a read at `requested` can be answered given the compacted and current revisions.
pub(crate) fn check_readable(requested: Revision, compacted: Revision, current: Revision) -> Result<(), StoreError> {
    check_not_compacted(requested, compacted)?;
    if requested > current {
        return Err(StoreError::FutureRevision { requested, current });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/a/").as_deref(), Some("/a0"));
        assert_eq!(prefix_end("/").as_deref(), Some("0"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }

    #[test]
    fn lower_bounds() {
        assert!(matches!(lower_bound("/a/", None), Lower::From("/a/")));
        assert!(matches!(lower_bound("/a/", Some("/a/x")), Lower::After("/a/x")));
        // A start key before the prefix cannot widen the listing.
        assert!(matches!(lower_bound("/a/", Some("/0")), Lower::From("/a/")));
    }
}
