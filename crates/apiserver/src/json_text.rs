//! Reading and editing JSON text this server wrote, without decoding it: the members of an
//! object and the elements of an array as slices of the text, and an object written back with
//! some members replaced, added or removed and the rest copied as they were.
//!
//! Invariant: the text was written by this server's encoder (it is valid JSON); a scan that
//! finds otherwise answers None rather than guessing.

use std::borrow::Cow;

/// One member of an object: its key as written (a JSON string, quotes included) and the text of
/// its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl Member<'_> {
    /// The key's text, unescaped: keys this server writes have no escapes, so this is nearly
    /// always a slice of the text (compared as bytes: byte order is the order of names).
    fn name(&self) -> Cow<'_, [u8]> {
        let inner = &self.key[1..self.key.len() - 1];
        match inner.contains(&b'\\') {
            false => Cow::Borrowed(inner),
            true => Cow::Owned(string(self.key).unwrap_or_default().into_owned().into_bytes()),
        }
    }

    fn is(&self, name: &str) -> bool {
        *self.name() == *name.as_bytes()
    }
}

/// The members of the object `text`, in the order written; None when `text` is not an object.
pub fn members(text: &[u8]) -> Option<Vec<Member<'_>>> {
    let mut found = Vec::new();
    items(text, b'{', b'}', |at| member_at(text, at), |(member, _)| {
        found.push(member);
        true
    })?;
    Some(found)
}

/// The value of the member called `name`.
pub fn field<'a>(members: &[Member<'a>], name: &str) -> Option<&'a [u8]> {
    members.iter().find(|m| m.is(name)).map(|m| m.value)
}

/// Where the value of the member called `name` of the object `text` starts; the members after
/// it are not scanned.
pub fn field_offset(text: &[u8], name: &str) -> Option<usize> {
    let mut found = None;
    items(text, b'{', b'}', |at| member_at(text, at), |(member, value)| {
        found = member.is(name).then_some(value);
        found.is_none()
    })?;
    found
}

/// The member whose key starts at `at`, with the offset of its value, and the offset after it.
fn member_at(text: &[u8], at: usize) -> Option<((Member<'_>, usize), usize)> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let key_end = string_end(text, at + 1)?;
    let colon = skip_whitespace(text, key_end);
    if text.get(colon) != Some(&b':') {
        return None;
    }
    let value = skip_whitespace(text, colon + 1);
    let value_end = value_end(text, value)?;
    Some(((Member { key: &text[at..key_end], value: &text[value..value_end] }, value), value_end))
}

/// The elements of the array `text`; None when `text` is not an array.
pub fn elements(text: &[u8]) -> Option<Vec<&[u8]>> {
    let mut found = Vec::new();
    items(text, b'[', b']', |at| value_end(text, at).map(|end| (&text[at..end], end)), |element| {
        found.push(element);
        true
    })?;
    Some(found)
}

/// Hands the items of the object or array `text` (opened by `open`, closed by `close`) to
/// `visit` in order, until it answers false. Each is read by `item` from its first byte, which
/// answers the item and the offset just after it. None when the text scanned is malformed.
fn items<T>(text: &[u8], open: u8, close: u8, mut item: impl FnMut(usize) -> Option<(T, usize)>, mut visit: impl FnMut(T) -> bool) -> Option<()> {
    let mut at = skip_whitespace(text, 0);
    if text.get(at) != Some(&open) {
        return None;
    }
    at = skip_whitespace(text, at + 1);
    if text.get(at) == Some(&close) {
        return Some(());
    }
    loop {
        let (next, end) = item(at)?;
        if !visit(next) {
            return Some(());
        }
        at = skip_whitespace(text, end);
        match text.get(at) {
            Some(b',') => at = skip_whitespace(text, at + 1),
            Some(byte) if *byte == close => return Some(()),
            _ => return None,
        }
    }
}

/// The string the text `value` holds; None when it is not a string.
pub fn string(value: &[u8]) -> Option<Cow<'_, str>> {
    let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if memchr::memchr(b'\\', inner).is_none() {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(value).ok().map(Cow::Owned)
}

/// What becomes of one member when an object is written back.
pub enum Edit<'e> {
    /// Dropped, if present.
    Remove,
    /// Its value written by the function, in place or (if absent) as a new member.
    Set(&'e dyn Fn(&mut Vec<u8>)),
}

/// Writes the object of `members` with `edits` (by member name, in name order) applied; a new
/// member goes where name order puts it, so an object written in name order stays so.
pub fn write_object(out: &mut Vec<u8>, members: &[Member], edits: &[(&str, Edit)]) {
    debug_assert!(edits.windows(2).all(|pair| pair[0].0 < pair[1].0), "edits must be in name order");
    out.push(b'{');
    let mut first = true;
    let mut separate = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    let mut set = |out: &mut Vec<u8>, key: &dyn Fn(&mut Vec<u8>), edit: &Edit| {
        if let Edit::Set(write) = edit {
            separate(out);
            key(out);
            out.push(b':');
            write(out);
        }
    };
    let mut pending = edits.iter().peekable();
    for member in members {
        let name = member.name();
        while let Some((new, edit)) = pending.next_if(|(new, _)| new.as_bytes() < name.as_ref()) {
            set(out, &|out| write_string(out, new), edit);
        }
        match pending.next_if(|(edited, _)| edited.as_bytes() == name.as_ref()) {
            Some((_, edit)) => set(out, &|out| out.extend_from_slice(member.key), edit),
            None => set(out, &|out| out.extend_from_slice(member.key), &Edit::Set(&|out| out.extend_from_slice(member.value))),
        }
    }
    for (new, edit) in pending {
        set(out, &|out| write_string(out, new), edit);
    }
    out.push(b'}');
}

/// `text` as a JSON string.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing to a Vec cannot fail.
    serde_json::to_writer(out, text).unwrap_or_default();
}

