//! The xl.cfg grammar: `KEY = VALUE` statements separated by newlines or `;`, where a value is a
//! number, a quoted string or a bracketed list of those; `#` starts a comment; `KEY += VALUE`
//! appends to a list or string set earlier.

use crate::error::ConfigError;

/// A value as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number (decimal, or hexadecimal with `0x`).
    Number(i64),
    /// A quoted string, escapes resolved.
    String(String),
    /// A bracketed list.
    List(Vec<Value>),
}

impl Value {
    /// A short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::List(_) => "a list",
        }
    }
}

/// One `KEY = VALUE` statement with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Value,
    /// 1-based line where the statement starts.
    pub line: usize,
    /// The file name, or `command line`.
    pub source_name: String,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    name: &'a str,
}

impl<'a> Lexer<'a> {
    fn err(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(self.name, self.line, None, msg)
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// Skips blanks and comments; newlines too when `newlines` is set (inside lists).
    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' if newlines => {
                    self.pos += 1;
                    self.line += 1;
                }
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn ident(&mut self) -> Option<String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-' {
                self.pos += 1;
            } else {
                break;
            }
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn string(&mut self, quote: u8) -> Result<String, ConfigError> {
        let start_line = self.line;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(ConfigError::new(
                    self.name,
                    start_line,
                    None,
                    "unterminated string",
                ));
            };
            self.pos += 1;
            match c {
                c if c == quote => break,
                b'\n' => {
                    return Err(ConfigError::new(
                        self.name,
                        start_line,
                        None,
                        "unterminated string",
                    ))
                }
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.pos += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not valid UTF-8"))
    }

    fn number(&mut self) -> Result<i64, ConfigError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() {
                self.pos += 1;
            } else {
                break;
            }
        }
        let text = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("");
        let (neg, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let parsed = match digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(hex) => i64::from_str_radix(hex, 16),
            None => digits.parse::<i64>(),
        };
        parsed
            .map(|v| if neg { -v } else { v })
            .map_err(|_| self.err(format!("'{text}' is not a valid number")))
    }

    fn value(&mut self, depth: usize) -> Result<Value, ConfigError> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => Ok(Value::String(self.string(q)?)),
            Some(b'[') if depth == 0 => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip(true);
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    self.skip(true);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {}
                        None => return Err(self.err("unterminated list: missing ']'")),
                        Some(c) => {
                            return Err(self.err(format!(
                                "expected ',' or ']' in list, found '{}'",
                                c as char
                            )))
                        }
                    }
                }
                Ok(Value::List(items))
            }
            Some(b'[') => Err(self.err("lists cannot be nested")),
            Some(c) if c.is_ascii_digit() || c == b'-' => Ok(Value::Number(self.number()?)),
            Some(c) => Err(self.err(format!("expected a value, found '{}'", c as char))),
            None => Err(self.err("expected a value, found end of input")),
        }
    }
}

