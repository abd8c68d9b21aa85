//! Health, readiness, metrics and static files over real HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[tokio::test]
async fn healthz_and_readyz_follow_the_upstreams() {
    let up = FakeUpstream::start().await;
    let live = start(config(&[&up.addr])).await;
    assert_eq!(http_get(live.addr, "/healthz").await.0, 200);
    let (status, _, body) = http_get(live.addr, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(body).unwrap(), format!("ready\nupstreams: {}\n", up.addr));

    let dead = start(config(&[&dead_addr().await])).await;
    assert_eq!(http_get(dead.addr, "/healthz").await.0, 200);
    assert_eq!(http_get(dead.addr, "/readyz").await.0, 503);
    let none = start(config(&[])).await;
    assert_eq!(http_get(none.addr, "/readyz").await.0, 503);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let up = FakeUpstream::start().await;
    let proxy = start(config(&[&up.addr])).await;
    let (status, head, body) = http_get(proxy.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    let text = String::from_utf8(body).unwrap();
    for family in [
        "# TYPE mpush_proxy_connections gauge",
        "# TYPE mpush_proxy_connections_total counter",
        "# TYPE mpush_proxy_packets_total counter",
        "# TYPE mpush_proxy_bytes_total counter",
        "# TYPE mpush_proxy_upstream_connect_failures_total counter",
        "# TYPE mpush_proxy_closes_total counter",
        "# TYPE mpush_proxy_handshake_rejections_total counter",
    ] {
        assert!(text.contains(family), "{family} missing in\n{text}");
    }
    assert!(text.contains("mpush_proxy_connections 0\n"));
    assert!(text.contains(&format!("mpush_proxy_upstream_connect_failures_total{{upstream=\"{}\"}} 0\n", up.addr)));
    // Every sample line is `name{labels} integer`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<u64>().is_ok(), "bad sample {line}");
    }
}

#[tokio::test]
async fn static_files_with_content_types_and_no_traversal() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("pkg")).unwrap();
    std::fs::write(www.join("index.html"), "<h1>console</h1>").unwrap();
    std::fs::write(www.join("pkg/client_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(www.join("app.mjs"), "export {}").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
    let mut cfg = config(&[]);
    cfg.www = Some(www);
    let proxy = start(cfg).await;

    let (status, head, body) = http_get(proxy.addr, "/").await;
    assert_eq!((status, body.as_slice()), (200, &b"<h1>console</h1>"[..]));
    assert!(head.contains("content-type: text/html"), "{head}");
    let (status, head, body) = http_get(proxy.addr, "/pkg/client_bg.wasm").await;
    assert_eq!((status, body.as_slice()), (200, &b"\0asm\x01\0\0\0"[..]));
    assert!(head.contains("content-type: application/wasm"), "{head}");
    let (_, head, _) = http_get(proxy.addr, "/app.mjs").await;
    assert!(head.contains("content-type: text/javascript"), "{head}");
    for bad in ["/../secret.txt", "/%2e%2e/secret.txt", "/pkg/..%2f..%2fsecret.txt", "/missing.js"] {
        let (status, _, body) = http_get(proxy.addr, bad).await;
        assert_eq!(status, 404, "{bad}");
        assert!(!body.starts_with(b"secret"), "{bad}");
    }
    // The WebSocket path without an upgrade is not a file.
    assert_eq!(http_get(proxy.addr, "/mpush").await.0, 426);
}
