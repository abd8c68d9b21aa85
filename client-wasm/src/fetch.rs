//! `client.fetch(url, init)`: a `fetch`-shaped call whose request the MPUSH server performs
//! (HTTP-proxy packets, cmd 12), answered with a real `Response`.

use js_sys::{ArrayBuffer, Reflect, Uint8Array};
use mpush_protocol::client::READ_TIMEOUT_HEADER;
use mpush_protocol::{HttpMethod, HttpRequest, HttpResponse};
use wasm_bindgen::{JsCast, JsValue};

use crate::errors::{decimal, js_error, ErrorCode};

fn field(obj: &JsValue, name: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &name.into()).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

fn invalid(msg: &str) -> JsValue {
    js_error(ErrorCode::InvalidArgument, msg)
}

/// The request URL: a string or anything with a string form (a `URL`).
fn request_url(input: &JsValue) -> Result<String, JsValue> {
    if let Some(s) = input.as_string() {
        return Ok(s);
    }
    if input.is_object() {
        let s: String = js_sys::Object::from(input.clone()).to_string().into();
        if !s.starts_with("[object") {
            return Ok(s);
        }
    }
    Err(invalid("fetch: the URL must be a string or a URL"))
}

/// Header pairs from a `Headers` object, a record, or an array of pairs (anything the
/// `Headers` constructor accepts).
fn request_headers(v: &JsValue) -> Result<Vec<(String, String)>, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(Vec::new());
    }
    let h = web_sys::Headers::new_with_str_sequence_sequence(v).map_err(|_| invalid("fetch: invalid headers"))?;
    // `Array.from` iterates the `Headers` in JS: one import instead of the iterator protocol's
    // five (Symbol.iterator, next, done, value).
    let entries = js_sys::Array::from(&h);
    let mut out = Vec::new();
    for pair in entries.iter() {
        let pair: js_sys::Array = pair.unchecked_into();
        if let (Some(k), Some(v)) = (pair.get(0).as_string(), pair.get(1).as_string()) {
            out.push((k, v));
        }
    }
    Ok(out)
}

/// Body bytes from a string, `ArrayBuffer`, typed array / `DataView` or `URLSearchParams`;
/// also returns a default content type for strings and form parameters.
fn request_body(v: &JsValue) -> Result<(Vec<u8>, Option<&'static str>), JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok((Vec::new(), None));
    }
    if let Some(s) = v.as_string() {
        return Ok((s.into_bytes(), Some("text/plain;charset=UTF-8")));
    }
    if let Some(b) = v.dyn_ref::<ArrayBuffer>() {
        return Ok((Uint8Array::new(b).to_vec(), None));
    }
    if ArrayBuffer::is_view(v) {
        let buf = field(v, "buffer");
        let off = field(v, "byteOffset").as_f64().unwrap_or(0.0) as u32;
        let len = field(v, "byteLength").as_f64().unwrap_or(0.0) as u32;
        return Ok((Uint8Array::new_with_byte_offset_and_length(&buf, off, len).to_vec(), None));
    }
    if let Some(p) = v.dyn_ref::<web_sys::UrlSearchParams>() {
        return Ok((
            String::from(js_sys::Object::to_string(p)).into_bytes(),
            Some("application/x-www-form-urlencoded;charset=UTF-8"),
        ));
    }
    Err(invalid("fetch: body must be a string, ArrayBuffer, typed array, DataView or URLSearchParams"))
}

/// Content bytes for `push`: a string (UTF-8), `ArrayBuffer`, typed array or `DataView`.
pub fn body_bytes(v: &JsValue) -> Result<Vec<u8>, JsValue> {
    let bad = || invalid("push: content must be a string, ArrayBuffer, typed array or DataView");
    if v.is_undefined() || v.is_null() || v.dyn_ref::<web_sys::UrlSearchParams>().is_some() {
        return Err(bad());
    }
    // The checks are fetch's, but the message must name push.
    request_body(v).map(|(b, _)| b).map_err(|_| bad())
}

