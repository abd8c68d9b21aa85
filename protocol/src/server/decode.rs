//! Request bodies read the way MPUSH's `ByteBufMessage` reads them, which is looser than
//! [`crate::message`]: a zero length is `null`, strings are decoded lossily (Java's
//! `new String(bytes, UTF_8)`), trailing bytes are ignored, and an empty body is never decoded
//! at all (every field stays `null`/0). What fails here (a truncated field, a negative length)
//! is what makes MPUSH's dispatcher answer Error 100.

use crate::codec::{DecodeError, Reader};
use crate::message::HttpMethod;

/// Java's `decodeBytes`: int16 length, `0x7FFF` + int32 for long fields (Java int arithmetic),
/// zero means null.
fn bytes(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    let b = r.bytes()?;
    Ok(if b.is_empty() { None } else { Some(b.to_vec()) })
}

/// Java's `decodeString`: null for a zero length, invalid UTF-8 replaced, never an error.
fn string(r: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    Ok(bytes(r)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// MPUSH's `HandshakeMessage` fields.
#[derive(Debug, Default)]
pub(super) struct Handshake {
    pub(super) device_id: Option<String>,
    pub(super) os_name: Option<String>,
    pub(super) os_version: Option<String>,
    pub(super) client_version: Option<String>,
    pub(super) iv: Option<Vec<u8>>,
    pub(super) client_key: Option<Vec<u8>>,
    pub(super) max_heartbeat: i32,
}

/// MPUSH's `FastConnectMessage` fields.
#[derive(Debug, Default)]
pub(super) struct FastConnect {
    pub(super) session_id: Option<String>,
    pub(super) device_id: Option<String>,
    pub(super) max_heartbeat: i32,
}

/// MPUSH's `BindUserMessage` fields (`data` is the alias).
#[derive(Debug, Default)]
pub(super) struct BindUser {
    pub(super) user_id: Option<String>,
    pub(super) data: Option<String>,
    pub(super) tags: Option<String>,
}

/// MPUSH's `HttpRequestMessage` fields, headers still as the wire string.
#[derive(Debug, Default)]
pub(super) struct HttpRequest {
    pub(super) method: u8,
    pub(super) uri: Option<String>,
    pub(super) headers: Option<String>,
    pub(super) body: Option<Vec<u8>>,
}

/// Decodes a message from an opened body; an empty body decodes to the defaults, as MPUSH
/// skips decoding when the packet has no body.
pub(super) fn decode<T: Default>(
    body: &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    read(&mut Reader::new(body))
}

pub(super) fn handshake(r: &mut Reader<'_>) -> Result<Handshake, DecodeError> {
    let device_id = string(r)?;
    let os_name = string(r)?;
    let os_version = string(r)?;
    let client_version = string(r)?;
    let iv = bytes(r)?;
    let client_key = bytes(r)?;
    let _min_heartbeat = r.i32()?;
    let max_heartbeat = r.i32()?;
    let _timestamp = r.i64()?;
    Ok(Handshake { device_id, os_name, os_version, client_version, iv, client_key, max_heartbeat })
}

pub(super) fn fast_connect(r: &mut Reader<'_>) -> Result<FastConnect, DecodeError> {
    let session_id = string(r)?;
    let device_id = string(r)?;
    let _min_heartbeat = r.i32()?;
    let max_heartbeat = r.i32()?;
    Ok(FastConnect { session_id, device_id, max_heartbeat })
}

pub(super) fn bind_user(r: &mut Reader<'_>) -> Result<BindUser, DecodeError> {
    Ok(BindUser { user_id: string(r)?, data: string(r)?, tags: string(r)? })
}

pub(super) fn http_request(r: &mut Reader<'_>) -> Result<HttpRequest, DecodeError> {
    Ok(HttpRequest { method: r.u8()?, uri: string(r)?, headers: string(r)?, body: bytes(r)? })
}

/// MPUSH's `HttpRequestMessage.getMethod`: 0..=3, anything else is GET.
pub(super) fn method(b: u8) -> HttpMethod {
    HttpMethod::from_code(b)
}

/// MPUSH's `Utils.headerFromString` into a Java `HashMap`: only `\n`-terminated lines count
/// (a last line without `\n` is dropped), a line needs a name before its first `:`, a line
/// with nothing after the `:` takes the *previous* line's value (null at first: Java's
/// `value` variable is never reset), and a repeated name keeps its first position and its
/// last value. Returns the map's entries in insertion order.
pub(super) fn java_headers(s: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let mut value: Option<String> = None;
    let mut rest = s;
    while let Some((line, tail)) = rest.split_once('\n') {
        rest = tail;
        let Some(idx) = line.find(':').filter(|i| *i > 0) else { continue };
        let name = &line[..idx];
        if idx + 1 < line.len() {
            value = Some(line[idx + 1..].to_owned());
        }
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value.clone(),
            None => out.push((name.to_owned(), value.clone())),
        }
    }
    out
}

/// Whether netty 4.1.8's `DefaultHttpHeaders` (with validation, as MPUSH builds its request)
/// accepts this header; MPUSH answers 502 when it does not. Names may not hold
/// `=,;: \t\r\n\x0b\x0c` or non-ASCII; a value may not hold `\r` (it cannot hold `\n`, the
/// line separator); a null value is a `NullPointerException`.
pub(super) fn netty_accepts(name: &str, value: Option<&str>) -> bool {
    let bad_name =
        |c: char| !c.is_ascii() || matches!(c, '=' | ',' | ';' | ':' | ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c');
    match value {
        None => false,
        Some(v) => !name.chars().any(bad_name) && !v.contains('\r'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_header_parsing_quirks() {
        let h = |s: &str| java_headers(s);
        assert_eq!(h("a:1\nb:2\n"), vec![("a".into(), Some("1".into())), ("b".into(), Some("2".into()))]);
        // The last line needs its '\n'.
        assert_eq!(h("a:1\nb:2"), vec![("a".into(), Some("1".into()))]);
        // Nameless and colon-less lines are skipped; values are not trimmed.
        assert_eq!(h(":x\nnocolon\nc: v \n"), vec![("c".into(), Some(" v ".into()))]);
        // An empty value takes the previous line's value, or null at first.
        assert_eq!(h("e:\n"), vec![("e".into(), None)]);
        assert_eq!(h("a:1\ne:\n"), vec![("a".into(), Some("1".into())), ("e".into(), Some("1".into()))]);
        // Repeats keep the first position and the last value; names are case-sensitive.
        assert_eq!(h("a:1\nA:2\na:3\n"), vec![("a".into(), Some("3".into())), ("A".into(), Some("2".into()))]);
        assert_eq!(h("x:a:b\n"), vec![("x".into(), Some("a:b".into()))]);
    }

    #[test]
    fn netty_header_validation() {
        assert!(netty_accepts("Content-Type", Some("a\x01b")));
        assert!(netty_accepts("x", Some("")));
        assert!(!netty_accepts("x", None));
        assert!(!netty_accepts("a b", Some("1")));
        assert!(!netty_accepts("a=b", Some("1")));
        assert!(!netty_accepts("é", Some("1")));
        assert!(!netty_accepts("x", Some("json\r")));
    }

    #[test]
    fn lenient_fields() {
        // Zero length is null, invalid UTF-8 is replaced, trailing bytes are ignored.
        let body = [0, 0, 0, 2, 0xFF, b'a', 0, 0, 9, 9, 9];
        let m = decode(&body, bind_user).unwrap();
        assert_eq!(m.user_id, None);
        assert_eq!(m.data.as_deref(), Some("\u{FFFD}a"));
        assert_eq!(m.tags, None);
        // A truncated field and a negative length fail.
        assert!(decode(&[0, 5, b'a'], bind_user).is_err());
        assert!(decode(&[0x80, 0], bind_user).is_err());
        // An empty body is not decoded at all.
        assert_eq!(decode(&[], handshake).unwrap().device_id, None);
    }
}
