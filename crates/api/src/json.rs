//! JSON text to values with UTF-8 checked once per text. serde_json's `from_slice` checks each
//! string on its own, a fixed cost per string that adds up over the hundreds of strings in every
//! pod event the server, scheduler and controllers decode; text known to be UTF-8 parses
//! without it.

use serde::de::DeserializeOwned;

/// `serde_json::from_slice`, checking UTF-8 in one pass over the whole text.
pub fn from_slice<T: DeserializeOwned>(json: &[u8]) -> serde_json::Result<T> {
    serde_json::from_str(text(json)?)
}

/// The JSON text as a string, for `serde_json::Deserializer::from_str`.
pub fn text(json: &[u8]) -> serde_json::Result<&str> {
    std::str::from_utf8(json).map_err(<serde_json::Error as serde::de::Error>::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn decodes_as_serde_json_does_and_refuses_what_it_refuses() {
        let text = br#"{"a": ["\u00e9", "\u00e9t\u00e9", 1.5, null], "b": {"c": true}}"#;
        assert_eq!(from_slice::<Value>(text).unwrap(), serde_json::from_slice::<Value>(text).unwrap());
        assert!(from_slice::<Value>(b"{\"a\": \"\xff\"}").is_err(), "not UTF-8");
        assert!(from_slice::<Value>(b"{\"a\": }").is_err(), "not JSON");
    }
}
