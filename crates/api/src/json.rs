//! JSON text to values with UTF-8 checked once per text. serde_json's `from_slice` checks each
//! string on its own, a fixed cost per string that adds up over the hundreds of strings in every
//! pod event the server, scheduler and controllers decode; text known to be UTF-8 parses
//! without it.
//!
//! And values to JSON text, byte for byte as `serde_json::to_vec` writes them, with strings that
//! need no escape (nearly all of an object's) copied whole rather than byte by byte: every write
//! the API server stores is encoded here.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// `serde_json::from_slice`, checking UTF-8 in one pass over the whole text.
pub fn from_slice<T: DeserializeOwned>(json: &[u8]) -> serde_json::Result<T> {
    serde_json::from_str(text(json)?)
}

/// The JSON text as a string, for `serde_json::Deserializer::from_str`.
pub fn text(json: &[u8]) -> serde_json::Result<&str> {
    std::str::from_utf8(json).map_err(<serde_json::Error as serde::de::Error>::custom)
}

/// `serde_json::to_vec(value)`, the same bytes.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Writing to a Vec cannot fail, nor can serializing a number.
        Value::Number(number) => serde_json::to_writer(&mut *out, number).unwrap_or_default(),
        Value::String(string) => write_string(out, string),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (index, (name, field)) in fields.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(out, name);
                out.push(b':');
                write_value(out, field);
            }
            out.push(b'}');
        }
    }
}

fn write_string(out: &mut Vec<u8>, string: &str) {
    if needs_escape(string.as_bytes()) {
        serde_json::to_writer(&mut *out, string).unwrap_or_default();
    } else {
        out.push(b'"');
        out.extend_from_slice(string.as_bytes());
        out.push(b'"');
    }
}

/// Whether serde_json would escape any byte: a control character, `"` or `\`. Eight bytes at a
/// time as one word (most strings are names, labels and timestamps: too short for vectors).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte of `word` is below `n` (n <= 0x80): the classic "has less" word trick.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0;
    let has = |word: u64, byte: u8| below(word ^ (ONES * u64::from(byte)), 1);
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        if below(word, 0x20) || has(word, b'"') || has(word, b'\\') {
            return true;
        }
    }
    words.remainder().iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of every JSON type, with strings of every escape class (control characters, quotes,
    /// backslashes, non-ASCII, DEL, slashes) at every length around the 16-byte blocks.
    fn generated(seed: &mut u64, depth: u32) -> Value {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        const ALPHABET: &[&str] = &["a", "Z", "0", " ", "/", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "\u{7f}", "é", "€", "😀", "-", ":"];
        let string = |next: &mut dyn FnMut() -> u64| -> String {
            let len = (next() % 40) as usize;
            (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect()
        };
        match next() % if depth == 0 { 6 } else { 8 } {
            0 => Value::Null,
            1 => Value::Bool(next() % 2 == 0),
            2 => Value::from(next() as i64),
            3 => Value::from(next()),
            4 => Value::from((next() % 1_000_000) as f64 / 7.0 - 1000.0),
            5 => Value::String(string(&mut next)),
            6 => Value::Array((0..next() % 5).map(|_| generated(seed, depth - 1)).collect()),
            _ => {
                let names: Vec<String> = (0..next() % 5).map(|_| string(&mut next)).collect();
                Value::Object(names.into_iter().map(|name| (name, generated(seed, depth - 1))).collect())
            }
        }
    }

    #[test]
    fn encodes_byte_for_byte_as_serde_json() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut escaped = 0;
        for _ in 0..20_000 {
            let value = generated(&mut seed, 4);
            let ours = to_vec(&value);
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde_json::to_vec(&value).unwrap()), "{value:?}");
            escaped += usize::from(ours.windows(2).any(|pair| pair[0] == b'\\'));
        }
        assert!(escaped > 1_000, "the generator makes strings that need escapes: {escaped}");
        let pod = serde_json::json!({"metadata": {"name": "web-1", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "registry.local/busybox:1.36"}]}});
        assert_eq!(to_vec(&pod), serde_json::to_vec(&pod).unwrap());
    }

    #[test]
    fn decodes_as_serde_json_does_and_refuses_what_it_refuses() {
        let text = br#"{"a": ["\u00e9", "\u00e9t\u00e9", 1.5, null], "b": {"c": true}}"#;
        assert_eq!(from_slice::<Value>(text).unwrap(), serde_json::from_slice::<Value>(text).unwrap());
        assert!(from_slice::<Value>(b"{\"a\": \"\xff\"}").is_err(), "not UTF-8");
        assert!(from_slice::<Value>(b"{\"a\": }").is_err(), "not JSON");
    }
}
