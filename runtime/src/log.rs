//! Structured logs on stderr: access records for every call, audit records
//! for methods marked `audit`, and server events.
//!
//! `SVC_LOG` sets the level (`error`, `warn`, `info` — the default —,
//! `debug`, or `off`); access records are `info`, audit records are written
//! at every level but `off`. `SVC_LOG_FORMAT` is `json` (the default: one
//! object per line) or `text`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use crate::Error;
use crate::config::{ConfigSource, FileConfig};

/// Severity, lowest to highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Everything.
    Debug,
    /// Calls and server events.
    Info,
    /// Problems worth a look.
    Warn,
    /// Failures.
    Error,
    /// Nothing at all, audit included.
    Off,
}

impl Level {
    /// Parses a level name as `SVC_LOG` and the `log` config key take it.
    pub fn parse(text: &str) -> Result<Level, String> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "debug" | "trace" => Level::Debug,
            "info" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" => Level::Error,
            "off" | "none" => Level::Off,
            _ => return Err(format!("{text:?} is not a level; use error, warn, info, debug or off")),
        })
    }

    const ALL: [Level; 5] = [Level::Debug, Level::Info, Level::Warn, Level::Error, Level::Off];

    /// The level's name, as `SVC_LOG` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Off => "off",
        }
    }
}

/// Where and how records are written. Copies share one level, which
/// [`Logger::set_level`] changes at run time (configuration reload).
#[derive(Clone, Copy)]
pub struct Logger {
    /// Lowest level written; shared by every copy. One small allocation
    /// per logger lives for the process, so copies stay `Copy` and free.
    level: &'static AtomicU8,
    /// JSON lines (true) or text.
    pub json: bool,
}

impl Default for Logger {
    fn default() -> Self {
        Logger::new(Level::Info, true)
    }
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger").field("level", &self.level()).field("json", &self.json).finish()
    }
}

impl PartialEq for Logger {
    fn eq(&self, other: &Logger) -> bool {
        self.level() == other.level() && self.json == other.json
    }
}

impl Logger {
    /// A logger writing `level` and above, as JSON lines or text.
    pub fn new(level: Level, json: bool) -> Logger {
        Logger { level: Box::leak(Box::new(AtomicU8::new(level as u8))), json }
    }

    /// The lowest level written.
    pub fn level(&self) -> Level {
        Level::ALL[usize::from(self.level.load(Ordering::Relaxed)).min(Level::ALL.len() - 1)]
    }

    /// Changes the level for this logger and every copy of it.
    pub fn set_level(&self, level: Level) {
        self.level.store(level as u8, Ordering::Relaxed);
    }

