//! The ZooKeeper registry of an MPUSH cluster (`--zk`): watches the connection servers MPUSH
//! registers and keeps the upstream set in step.
//!
//! MPUSH 0.8.0 registers each connection server as an ephemeral node
//! `/<mp.zk.namespace>/cluster/cs/<uuid>` holding `{"attrs":{"weight":1},"host":..,"port":..}`,
//! readable only with the digest credentials `mp.zk.digest` (its ACL is the creator's). The
//! children of that node are listed with a one-shot watch and listed again on every change.
//!
//! When ZooKeeper cannot be reached the last known set keeps serving (it is never cleared for
//! lack of a registry); the status goes to the log, `/readyz` and the metrics, and the session
//! is re-established with a doubling backoff. A session that expires is replaced.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use tracing::{info, warn};
use zookeeper_client as zk;

use crate::config::Config;
use crate::metrics::{Metrics, RegistryEvent};
use crate::upstream::{Registered, Upstreams, MAX_WEIGHT};

/// First wait before reconnecting to an unreachable registry; doubles up to `zk_reconnect_max`.
const RECONNECT_MIN: Duration = Duration::from_millis(250);

/// What the discovery task needs from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// ZooKeeper's connect string, `host:port,host:port`.
    servers: String,
    /// The parent node of the connection servers, e.g. `/mpush/cluster/cs`.
    path: String,
    digest: String,
    weight_attribute: String,
    session_timeout: Duration,
    reconnect_max: Duration,
    max_nodes: usize,
}

impl Settings {
    /// `None` when no registry is configured.
    pub(crate) fn from_config(c: &Config) -> Option<Settings> {
        (!c.zk.is_empty()).then(|| Settings {
            servers: c.zk.join(","),
            path: c.zk_servers_path(),
            digest: c.zk_digest.clone(),
            weight_attribute: c.zk_weight_attribute.clone(),
            session_timeout: c.zk_session_timeout,
            reconnect_max: c.zk_reconnect_max.max(RECONNECT_MIN),
            max_nodes: c.zk_max_nodes,
        })
    }
}

/// Why a ZooKeeper session ended (then a new one is set up after the backoff).
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    /// No session could be established or it was lost for good.
    #[error("{0}")]
    Zk(#[from] zk::Error),
    /// The session reached a terminal state (expired, closed, authentication failed).
    #[error("ZooKeeper session {0}")]
    State(zk::SessionState),
    /// The digest credentials do not allow reading the registry.
    #[error("not allowed to read {0} (is zk_digest MPUSH's mp.zk.digest?)")]
    NoAuth(String),
    /// Establishing the session took longer than allowed.
    #[error("no ZooKeeper session within {0:?}")]
    ConnectTimeout(Duration),
}

