//! Bearer-token authenticators ([`Authenticator`], tried in order), and the
//! first of them: kube-apiserver's static token file (`--token-auth-file`).
//!
//! The file is CSV as Go's `encoding/csv` reads it (kube's `tokenfile.NewCSV`):
//! `token,user,uid[,"group1,group2"]`, fields quoted with `"` when they hold
//! a comma, `""` for a quote inside quotes, blank lines ignored, no comments,
//! no trimming. Where kube only warns, hami refuses to start when a line is
//! unusable (fewer than three columns, a bad quote, an empty user name, a
//! token given twice); an empty token is skipped with a warning, as kube does.

use std::path::{Path, PathBuf};

use super::{AuthError, Identity};
use crate::server::rbac::UserInfo;

/// One way of recognising a bearer token.
#[derive(Clone, Debug)]
pub enum Authenticator {
    /// kube's `--token-auth-file`.
    StaticTokens(TokenFile),
    /// kube's ServiceAccount tokens (ES256 JWTs).
    ServiceAccount(super::service_account::ServiceAccountTokens),
    /// kube's bootstrap tokens (Secrets in kube-system).
    Bootstrap(super::bootstrap::BootstrapTokens),
}

impl Authenticator {
    /// The identity `token` stands for, if this authenticator knows it.
    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        match self {
            Authenticator::StaticTokens(file) => file.authenticate(token),
            Authenticator::ServiceAccount(tokens) => tokens.authenticate(token),
            Authenticator::Bootstrap(tokens) => tokens.authenticate(token),
        }
    }
}

#[derive(Clone)]
struct Entry {
    token: String,
    identity: Identity,
}

/// A parsed token file.
#[derive(Clone)]
pub struct TokenFile {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl std::fmt::Debug for TokenFile {
    // Never prints the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .field("tokens", &self.entries.len())
            .finish()
    }
}

/// Compares without stopping at the first differing byte.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl TokenFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the file's text; errors name `path` and the line.
    pub fn parse(path: &Path, text: &str) -> Result<Self, AuthError> {
        let mut entries: Vec<(usize, Entry)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let bad = |message: String| AuthError::TokenLine {
                path: path.to_owned(),
                line,
                message,
            };
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.is_empty() {
                continue;
            }
            let record = split_csv(raw).map_err(|e| bad(e.to_owned()))?;
            if record.len() < 3 {
                return Err(bad(format!(
                    "must have at least 3 columns (token, user name, user uid), found {}",
                    record.len()
                )));
            }
            if record[0].is_empty() {
                tracing::warn!(path = %path.display(), line, "empty token in the token file: line skipped");
                continue;
            }
            if record[1].is_empty() {
                return Err(bad("the user name is empty".to_owned()));
            }
            if let Some((first, _)) = entries
                .iter()
                .find(|(_, e)| same_bytes(e.token.as_bytes(), record[0].as_bytes()))
            {
                return Err(bad(format!("the token of line {first} is given again")));
            }
            let groups = record
                .get(3)
                .map(|g| {
                    g.split(',')
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let mut fields = record.into_iter();
            let (token, name, uid) = (
                fields.next().unwrap_or_default(),
                fields.next().unwrap_or_default(),
                fields.next().unwrap_or_default(),
            );
            entries.push((
                line,
                Entry {
                    token,
                    identity: Identity {
                        user: UserInfo { name, groups },
                        uid,
                        extra: Default::default(),
                    },
                },
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            entries: entries.into_iter().map(|(_, e)| e).collect(),
        })
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity of `token`. Every entry is compared in full, so the time
    /// taken does not tell which entry (or how much of one) matched.
    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        let mut found = None;
        for entry in &self.entries {
            if same_bytes(entry.token.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(&entry.identity);
            }
        }
        found.cloned()
    }
}

/// Splits one CSV line as Go's `encoding/csv` does (no lazy quotes).
fn split_csv(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed"),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous or missing \" in a quoted field"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => return Err("bare \" in a field that is not quoted"),
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<TokenFile, String> {
        TokenFile::parse(Path::new("/etc/hami/tokens.csv"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn csv_fields_split_like_go() {
        let cases: [(&str, Result<Vec<&str>, &str>); 8] = [
            ("a,b,c", Ok(vec!["a", "b", "c"])),
            ("a,b,c,", Ok(vec!["a", "b", "c", ""])),
            (r#"a,b,c,"g1,g2""#, Ok(vec!["a", "b", "c", "g1,g2"])),
            (r#""a""b",x"#, Ok(vec!["a\"b", "x"])),
            ("a, b", Ok(vec!["a", " b"])),
            (r#"a,"b"#, Err("a quoted field is not closed")),
            (
                r#"a,"b"c"#,
                Err("extraneous or missing \" in a quoted field"),
            ),
            (r#"a,b"c"#, Err("bare \" in a field that is not quoted")),
        ];
        for (line, want) in cases {
            let got = split_csv(line);
            let want = want.map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn token_file_gives_users_uids_and_groups() {
        let file = parse(
            "t1,alice,1001,\"dev,ops\"\n\
             \n\
             t2,bob,1002\r\n\
             ,nobody,3\n\
             t3,carol,1003,\n",
        )
        .unwrap();
        assert_eq!(file.len(), 3);
        let alice = file.authenticate("t1").unwrap();
        assert_eq!(alice.user.name, "alice");
        assert_eq!(alice.user.groups, vec!["dev", "ops"]);
        assert_eq!(alice.uid, "1001");
        let bob = file.authenticate("t2").unwrap();
        assert_eq!((bob.user.name.as_str(), bob.uid.as_str()), ("bob", "1002"));
        assert!(bob.user.groups.is_empty());
        assert!(file.authenticate("t3").unwrap().user.groups.is_empty());
        for unknown in ["", "t", "t1 ", "T1", "t22"] {
            assert_eq!(file.authenticate(unknown), None, "{unknown:?}");
        }
        // Debug never shows a token.
        assert!(!format!("{file:?}").contains("t1"));
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            (
                "ok,u,1\nshort,u\n",
                "token file /etc/hami/tokens.csv, line 2: must have at least 3 columns (token, user name, user uid), found 2",
            ),
            (
                "\n\nt,\"u,1\n",
                "token file /etc/hami/tokens.csv, line 3: a quoted field is not closed",
            ),
            (
                "t,,1\n",
                "token file /etc/hami/tokens.csv, line 1: the user name is empty",
            ),
            (
                "t,a,1\nx,b,2\nt,c,3\n",
                "token file /etc/hami/tokens.csv, line 3: the token of line 1 is given again",
            ),
            (
                "t,a\"b,1\n",
                "token file /etc/hami/tokens.csv, line 1: bare \" in a field that is not quoted",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err(), want, "{text:?}");
        }
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = TokenFile::load(Path::new("/nonexistent/hami-tokens.csv")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading token file /nonexistent/hami-tokens.csv: "),
            "{err}"
        );
    }

    #[test]
    fn authenticators_are_tried_in_order() {
        let first = Authenticator::StaticTokens(parse("a,first,1\n").unwrap());
        let second = Authenticator::StaticTokens(parse("a,second,2\nb,other,3\n").unwrap());
        let list = [first, second];
        let find = |t: &str| list.iter().find_map(|a| a.authenticate(t));
        assert_eq!(find("a").unwrap().user.name, "first");
        assert_eq!(find("b").unwrap().user.name, "other");
        assert!(find("c").is_none());
    }
}
