//! A slow reader: a client that completes the handshake, binds a user and then never reads,
//! while the push API sends it many large pushes. The gateway must refuse pushes it cannot
//! deliver (`failure`) instead of queueing them without limit, close the connection once a
//! write stalls for `[limits] write-timeout`, and keep serving other clients meanwhile. Time
//! bounds are generous (`WAIT`); none is a pass criterion beyond "it happened". Small pushes,
//! which `max-queued-push-bytes` barely counts, are bounded by `[limits] max-queued-commands`.

mod common;

use base64::Engine as _;
use std::time::Duration;

use common::{api, bind, start, RawClient, TestGateway, WAIT};
use mpush_protocol::message::{BindUser, Message};
use mpush_protocol::{ClientEvent, Command};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// Content of one push: incompressible, so the socket really fills.
const PUSH_BYTES: usize = 128 * 1024;
/// Pushes fired at the slow reader at once, one wave.
const WAVE: usize = 8;
/// Waves before the test gives up waiting for the close: 100 MiB, far beyond what socket
/// buffers hold.
const ROUNDS: usize = 100;
/// `[limits] max-queued-push-bytes` for the test: two pushes.
const MAX_QUEUED: usize = 2 * PUSH_BYTES;

fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// A raw client, handshaked and bound as `user`, that reads nothing from here on.
async fn silent_client(gw: &TestGateway, device: &str, user: &str) -> RawClient {
    let mut c = RawClient::connect(gw.handle.mpush_addr()).await;
    c.handshake(&gw.public_key(), device).await;
    let bind_body = BindUser { user_id: user.into(), alias: None, tags: None }.encode();
    c.send_sealed(Command::BIND, 2, &bind_body).await;
    assert_eq!(c.recv(WAIT).await.expect("bind answer").cmd, Command::OK);
    c
}

async fn online(api_addr: std::net::SocketAddr, user: &str) -> bool {
    let (_, body) = api(api_addr, "GET", "/users", None, None).await;
    body["users"].as_array().is_some_and(|u| u.iter().any(|e| e["userId"] == user))
}

#[tokio::test]
async fn a_client_that_never_reads_gets_pushes_refused_then_is_closed_while_others_are_served() {
    let gw = start(|c| {
        c.limits.max_queued_push_bytes = MAX_QUEUED;
        c.limits.write_timeout = 3_000;
    })
    .await;
    let api_addr = gw.handle.api_addr();

    let mut slow = silent_client(&gw, "dev-slow", "slow").await;
    let mut fast = gw.connect("dev-fast").await;
    bind(&mut fast, "fast", None).await;

    // From here on the slow client reads nothing. Pushes go in waves of concurrent API calls
    // until the gateway gives up on the connection.
    let (mut offered, mut delivered, mut refused_while_open) = (0usize, 0usize, false);
    for round in 0.. {
        assert!(round < ROUNDS, "the slow reader's connection was never closed ({delivered} pushes written)");
        let wave: Vec<_> = (0..WAVE)
            .map(|i| {
                let seed = (round * WAVE + i) as u64 + 1;
                let content = base64::engine::general_purpose::STANDARD.encode(noise(PUSH_BYTES, seed));
                tokio::spawn(async move {
                    let body = json!({"userId": "slow", "contentBase64": content, "ack": "none"});
                    let (status, body) = api(api_addr, "POST", "/push", Some(body), None).await;
                    assert_eq!(status, 200, "{body}");
                    body["results"][0]["result"].as_str().unwrap_or_default().to_owned()
                })
            })
            .collect();
        offered += WAVE;

        // Meanwhile another client gets its pushes.
        let text = format!("still here {round}");
        let (_, body) = gw.push(json!({"userId": "fast", "content": text, "ack": "auto"})).await;
        assert_eq!(body["results"], json!([{"userId": "fast", "result": "success", "code": 1}]), "round {round}");
        let ev = fast.wait_for(|e| matches!(e, ClientEvent::Push(_))).await.expect("push");
        assert!(matches!(&ev, ClientEvent::Push(m) if m.content == text.as_bytes()), "{ev:?}");

        let mut results = Vec::new();
        for call in wave {
            results.push(tokio::time::timeout(WAIT, call).await.expect("every push answered").expect("api call"));
        }
        assert!(results.iter().all(|r| r == "success" || r == "failure"), "{results:?}");
        delivered += results.iter().filter(|r| *r == "success").count();
        // A connection's route is gone before the pushes it had queued fail, so a failure
        // while the user is still online is a refusal: the push was not queued.
        let open = online(api_addr, "slow").await;
        refused_while_open |= open && results.iter().any(|r| r == "failure");
        if !open {
            break;
        }
    }
    assert!(refused_while_open, "no push was refused while the slow connection was open: all were queued");
    assert!(delivered < offered, "{delivered} of {offered} pushes written to a client that never reads");

    // The slow client finds what the kernel held for it, then the end of the connection.
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(WAIT, slow.stream.read(&mut buf)).await.expect("connection closed") {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
    }
    // What reached it is the pushes reported written plus at most the one whose write stalled:
    // a refused push ("failure") was never sent.
    assert!(received <= (delivered + 1) * (PUSH_BYTES + 64), "{received} bytes reached the slow client");

    // The other client is still served after the close.
    let (_, body) = gw.push(json!({"userId": "fast", "content": "after", "ack": "none"})).await;
    assert_eq!(body["results"], json!([{"userId": "fast", "result": "success", "code": 1}]));
    gw.handle.shutdown().await;
}

