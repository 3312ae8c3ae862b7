//! `TextQuery<T>` and `TextForm<T>`: the one way handlers read text people (and scanners)
//! send, in a query string or a form. `SignedForm` applies the same rules.
//!
//! Every name and value must be UTF-8 (checked, never patched with U+FFFD), at most
//! [`MAX_CHARS`] characters long, and free of control characters: PostgreSQL refuses NUL in
//! text (a scan turned each one into a 500), and nothing a person types into a one-line
//! field holds one. Line breaks and tabs are allowed only in fields of type [`MultiLine`]
//! (textareas). A request that breaks a rule never reaches its handler: it gets a 400 page
//! naming the field and linking back (or JSON for programs). A form body larger than
//! [`BODY_LIMIT`](super::BODY_LIMIT) is a 413 before any of this.

mod de;

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{FromRef, FromRequest, FromRequestParts, Request},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

pub use de::{MultiLine, field_names, from_pairs, is_multi_line};

use super::{Site, errors, frame::kind_of, negotiate::RequestKind, request};
use crate::web::AppState;

/// The longest value (and name) accepted, in characters. Form fields are far shorter (a
/// password is at most 512 bytes); the longest legitimate values are `next=` links.
pub const MAX_CHARS: usize = 2048;
// Every `next=` the app itself puts in a link must be accepted back.
const _: () = assert!(MAX_CHARS >= crate::auth::next::MAX_LEN);

/// A query string, read by the rules above.
#[derive(Debug)]
pub struct TextQuery<T>(pub T);

/// An `application/x-www-form-urlencoded` body, read by the rules above.
#[derive(Debug)]
pub struct TextForm<T>(pub T);

/// What is wrong with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Percent-encoded bytes that are not UTF-8 (`%FF`).
    NotUtf8,
    /// NUL or another control character (line breaks and tabs outside [`MultiLine`]).
    ControlCharacter,
    /// A line break or tab in a one-line field.
    LineBreak,
    /// Longer than [`MAX_CHARS`].
    TooLong,
    /// The same field twice.
    Repeated,
    /// Not the number the field holds.
    NotANumber,
    /// Any other shape the handler cannot read.
    Unreadable,
}

impl Problem {
    /// Characters and length: refused as a bad request wherever they come from.
    pub fn breaks_text_rules(self) -> bool {
        matches!(
            self,
            Problem::NotUtf8 | Problem::ControlCharacter | Problem::LineBreak | Problem::TooLong
        )
    }

    fn describe(self) -> String {
        match self {
            Problem::NotUtf8 => "is not valid text (its bytes are not UTF-8)".into(),
            Problem::ControlCharacter => {
                "contains a control character (such as a NUL byte), which no field accepts".into()
            }
            Problem::LineBreak => {
                "contains a line break or tab, which this one-line field does not accept".into()
            }
            Problem::TooLong => format!("is longer than {MAX_CHARS} characters"),
            Problem::Repeated => "was sent more than once".into(),
            Problem::NotANumber => "should be a whole number".into(),
            Problem::Unreadable => "could not be read".into(),
        }
    }
}

/// A refused name or value: which field (`None`: a field's name itself, or unknown) and
/// why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    pub field: Option<String>,
    pub problem: Problem,
}

impl BadInput {
    pub fn new(field: &str, problem: Problem) -> BadInput {
        BadInput {
            field: Some(field.to_owned()),
            problem,
        }
    }

    fn unnamed(problem: Problem) -> BadInput {
        BadInput {
            field: None,
            problem,
        }
    }

    /// One sentence for the person: "The field “q” contains a control character …".
    pub fn message(&self) -> String {
        let what = match &self.field {
            // The name came from the request: shown clipped (and escaped by the template).
            Some(name) => format!("The field “{}”", name.chars().take(64).collect::<String>()),
            None => "A field name".to_owned(),
        };
        format!("{what} {}.", self.problem.describe())
    }
}

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for BadInput {}

/// Splits `application/x-www-form-urlencoded` text (a query string too) into `name=value`
/// pairs: `&`-separated, `+` for a space, `%XX` for a byte. Bytes, not text: UTF-8 is
/// checked afterwards, so that invalid sequences are refused instead of replaced.
pub fn decode_pairs(raw: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|b| *b == b'=') {
            Some(at) => (unescape(&pair[..at]), unescape(&pair[at + 1..])),
            None => (unescape(pair), Vec::new()),
        })
        .collect()
}

