//! The HTTP proxy (cmd 12) against a local upstream server: allowlist, forwarding headers,
//! redirects re-checked, DNS mapping, generated statuses, and MPUSH's disabled behaviour.

mod common;

use common::{start, upstream_server, WAIT};
use mpush_native_client::{Closed, NativeClient};
use mpush_protocol::{ClientEvent, HttpMethod, HttpRequest, HttpResponse};

async fn fetch(
    c: &mut NativeClient,
    method: HttpMethod,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let req = HttpRequest {
        method,
        uri: uri.to_owned(),
        headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        body: body.to_vec(),
    };
    let id = c.http_request(req).await.expect("request");
    let ev = c
        .wait_for(|e| matches!(e, ClientEvent::HttpResponse { request, .. } if *request == id))
        .await
        .expect("response");
    let ClientEvent::HttpResponse { response, .. } = ev else { unreachable!() };
    response
}

fn json_body(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("json body")
}

#[tokio::test]
async fn proxy_reaches_allowlisted_hosts_only() {
    let (up, mut seen) = upstream_server().await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec![format!("127.0.0.1:{}", up.port()), "api.test".into(), "127.0.0.1:1".into()];
        c.http.dns_mapping.insert("api.test".into(), vec![up.to_string()]);
        c.http.max_content_length = 16 * 1024;
    })
    .await;
    let mut c = gw.connect("dev-http").await;
    let local = c.local_addr().expect("local addr");

    // GET with x-forwarded-for / x-forwarded-port; readTimeout is consumed, a forged
    // x-forwarded-for is replaced.
    let r = fetch(
        &mut c,
        HttpMethod::Get,
        &format!("http://{up}/echo?q=1"),
        &[("readTimeout", "8000"), ("x-forwarded-for", "6.6.6.6"), ("accept", "application/json")],
        b"",
    )
    .await;
    assert_eq!(r.status_code, 200);
    assert!(r.headers.iter().any(|(k, v)| k == "x-upstream" && v == "yes"), "{:?}", r.headers);
    let seen_req = seen.recv().await.expect("seen");
    let h = |name: &str| seen_req.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(h("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(h("x-forwarded-port"), Some(local.port().to_string()));
    assert_eq!(h("readtimeout"), None);
    assert_eq!(h("accept").as_deref(), Some("application/json"));
    assert_eq!(json_body(&r)["path"], "/echo");

    // POST body goes through.
    let r =
        fetch(&mut c, HttpMethod::Post, &format!("http://{up}/echo"), &[("content-type", "text/plain")], b"payload")
            .await;
    assert_eq!(
        (r.status_code, json_body(&r)["method"].as_str(), json_body(&r)["body"].as_str()),
        (200, Some("POST"), Some("payload"))
    );

    // A host not on the allowlist: 403, nothing reaches it.
    let r = fetch(&mut c, HttpMethod::Get, &format!("http://localhost:{}/echo", up.port()), &[], b"").await;
    assert_eq!(r.status_code, 403);

    // Redirects are followed, and each target is checked again.
    let r = fetch(&mut c, HttpMethod::Get, &format!("http://{up}/redirect"), &[], b"").await;
    assert_eq!((r.status_code, json_body(&r)["path"].as_str()), (200, Some("/echo")));
    let r = fetch(&mut c, HttpMethod::Get, &format!("http://{up}/redirect-to?http://169.254.169.254/latest"), &[], b"")
        .await;
    assert_eq!(r.status_code, 403);

    // dns-mapping: the allowlisted name is rewritten to the mapped address, Host included (MPUSH).
    let r = fetch(&mut c, HttpMethod::Get, "http://api.test/echo", &[], b"").await;
    assert_eq!(r.status_code, 200);
    assert_eq!(json_body(&r)["headers"]["host"], "127.0.0.1");

    // Generated statuses: empty uri 400, readTimeout elapsed 408, body over the cap 502,
    // cannot connect 504.
    let r = fetch(&mut c, HttpMethod::Get, &format!("http://{up}/slow"), &[("readTimeout", "300")], b"").await;
    assert_eq!(r.status_code, 408);
    let r = fetch(&mut c, HttpMethod::Get, &format!("http://{up}/big"), &[], b"").await;
    assert_eq!(r.status_code, 502);
    let r = fetch(&mut c, HttpMethod::Get, "http://127.0.0.1:1/", &[], b"").await;
    assert_eq!(r.status_code, 504);
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn proxy_disabled_closes_the_connection_like_mpush() {
    let (up, _seen) = upstream_server().await;
    let gw = start(|_| {}).await;
    let mut c = gw.connect("dev-noproxy").await;
    let req = HttpRequest { method: HttpMethod::Get, uri: format!("http://{up}/echo"), headers: vec![], body: vec![] };
    c.http_request(req).await.expect("request");
    let closed = tokio::time::timeout(WAIT, c.closed()).await.expect("closed in time");
    assert_eq!(closed, Closed::ByPeer);
    gw.handle.shutdown().await;
}
