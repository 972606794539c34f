//! A small T-SQL tokenizer.
//!
//! It understands exactly what the builders emit and what an attacker could try to smuggle
//! in through a name: bracketed identifiers (`]]` escape), `"…"` identifiers, `'…'` and
//! `N'…'` strings (`''` escape), `--` and `/* */` comments, numbers, words (keywords,
//! `@variables`, `@@functions`), punctuation and `;`. The tests use it to prove that a batch
//! built from hostile names still has exactly the intended statements; the simulator may use
//! it to recognise them.

use thiserror::Error;

/// One T-SQL token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare word: keyword, unquoted identifier, `@var` or `@@function`.
    Word(String),
    /// A delimited identifier (`[…]` or `"…"`), unescaped.
    Ident(String),
    /// An `N'…'` literal, unescaped.
    NString(String),
    /// A `'…'` literal, unescaped.
    String(String),
    /// A numeric literal (digits, optionally with a sign handled as punctuation).
    Number(String),
    /// Punctuation or an operator: `( ) , . = < > <= >= <> != + - * / %`.
    Punct(String),
    /// A statement separator.
    Semicolon,
    /// A comment (`-- …` or `/* … */`), with its text.
    Comment(String),
}

impl Token {
    /// Whether this is the bare word `kw`, compared case-insensitively.
    pub fn is_word(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

/// The text could not be tokenized.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LexError {
    /// A quoted identifier, string or block comment was not closed.
    #[error("unterminated {0} starting at character {1}")]
    Unterminated(&'static str, usize),
    /// A character that is not valid T-SQL outside quotes.
    #[error("unexpected character {0:?} at character {1}")]
    Unexpected(char, usize),
}

/// Splits `sql` into tokens (whitespace dropped, comments kept).
pub fn tokenize(sql: &str) -> Result<Vec<Token>, LexError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let n = chars.len();
    // Reads a delimited run closed by `close`, where a doubled `close` is an escaped one.
    let delimited =
        |start: usize, close: char, what: &'static str| -> Result<(String, usize), LexError> {
            let mut s = String::new();
            let mut j = start;
            loop {
                if j >= n {
                    return Err(LexError::Unterminated(what, start));
                }
                if chars[j] == close {
                    if j + 1 < n && chars[j + 1] == close {
                        s.push(close);
                        j += 2;
                        continue;
                    }
                    return Ok((s, j + 1));
                }
                s.push(chars[j]);
                j += 1;
            }
        };
    while i < n {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && i + 1 < n && chars[i + 1] == '-' {
            let mut j = i + 2;
            while j < n && chars[j] != '\n' {
                j += 1;
            }
            out.push(Token::Comment(chars[i + 2..j].iter().collect()));
            i = j;
        } else if c == '/' && i + 1 < n && chars[i + 1] == '*' {
            // T-SQL block comments nest.
            let mut depth = 1;
            let mut j = i + 2;
            while j < n && depth > 0 {
                if chars[j] == '/' && j + 1 < n && chars[j + 1] == '*' {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && j + 1 < n && chars[j + 1] == '/' {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            if depth > 0 {
                return Err(LexError::Unterminated("comment", i));
            }
            out.push(Token::Comment(chars[i + 2..j - 2].iter().collect()));
            i = j;
        } else if c == '[' {
            let (s, j) = delimited(i + 1, ']', "identifier")?;
            out.push(Token::Ident(s));
            i = j;
        } else if c == '"' {
            let (s, j) = delimited(i + 1, '"', "identifier")?;
            out.push(Token::Ident(s));
            i = j;
        } else if (c == 'N' || c == 'n') && i + 1 < n && chars[i + 1] == '\'' {
            let (s, j) = delimited(i + 2, '\'', "string")?;
            out.push(Token::NString(s));
            i = j;
        } else if c == '\'' {
            let (s, j) = delimited(i + 1, '\'', "string")?;
            out.push(Token::String(s));
            i = j;
        } else if c == ';' {
            out.push(Token::Semicolon);
            i += 1;
        } else if c.is_ascii_digit() {
            let mut j = i;
            while j < n && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            out.push(Token::Number(chars[i..j].iter().collect()));
            i = j;
        } else if c.is_alphabetic() || c == '_' || c == '@' || c == '#' {
            let mut j = i + 1;
            while j < n && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '@' | '#' | '$'))
            {
                j += 1;
            }
            out.push(Token::Word(chars[i..j].iter().collect()));
            i = j;
        } else if matches!(c, '<' | '>' | '!') && i + 1 < n && matches!(chars[i + 1], '=' | '>') {
            out.push(Token::Punct(chars[i..i + 2].iter().collect()));
            i += 2;
        } else if matches!(
            c,
            '(' | ')' | ',' | '.' | '=' | '<' | '>' | '+' | '-' | '*' | '/' | '%'
        ) {
            out.push(Token::Punct(c.to_string()));
            i += 1;
        } else {
            return Err(LexError::Unexpected(c, i));
        }
    }
    Ok(out)
}

/// Tokenizes `sql` and splits it into statements at `;` (empty statements dropped).
///
/// Only `;` separates statements here: the builders terminate every statement with one.
pub fn statements(sql: &str) -> Result<Vec<Vec<Token>>, LexError> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for t in tokenize(sql)? {
        if t == Token::Semicolon {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(t);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = tokenize("SELECT [a]]b], N'x''y', 'z' -- c\n/* d /* e */ */ FROM t WHERE x <> 1;")
            .unwrap();
        assert_eq!(
            t,
            vec![
                Token::Word("SELECT".into()),
                Token::Ident("a]b".into()),
                Token::Punct(",".into()),
                Token::NString("x'y".into()),
                Token::Punct(",".into()),
                Token::String("z".into()),
                Token::Comment(" c".into()),
                Token::Comment(" d /* e */ ".into()),
                Token::Word("FROM".into()),
                Token::Word("t".into()),
                Token::Word("WHERE".into()),
                Token::Word("x".into()),
                Token::Punct("<>".into()),
                Token::Number("1".into()),
                Token::Semicolon,
            ]
        );
    }

    #[test]
    fn errors() {
        assert!(tokenize("[abc").is_err());
        assert!(tokenize("N'abc").is_err());
        assert!(tokenize("/* x").is_err());
        assert!(tokenize("a ` b").is_err());
    }

    #[test]
    fn splits_statements() {
        let s = statements("USE [master]; ;SELECT 1;SELECT N';'").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[2][1], Token::NString(";".into()));
    }
}
