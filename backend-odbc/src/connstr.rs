//! ODBC connection strings: value escaping, template expansion and redaction.
//!
//! A connection string is a `;`-separated list of `KEY=value` pairs. A value that contains
//! `;`, `{`, `}`, `=` or surrounding spaces is wrapped in braces with `}` doubled
//! (`PWD={a;b}}c}`). [`redact`] replaces the value of every secret-bearing key with `***`,
//! so a connection string can appear in a log line or an error message.

use failover_core::Secret;
use std::borrow::Cow;

/// Keys whose values are secrets (compared case-insensitively).
const SECRET_KEYS: &[&str] = &[
    "pwd",
    "password",
    "passwd",
    "secret",
    "token",
    "accesstoken",
    "clientsecret",
    "keystoresecret",
    "keystorepassword",
];

/// Whether `key` names a secret-bearing connection string attribute.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.trim();
    SECRET_KEYS.iter().any(|s| s.eq_ignore_ascii_case(k))
}

/// Escapes `value` so it can follow `KEY=` in a connection string.
pub fn escape_value(value: &str) -> Cow<'_, str> {
    let needs = value.contains([';', '{', '}', '='])
        || value.starts_with(' ')
        || value.ends_with(' ')
        || value.is_empty();
    if needs {
        Cow::Owned(format!("{{{}}}", value.replace('}', "}}")))
    } else {
        Cow::Borrowed(value)
    }
}

/// Escapes `value` the way FreeTDS 1.3 parses it: FreeTDS does not undo the standard `}}`
/// escape; it takes a braced value up to the first `};` (or the end of the string). So the
/// value is wrapped in braces without doubling `}`, and a value containing `};` cannot be
/// written at all (`None`). The caller must end the connection string with `;`.
pub fn escape_value_freetds(value: &str) -> Option<Cow<'_, str>> {
    if value.contains("};") {
        return None;
    }
    let needs = value.contains([';', '{', '}', '='])
        || value.starts_with(' ')
        || value.ends_with(' ')
        || value.is_empty();
    Some(if needs {
        Cow::Owned(format!("{{{value}}}"))
    } else {
        Cow::Borrowed(value)
    })
}

/// One `KEY=value` pair as written (value still escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair<'a> {
    pub key: &'a str,
    /// `None` for a bare key without `=`.
    pub raw_value: Option<&'a str>,
}

/// Splits a connection string into pairs, honouring `{…}` values with `}}` escapes.
/// Text after an unterminated brace is one value. Empty segments are skipped.
pub(crate) fn pairs(s: &str) -> Vec<Pair<'_>> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let Some(eq) = s[i..].find(['=', ';']).map(|p| p + i) else {
            let key = s[i..].trim();
            if !key.is_empty() {
                out.push(Pair {
                    key,
                    raw_value: None,
                });
            }
            break;
        };
        if bytes[eq] == b';' {
            let key = s[i..eq].trim();
            if !key.is_empty() {
                out.push(Pair {
                    key,
                    raw_value: None,
                });
            }
            i = eq + 1;
            continue;
        }
        let key = s[i..eq].trim();
        let vstart = eq + 1;
        // Skip leading spaces to detect a braced value.
        let lead = s[vstart..].len() - s[vstart..].trim_start_matches(' ').len();
        let mut j = vstart + lead;
        if j < bytes.len() && bytes[j] == b'{' {
            j += 1;
            loop {
                match s[j..].find('}') {
                    None => {
                        j = bytes.len();
                        break;
                    }
                    Some(p) => {
                        let close = j + p;
                        if close + 1 < bytes.len() && bytes[close + 1] == b'}' {
                            j = close + 2;
                        } else {
                            j = close + 1;
                            break;
                        }
                    }
                }
            }
            // Anything up to the next `;` still belongs to this pair.
            let end = s[j..].find(';').map(|p| p + j).unwrap_or(bytes.len());
            out.push(Pair {
                key,
                raw_value: Some(&s[vstart..end]),
            });
            i = end + 1;
        } else {
            let end = s[vstart..]
                .find(';')
                .map(|p| p + vstart)
                .unwrap_or(bytes.len());
            out.push(Pair {
                key,
                raw_value: Some(&s[vstart..end]),
            });
            i = end + 1;
        }
    }
    out
}

