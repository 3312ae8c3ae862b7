//! The log on stderr: one line per event, as `key=value` text (the default) or JSON.
//!
//! tracing-subscriber's text format writes a value recorded with `%` (Display) as it is, so
//! a username typed as `x status=200 reason=ok` made a failed sign-in's line read
//! `... status=401 reason=unknown_user username=x status=200 reason=ok`: two statuses, and
//! a log search for `status=200` found it. Here every field value that is not a plain word
//! is quoted and escaped like a Rust string literal (`username="x status=200 reason=ok"`),
//! whoever recorded it and however, so no call site can forget. JSON escapes by itself.

use std::{fmt, io::IsTerminal};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    field::RecordFields,
    filter::Targets,
    fmt::{FormatFields, format::Writer},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` if set, else `default`.
///
/// Plain `target=level` directives (the defaults, and nearly every `RUST_LOG`) become a
/// [`Targets`] filter, decided once per call site. `EnvFilter`, which also understands span
/// and field directives (`[request{request_id=…}]=debug`), is used only for those: it takes
/// a lock on every span enter and exit, and the request span is entered on each poll of a
/// request (benches/ANALYSIS.md).
pub fn init(format: LogFormat, default: &str) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty());
    let directives = directives.as_deref().unwrap_or(default);
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    match directives.parse::<Targets>() {
        Ok(targets) => install(targets, format, ansi),
        Err(_) => install(EnvFilter::new(directives), format, ansi),
    }
}

fn install<F>(filter: F, format: LogFormat, ansi: bool)
where
    F: Layer<Registry> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(TextFields)
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .init(),
    }
}

/// Formats the fields of events and spans for the text log (see the module comment).
#[derive(Debug, Clone, Copy, Default)]
pub struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl TextVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            // The message is the call site's own text: bare, but never more than one line.
            write!(self.writer, "{separator}{}", one_line(value))
        } else {
            // Not `write!`: every request's span formats its id here, into a new `String`.
            // `strip_prefix`, not `trim_start_matches`: that one builds a substring
            // searcher on every call (a fifth of this function's cost on every request).
            let name = field.name();
            let name = name.strip_prefix("r#").unwrap_or(name);
            let writer = &mut self.writer;
            let quoted = Quoted(value);
            if quoted.is_plain()
                && let Some(joined) = Joined::of([separator, name, "=", value])
            {
                // One write, so the span's `String` is allocated once rather than grown
                // at each piece.
                writer.write_str(joined.as_str())
            } else {
                writer
                    .write_str(separator)
                    .and_then(|()| writer.write_str(name))
                    .and_then(|()| writer.write_char('='))
                    .and_then(|()| quoted.write_to(writer))
            }
        };
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

/// A field value as the text log writes it: bare when it is a plain word of visible ASCII
/// without `"`, `=` or `\`, else quoted with Rust's string escapes (quotes, backslashes,
/// control and invisible characters such as U+202E, which reorders what a terminal shows).
struct Quoted<'a>(&'a str);

impl Quoted<'_> {
    fn is_plain(&self) -> bool {
        !self.0.is_empty()
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\'))
    }

    fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        if self.is_plain() {
            out.write_str(self.0)
        } else {
            write!(out, "{:?}", self.0)
        }
    }
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// Short pieces of text joined on the stack (no crate in our tree does this without a new
/// dependency; `arrayvec::ArrayString` would).
struct Joined {
    bytes: [u8; Joined::CAPACITY],
    len: usize,
}

impl Joined {
    /// Room for a field name, `=` and a request id or any other short value.
    const CAPACITY: usize = 64;

    /// The pieces one after another, or `None` when they do not fit.
    fn of<const N: usize>(pieces: [&str; N]) -> Option<Joined> {
        let mut joined = Joined {
            bytes: [0; Joined::CAPACITY],
            len: 0,
        };
        for piece in pieces {
            let end = joined.len + piece.len();
            joined
                .bytes
                .get_mut(joined.len..end)?
                .copy_from_slice(piece.as_bytes());
            joined.len = end;
        }
        Some(joined)
    }

    fn as_str(&self) -> &str {
        // Whole `str`s one after another are UTF-8; the fallback is never taken.
        self.bytes
            .get(..self.len)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
    }
}

/// Control characters (line breaks above all) escaped, everything else as it is.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(event: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .fmt_fields(TextFields)
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        let bytes = captured.0.lock().expect("log").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn plain_directives_take_the_static_filter_and_span_directives_env_filter() {
        // The server's default and typical RUST_LOG values: the cheap `Targets` filter.
        for plain in [
            "info,sqlx=warn,tower_sessions=error,tower_sessions_core=error",
            "debug",
            "portcullis=trace,warn",
        ] {
            assert!(plain.parse::<Targets>().is_ok(), "{plain}");
        }
        // Span and field directives only EnvFilter understands: it is used for them.
        let spans = "warn,[request{request_id=0123456789abcdef}]=debug";
        assert!(spans.parse::<Targets>().is_err());
        assert!(spans.parse::<EnvFilter>().is_ok());
    }

    #[test]
    fn plain_values_stay_bare_and_others_are_quoted() {
        let typed = "x status=200 reason=ok";
        let line = logged(|| {
            let span = tracing::info_span!("request", request_id = %"0123abcd");
            let _entered = span.enter();
            tracing::warn!(status = 401, reason = "unknown_user", username = %typed, "sign-in failed");
        });
        assert_eq!(
            line,
            " WARN request{request_id=0123abcd}: sign-in failed status=401 reason=unknown_user \
             username=\"x status=200 reason=ok\"\n"
        );
    }

    #[test]
    fn values_longer_than_the_stack_buffer_are_written_whole() {
        let long = "a".repeat(100);
        let line = logged(|| tracing::warn!(value = long.as_str(), short = "b", "x"));
        assert_eq!(line, format!(" WARN x value={long} short=b\n"));
        assert_eq!(
            Joined::of(["a"; Joined::CAPACITY]).map(|j| j.as_str().len()),
            Some(Joined::CAPACITY)
        );
        assert!(Joined::of(["a"; Joined::CAPACITY + 1]).is_none());
    }

    #[test]
    fn quotes_backslashes_and_invisible_characters_are_escaped() {
        for (value, written) in [
            (r#"a" b="c"#, r#""a\" b=\"c""#),
            ("back\\slash", r#""back\\slash""#),
            ("two\nlines", r#""two\nlines""#),
            ("right-to-left \u{202e}", r#""right-to-left \u{202e}""#),
            ("", r#""""#),
            ("café", r#""café""#),
            ("/admin/users/7", "/admin/users/7"),
        ] {
            assert_eq!(Quoted(value).to_string(), written, "{value:?}");
        }
        let line = logged(|| tracing::info!("one\nline"));
        assert_eq!(line, " INFO one\\nline\n");
    }
}