/// What `Response.url` shows for a request URI: the URI without its fragment, as `fetch` does.
pub fn response_url(uri: &str) -> String {
    uri.split('#').next().unwrap_or(uri).to_owned()
}

/// Builds the MPUSH request from `fetch(input, init)` arguments. `init.timeout` (ms) becomes
/// the server's `readTimeout`, replacing a `readTimeout` header in any letter case (the session
/// sends exactly one, named as MPUSH reads it).
pub fn build_request(input: &JsValue, init: &JsValue) -> Result<HttpRequest, JsValue> {
    let uri = request_url(input)?;
    let method_name = field(init, "method").as_string().unwrap_or_else(|| "GET".into());
    let method = HttpMethod::parse(&method_name).ok_or_else(|| {
        js_error(
            ErrorCode::HttpMethodUnsupported,
            &["fetch: method ", &method_name, " is not supported (MPUSH carries GET, POST, PUT, DELETE)"].concat(),
        )
    })?;
    let mut headers = request_headers(&field(init, "headers"))?;
    let (body, content_type) = request_body(&field(init, "body"))?;
    if let Some(ct) = content_type {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            headers.push(("content-type".into(), ct.into()));
        }
    }
    let timeout = field(init, "timeout");
    if !timeout.is_undefined() && !timeout.is_null() {
        match timeout.as_f64() {
            Some(t) if t.is_finite() && t >= 1.0 => {
                // `Headers` lower-cases names: a caller's "readTimeout" arrives as "readtimeout".
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case(READ_TIMEOUT_HEADER));
                headers.push((READ_TIMEOUT_HEADER.into(), (t.floor() as u64).to_string()));
            }
            _ => return Err(invalid("fetch: timeout must be a positive number of milliseconds")),
        }
    }
    Ok(HttpRequest { method, uri, headers, body })
}

/// Statuses whose `Response` must have a null body.
fn null_body_status(status: u16) -> bool {
    matches!(status, 101 | 103 | 204 | 205 | 304)
}

/// A `Response` from the MPUSH answer. Header lines the browser rejects are dropped; a reason
/// phrase it rejects becomes empty; statuses outside 200..=599 are a `PROTOCOL_ERROR`.
/// `url` becomes `Response.url` (read-only on a constructed `Response`, so it is defined on the
/// object itself).
pub fn build_response(r: &HttpResponse, url: Option<&str>) -> Result<web_sys::Response, JsValue> {
    let status = u16::try_from(r.status_code).ok().filter(|s| (200..=599).contains(s)).ok_or_else(|| {
        js_error(ErrorCode::ProtocolError, &["fetch: unusable HTTP status ", &decimal(r.status_code.into())].concat())
    })?;
    let headers = web_sys::Headers::new()?;
    for (k, v) in &r.headers {
        let _ = headers.append(k.trim(), v.trim());
    }
    let body = (!null_body_status(status)).then(|| Uint8Array::from(r.body.as_slice()));
    let make = |reason: &str| {
        // A plain init object: `ResponseInit`'s setters would be three more imports.
        let init = crate::events::object(&[
            ("status", status.into()),
            ("statusText", reason.into()),
            ("headers", headers.clone().into()),
        ]);
        web_sys::Response::new_with_opt_js_u8_array_and_init(body.as_ref(), init.unchecked_ref())
    };
    let resp = make(r.reason_phrase.as_deref().unwrap_or("")).or_else(|_| make(""))?;
    if let Some(url) = url {
        let desc = js_sys::Object::new();
        let _ = Reflect::set(&desc, &"value".into(), &url.into());
        let _ = js_sys::Object::define_property(&resp, &"url".into(), &desc);
    }
    Ok(resp)
}

