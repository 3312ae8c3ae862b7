//! The log on stderr: one line per event, as `key=value` text (the default) or JSON.
//!
//! tracing-subscriber's text format writes a value recorded with `%` (Display) as it is, so
//! a username typed as `x status=200 reason=ok` made a failed sign-in's line read
//! `... status=401 reason=unknown_user username=x status=200 reason=ok`: two statuses, and
//! a log search for `status=200` found it. Here every field value that is not a plain word
//! is quoted and escaped like a Rust string literal (`username="x status=200 reason=ok"`),
//! whoever recorded it and however, so no call site can forget. JSON escapes by itself.
//!
//! Every line logged while a request is served names the request: `request{request_id=…}:`
//! in text, `"span"` and `"spans"` in JSON, as a tracing span would. It is not a span: the
//! id is a task-local value ([`in_request`]) that the event formatters here print. A span
//! per request cost the registry's bookkeeping and the formatting of its field on every
//! request, and an enter and an exit at every poll, for lines that most requests never
//! write (about 1,700 of the anonymous redirect's 26,000 instructions and 3,000 of
//! `/api/me`'s; benches/ANALYSIS.md). Where `RUST_LOG` has span directives
//! (`[request{request_id=…}]=debug`), the frame makes a real span instead, since only a span
//! can match them ([`request_spans`]).

use std::{
    fmt,
    future::Future,
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
};

use nu_ansi_term::{Color, Style};
use serde::ser::{SerializeMap, Serializer as _};
use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
};
use tracing_log::NormalizeEvent;
use tracing_serde::AsSerde;
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    field::RecordFields,
    filter::Targets,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::{JsonFields, Writer},
        time::{FormatTime, SystemTime},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` if set, else `default`.
///
/// Plain `target=level` directives (the defaults, and nearly every `RUST_LOG`) become a
/// [`Targets`] filter, decided once per call site. `EnvFilter`, which also understands span
/// and field directives (`[request{request_id=…}]=debug`), is used only for those (and for
/// what `Targets` cannot parse): it takes a lock on every span enter and exit, and with span
/// directives every request gets a real span, entered on each poll (benches/ANALYSIS.md).
pub fn init(format: LogFormat, default: &str) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty());
    let directives = directives.as_deref().unwrap_or(default);
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let spans = has_span_directives(directives);
    match directives.parse::<Targets>() {
        Ok(targets) if !spans => install(targets, format, ansi),
        _ => {
            REQUEST_SPANS.store(spans, Ordering::Relaxed);
            install(EnvFilter::new(directives), format, ansi);
        }
    }
}

/// Whether `RUST_LOG` names spans (`[request]=debug`, `warn,[request{request_id=…}]=trace`):
/// a `[` never appears in a target. Not "whether [`Targets`] fails to parse it": it takes
/// `[request]=debug` as the target `[request]`, which matches nothing.
fn has_span_directives(directives: &str) -> bool {
    directives.contains('[')
}

tokio::task_local! {
    /// The id of the request this task is serving, while it serves one (see the module
    /// comment).
    static REQUEST_ID: [u8; 16];
}

/// Whether requests get a real tracing span (`RUST_LOG` has span directives) rather than
/// the task-local id alone.
static REQUEST_SPANS: AtomicBool = AtomicBool::new(false);

/// Whether the frame should make a tracing span per request: only where `RUST_LOG`'s span
/// directives need one to match (see the module comment).
pub fn request_spans() -> bool {
    REQUEST_SPANS.load(Ordering::Relaxed)
}

/// Runs `serving` with `id` as the request every line it logs names.
pub fn in_request<F: Future>(id: [u8; 16], serving: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, serving)
}

/// The id of the request being served on this task.
fn current_request() -> Option<[u8; 16]> {
    REQUEST_ID.try_with(|id| *id).ok()
}

/// A request id as text: its bytes are ASCII hex digits (the frame's `request_id`), so the
/// "-" is never written in practice.
pub fn request_id_text(id: &[u8; 16]) -> &str {
    std::str::from_utf8(id).unwrap_or("-")
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
                    .event_format(TextEvent)
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonEvent)
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .init(),
    }
}

/// The text line: what tracing-subscriber's default ("full") format writes, with the
/// request's id as the outermost span: `<time> <LEVEL> request{request_id=…}: <target>:
/// <fields>`. Hand-written because the stock formatter prints only real spans.
pub struct TextEvent;

impl<S, N> FormatEvent<S, N> for TextEvent
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let ansi = writer.has_ansi_escapes();
        let style = |style: Style| if ansi { style } else { Style::new() };
        let (dimmed, bold) = (style(Style::new().dimmed()), style(Style::new().bold()));

        write!(writer, "{}", dimmed.prefix())?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "{} ", dimmed.suffix())?;
        write!(
            writer,
            "{} ",
            style(level_colour(*meta.level())).paint(level_text(*meta.level()))
        )?;

        let mut spans = false;
        if let Some(request) = current_request() {
            write!(
                writer,
                "{}{}request_id={}{}{}",
                bold.paint("request"),
                bold.paint("{"),
                request_id_text(&request),
                bold.paint("}"),
                dimmed.paint(":")
            )?;
            spans = true;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(writer, "{}", bold.paint(span.metadata().name()))?;
                spans = true;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{}{}{}", bold.paint("{"), fields, bold.paint("}"))?;
                }
                write!(writer, "{}", dimmed.paint(":"))?;
            }
        }
        if spans {
            writer.write_char(' ')?;
        }
        write!(
            writer,
            "{}{} ",
            dimmed.paint(meta.target()),
            dimmed.paint(":")
        )?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The level as the stock format writes it: five characters wide.
