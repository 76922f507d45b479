//! Small pieces of Python semantics that VLMEvalKit's scores depend on: `str.split()` whitespace,
//! `float()`/`int()` parsing, `repr(float)`, list literals and `\d`.

use std::sync::LazyLock;

use regex::Regex;

/// Python's `str.isspace()`: Unicode `White_Space` plus the four ASCII information separators
/// U+001C..U+001F, which Rust's `char::is_whitespace` leaves out.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.split()` with no separator.
pub fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|token| !token.is_empty())
}

/// `str.strip()` with no argument.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `re`'s `\d` on `str` patterns: any Unicode decimal digit (category Nd).
pub fn is_decimal_digit(c: char) -> bool {
    static DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d$").expect("valid regex"));
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    let mut buf = [0u8; 4];
    DIGIT.is_match(c.encode_utf8(&mut buf))
}

/// True when the string contains a CJK unified ideograph (U+4E00..U+9FFF), VLMEvalKit's
/// `cn_string` test.
pub fn has_cjk(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// Python's `float(text)`: surrounding whitespace allowed, `_` only between digits, `inf`/`nan`
/// spellings accepted.
pub fn parse_float(text: &str) -> Option<f64> {
    let body = strip(text);
    if body.is_empty() || !underscores_between_digits(body) {
        return None;
    }
    let cleaned: String = body.chars().filter(|&c| c != '_').collect();
    let lower = cleaned.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if lower.len() - unsigned.len() > 1 {
        return None;
    }
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse().ok();
    }
    // Rust also accepts forms Python rejects ("infinity" handled above); digits are required.
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    cleaned.parse().ok()
}

/// Python's `int(text)` for base 10.
pub fn parse_int(text: &str) -> Option<i128> {
    let body = strip(text);
    if body.is_empty() || !underscores_between_digits(body) {
        return None;
    }
    let cleaned: String = body.chars().filter(|&c| c != '_').collect();
    let digits = cleaned.trim_start_matches(['+', '-']);
    if cleaned.len() - digits.len() > 1 || digits.is_empty() {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    cleaned.parse().ok()
}

fn underscores_between_digits(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().all(|(i, &c)| {
        c != '_'
            || (i > 0
                && i + 1 < chars.len()
                && chars[i - 1].is_ascii_digit()
                && chars[i + 1].is_ascii_digit())
    })
}

/// `repr(x)` of a Python float: shortest round-trip digits, `.0` on integral values, scientific
/// notation below 1e-4 and from 1e16.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits as `d.ddde±x`.
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exponent: i32 = exponent.parse().expect("integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (int_part, frac) = digits.split_at(point as usize);
            format!("{int_part}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.unsigned_abs())
    }
}

/// One element of a Python list literal, rendered as `str()` would.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(i128),
    Float(f64),
    None,
    Bool(bool),
}

impl Literal {
    fn into_python_str(self) -> String {
        match self {
            Literal::Str(s) => s,
            Literal::Int(i) => i.to_string(),
            Literal::Float(f) => float_repr(f),
            Literal::None => "None".into(),
            Literal::Bool(b) => if b { "True" } else { "False" }.into(),
        }
    }
}

/// `[str(x) for x in eval(s)]` for a flat list literal of strings, numbers, `None` and booleans.
/// Returns `None` when `s` is not such a literal (VLMEvalKit's `eval` would raise or return a
/// non-list there).
pub fn parse_list_literal(s: &str) -> Option<Vec<String>> {
    let mut parser = LiteralParser {
        chars: s.char_indices().peekable(),
        source: s,
    };
    parser.skip_space();
    if parser.next_char()? != '[' {
        return None;
    }
    let mut items = Vec::new();
    loop {
        parser.skip_space();
        if parser.peek() == Some(']') {
            parser.next_char();
            break;
        }
        items.push(parser.literal()?.into_python_str());
        parser.skip_space();
        match parser.next_char()? {
            ',' => continue,
            ']' => break,
            _ => return None,
        }
    }
    parser.skip_space();
    parser.peek().is_none().then_some(items)
}

/// `toliststr`: a cell that starts with `[` and ends with `]` is a list literal, anything else a
/// single string. `None` when it looks like a list but does not parse.
pub fn to_list_str(cell: &str) -> Option<Vec<String>> {
    if cell.starts_with('[') && cell.ends_with(']') {
        parse_list_literal(cell)
    } else {
        Some(vec![cell.to_string()])
    }
}

struct LiteralParser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    source: &'a str,
}