/// Watches the registry until the task is dropped (it never returns).
pub(crate) async fn run(settings: Settings, upstreams: Arc<Upstreams>, metrics: Arc<Metrics>) {
    let mut backoff = RECONNECT_MIN;
    let mut warned = HashSet::new();
    loop {
        let end = session(&settings, &upstreams, &metrics, &mut backoff, &mut warned).await;
        let kind = if matches!(end, SessionEnd::State(_)) { RegistryEvent::SessionLost } else { RegistryEvent::Error };
        metrics.registry_event(kind, 1);
        upstreams.set_registry_status(false, false, Some(end.to_string()));
        warn!(
            zk = %settings.servers,
            error = %end,
            retry_in = ?backoff,
            serving = ?upstreams.listed(),
            "ZooKeeper registry unreachable: serving the last known connection servers"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(settings.reconnect_max);
    }
}

/// One ZooKeeper session: connect, then list and watch until the session ends for good.
async fn session(
    s: &Settings,
    upstreams: &Upstreams,
    metrics: &Metrics,
    backoff: &mut Duration,
    warned: &mut HashSet<String>,
) -> SessionEnd {
    let mut connector = zk::Client::connector().with_session_timeout(s.session_timeout);
    if !s.digest.is_empty() {
        connector = connector.with_auth("digest", s.digest.as_bytes());
    }
    // The client gives up after about the session timeout by itself; this bounds it anyway.
    let limit = s.session_timeout.saturating_mul(2);
    let client = match tokio::time::timeout(limit, connector.connect(&s.servers)).await {
        Ok(Ok(c)) => c,
        Ok(Err(zk::Error::Timeout)) => return SessionEnd::ConnectTimeout(s.session_timeout),
        Ok(Err(e)) => return e.into(),
        Err(_) => return SessionEnd::ConnectTimeout(limit),
    };
    metrics.registry_event(RegistryEvent::Connected, 1);
    info!(zk = %s.servers, path = %s.path, "ZooKeeper registry connected");
    let mut state = client.state_watcher();
    loop {
        let watcher = match list(&client, s, upstreams, metrics, warned).await {
            Ok(w) => {
                upstreams.set_registry_status(true, true, None);
                *backoff = RECONNECT_MIN;
                w
            }
            Err(zk::Error::ConnectionLoss) => None,
            Err(zk::Error::NoAuth) => return SessionEnd::NoAuth(s.path.clone()),
            Err(e) => return e.into(),
        };
        if let Some(w) = watcher {
            // The one-shot watch fires on a node change or the end of the session; the state
            // stream tells about a lost connection at once (the watch stays armed meanwhile).
            let changed = w.changed();
            tokio::pin!(changed);
            loop {
                tokio::select! {
                    event = &mut changed => {
                        if event.session_state.is_terminated() {
                            return SessionEnd::State(event.session_state);
                        }
                        break;
                    }
                    st = state.changed() => match st {
                        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {}
                        st if st.is_terminated() => return SessionEnd::State(st),
                        _ => break,
                    },
                }
            }
        }
        // A node change lists again at once; a lost connection (or a request lost with it)
        // waits for the client to reconnect within the session; until then the last known
        // set serves.
        if let Err(end) = wait_connected(&mut state, s, upstreams, metrics).await {
            return end;
        }
    }
}

/// Waits until the session is connected again; `Err` when it ended instead.
async fn wait_connected(
    state: &mut zk::StateWatcher,
    s: &Settings,
    upstreams: &Upstreams,
    metrics: &Metrics,
) -> Result<(), SessionEnd> {
    let mut reported = false;
    loop {
        match state.peek_state() {
            zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                if reported {
                    metrics.registry_event(RegistryEvent::Connected, 1);
                    info!(zk = %s.servers, "ZooKeeper registry reconnected");
                }
                return Ok(());
            }
            st if st.is_terminated() => return Err(SessionEnd::State(st)),
            _ if !reported => {
                reported = true;
                metrics.registry_event(RegistryEvent::Disconnected, 1);
                upstreams.set_registry_status(false, false, Some("connection to ZooKeeper lost".into()));
                warn!(
                    zk = %s.servers,
                    serving = ?upstreams.listed(),
                    "ZooKeeper registry disconnected: serving the last known connection servers"
                );
            }
            _ => {}
        }
        state.changed().await;
    }
}

/// Lists the connection servers, applies them, and returns the watch for the next change
/// (`None` if the watch could not be set, which only happens with a lost connection).
async fn list(
    client: &zk::Client,
    s: &Settings,
    upstreams: &Upstreams,
    metrics: &Metrics,
    warned: &mut HashSet<String>,
) -> Result<Option<zk::OneshotWatcher>, zk::Error> {
    let (mut children, watcher) = loop {
        match client.get_and_watch_children(&s.path).await {
            Ok((children, _, watcher)) => break (children, watcher),
            Err(zk::Error::NoNode) => {
                // No server has registered yet: wait for the parent node to appear.
                apply(upstreams, &[]);
                let (stat, watcher) = client.check_and_watch_stat(&s.path).await?;
                if stat.is_none() {
                    return Ok(Some(watcher));
                }
                // Created between the two calls: list it now.
            }
            Err(e) => return Err(e),
        }
    };
    children.sort();
    if children.len() > s.max_nodes {
        warn!(
            registered = children.len(),
            used = s.max_nodes,
            "more connection servers than zk_max_nodes; ignoring the rest"
        );
        children.truncate(s.max_nodes);
    }
    // Pipelined: the requests are queued when the futures are created.
    let reads: Vec<_> = children.iter().map(|c| client.get_data(&format!("{}/{c}", s.path))).collect();
    let mut nodes = Vec::with_capacity(children.len());
    for (child, read) in children.iter().zip(join_all(reads).await) {
        let data = match read {
            Ok((data, _)) => data,
            Err(zk::Error::NoNode) => continue, // left between the list and the read
            Err(e) => return Err(e),
        };
        match parse_node(&data, &s.weight_attribute) {
            Ok(n) if !nodes.iter().any(|x: &Registered| x.addr == n.addr) => nodes.push(n),
            Ok(_) => {}
            Err(why) => {
                if warned.insert(child.clone()) {
                    metrics.registry_event(RegistryEvent::BadNode, 1);
                    warn!(node = %format!("{}/{child}", s.path), error = why, "registry entry is not a usable connection server");
                }
            }
        }
    }
    warned.retain(|w| children.contains(w));
    apply(upstreams, &nodes);
    Ok(Some(watcher))
}

