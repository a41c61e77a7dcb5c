//! JSON text exactly as the Quix SDK 0.5.7 writes it (Newtonsoft.Json defaults), so that our
//! records are byte-identical to the SDK's (docs/spec/quix-wire-format.md, "Payloads (`V`)").
//!
//! Only the two pieces whose spelling differs from "any valid JSON" live here: strings (which
//! characters are escaped, and how) and doubles (.NET round-trip text with `.0` on integrals).

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal with Newtonsoft's default escaping: `"` and `\`, the short
/// escapes `\b \t \n \f \r`, other control characters and U+0085, U+2028, U+2029 as `\uxxxx`;
/// everything else (including `/`, `<`, `&`, `'` and non-ASCII) raw.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\u{8}' => Some("\\b"),
            '\t' => Some("\\t"),
            '\n' => Some("\\n"),
            '\u{c}' => Some("\\f"),
            '\r' => Some("\\r"),
            _ => None,
        };
        let needs_unicode_escape = escape.is_none() && (c < ' ' || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}'));
        if escape.is_none() && !needs_unicode_escape {
            continue;
        }
        out.push_str(&s[plain_from..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        plain_from = i + c.len_utf8();
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

/// Appends a finite double the way .NET's round-trip formatting plus Newtonsoft's
/// "ensure a decimal place" rule spell it: the shortest text that reads back to the same value;
/// plain decimal for decimal exponents -4 to 16 with `.0` appended to integral values
/// (`42.0`, `-0.0`, `10000000000000000.0`), otherwise scientific with a capital `E`, an explicit
/// sign and at least two exponent digits (`1E-05`, `1.5E-07`, `1E+20`).
///
/// Non-finite values have no JSON spelling we are willing to send (0.5.7 would write the string
/// `"NaN"`, which 3.x readers hand to applications as text); they are written as `null`.
pub fn push_f64(out: &mut String, v: f64) {
    if !v.is_finite() {
        out.push_str("null");
        return;
    }
    // Fast path, one formatting and no allocation: from 1e-4 (inclusive) to 1e17 (exclusive) the
    // shortest round-trip text has a decimal exponent of -4 to 16 (text for a value outside would
    // read back to a different double), and so does zero. (ryu would be faster still, but breaks
    // exact ties differently: 1664152984433.6562 where `Display` writes …6563.)
    let a = v.abs();
    if a == 0.0 || (1e-4..1e17).contains(&a) {
        let start = out.len();
        let _ = write!(out, "{v}");
        if !out.as_bytes()[start..].contains(&b'.') {
            out.push_str(".0");
        }
        return;
    }
    // Rust's `{:e}` is the shortest round-trip digit string in scientific form, e.g. `1.5e-7`.
    let mut sci = String::with_capacity(24);
    let _ = write!(sci, "{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always writes an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` writes a decimal exponent");
    if (-4..=16).contains(&exp) {
        let start = out.len();
        let _ = write!(out, "{v}");
        if !out[start..].contains('.') {
            out.push_str(".0");
        }
    } else {
        out.push_str(mantissa);
        out.push('E');
        out.push(if exp < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", exp.unsigned_abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut s = String::new();
        push_f64(&mut s, v);
        s
    }

    fn js(v: &str) -> String {
        let mut s = String::new();
        push_str(&mut s, v);
        s
    }

    #[test]
    fn doubles_match_the_spellings_observed_from_the_sdk() {
        // Every pair below was observed in 0.5.7 output (docs/spec/quix-wire-format.md,
        // "Payloads (`V`)" and "Other verified encodings (0.5.7 writer)").
        let cases: &[(f64, &str)] = &[
            (100.0, "100.0"),
            (42.0, "42.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (9.999999999999998, "9.999999999999998"),
            (9.090909090909093, "9.090909090909093"),
            (0.25, "0.25"),
            (99.75, "99.75"),
            (0.0001, "0.0001"),
            (1e-5, "1E-05"),
            (1.5e-7, "1.5E-07"),
            (5e-324, "5E-324"),
            (1e20, "1E+20"),
            (1.7976931348623157e308, "1.7976931348623157E+308"),
            (0.30000000000000004, "0.30000000000000004"),
            (123456789.12345679, "123456789.12345679"),
            (1e16, "10000000000000000.0"),
        ];
        for (v, want) in cases {
            assert_eq!(&f(*v), want, "formatting {v:e}");
        }
    }

    /// The rule without the fast path: decide by the exponent of the shortest scientific text.
    fn by_exponent(v: f64) -> String {
        let sci = format!("{v:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        if (-4..=16).contains(&exp) {
            let d = format!("{v}");
            if d.contains('.') { d } else { d + ".0" }
        } else {
            format!("{mantissa}E{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs())
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_exponent_rule_at_and_around_its_bounds() {
        let next_up = |v: f64| f64::from_bits(v.to_bits() + 1);
        let next_down = |v: f64| f64::from_bits(v.to_bits() - 1);
        let mut values = vec![0.0, -0.0];
        for edge in [1e-4, 1e17, 1e16, 1e-3, 1.0] {
            values.extend([edge, next_up(edge), next_down(edge), -edge, -next_down(edge)]);
        }
        let mut x = 1.234_567e-6_f64;
        while x < 1e19 {
            values.extend([x, next_up(x), x * 3.7, -x]);
            x *= 1.9;
        }
        for v in values {
            assert_eq!(f(v), by_exponent(v), "{v:e}");
        }
        assert_eq!(f(9.999999999999999e-5), "9.999999999999999E-05");
        assert_eq!(f(1e17), "1E+17");
        assert_eq!(f(9.999999999999998e16), "99999999999999980.0");
    }

    #[test]
    fn non_finite_doubles_become_null_not_strings() {
        assert_eq!(f(f64::NAN), "null");
        assert_eq!(f(f64::INFINITY), "null");
        assert_eq!(f(f64::NEG_INFINITY), "null");
    }

    #[test]
    fn every_double_reads_back_to_itself() {
        // A spread of awkward values: the text must parse to the exact same bits.
        let mut x = 1.234_567_890_123_456_7e-300_f64;
        while x < 1e300 {
            for v in [x, -x, x / 3.0] {
                let text = f(v);
                let back: f64 = text.parse().unwrap();
                assert_eq!(back.to_bits(), v.to_bits(), "{text}");
            }
            x *= 7.77;
        }
    }

    #[test]
    fn strings_are_escaped_like_newtonsoft() {
        assert_eq!(js("höst \"q\" \\ /"), r#""höst \"q\" \\ /""#);
        assert_eq!(
            js("ctl:\u{1}\t\n esc:\u{2028}\u{2029}\u{85} emoji:😀 lt:<>&'"),
            r#""ctl:\u0001\t\n esc:\u2028\u2029\u0085 emoji:😀 lt:<>&'""#
        );
        assert_eq!(js("\r\u{8}\u{c}\u{1f}"), r#""\r\b\f\u001f""#);
        assert_eq!(js(""), r#""""#);
    }

    #[test]
    fn escaped_strings_are_valid_json_for_the_same_text() {
        let s = "a\u{0}b\u{7f}c\u{85}\u{2028}\"\\é😀";
        let back: String = serde_json::from_str(&js(s)).unwrap();
        assert_eq!(back, s);
    }
}
