//! Canonical JSON: the deterministic byte encoding of audit entries (sorted keys, no whitespace, integers only).
//!
//! The rules are those of RFC 8785 (JCS) restricted to integers: objects with keys sorted by their UTF-8 bytes,
//! no insignificant whitespace, strings escaped minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control
//! characters as `\u00xx` with lowercase hex, everything else as literal UTF-8), integers in plain decimal, and no
//! floating-point numbers at all. `docs/audit-format.md` is the normative description.

use serde_json::Value;

/// Why a value has no canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotCanonical(pub(crate) String);

/// Appends the canonical encoding of `value` to `out`.
pub(crate) fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), NotCanonical> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(NotCanonical(format!(
                    "floating-point number `{n}` (use integers)"
                )));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Appends a canonically escaped JSON string.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: &Value) -> String {
        let mut out = Vec::new();
        write_value(v, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_known_values() {
        let cases = [
            (json!(null), "null"),
            (
                json!({"b": 1, "a": [true, false, -3], "": "x"}),
                r#"{"":"x","a":[true,false,-3],"b":1}"#,
            ),
            (json!({"z": {"y": 1, "x": 2}}), r#"{"z":{"x":2,"y":1}}"#),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(i64::MIN), "-9223372036854775808"),
            (
                json!("q\"b\\n\n\t\r\u{8}\u{c}\u{1}\u{1f}é€\u{2028}😀/"),
                "\"q\\\"b\\\\n\\n\\t\\r\\b\\f\\u0001\\u001fé€\u{2028}😀/\"",
            ),
            (json!({"é": 1, "z": 2, "Z": 3}), r#"{"Z":3,"z":2,"é":1}"#),
        ];
        for (value, want) in cases {
            assert_eq!(enc(&value), want, "{value}");
        }
    }

    #[test]
    fn rejects_floats_anywhere() {
        let mut out = Vec::new();
        assert!(write_value(&json!({"a": [1, {"b": 1.5}]}), &mut out).is_err());
    }

    #[test]
    fn output_parses_back_to_the_same_value() {
        let v = json!({"k": ["a", 1, null, {"x": "\u{0}"}], "n": -1});
        let back: Value = serde_json::from_str(&enc(&v)).unwrap();
        assert_eq!(back, v);
    }
}