fn apply(upstreams: &Upstreams, nodes: &[Registered]) {
    let (added, removed) = upstreams.set_registered(nodes);
    if !added.is_empty() || !removed.is_empty() {
        info!(?added, ?removed, nodes = ?upstreams.listed(), "connection servers changed");
    }
}

/// Reads one registered connection server: `{"host":..,"port":..,"attrs":{..}}` (more fields
/// are ignored). The weight is the attribute `weight_attribute` when it is a positive number.
pub(crate) fn parse_node(data: &[u8], weight_attribute: &str) -> Result<Registered, &'static str> {
    let v: Value = serde_json::from_slice(data).map_err(|_| "not JSON")?;
    let host = v.get("host").and_then(Value::as_str).ok_or("no host")?;
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if !valid_host {
        return Err("bad host");
    }
    let port = match v.get("port") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let port = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0).ok_or("bad port")?;
    let weight = match v.get("attrs").and_then(|a| a.get(weight_attribute)) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let weight = match weight {
        Some(w) if w.is_finite() && w > 0.0 => w.round().clamp(1.0, f64::from(MAX_WEIGHT)) as u32,
        _ => 1,
    };
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Registered { addr, weight })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_mpush_registers() {
        let n = parse_node(br#"{"attrs":{"weight":1},"host":"127.0.0.1","port":43237}"#, "weight").unwrap();
        assert_eq!(n, Registered { addr: "127.0.0.1:43237".into(), weight: 1 });
        let n = parse_node(br#"{"attrs":{"weight":"3"},"host":"mpush-2.internal","port":"3000","x":1}"#, "weight");
        assert_eq!(n.unwrap(), Registered { addr: "mpush-2.internal:3000".into(), weight: 3 });
        let n = parse_node(br#"{"host":"::1","port":3000,"attrs":{"weight":1e9}}"#, "weight").unwrap();
        assert_eq!(n, Registered { addr: "[::1]:3000".into(), weight: MAX_WEIGHT });
        // Weight ignored when not asked for, missing, zero, negative or not a number.
        for (json, attr) in [
            (r#"{"host":"a","port":1,"attrs":{"weight":5}}"#, ""),
            (r#"{"host":"a","port":1}"#, "weight"),
            (r#"{"host":"a","port":1,"attrs":{"weight":0}}"#, "weight"),
            (r#"{"host":"a","port":1,"attrs":{"weight":-2}}"#, "weight"),
            (r#"{"host":"a","port":1,"attrs":{"weight":"heavy"}}"#, "weight"),
        ] {
            assert_eq!(parse_node(json.as_bytes(), attr).unwrap().weight, 1, "{json}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_server() {
        for bad in [
            &b"\xff\xfe"[..],
            b"[]",
            b"{}",
            br#"{"host":"","port":1}"#,
            br#"{"host":"a b","port":1}"#,
            br#"{"host":"a/b","port":1}"#,
            br#"{"host":"a","port":0}"#,
            br#"{"host":"a","port":70000}"#,
            br#"{"host":"a","port":-1}"#,
            br#"{"host":"a","port":1.5}"#,
            br#"{"host":7,"port":1}"#,
        ] {
            assert!(parse_node(bad, "weight").is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse_node(format!(r#"{{"host":"{}","port":1}}"#, "a".repeat(300)).as_bytes(), "w").is_err());
    }
}