#[cfg(all(test, target_arch = "wasm32"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::errors::code_of;
    use wasm_bindgen_test::wasm_bindgen_test;

    fn req(input: &str, init: &str) -> Result<HttpRequest, JsValue> {
        build_request(&js_sys::eval(input).unwrap(), &js_sys::eval(&["(", init, ")"].concat()).unwrap())
    }

    #[wasm_bindgen_test]
    fn requests_from_fetch_arguments() {
        let r = req("'http://a/x'", "undefined").unwrap();
        assert_eq!((r.method, r.uri.as_str(), r.body.len()), (HttpMethod::Get, "http://a/x", 0));
        let r =
            req("new URL('http://a/y?q=1')", "{ method: 'post', headers: { 'X-A': '1' }, body: 'hé', timeout: 2500 }")
                .unwrap();
        assert_eq!(r.method, HttpMethod::Post);
        assert_eq!(r.uri, "http://a/y?q=1");
        assert_eq!(r.body, "hé".as_bytes());
        assert!(r.headers.contains(&("x-a".into(), "1".into())));
        assert!(r.headers.contains(&("content-type".into(), "text/plain;charset=UTF-8".into())));
        assert!(r.headers.contains(&("readTimeout".into(), "2500".into())));
        // A readTimeout header (lower-cased by Headers) gives way to init.timeout: one remains.
        let r = req("'http://a'", "{ headers: { readTimeout: '9000', 'X-B': '2' }, timeout: 1500 }").unwrap();
        let rt: Vec<_> = r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("readtimeout")).collect();
        assert_eq!(rt, vec![&("readTimeout".to_string(), "1500".to_string())]);
        let r = req("'http://a'", "{ method: 'PUT', headers: [['a','b']], body: new Uint8Array([1,2,3]).subarray(1) }")
            .unwrap();
        assert_eq!((r.method, r.body.clone()), (HttpMethod::Put, vec![2, 3]));
        assert_eq!(r.headers, vec![("a".to_string(), "b".to_string())]);
        let r = req(
            "'http://a'",
            "{ method: 'DELETE', headers: new Headers({ b: 'c' }), body: new Uint8Array([9]).buffer }",
        )
        .unwrap();
        assert_eq!(r.body, vec![9]);
        let r = req("'http://a'", "{ method: 'POST', body: new URLSearchParams({ a: '1 2' }) }").unwrap();
        assert_eq!(r.body, b"a=1+2".to_vec());
    }

    #[wasm_bindgen_test]
    fn unsupported_methods_and_bodies_are_rejected() {
        let e = req("'http://a'", "{ method: 'PATCH' }").unwrap_err();
        assert_eq!(code_of(&e).as_deref(), Some("HTTP_METHOD_UNSUPPORTED"));
        let e = req("'http://a'", "{ method: 'POST', body: new Blob(['x']) }").unwrap_err();
        assert_eq!(code_of(&e).as_deref(), Some("INVALID_ARGUMENT"));
        assert!(req("'http://a'", "{ timeout: -5 }").is_err());
        assert!(req("({})", "undefined").is_err());
    }

    #[wasm_bindgen_test]
    fn responses_are_real_responses() {
        let r = HttpResponse {
            status_code: 201,
            reason_phrase: Some("Created".into()),
            headers: vec![("content-type".into(), "text/plain".into()), ("bad header".into(), "x".into())],
            body: b"hi".to_vec(),
        };
        let resp = build_response(&r, Some("http://a/x?y=1")).unwrap();
        assert_eq!((resp.status(), resp.status_text(), resp.ok()), (201, "Created".to_string(), true));
        assert_eq!(resp.url(), "http://a/x?y=1");
        assert_eq!(resp.headers().get("content-type").unwrap().as_deref(), Some("text/plain"));
        // 204 and 304 must not carry a body; a bad reason phrase falls back to "".
        for status in [204, 304] {
            let r = HttpResponse {
                status_code: status,
                reason_phrase: Some("x\ny".into()),
                headers: vec![],
                body: b"zz".to_vec(),
            };
            let resp = build_response(&r, None).unwrap();
            assert_eq!(resp.status(), status as u16);
            assert!(Reflect::get(&resp, &"body".into()).unwrap().is_null());
        }
        let r = HttpResponse { status_code: 42, reason_phrase: None, headers: vec![], body: vec![] };
        assert_eq!(code_of(&build_response(&r, None).unwrap_err()).as_deref(), Some("PROTOCOL_ERROR"));
    }
}