/// `[limits] max-queued-commands` for the test below.
const MAX_COMMANDS: usize = 2;
/// Small pushes fired at once at the stalled connection: more than `MAX_COMMANDS`, far fewer
/// than the default 1024, and far below `max-queued-push-bytes` in content.
const SMALL: usize = 8;
/// A push not answered within this long while the client reads nothing is stuck behind a
/// write the kernel will not take (an unblocked 128 KiB write to loopback takes microseconds).
const STALLED_AFTER: Duration = Duration::from_secs(2);
/// "At once": a refusal must come well within this, whereas a queued push waits for
/// `timeoutMs` (60 s below) or the connection's end.
const REFUSED_WITHIN: Duration = Duration::from_secs(5);

/// `POST /push` of `content` to `user` without ack, answered when written (or refused), with a
/// `timeoutMs` long enough that a push left in the queue stays unanswered for the whole test.
fn push_in_background(
    api_addr: std::net::SocketAddr,
    user: &'static str,
    content: String,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let body = json!({"userId": user, "contentBase64": content, "ack": "none", "timeoutMs": 60_000});
        let (status, body) = api(api_addr, "POST", "/push", Some(body), None).await;
        assert_eq!(status, 200, "{body}");
        body["results"][0]["result"].as_str().unwrap_or_default().to_owned()
    })
}

#[tokio::test]
async fn pushes_beyond_max_queued_commands_fail_at_once_while_the_connection_is_open() {
    let gw = start(|c| {
        c.limits.max_queued_commands = MAX_COMMANDS;
        // Neither the byte bound nor the write timeout may answer for the command bound.
        c.limits.max_queued_push_bytes = 64 * 1024 * 1024;
        c.limits.write_timeout = 120_000;
        c.drain_timeout = 1_000;
    })
    .await;
    let api_addr = gw.handle.api_addr();
    let slow = silent_client(&gw, "dev-stalled", "stalled").await;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

    // Large pushes one at a time until one is not written: the socket buffers are full and the
    // connection's task is stuck in that write, taking nothing from its queue.
    let mut stalled = None;
    for n in 0..ROUNDS * WAVE {
        let mut call = push_in_background(api_addr, "stalled", encode(&noise(PUSH_BYTES, n as u64 + 1)));
        match tokio::time::timeout(STALLED_AFTER, &mut call).await {
            Ok(result) => assert_eq!(result.expect("api call"), "success", "push {n} while the queue is empty"),
            Err(_) => {
                stalled = Some(call);
                break;
            }
        }
    }
    let stalled = stalled.expect("every push was written to a client that never reads");

    // Small pushes at once: `MAX_COMMANDS` fit in the queue and wait; the others are refused
    // at once. With the default of 1024 all of them would wait.
    let started = tokio::time::Instant::now();
    let calls: Vec<_> =
        (0..SMALL).map(|i| push_in_background(api_addr, "stalled", encode(format!("small {i}").as_bytes()))).collect();
    let refused_count = SMALL - MAX_COMMANDS;
    while calls.iter().filter(|c| c.is_finished()).count() < refused_count {
        assert!(
            started.elapsed() < REFUSED_WITHIN,
            "{} of {SMALL} small pushes answered within {REFUSED_WITHIN:?}, expected {refused_count} refusals",
            calls.iter().filter(|c| c.is_finished()).count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // No more than that: the rest are queued, not answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (answered, queued): (Vec<_>, Vec<_>) = calls.into_iter().partition(|c| c.is_finished());
    assert_eq!((answered.len(), queued.len()), (refused_count, MAX_COMMANDS));
    for call in answered {
        assert_eq!(call.await.expect("api call"), "failure");
    }
    // The refusals came while the connection was open and still stuck in its write.
    assert!(online(api_addr, "stalled").await, "the stalled connection was closed: failures were not refusals");
    assert!(!stalled.is_finished(), "the large push's write completed: the queue was being taken");

    // The client goes away with its unread bytes: the stuck write fails, and so do the pushes
    // it had in its queue (never written).
    drop(slow);
    assert_eq!(tokio::time::timeout(WAIT, stalled).await.expect("answered").expect("api call"), "failure");
    for call in queued {
        assert_eq!(tokio::time::timeout(WAIT, call).await.expect("answered").expect("api call"), "failure");
    }
    gw.handle.shutdown().await;
}