/// Returns `conn` with the value of every secret-bearing key (`PWD`, `Password`, tokens…)
/// replaced by `***`. Other pairs are kept verbatim. Safe to log.
pub fn redact(conn: &str) -> String {
    pairs(conn)
        .iter()
        .map(|p| match p.raw_value {
            _ if is_secret_key(p.key) => format!("{}=***", p.key),
            None => p.key.to_string(),
            Some(v) => format!("{}={}", p.key, v),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Whether the connection string sets `key` (case-insensitive).
pub(crate) fn has_key(conn: &str, key: &str) -> bool {
    pairs(conn).iter().any(|p| p.key.eq_ignore_ascii_case(key))
}

/// Removes `{…}` escaping from a raw value (`{a}}b}` -> `a}b`); plain values are trimmed.
pub fn unescape_value(raw: &str) -> String {
    let t = raw.trim();
    match t.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        Some(inner) => inner.replace("}}", "}"),
        None => t.to_string(),
    }
}

/// A connection string split into the part without credentials and the login
/// (`UID`/`User ID`) and password (`PWD`/`Password`), so an operator can paste a full string
/// while the backend keeps the password in a [`Secret`].
#[derive(Debug, Clone)]
pub struct SplitConnectionString {
    /// The remaining pairs, in order.
    pub rest: String,
    /// The login, if the string had one.
    pub user: Option<String>,
    /// The password, if the string had one.
    pub password: Option<Secret>,
}

/// Splits the credentials out of `conn` (see [`SplitConnectionString`]).
pub fn split_credentials(conn: &str) -> SplitConnectionString {
    let mut rest = Vec::new();
    let (mut user, mut password) = (None, None);
    for p in pairs(conn) {
        let k = p.key.trim();
        let v = p.raw_value.map(unescape_value);
        if k.eq_ignore_ascii_case("uid")
            || k.eq_ignore_ascii_case("user id")
            || k.eq_ignore_ascii_case("user")
        {
            user = v;
        } else if k.eq_ignore_ascii_case("pwd") || k.eq_ignore_ascii_case("password") {
            password = v.map(Secret::new);
        } else {
            rest.push(match p.raw_value {
                Some(v) => format!("{k}={v}"),
                None => k.to_string(),
            });
        }
    }
    SplitConnectionString {
        rest: rest.join(";"),
        user,
        password,
    }
}

/// Replaces every occurrence of `secret` in `text` by `***` (defence in depth for driver
/// messages that might echo a connection string).
pub(crate) fn scrub(text: &str, secret: &str) -> String {
    if secret.len() < 3 {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_only_when_needed() {
        assert_eq!(escape_value("plain"), "plain");
        assert_eq!(escape_value("a;b"), "{a;b}");
        assert_eq!(escape_value("x}y{"), "{x}}y{}");
        assert_eq!(escape_value(" pad"), "{ pad}");
        assert_eq!(escape_value(""), "{}");
    }

    #[test]
    fn redacts_plain_and_braced_passwords() {
        let s = "Driver={FreeTDS};Server=127.0.0.1;Port=1433;UID=sa;PWD=hunter2;TDS_Version=7.4";
        let r = redact(s);
        assert_eq!(
            r,
            "Driver={FreeTDS};Server=127.0.0.1;Port=1433;UID=sa;PWD=***;TDS_Version=7.4"
        );
        let s = "UID=sa;pwd={se;cr}}et=1};Encrypt=yes";
        let r = redact(s);
        assert!(!r.contains("se;cr") && !r.contains("et=1"), "{r}");
        assert_eq!(r, "UID=sa;pwd=***;Encrypt=yes");
    }

    #[test]
    fn redacts_other_secret_keys_and_odd_spacing() {
        let r = redact(" Password = top ; AccessToken=abc;KeyStoreSecret={q}");
        assert!(
            !r.contains("top") && !r.contains("abc") && !r.contains('q'),
            "{r}"
        );
    }

    #[test]
    fn redacts_unterminated_brace() {
        let r = redact("UID=sa;PWD={never;closed;Server=x");
        assert!(!r.contains("never") && !r.contains("closed"), "{r}");
    }

    #[test]
    fn escaped_password_round_trips_through_pairs() {
        let pw = "p;w}{=d ";
        let conn = format!("UID=sa;PWD={};Server=h", escape_value(pw));
        let ps = pairs(&conn);
        assert_eq!(ps.len(), 3);
        assert_eq!(ps[1].key, "PWD");
        assert_eq!(ps[2].key, "Server");
        assert!(!redact(&conn).contains("p;w"));
    }

    #[test]
    fn has_key_is_case_insensitive() {
        assert!(has_key("driver={x};database=master", "Database"));
        assert!(!has_key("driver={x}", "Database"));
    }

    #[test]
    fn split_credentials_unescapes_and_keeps_the_rest() {
        let s = split_credentials(
            "Driver={ODBC Driver 18 for SQL Server};Server=tcp:h,1433;UID=ops;PWD={a;b}}c};Encrypt=yes",
        );
        assert_eq!(
            s.rest,
            "Driver={ODBC Driver 18 for SQL Server};Server=tcp:h,1433;Encrypt=yes"
        );
        assert_eq!(s.user.as_deref(), Some("ops"));
        assert_eq!(s.password.unwrap().expose(), "a;b}c");
        let s = split_credentials("DSN=cms");
        assert_eq!((s.rest.as_str(), s.user), ("DSN=cms", None));
        assert!(s.password.is_none());
    }

    #[test]
    fn scrub_replaces_secret() {
        assert_eq!(scrub("bad pw hunter2 here", "hunter2"), "bad pw *** here");
    }
}