/// The offset just after the closing quote of the string whose contents start at `from`.
fn string_end(text: &[u8], from: usize) -> Option<usize> {
    // Byte by byte: nearly every string of an object is a few bytes long, too short for a
    // vectorised search to pay for its setup.
    let mut at = from;
    while let Some(byte) = text.get(at) {
        match byte {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    None
}

fn skip_whitespace(text: &[u8], from: usize) -> usize {
    from + text[from.min(text.len())..].iter().take_while(|b| b.is_ascii_whitespace()).count()
}

/// The offset just after the value that starts at `from`.
fn value_end(text: &[u8], from: usize) -> Option<usize> {
    match text.get(from)? {
        b'"' => string_end(text, from + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = from;
            loop {
                match *text.get(at)? {
                    b'"' => {
                        at = string_end(text, at + 1)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        // A number, true, false or null.
        _ => {
            let length = text[from..].iter().take_while(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace()).count();
            (length > 0).then_some(from + length)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_objects_and_arrays_into_their_text() {
        let text = br#" { "a" : {"x": [1, "]}\"", {}]} , "b\"c":-1.5e3,"d":[],"e":"\\","f":null } "#;
        let found = members(text).unwrap();
        let names: Vec<_> = found.iter().map(|m| String::from_utf8(m.name().into_owned()).unwrap()).collect();
        assert_eq!(names, ["a", "b\"c", "d", "e", "f"]);
        assert_eq!(field(&found, "a"), Some(&br#"{"x": [1, "]}\"", {}]}"#[..]));
        assert_eq!(field(&found, "b\"c"), Some(&b"-1.5e3"[..]));
        assert_eq!(string(field(&found, "e").unwrap()).as_deref(), Some("\\"));
        assert_eq!(field(&found, "f"), Some(&b"null"[..]));
        assert_eq!(field_offset(text, "b\"c"), Some(text.len() - br#"-1.5e3,"d":[],"e":"\\","f":null } "#.len()));
        assert_eq!(field_offset(br#"{"a":1,"b":2,"#, "b"), Some(11), "the scan stops at the member asked for");
        assert_eq!(field_offset(text, "g"), None);
        assert_eq!(elements(br#"[1, "a,b", {"c": [2]}, []]"#).unwrap(), [&b"1"[..], br#""a,b""#, br#"{"c": [2]}"#, b"[]"]);
        assert_eq!(members(b"{}").unwrap(), []);
        assert_eq!(elements(b"[ ]").unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn refuses_what_is_not_the_kind_asked_or_ends_early() {
        for text in [&b"[1]"[..], b"null", b"{\"a\":1", b"{\"a\" 1}", b"{\"a\":\"x}", b"{\"a\":{\"b\":1}", b"{\"a\":}"] {
            assert_eq!(members(text), None, "{}", String::from_utf8_lossy(text));
        }
        assert_eq!(elements(b"{}"), None);
        assert_eq!(elements(b"[1,"), None);
        assert_eq!(string(b"1"), None);
    }

    #[test]
    fn writes_an_object_back_with_its_edits_in_name_order() {
        let text = br#"{"b":1,"d":{"x":true},"f":"s"}"#;
        let found = members(text).unwrap();
        let mut out = Vec::new();
        let two = |out: &mut Vec<u8>| out.extend_from_slice(b"2");
        write_object(&mut out, &found, &[("a", Edit::Set(&two)), ("b", Edit::Remove), ("c", Edit::Remove), ("e", Edit::Set(&two)), ("f", Edit::Set(&two)), ("g\"", Edit::Set(&two))]);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":2,"d":{"x":true},"e":2,"f":2,"g\"":2}"#);
        let mut out = Vec::new();
        write_object(&mut out, &[], &[("b", Edit::Remove)]);
        assert_eq!(out, b"{}");
    }
}