impl LiteralParser<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|&(_, c)| c)
    }

    fn next_char(&mut self) -> Option<char> {
        self.chars.next().map(|(_, c)| c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.chars.next();
        }
    }

    fn literal(&mut self) -> Option<Literal> {
        match self.peek()? {
            quote @ ('\'' | '"') => {
                self.chars.next();
                self.string_body(quote).map(Literal::Str)
            }
            _ => self.bare_word(),
        }
    }

    fn bare_word(&mut self) -> Option<Literal> {
        let &(start, _) = self.chars.peek()?;
        let mut end = start;
        while let Some(&(i, c)) = self.chars.peek() {
            if c == ',' || c == ']' || is_space(c) {
                break;
            }
            end = i + c.len_utf8();
            self.chars.next();
        }
        let word = &self.source[start..end];
        match word {
            "None" => Some(Literal::None),
            "True" => Some(Literal::Bool(true)),
            "False" => Some(Literal::Bool(false)),
            _ => {
                let digits = word.trim_start_matches(['+', '-']);
                let is_number = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.');
                if !is_number {
                    return None;
                }
                if let Some(int) = parse_int(word) {
                    // Python rejects leading zeros in integer literals ("007").
                    let leading_zero = digits.len() > 1 && digits.starts_with('0');
                    return (!leading_zero).then_some(Literal::Int(int));
                }
                let lower = word.to_ascii_lowercase();
                if lower.contains("inf") || lower.contains("nan") {
                    return None;
                }
                parse_float(word).map(Literal::Float)
            }
        }
    }

    fn string_body(&mut self, quote: char) -> Option<String> {
        let mut out = String::new();
        loop {
            let c = self.next_char()?;
            if c == quote {
                return Some(out);
            }
            if c == '\n' {
                return None;
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let escaped = self.next_char()?;
            match escaped {
                '\n' => {}
                '\\' | '\'' | '"' => out.push(escaped),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\u{07}'),
                'b' => out.push('\u{08}'),
                'f' => out.push('\u{0c}'),
                'v' => out.push('\u{0b}'),
                '0'..='7' => {
                    let mut value = escaped.to_digit(8)?;
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                value = value * 8 + d;
                                self.chars.next();
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(value)?);
                }
                'x' => out.push(self.hex_escape(2)?),
                'u' => out.push(self.hex_escape(4)?),
                'U' => out.push(self.hex_escape(8)?),
                other => {
                    // Unknown escapes keep the backslash in Python.
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn hex_escape(&mut self, width: usize) -> Option<char> {
        let mut value = 0u32;
        for _ in 0..width {
            value = value * 16 + self.next_char()?.to_digit(16)?;
        }
        char::from_u32(value)
    }
}

/// `numpy.mean` for a 1-D float array: pairwise summation in numpy's order, then divide.
/// Empty input gives NaN, like numpy.
pub fn numpy_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    pairwise_sum(values) / values.len() as f64
}

const PAIRWISE_BLOCK: usize = 128;

fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, &x| acc + x)
    } else if n <= PAIRWISE_BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for (j, slot) in r.iter_mut().enumerate() {
                *slot += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[whole..] {
            res += x;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.5, "1.5"),
            (2.0, "2.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (100000.0, "100000.0"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn python_number_parsing() {
        assert_eq!(parse_float(" 1.45 "), Some(1.45));
        assert_eq!(parse_float("1_000.5"), Some(1000.5));
        assert_eq!(parse_float("$1.45"), None);
        assert_eq!(parse_float("1__0"), None);
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("e5"), None);
        assert_eq!(parse_int(" 14\n"), Some(14));
        assert_eq!(parse_int("14.0"), None);
        assert_eq!(parse_int("+-1"), None);
    }

    #[test]
    fn list_literals() {
        assert_eq!(
            parse_list_literal("['2', \"it's\", 3, 4.50, None]"),
            Some(vec![
                "2".into(),
                "it's".into(),
                "3".into(),
                "4.5".into(),
                "None".into()
            ])
        );
        assert_eq!(parse_list_literal("[]"), Some(vec![]));
        assert_eq!(parse_list_literal("['a',]"), Some(vec!["a".into()]));
        assert_eq!(
            parse_list_literal("['\\u4e2d\\n']"),
            Some(vec!["中\n".into()])
        );
        assert_eq!(parse_list_literal("[abc]"), None);
        assert_eq!(parse_list_literal("['a' 'b']"), None);
        assert_eq!(parse_list_literal("[007]"), None);
        assert_eq!(to_list_str("plain"), Some(vec!["plain".into()]));
    }

    #[test]
    fn whitespace_and_digits() {
        let tokens: Vec<&str> = split_whitespace("a\u{1c}b\u{3000}c  d").collect();
        assert_eq!(tokens, ["a", "b", "c", "d"]);
        assert!(is_decimal_digit('٣'));
        assert!(!is_decimal_digit('½'));
    }

    #[test]
    fn numpy_pairwise_mean() {
        let values: Vec<f64> = (0..300).map(|i| (i % 3) as f64 / 3.0).collect();
        let mean = numpy_mean(&values);
        assert!((mean - 1.0 / 3.0).abs() < 1e-12);
        assert!(numpy_mean(&[]).is_nan());
    }
}
