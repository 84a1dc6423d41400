//! `$(VAR)` expansion as Kubernetes does it for env values, command, args and subPathExpr
//! (third_party/forked/golang/expansion): `$$` is an escaped `$`, `$(NAME)` is replaced by what
//! `mapping` answers, and everything else (`$x`, an unclosed `$(`) is kept as written.

/// Expands `input`; `mapping` answers `None` for an unknown name, which is then kept as `$(NAME)`.
pub(crate) fn expand(input: &str, mut mapping: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(next) = after.chars().next() else {
            // A trailing `$` is copied as is.
            out.push('$');
            rest = after;
            break;
        };
        match next {
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match mapping(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    // An incomplete reference: kept, and scanning goes on after the `(`.
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            other => {
                out.push('$');
                out.push(other);
                rest = &after[other.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("$(A)".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_like_kubernetes() {
        for (input, expected) in [
            ("$(A)", "a"),
            ("x$(A)y$(A)", "xaya"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$a"),
            ("$$", "$"),
            ("$", "$"),
            ("a$", "a$"),
            ("$A", "$A"),
            ("$(A", "$(A"),
            ("$(", "$("),
            ("$()", "$()"),
            ("$(EMPTY)x", "x"),
            // Expansion is not recursive.
            ("$(DOLLAR)", "$(A)"),
            ("$é$(A)", "$éa"),
            ("$(A)$(", "a$("),
            ("$($(A))", "$($(A))"),
            ("no refs", "no refs"),
        ] {
            assert_eq!(expand(input, vars), expected, "{input}");
        }
    }
}