fn level_text(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// The level's colour in a terminal, as the stock format paints it.
fn level_colour(level: Level) -> Style {
    match level {
        Level::TRACE => Color::Purple.normal(),
        Level::DEBUG => Color::Blue.normal(),
        Level::INFO => Color::Green.normal(),
        Level::WARN => Color::Yellow.normal(),
        Level::ERROR => Color::Red.normal(),
    }
}

/// The JSON line: what tracing-subscriber's JSON format writes with `flatten_event` and the
/// current span (timestamp, level, the event's fields, target, `span`, `spans`), with the
/// request's id as the outermost span. Hand-written for the same reason as [`TextEvent`];
/// the fields go through the same serializer as the stock format's (tracing-serde's).
pub struct JsonEvent;

impl<S> FormatEvent<S, JsonFields> for JsonEvent
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;

        // The request first, then the real spans from the outermost in: each an object of
        // its fields and its name, as the stock format writes them.
        let mut spans = Vec::new();
        if let Some(request) = current_request() {
            let mut span = serde_json::Map::new();
            span.insert("request_id".into(), request_id_text(&request).into());
            span.insert("name".into(), "request".into());
            spans.push(span);
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let mut fields = extensions
                    .get::<FormattedFields<JsonFields>>()
                    .and_then(|fields| serde_json::from_str(fields.as_str()).ok())
                    .unwrap_or_else(serde_json::Map::new);
                fields.insert("name".into(), span.metadata().name().into());
                spans.push(fields);
            }
        }

        let mut line = Vec::with_capacity(256);
        let mut serializer = serde_json::Serializer::new(&mut line);
        let written = (|| {
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry("timestamp", &timestamp)?;
            map.serialize_entry("level", &meta.level().as_serde())?;
            let mut visitor = tracing_serde::SerdeMapVisitor::new(map);
            event.record(&mut visitor);
            let mut map = visitor.take_serializer()?;
            map.serialize_entry("target", meta.target())?;
            if let Some(current) = spans.last() {
                map.serialize_entry("span", current)?;
                map.serialize_entry("spans", &spans)?;
            }
            map.end()
        })();
        written.map_err(|_| fmt::Error)?;
        writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)?;
        writeln!(writer)
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
            // Not `write!`: a real request span (where `RUST_LOG` has span directives)
            // formats its id here on every request, into a new `String`. `strip_prefix`,
            // not `trim_start_matches`: that one builds a substring searcher on every call
            // (a fifth of this function's cost per span when every request had one).
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

    /// What `event` logs in `format`, through the server's own formatters, each line
    /// without its timestamp (the text up to the first space).
    fn logged(format: LogFormat, event: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false);
        let layer = match format {
            LogFormat::Text => layer.fmt_fields(TextFields).event_format(TextEvent).boxed(),
            LogFormat::Json => layer
                .fmt_fields(JsonFields::new())
                .event_format(JsonEvent)
                .boxed(),
        };
        tracing::subscriber::with_default(Registry::default().with(layer), event);
        let bytes = captured.0.lock().expect("log").clone();
        let text = String::from_utf8(bytes).expect("utf-8");
        match format {
            LogFormat::Text => text
                .lines()
                .map(|line| {
                    line.split_once(' ')
                        .map_or(line, |(_, rest)| rest)
                        .to_owned()
                        + "\n"
                })
                .collect(),
            LogFormat::Json => text,
        }
    }

    fn text(event: impl FnOnce()) -> String {
        logged(LogFormat::Text, event)
    }

    fn json(event: impl FnOnce()) -> serde_json::Value {
        let line = logged(LogFormat::Json, event);
        serde_json::from_str(&line).expect("one JSON line")
    }

    const ID: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn plain_directives_take_the_static_filter_and_span_directives_env_filter() {
        // The server's default and typical RUST_LOG values: the cheap `Targets` filter.
        for plain in [
            "info,sqlx=warn,tower_sessions=error,tower_sessions_core=error",
            "debug",
            "portcullis=trace,warn",
        ] {
            assert!(plain.parse::<Targets>().is_ok(), "{plain}");
            assert!(!has_span_directives(plain), "{plain}");
        }
        // Span and field directives only EnvFilter understands: it is used for them, also
        // where `Targets` would take them for a strange target.
        for spans in [
            "warn,[request{request_id=0123456789abcdef}]=debug",
            "[request]=debug",
            "info,[request{request_id}]=trace",
        ] {
            assert!(has_span_directives(spans), "{spans}");
            assert!(spans.parse::<EnvFilter>().is_ok(), "{spans}");
        }
        assert!("[request]=debug".parse::<Targets>().is_ok());
    }

    #[test]
    fn plain_values_stay_bare_and_others_are_quoted() {
        let typed = "x status=200 reason=ok";
        let line = text(|| {
            tracing::warn!(status = 401, reason = "unknown_user", username = %typed, "sign-in failed");
        });
        assert_eq!(
            line,
            " WARN portcullis::logs::tests: sign-in failed status=401 reason=unknown_user \
             username=\"x status=200 reason=ok\"\n"
        );
    }

    #[test]
    fn lines_within_a_request_name_it_as_its_outermost_span() {
        let event = || tracing::warn!(attempts = 3, "too many");
        let within = || REQUEST_ID.sync_scope(ID, event);
        assert_eq!(
            text(within),
            " WARN request{request_id=0123456789abcdef}: portcullis::logs::tests: too many \
             attempts=3\n"
        );
        assert_eq!(
            text(event),
            " WARN portcullis::logs::tests: too many attempts=3\n"
        );

        let line = json(within);
        let request = serde_json::json!({"request_id": "0123456789abcdef", "name": "request"});
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "too many");
        assert_eq!(line["attempts"], 3);
        assert_eq!(line["target"], "portcullis::logs::tests");
        assert_eq!(line["span"], request);
        assert_eq!(line["spans"], serde_json::json!([request]));
        let timestamp = line["timestamp"].as_str().expect("a timestamp");
        assert!(
            time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{timestamp}"
        );
        let outside = json(event);
        assert!(
            outside.get("span").is_none() && outside.get("spans").is_none(),
            "{outside}"
        );
    }

    #[test]
    fn text_lines_are_the_stock_format_with_or_without_colours() {
        fn capture(stock: bool, ansi: bool) -> String {
            let captured = Captured::default();
            let writer = captured.clone();
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(ansi)
                .fmt_fields(TextFields);
            let layer = if stock {
                layer.boxed()
            } else {
                layer.event_format(TextEvent).boxed()
            };
            tracing::subscriber::with_default(Registry::default().with(layer), || {
                let span = tracing::info_span!("request", request_id = "0123abcd");
                let _entered = span.enter();
                for level in [Level::ERROR, Level::WARN, Level::INFO] {
                    match level {
                        Level::ERROR => tracing::error!(n = 1, "one"),
                        Level::WARN => tracing::warn!(n = 2, "two"),
                        _ => tracing::info!(n = 3, "three"),
                    }
                }
            });
            let bytes = captured.0.lock().expect("log").clone();
            // Without the timestamps, which differ.
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(|line| {
                    line.split_once('Z')
                        .map_or(line, |(_, rest)| rest)
                        .to_owned()
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        for ansi in [false, true] {
            assert_eq!(capture(false, ansi), capture(true, ansi), "ansi {ansi}");
        }
    }

    #[test]
    fn json_lines_are_the_stock_format() {
        fn capture(stock: bool) -> serde_json::Value {
            let captured = Captured::default();
            let writer = captured.clone();
            let layer = tracing_subscriber::fmt::layer().with_writer(move || writer.clone());
            let layer = if stock {
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .boxed()
            } else {
                layer
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonEvent)
                    .boxed()
            };
            tracing::subscriber::with_default(Registry::default().with(layer), || {
                let span = tracing::info_span!("request", request_id = "0123abcd");
                let _entered = span.enter();
                let error = std::io::Error::other("disk full");
                tracing::warn!(n = 2, ok = true, error = &error as &dyn std::error::Error, why = ?Some(1), "two");
            });
            let bytes = captured.0.lock().expect("log").clone();
            let mut line: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            line["timestamp"] = serde_json::Value::Null;
            line
        }
        assert_eq!(capture(false), capture(true));
    }

    #[test]
    fn real_spans_follow_the_request_from_the_outermost_in() {
        // As where `RUST_LOG` has span directives (the frame then makes the request's span),
        // or a library's span within a request.
        let event = || {
            let span = tracing::info_span!("request", request_id = "0123abcd");
            let _entered = span.enter();
            let inner = tracing::info_span!("query", rows = 2);
            let _inner = inner.enter();
            tracing::info!("done");
        };
        assert_eq!(
            text(event),
            " INFO request{request_id=0123abcd}:query{rows=2}: portcullis::logs::tests: done\n"
        );
        let line = json(|| REQUEST_ID.sync_scope(ID, event));
        assert_eq!(
            line["span"],
            serde_json::json!({"rows": 2, "name": "query"})
        );
        assert_eq!(
            line["spans"],
            serde_json::json!([
                {"request_id": "0123456789abcdef", "name": "request"},
                {"request_id": "0123abcd", "name": "request"},
                {"rows": 2, "name": "query"},
            ])
        );
    }

    #[test]
    fn values_longer_than_the_stack_buffer_are_written_whole() {
        let long = "a".repeat(100);
        let line = text(|| tracing::warn!(value = long.as_str(), short = "b", "x"));
        assert_eq!(
            line,
            format!(" WARN portcullis::logs::tests: x value={long} short=b\n")
        );
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
        let line = text(|| tracing::info!("one\nline"));
        assert_eq!(line, " INFO portcullis::logs::tests: one\\nline\n");
    }
}