    /// From `SVC_LOG` and `SVC_LOG_FORMAT`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Logger, Error> {
        Self::from_layers(None, lookup)
    }

    /// From the configuration file's `log` and `log_format`, overridden by
    /// `SVC_LOG` and `SVC_LOG_FORMAT`.
    pub fn from_layers(
        file: Option<(&ConfigSource, &FileConfig)>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Logger, Error> {
        let mut level = Level::Info;
        let mut json = true;
        let format = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(true),
            "text" => Ok(false),
            _ => Err(format!("{v:?} is not json or text")),
        };
        if let Some((source, config)) = file {
            if let Some(v) = &config.log {
                level = Level::parse(v).map_err(|p| source.error("log", p))?;
            }
            if let Some(v) = &config.log_format {
                json = format(v).map_err(|p| source.error("log_format", p))?;
            }
        }
        if let Some(v) = lookup("SVC_LOG") {
            level = Level::parse(&v).map_err(|problem| Error::Config { variable: "SVC_LOG", problem })?;
        }
        if let Some(v) = lookup("SVC_LOG_FORMAT") {
            json = format(&v).map_err(|problem| Error::Config { variable: "SVC_LOG_FORMAT", problem })?;
        }
        Ok(Logger::new(level, json))
    }

    /// Writes one record if `level` passes the filter. `fields` are
    /// (key, value) pairs after the message.
    pub fn log(&self, level: Level, message: &str, fields: &[(&str, Value<'_>)]) {
        let current = self.level();
        if level < current || current == Level::Off {
            return;
        }
        self.write(level.as_str(), message, fields);
    }

    /// Writes an audit record unless logging is off.
    pub fn audit(&self, fields: &[(&str, Value<'_>)]) {
        if self.level() != Level::Off {
            self.write("audit", "audit", fields);
        }
    }

    fn write(&self, level: &str, message: &str, fields: &[(&str, Value<'_>)]) {
        let now = SystemTime::now();
        emit(|line| self.format_into(line, now, level, message, fields));
    }

    /// Writes the access record of a call (`info`, message `rpc`) if the
    /// level lets it through, and the same fields as an audit record when
    /// `audit` is set and logging is not off.
    pub(crate) fn access(&self, access: &Access<'_>, audit: bool) {
        let level = self.level();
        let info = level <= Level::Info;
        let audit = audit && level != Level::Off;
        if !info && !audit {
            return;
        }
        let now = SystemTime::now();
        emit(|line| {
            if info {
                self.format_access(line, now, "info", "rpc", access);
            }
            if audit {
                self.format_access(line, now, "audit", "audit", access);
            }
        });
    }

    /// One record as a line.
    #[cfg(test)]
    fn format(&self, now: SystemTime, level: &str, message: &str, fields: &[(&str, Value<'_>)]) -> String {
        let mut line = Vec::new();
        self.format_into(&mut line, now, level, message, fields);
        String::from_utf8(line).expect("records are UTF-8")
    }

    /// Appends one record, as a line, to `line`.
    fn format_into(
        &self,
        line: &mut Vec<u8>,
        now: SystemTime,
        level: &str,
        message: &str,
        fields: &[(&str, Value<'_>)],
    ) {
        if self.json {
            line.extend_from_slice(b"{\"ts\":\"");
            push_timestamp(line, now);
            line.extend_from_slice(b"\",\"level\":\"");
            line.extend_from_slice(level.as_bytes());
            line.extend_from_slice(b"\",\"msg\":");
            json_string(line, message);
            for (key, value) in fields {
                line.push(b',');
                json_string(line, key);
                line.push(b':');
                match value {
                    Value::Str(s) => json_string(line, s),
                    Value::None => line.extend_from_slice(b"null"),
                    Value::Hex(_) | Value::Addr(_) => {
                        line.push(b'"');
                        value.push_plain(line);
                        line.push(b'"');
                    }
                    _ => value.push_plain(line),
                }
            }
            line.push(b'}');
        } else {
            push_timestamp(line, now);
            let _ = write!(line, " {level:<5} {message}");
            for (key, value) in fields {
                match value {
                    Value::None => continue,
                    Value::Str(s) if s.contains(char::is_whitespace) || s.is_empty() => {
                        let _ = write!(line, " {key}={s:?}");
                        continue;
                    }
                    _ => {}
                }
                line.push(b' ');
                line.extend_from_slice(key.as_bytes());
                line.push(b'=');
                value.push_plain(line);
            }
        }
        line.push(b'\n');
    }

    /// Appends an access or audit record. JSON records are written piece
    /// by piece, their keys and separators fixed, the same bytes as
    /// [`Logger::format_into`] writes for [`Access::fields`] (a test holds
    /// them equal); text records go through it.
    fn format_access(&self, line: &mut Vec<u8>, now: SystemTime, level: &str, message: &str, a: &Access<'_>) {
        if !self.json {
            return self.format_into(line, now, level, message, &a.fields());
        }
        line.reserve(224 + a.method.len() + a.request_id.len() + a.subject.map_or(0, str::len));
        line.extend_from_slice(b"{\"ts\":\"");
        push_timestamp(line, now);
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(level.as_bytes());
        line.extend_from_slice(b"\",\"msg\":\"");
        line.extend_from_slice(message.as_bytes());
        line.extend_from_slice(b"\",\"method\":");
        json_string(line, a.method);
        line.extend_from_slice(b",\"code\":\"");
        line.extend_from_slice(crate::metrics::code_name(a.code).as_bytes());
        line.extend_from_slice(b"\",\"duration_ms\":");
        push_millis(line, a.duration);
        match a.peer {
            Some(peer) => {
                line.extend_from_slice(b",\"peer\":\"");
                push_addr(line, peer);
                line.extend_from_slice(b"\",\"request_id\":");
            }
            None => line.extend_from_slice(b",\"peer\":null,\"request_id\":"),
        }
        json_string(line, a.request_id);
        line.extend_from_slice(b",\"subject\":");
        match a.subject {
            Some(subject) => json_string(line, subject),
            None => line.extend_from_slice(b"null"),
        }
        line.extend_from_slice(b",\"trace_id\":\"");
        crate::trace::push_hex(line, &a.trace.trace_id);
        line.extend_from_slice(b"\",\"span_id\":\"");
        crate::trace::push_hex(line, &a.trace.span_id);
        line.extend_from_slice(b"\"}\n");
    }
}

/// What an access record says about a call (see [`Logger::access`]).
pub(crate) struct Access<'a> {
    pub(crate) method: &'a str,
    pub(crate) code: u8,
    pub(crate) duration: Duration,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) request_id: &'a str,
    pub(crate) subject: Option<&'a str>,
    pub(crate) trace: &'a crate::trace::TraceContext,
}

impl Access<'_> {
    /// The record's fields, in order.
    fn fields(&self) -> [(&'static str, Value<'_>); 8] {
        [
            ("method", Value::Str(self.method)),
            ("code", Value::Str(crate::metrics::code_name(self.code))),
            ("duration_ms", Value::Millis(self.duration)),
            ("peer", self.peer.map_or(Value::None, Value::Addr)),
            ("request_id", Value::Str(self.request_id)),
            ("subject", self.subject.map_or(Value::None, Value::Str)),
            ("trace_id", Value::Hex(&self.trace.trace_id)),
            ("span_id", Value::Hex(&self.trace.span_id)),
        ]
    }
}

/// Formats a record with `format` straight into this thread's buffer
/// (see [`LOCAL`]).
fn emit(format: impl Fn(&mut Vec<u8>)) {
    let buffered = LOCAL.try_with(|local| {
        let full = {
            let mut buffer = local.0.lock().unwrap_or_else(|e| e.into_inner());
            format(&mut buffer);
            buffer.len() >= FLUSH_BYTES
        };
        if full {
            write_out(&local.0);
        }
    });
    if buffered.is_err() {
        // The thread is ending and its buffer is gone: write directly.
        let mut line = Vec::new();
        format(&mut line);
        let _ = std::io::stderr().lock().write_all(&line);
    }
}

/// Records wait in a buffer per thread until 32 KiB have gathered, and at
/// most 200 ms (a flusher thread writes what is there), so a call pays for
/// formatting and a short copy into memory only its own thread touches:
/// no system call, no thread wake-up, no lock another core holds. Each
/// thread's records stay in order; records of different threads can be
/// written out of time order by up to 200 ms (their `ts` tells).
const FLUSH_BYTES: usize = 32 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

type Buffer = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// Every thread's buffer, for the flusher.
static BUFFERS: std::sync::Mutex<Vec<std::sync::Weak<std::sync::Mutex<Vec<u8>>>>> = std::sync::Mutex::new(Vec::new());

/// A thread's buffer; what is left in it is written when the thread ends.
struct Local(Buffer);

impl Drop for Local {
    fn drop(&mut self) {
        write_out(&self.0);
    }
}

thread_local! {
    static LOCAL: Local = {
        static FLUSHER: std::sync::Once = std::sync::Once::new();
        FLUSHER.call_once(|| {
            let _ = std::thread::Builder::new().name("svc-log".into()).spawn(|| {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flush();
                }
            });
        });
        let buffer = Buffer::new(std::sync::Mutex::new(Vec::with_capacity(2 * FLUSH_BYTES)));
        let mut all = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|b| b.strong_count() > 0);
        all.push(std::sync::Arc::downgrade(&buffer));
        Local(buffer)
    };
}

/// Writes what `buffer` holds.
fn write_out(buffer: &Buffer) {
    let bytes = {
        let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.is_empty() {
            return;
        }
        // Swap in a buffer that already has room, so appends never regrow.
        std::mem::replace(&mut *buffer, Vec::with_capacity(2 * FLUSH_BYTES))
    };
    let _ = std::io::stderr().lock().write_all(&bytes);
}

/// Writes every record logged so far, by any thread.
pub fn flush() {
    let live: Vec<Buffer> = {
        let all = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().filter_map(std::sync::Weak::upgrade).collect()
    };
    for buffer in &live {
        write_out(buffer);
    }
}

/// A field value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Text.
    Str(&'a str),
    /// A number.
    Num(f64),
    /// A flag.
    Bool(bool),
    /// Bytes written as lowercase hex digits (ids).
    Hex(&'a [u8]),
    /// A network address, written `ip:port`.
    Addr(SocketAddr),
    /// A duration, written in milliseconds with up to three decimals.
    Millis(Duration),
    /// Absent.
    None,
}

impl Value<'_> {
    /// Appends the value as it reads in text records (and, quoted where it
    /// is a string, in JSON ones).
    fn push_plain(&self, out: &mut Vec<u8>) {
        match *self {
            Value::Str(s) => out.extend_from_slice(s.as_bytes()),
            Value::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            Value::Hex(bytes) => crate::trace::push_hex(out, bytes),
            Value::Addr(a) => push_addr(out, a),
            Value::Millis(d) => push_millis(out, d),
            Value::None => {}
        }
    }
}

/// Appends `a` as `ip:port` (`[ip]:port` for IPv6).
fn push_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(a) => {
            // At most `255.255.255.255:65535`, written in one piece.
            let mut text = [0u8; 21];
            let mut at = 0;
            for octet in a.ip().octets() {
                at += put_decimal(&mut text[at..], u64::from(octet));
                text[at] = b'.';
                at += 1;
            }
            text[at - 1] = b':';
            at += put_decimal(&mut text[at..], u64::from(a.port()));
            out.extend_from_slice(&text[..at]);
        }
        a => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Appends `d` in milliseconds with up to three decimals, trailing zeros
/// dropped: 1.5, not 1.500.
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_u64(out, micros / 1000);
    let mut frac = (micros % 1000) as u32;
    if frac > 0 {
        let mut digits = 3;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        out.push(b'.');
        let text = [b'0' + (frac / 100 % 10) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8];
        out.extend_from_slice(&text[3 - digits..]);
    }
}

/// "00" to "99", for writing numbers two digits at a time.
const PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// `n` in decimal, written at the end of `digits`.
fn decimal(digits: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = digits.len();
    while n >= 100 {
        let pair = 2 * (n % 100) as usize;
        n /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[2 * n as usize..2 * n as usize + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + n as u8;
    }
    &digits[at..]
}

/// Writes `n` in decimal at the start of `out`; returns the digits written.
fn put_decimal(out: &mut [u8], n: u64) -> usize {
    let mut digits = [0u8; 20];
    let text = decimal(&mut digits, n);
    out[..text.len()].copy_from_slice(text);
    text.len()
}

/// Appends `n` in decimal.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(&mut [0u8; 20], n));
}

/// Appends `n` (below 1000) as exactly three digits.
fn push_3_digits(out: &mut Vec<u8>, n: u32) {
    let n = n.min(999);
    out.extend_from_slice(&[b'0' + (n / 100) as u8, b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]);
}

/// Whether `s` can go between JSON quotes as it is. Written without an
/// early exit, so the compiler checks many bytes at a time: records are
/// mostly short strings that need nothing.
fn json_plain(s: &str) -> bool {
    !s.bytes().fold(false, |special, b| special | (b < 0x20) | (b == b'"') | (b == b'\\'))
}

/// Where text is written: a `String`, or the bytes of a log buffer.
pub(crate) trait Text {
    /// Appends `s`.
    fn put(&mut self, s: &str);
    /// Appends `bytes`, known to be ASCII.
    fn put_ascii(&mut self, bytes: &[u8]);
}

impl Text for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
    fn put_ascii(&mut self, bytes: &[u8]) {
        self.push_str(crate::trace::ascii(bytes));
    }
}

impl Text for Vec<u8> {
    fn put(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
    fn put_ascii(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Appends `s` as a JSON string.
pub(crate) fn json_string(out: &mut impl Text, s: &str) {
    // Most values (methods, ids, addresses) need no escaping at all.
    if json_plain(s) {
        out.put_ascii(b"\"");
        out.put(s);
        out.put_ascii(b"\"");
        return;
    }
    out.put_ascii(b"\"");
    let mut rest = s;
    while let Some(at) = rest.find(|c: char| c < ' ' || c == '"' || c == '\\') {
        out.put(&rest[..at]);
        let c = rest.as_bytes()[at];
        match c {
            b'"' => out.put_ascii(b"\\\""),
            b'\\' => out.put_ascii(b"\\\\"),
            b'\n' => out.put_ascii(b"\\n"),
            b'\r' => out.put_ascii(b"\\r"),
            b'\t' => out.put_ascii(b"\\t"),
            c => {
                let [hi, lo] = crate::trace::hex_pair(c);
                out.put_ascii(&[b'\\', b'u', b'0', b'0', hi, lo]);
            }
        }
        rest = &rest[at + 1..];
    }
    out.put(rest);
    out.put_ascii(b"\"");
}

/// Appends `t` as `2026-11-21T05:30:00.123Z`. The date and time up to the
/// second are formatted once per second and thread, then reused.
fn push_timestamp(out: &mut Vec<u8>, t: SystemTime) {
    use std::cell::Cell;
    thread_local! {
        static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let prefix = SECOND.with(|cached| {
        let (at, text) = cached.get();
        if at == secs {
            return text;
        }
        let mut text = [0u8; 20];
        text.copy_from_slice(civil(secs).as_bytes());
        cached.set((secs, text));
        text
    });
    out.extend_from_slice(&prefix);
    push_3_digits(out, d.subsec_millis());
    out.push(b'Z');
}

/// `2026-11-21T05:30:00.` for seconds since the epoch.
fn civil(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let rfc3339 = |t| {
            let mut s = Vec::new();
            push_timestamp(&mut s, t);
            String::from_utf8(s).expect("ASCII")
        };
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_240_253_840);
        assert_eq!(rfc3339(t), "2026-11-21T05:50:53.840Z");
        // Same second, from the cache; then the next one.
        assert_eq!(rfc3339(t + Duration::from_millis(7)), "2026-11-21T05:50:53.847Z");
        assert_eq!(rfc3339(t + Duration::from_millis(160)), "2026-11-21T05:50:54.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn values() {
        let plain = |v: Value<'_>| {
            let mut s = Vec::new();
            v.push_plain(&mut s);
            String::from_utf8(s).expect("ASCII")
        };
        assert_eq!(plain(Value::Millis(Duration::from_micros(1_234_567))), "1234.567");
        assert_eq!(plain(Value::Millis(Duration::from_micros(120))), "0.12");
        assert_eq!(plain(Value::Millis(Duration::from_micros(3_000))), "3");
        assert_eq!(plain(Value::Millis(Duration::from_micros(5_007))), "5.007");
        assert_eq!(plain(Value::Millis(Duration::from_nanos(999))), "0");
        assert_eq!(plain(Value::Addr("10.0.0.255:50051".parse().expect("addr"))), "10.0.0.255:50051");
        assert_eq!(plain(Value::Addr("0.0.0.0:0".parse().expect("addr"))), "0.0.0.0:0");
        assert_eq!(plain(Value::Addr("255.255.255.255:65535".parse().expect("addr"))), "255.255.255.255:65535");
        assert_eq!(plain(Value::Addr("[::1]:8".parse().expect("addr"))), "[::1]:8");
        assert_eq!(plain(Value::Hex(&[0x00, 0xab, 0x10])), "00ab10");
        assert_eq!(plain(Value::Hex(&[])), "");
        // Longer than one 32-byte chunk.
        let long: Vec<u8> = (0..40).collect();
        let expected: String = long.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(plain(Value::Hex(&long)), expected);
        assert_eq!(plain(Value::Millis(Duration::from_micros(7_010))), "7.01");
        assert_eq!(plain(Value::Num(2.5)), "2.5");
        assert_eq!(plain(Value::Bool(false)), "false");
    }

    #[test]
    fn records() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_240_253_840);
        let fields = [
            ("method", Value::Str("/p.S/M")),
            ("peer", Value::Addr("127.0.0.1:5".parse().expect("addr"))),
            ("trace_id", Value::Hex(&[0xab, 1])),
            ("duration_ms", Value::Millis(Duration::from_micros(1500))),
            ("subject", Value::None),
            ("note", Value::Str("two words")),
        ];
        let json = Logger::new(Level::Info, true).format(at, "info", "rpc", &fields);
        assert_eq!(
            json,
            concat!(
                r#"{"ts":"2026-11-21T05:50:53.840Z","level":"info","msg":"rpc","method":"/p.S/M","#,
                r#""peer":"127.0.0.1:5","trace_id":"ab01","duration_ms":1.5,"subject":null,"note":"two words"}"#,
                "\n"
            )
        );
        let text = Logger::new(Level::Info, false).format(at, "info", "rpc", &fields);
        assert_eq!(
            text,
            "2026-11-21T05:50:53.840Z info  rpc method=/p.S/M peer=127.0.0.1:5 trace_id=ab01 duration_ms=1.5 note=\"two words\"\n"
        );
    }

    #[test]
    fn access_records_are_the_generic_records_of_their_fields() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_240_253_840);
        let trace = crate::trace::TraceContext {
            trace_id: [0xab; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: None,
            sampled: true,
        };
        let records = [
            Access {
                method: "/p.v1.S/M",
                code: 0,
                duration: Duration::from_micros(1500),
                peer: Some("127.0.0.1:50051".parse().expect("addr")),
                request_id: "0123456789abcdef0123456789abcdef",
                subject: None,
                trace: &trace,
            },
            Access {
                method: "/unknown \"path\"\n",
                code: 16,
                duration: Duration::from_secs(12),
                peer: Some("[2001:db8::1]:8".parse().expect("addr")),
                request_id: "caller's\\id",
                subject: Some("user \u{1}\u{e9}"),
                trace: &trace,
            },
            Access {
                method: "",
                code: 4,
                duration: Duration::ZERO,
                peer: None,
                request_id: "x",
                subject: Some(""),
                trace: &trace,
            },
        ];
        for json in [true, false] {
            let logger = Logger::new(Level::Info, json);
            for a in &records {
                for (level, message) in [("info", "rpc"), ("audit", "audit")] {
                    let mut fast = Vec::new();
                    logger.format_access(&mut fast, at, level, message, a);
                    let generic = logger.format(at, level, message, &a.fields());
                    assert_eq!(String::from_utf8(fast).expect("UTF-8"), generic);
                }
            }
        }
        let mut line = Vec::new();
        Logger::new(Level::Info, true).format_access(&mut line, at, "info", "rpc", &records[0]);
        let parsed: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
        assert_eq!(parsed["duration_ms"], 1.5);
        assert_eq!(parsed["peer"], "127.0.0.1:50051");
        assert_eq!(parsed["span_id"], "0102030405060708");
    }

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001\"");
        // A key that needs escaping is escaped like a value.
        let at = SystemTime::UNIX_EPOCH;
        let json = Logger::new(Level::Info, true).format(at, "info", "m", &[("a\"b", Value::Bool(true))]);
        assert!(json.ends_with("\"msg\":\"m\",\"a\\\"b\":true}\n"), "{json}");
    }

    #[test]
    fn environment() {
        let l = Logger::from_lookup(|k| match k {
            "SVC_LOG" => Some("warn".into()),
            "SVC_LOG_FORMAT" => Some("text".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(l, Logger::new(Level::Warn, false));
        let copy = l;
        copy.set_level(Level::Debug);
        assert_eq!(l.level(), Level::Debug, "copies share the level");
        let e = Logger::from_lookup(|k| (k == "SVC_LOG").then(|| "loud".into())).expect_err("bad").to_string();
        assert!(e.starts_with("SVC_LOG: \"loud\" is not a level"), "{e}");
        let e = Logger::from_lookup(|k| (k == "SVC_LOG_FORMAT").then(|| "xml".into())).expect_err("bad").to_string();
        assert!(e.starts_with("SVC_LOG_FORMAT:"), "{e}");
    }
}