fn unescape(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => {
                match (hex(raw[i + 1]), hex(raw[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 3;
                        continue;
                    }
                    // Not an escape: kept as typed, as browsers and `url` do.
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

/// What breaks the rules in `text`, if anything. Line breaks and tabs pass here when
/// `multi_line_possible`: whether the field is a [`MultiLine`] is decided when it is read.
fn problem_in(text: &str, multi_line_possible: bool) -> Option<Problem> {
    if text.len() > MAX_CHARS && text.chars().count() > MAX_CHARS {
        return Some(Problem::TooLong);
    }
    let allowed = |c: char| multi_line_possible && matches!(c, '\n' | '\r' | '\t');
    text.chars()
        .any(|c| c.is_control() && !allowed(c))
        .then_some(Problem::ControlCharacter)
}

/// The decoded pairs as text, each name and value checked.
pub fn check_pairs(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(String, String)>, BadInput> {
    pairs
        .into_iter()
        .map(|(name, value)| {
            let name = String::from_utf8(name).map_err(|_| BadInput::unnamed(Problem::NotUtf8))?;
            if let Some(problem) = problem_in(&name, false) {
                return Err(BadInput::unnamed(problem));
            }
            let value =
                String::from_utf8(value).map_err(|_| BadInput::new(&name, Problem::NotUtf8))?;
            if let Some(problem) = problem_in(&value, true) {
                return Err(BadInput::new(&name, problem));
            }
            Ok((name, value))
        })
        .collect()
}

/// Reads `raw` (a query string or form body) into `T` by the rules above.
pub fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, BadInput> {
    from_pairs(check_pairs(decode_pairs(raw))?)
}

/// Where refused input came from: a malformed query is a 400, a malformed form a 422 (as
/// axum's own extractors answer), and the page links back to the page or the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Query,
    Form,
}

/// The answer to refused input: a 400 (or 422) page in the site's look naming the field,
/// with a link back; JSON for programs.
#[derive(Debug)]
pub struct Refusal {
    input: BadInput,
    status: StatusCode,
    kind: RequestKind,
    request_id: String,
    back: String,
    site: Arc<Site>,
}

impl Refusal {
    pub fn new(input: BadInput, source: Source, parts: &Parts, site: &Arc<Site>) -> Refusal {
        // The field's name only (clipped: it is the client's), never its value.
        let field: String = input
            .field
            .as_deref()
            .unwrap_or("(a name)")
            .chars()
            .take(64)
            .collect();
        tracing::info!(%field, problem = ?input.problem, "input refused");
        let status = if input.problem.breaks_text_rules() || source == Source::Query {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let back = match source {
            // The same page without the refused query.
            Source::Query => parts.uri.path().to_owned(),
            Source::Form => request::referring_page(parts).unwrap_or_else(|| "/".into()),
        };
        Refusal {
            input,
            status,
            kind: kind_of(parts),
            request_id: request::request_id(&parts.extensions).to_owned(),
            back,
            site: Arc::clone(site),
        }
    }

    pub fn input(&self) -> &BadInput {
        &self.input
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        errors::refused_input(
            self.kind,
            &self.site,
            &self.request_id,
            self.status,
            &self.input,
            &self.back,
        )
    }
}

/// Why a form could not be read: no usable body (415, 413, 400; `errors::finish` draws the
/// page), or a field refused.
#[derive(Debug)]
pub enum FormRejection {
    Body(StatusCode),
    Refused(Refusal),
}

impl IntoResponse for FormRejection {
    fn into_response(self) -> Response {
        match self {
            FormRejection::Body(status) => status.into_response(),
            FormRejection::Refused(refusal) => refusal.into_response(),
        }
    }
}

fn is_urlencoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A form post's head and body: 415 unless the body is urlencoded, 413 over the body limit
/// (`frame` caps what is read).
pub async fn form_body(request: Request) -> Result<(Parts, Bytes), StatusCode> {
    let (parts, body) = request.into_parts();
    if !is_urlencoded(&parts.headers) {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let bytes = Bytes::from_request(Request::new(body), &())
        .await
        .map_err(|rejection| rejection.status())?;
    Ok((parts, bytes))
}

impl<S, T> FromRequestParts<S> for TextQuery<T>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        parse(raw.as_bytes()).map(TextQuery).map_err(|input| {
            Refusal::new(input, Source::Query, parts, &AppState::from_ref(state).site)
        })
    }
}

impl<S, T> FromRequest<S> for TextForm<T>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = FormRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = form_body(request).await.map_err(FormRejection::Body)?;
        parse(&body).map(TextForm).map_err(|input| {
            let site = &AppState::from_ref(state).site;
            FormRejection::Refused(Refusal::new(input, Source::Form, &parts, site))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Fields {
        #[serde(default)]
        q: String,
        #[serde(default)]
        page: Option<i64>,
        #[serde(default)]
        message: MultiLine,
    }

    fn problem(raw: &str) -> Option<BadInput> {
        parse::<Fields>(raw.as_bytes()).err()
    }

    #[test]
    fn plain_values_are_read_as_before() {
        let fields: Fields = parse(b"q=a+b%2Fc&page=-3&message=hi%0D%0Athere&other=x")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fields.q, "a b/c");
        assert_eq!(fields.page, Some(-3));
        assert_eq!(fields.message.as_str(), "hi\r\nthere");
        let empty: Fields = parse(b"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((empty.q.as_str(), empty.page), ("", None));
        // A lone or broken escape is kept as typed.
        let fields: Fields = parse(b"q=100%25%2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fields.q, "100%%2");
    }

    #[test]
    fn nul_control_characters_and_bad_utf8_are_refused_naming_the_field() {
        for (raw, field, expected) in [
            ("q=%2Fetc%2Fpasswd%00", Some("q"), Problem::ControlCharacter),
            ("q=a%01", Some("q"), Problem::ControlCharacter),
            ("q=a%7F", Some("q"), Problem::ControlCharacter),
            ("q=%C2%85", Some("q"), Problem::ControlCharacter),
            ("message=a%00", Some("message"), Problem::ControlCharacter),
            ("q=%FF", Some("q"), Problem::NotUtf8),
            ("q=%C3%28", Some("q"), Problem::NotUtf8),
            ("q%00=a", None, Problem::ControlCharacter),
            ("%FF=a", None, Problem::NotUtf8),
            ("q=a%0Ab", Some("q"), Problem::LineBreak),
            ("q=a%09b", Some("q"), Problem::LineBreak),
            ("page=abc", Some("page"), Problem::NotANumber),
            (
                "page=99999999999999999999",
                Some("page"),
                Problem::NotANumber,
            ),
            ("q=a&q=b", Some("q"), Problem::Repeated),
            // Unknown fields are ignored, but not their characters.
            ("x=%00", Some("x"), Problem::ControlCharacter),
            ("x=a%0Ab", Some("x"), Problem::LineBreak),
        ] {
            let bad = problem(raw).unwrap_or_else(|| panic!("{raw} was accepted"));
            assert_eq!(
                (bad.field.as_deref(), bad.problem),
                (field, expected),
                "{raw}"
            );
        }
        let bad = problem("q=%00").unwrap_or_else(|| panic!("accepted"));
        assert_eq!(
            bad.message(),
            "The field “q” contains a control character (such as a NUL byte), which no \
             field accepts."
        );
    }

    #[test]
    fn values_are_capped_in_characters_not_bytes() {
        let at_cap = format!("q={}", "é".repeat(MAX_CHARS));
        assert!(problem(&at_cap).is_none(), "2,048 two-byte characters pass");
        let over = format!("q={}", "a".repeat(MAX_CHARS + 1));
        assert_eq!(problem(&over).map(|b| b.problem), Some(Problem::TooLong));
        let name = format!("{}=a", "n".repeat(MAX_CHARS + 1));
        assert_eq!(
            problem(&name),
            Some(BadInput {
                field: None,
                problem: Problem::TooLong
            })
        );
    }

    #[test]
    fn the_status_depends_on_the_problem_and_the_source() {
        let site = Arc::new(Site::new(&crate::config::Settings::defaults()));
        let (parts, ()) = axum::http::Request::builder()
            .uri("/admin?q=x")
            .body(())
            .unwrap_or_else(|e| panic!("{e}"))
            .into_parts();
        let status = |problem, source| {
            Refusal::new(BadInput::new("q", problem), source, &parts, &site).status
        };
        assert_eq!(status(Problem::ControlCharacter, Source::Form), 400);
        assert_eq!(status(Problem::Repeated, Source::Query), 400);
        assert_eq!(status(Problem::Repeated, Source::Form), 422);
        let refusal = Refusal::new(
            BadInput::new("q", Problem::TooLong),
            Source::Query,
            &parts,
            &site,
        );
        assert_eq!(refusal.back, "/admin");
    }
}
