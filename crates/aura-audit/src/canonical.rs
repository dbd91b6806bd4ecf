//! Canonical JSON: the deterministic byte encoding of audit entries (sorted keys, no whitespace, integers only).
//!
//! The rules are those of RFC 8785 (JCS) restricted to integers: objects with keys sorted by their UTF-8 bytes,
//! no insignificant whitespace, strings escaped minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control
//! characters as `\u00xx` with lowercase hex, everything else as literal UTF-8), integers in plain decimal, and no
//! floating-point numbers at all. `docs/audit-format.md` is the normative description.

use serde_json::{Map, Value};

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
                write_i64(i, out);
            } else if let Some(u) = n.as_u64() {
                write_u64(u, out);
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
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

/// Appends the canonical encoding of a JSON object: keys sorted by their UTF-8 bytes.
pub(crate) fn write_object(
    map: &Map<String, Value>,
    out: &mut Vec<u8>,
) -> Result<(), NotCanonical> {
    out.push(b'{');
    // `Map` is usually ordered by `String`'s `Ord`, which is byte order already: then no sort is needed.
    if map.keys().is_sorted_by(|a, b| a.as_bytes() < b.as_bytes()) {
        for (i, (k, v)) in map.iter().enumerate() {
            write_member(i, k, v, out)?;
        }
    } else {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (i, (k, v)) in entries.into_iter().enumerate() {
            write_member(i, k, v, out)?;
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_member(i: usize, k: &str, v: &Value, out: &mut Vec<u8>) -> Result<(), NotCanonical> {
    if i > 0 {
        out.push(b',');
    }
    write_string(k, out);
    out.push(b':');
    write_value(v, out)
}

/// Appends an integer in plain decimal.
pub(crate) fn write_i64(n: i64, out: &mut Vec<u8>) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(n.unsigned_abs(), out);
}

/// Appends an unsigned integer in plain decimal.
pub(crate) fn write_u64(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(Digits::new().u64(n));
}

/// A stack buffer for the decimal digits of an integer (no allocation).
pub(crate) struct Digits([u8; 20]);

impl Digits {
    pub(crate) fn new() -> Self {
        Self([0; 20])
    }

    /// The decimal digits of `n`, no leading zeros.
    pub(crate) fn u64(&mut self, mut n: u64) -> &[u8] {
        let mut i = self.0.len();
        loop {
            i -= 1;
            // INVARIANT: n % 10 < 10, and u64::MAX has 20 digits, so `i` never underflows.
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        &self.0[i..]
    }
}

/// Appends a canonically escaped JSON string.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let mut rest = s.as_bytes();
    // Copy runs without anything to escape in one go (most strings are a single run).
    while let Some(i) = rest
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
    {
        let (run, tail) = rest.split_at(i);
        out.extend_from_slice(run);
        let Some((&b, tail)) = tail.split_first() else {
            // INVARIANT: unreachable, `i` indexes a byte of `rest`.
            rest = tail;
            break;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        rest = tail;
    }
    out.extend_from_slice(rest);
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