/// Parses xl.cfg text. `source_name` (a file name or `command line`) is used in errors.
///
/// Settings come back in file order; a later `KEY = ...` overrides an earlier one when interpreted,
/// and `KEY += ...` is folded into the earlier value here.
pub fn parse(text: &str, source_name: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut lx = Lexer {
        src: text.as_bytes(),
        pos: 0,
        line: 1,
        name: source_name,
    };
    let mut out: Vec<Setting> = Vec::new();
    loop {
        lx.skip(false);
        match lx.peek() {
            None => break,
            Some(b'\n') => {
                lx.pos += 1;
                lx.line += 1;
                continue;
            }
            Some(b';') => {
                lx.pos += 1;
                continue;
            }
            _ => {}
        }
        let line = lx.line;
        let key = lx.ident().ok_or_else(|| {
            let c = lx.peek().map(|c| c as char).unwrap_or(' ');
            lx.err(format!("expected a setting name, found '{c}'"))
        })?;
        if !key.as_bytes()[0].is_ascii_alphabetic() && key.as_bytes()[0] != b'_' {
            return Err(ConfigError::new(
                source_name,
                line,
                Some(&key),
                "a setting name must start with a letter",
            ));
        }
        lx.skip(false);
        let append = match lx.peek() {
            Some(b'=') => {
                lx.pos += 1;
                false
            }
            Some(b'+') if lx.src.get(lx.pos + 1) == Some(&b'=') => {
                lx.pos += 2;
                true
            }
            _ => {
                return Err(ConfigError::new(
                    source_name,
                    line,
                    Some(&key),
                    "expected '=' after the setting name",
                ))
            }
        };
        lx.skip(false);
        let value = lx.value(0).map_err(|mut e| {
            e.key = Some(key.clone());
            e
        })?;
        lx.skip(false);
        match lx.peek() {
            None | Some(b'\n') | Some(b';') => {}
            Some(c) => {
                return Err(ConfigError::new(
                    source_name,
                    lx.line,
                    Some(&key),
                    format!("unexpected '{}' after the value", c as char),
                ))
            }
        }
        if append {
            let Some(prev) = out.iter_mut().rev().find(|s| s.key == key) else {
                return Err(ConfigError::new(
                    source_name,
                    line,
                    Some(&key),
                    "'+=' on a setting that was never set",
                ));
            };
            match (&mut prev.value, value) {
                (Value::List(a), Value::List(b)) => a.extend(b),
                (Value::String(a), Value::String(b)) => a.push_str(&b),
                (a, b) => {
                    return Err(ConfigError::new(
                        source_name,
                        line,
                        Some(&key),
                        format!("cannot append {} to {}", b.kind(), a.kind()),
                    ))
                }
            }
            continue;
        }
        out.push(Setting {
            key,
            value,
            line,
            source_name: source_name.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scalars_lists_and_comments() {
        let text = "name = \"dom\" # comment\nmemory=512; vcpus = 0x4\n\ndisk = [ 'a',\n  \"b\", # c\n]\nextra='x\\'y'\n";
        let s = parse(text, "t.cfg").unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].value, Value::String("dom".into()));
        assert_eq!(s[1].value, Value::Number(512));
        assert_eq!(s[1].line, 2);
        assert_eq!(s[2].value, Value::Number(4));
        assert_eq!(
            s[3].value,
            Value::List(vec![Value::String("a".into()), Value::String("b".into())])
        );
        assert_eq!(s[4].line, 7);
        assert_eq!(s[4].value, Value::String("x'y".into()));
    }

    #[test]
    fn append_extends_lists_and_strings() {
        let s = parse("l=['a']\nl+=['b']\ns='x'\ns+='y'", "t").unwrap();
        assert_eq!(
            s[0].value,
            Value::List(vec![Value::String("a".into()), Value::String("b".into())])
        );
        assert_eq!(s[1].value, Value::String("xy".into()));
        let e = parse("n=1\nn+=['b']", "t").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.to_string().contains("cannot append a list to a number"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_source_line_and_key() {
        let e = parse("name='a'\nmemory = 12x\n", "dom.cfg").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (2, Some("memory")));
        assert_eq!(
            e.to_string(),
            "dom.cfg:2: 'memory': '12x' is not a valid number"
        );
        let e = parse("name = 'unterminated\n", "f").unwrap_err();
        assert!(e.to_string().contains("unterminated string"), "{e}");
        let e = parse("x = [1, [2]]", "f").unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
        let e = parse("vcpus 4", "f").unwrap_err();
        assert!(e.to_string().contains("expected '='"), "{e}");
        let e = parse("a = 1 2", "f").unwrap_err();
        assert!(e.to_string().contains("unexpected '2'"), "{e}");
        let e = parse("= 3", "f").unwrap_err();
        assert!(e.to_string().contains("expected a setting name"), "{e}");
        let e = parse("l = [1, 2", "f").unwrap_err();
        assert!(e.to_string().contains("missing ']'"), "{e}");
    }

    #[test]
    fn never_panics_on_garbage() {
        for text in [
            "\u{0}",
            "a=\"\\",
            "a=[",
            "a=-",
            "a=0x",
            "[",
            "a+",
            "a=''''",
            "a=9999999999999999999999",
        ] {
            let _ = parse(text, "f");
        }
    }
}
