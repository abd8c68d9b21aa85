//! Routing: which connection serves which user, one connection per user and client type, as
//! MPUSH's `LocalRouterManager` keeps it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use mpush_protocol::ClientType;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::conn::ConnCommand;

/// A connection's identity inside the gateway.
pub type ConnId = u64;

/// How to reach one connection task.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    /// The connection.
    pub id: ConnId,
    /// Commands to its task.
    pub tx: mpsc::Sender<ConnCommand>,
    /// The client's address.
    pub peer: SocketAddr,
    /// Device id from the handshake.
    pub device_id: String,
    /// Client type from the handshake.
    pub client_type: ClientType,
    /// Content bytes of the pushes in `tx` not yet taken by the connection
    /// (`[limits] max-queued-push-bytes`).
    pub(crate) queued_push_bytes: Arc<AtomicUsize>,
}

#[derive(Clone, Debug)]
struct Route {
    conn: ConnHandle,
    tags: Vec<String>,
}

/// One online user's connection, as `GET /users` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteInfo {
    /// Client type (`MOBILE`, `PC`, `WEB`, `UNKNOWN`).
    pub client_type: &'static str,
    /// Device id.
    pub device_id: String,
    /// The client's address.
    pub peer: String,
    /// Tags from the bind.
    pub tags: Vec<String>,
}

/// MPUSH's name of a client type.
pub fn client_type_name(t: ClientType) -> &'static str {
    match t {
        ClientType::Mobile => "MOBILE",
        ClientType::Pc => "PC",
        ClientType::Web => "WEB",
        ClientType::Unknown => "UNKNOWN",
    }
}

/// Users -> connections, by client type.
#[derive(Debug, Default)]
pub struct Router {
    users: Mutex<HashMap<String, HashMap<ClientType, Route>>>,
}

/// Splits MPUSH's bind tags string (`"vip,beta"`) into tags.
pub fn split_tags(tags: Option<&str>) -> Vec<String> {
    tags.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<ClientType, Route>>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes `user_id` (for the connection's client type) to `conn`; returns the connection
    /// it replaces, which must be kicked. That can be `conn` itself: a connection that fast
    /// connected again keeps its old route while its session forgot the user, and MPUSH kicks
    /// it when it binds that user again.
    pub fn bind(&self, user_id: &str, conn: ConnHandle, tags: Vec<String>) -> Option<ConnHandle> {
        let mut users = self.lock();
        let routes = users.entry(user_id.to_owned()).or_default();
        let old = routes.insert(conn.client_type, Route { conn, tags });
        old.map(|r| r.conn)
    }

    /// Replaces the tags of `user_id`'s route through connection `id` (a re-bind of the same
    /// user: MPUSH keeps the route and only takes the new tags).
    pub fn set_tags(&self, user_id: &str, id: ConnId, tags: Vec<String>) {
        if let Some(routes) = self.lock().get_mut(user_id) {
            for r in routes.values_mut().filter(|r| r.conn.id == id) {
                r.tags = tags.clone();
            }
        }
    }

    /// Removes the route of `user_id` if it still points to connection `id` (a newer bind
    /// elsewhere is kept).
    pub fn unbind(&self, user_id: &str, id: ConnId) {
        let mut users = self.lock();
        if let Some(routes) = users.get_mut(user_id) {
            routes.retain(|_, r| r.conn.id != id);
            if routes.is_empty() {
                users.remove(user_id);
            }
        }
    }

    /// The connections of one user (one per client type).
    pub fn lookup(&self, user_id: &str) -> Vec<ConnHandle> {
        self.lock().get(user_id).map(|r| r.values().map(|r| r.conn.clone()).collect()).unwrap_or_default()
    }

    /// Every bound user with its connections; with `tags`, only the connections bound with at
    /// least one of them.
    pub fn select(&self, tags: Option<&[String]>) -> Vec<(String, Vec<ConnHandle>)> {
        let users = self.lock();
        let mut out: Vec<(String, Vec<ConnHandle>)> = users
            .iter()
            .filter_map(|(user, routes)| {
                let conns: Vec<ConnHandle> = routes
                    .values()
                    .filter(|r| tags.is_none_or(|want| want.iter().any(|t| r.tags.contains(t))))
                    .map(|r| r.conn.clone())
                    .collect();
                (!conns.is_empty()).then(|| (user.clone(), conns))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Online users and their connections, sorted by user id.
    pub fn users(&self) -> Vec<(String, Vec<RouteInfo>)> {
        let users = self.lock();
        let mut out: Vec<(String, Vec<RouteInfo>)> = users
            .iter()
            .map(|(user, routes)| {
                let mut infos: Vec<RouteInfo> = routes
                    .values()
                    .map(|r| RouteInfo {
                        client_type: client_type_name(r.conn.client_type),
                        device_id: r.conn.device_id.clone(),
                        peer: r.conn.peer.to_string(),
                        tags: r.tags.clone(),
                    })
                    .collect();
                infos.sort_by(|a, b| a.client_type.cmp(b.client_type));
                (user.clone(), infos)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Number of online users.
    pub fn user_count(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(id: ConnId, t: ClientType) -> ConnHandle {
        let (tx, _) = mpsc::channel(1);
        ConnHandle {
            id,
            tx,
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            device_id: format!("d{id}"),
            client_type: t,
            queued_push_bytes: Default::default(),
        }
    }

    #[test]
    fn same_user_same_type_replaces_and_reports_the_old_connection() {
        let r = Router::default();
        assert!(r.bind("u", handle(1, ClientType::Web), vec![]).is_none());
        assert!(r.bind("u", handle(2, ClientType::Mobile), vec![]).is_none());
        assert_eq!(r.bind("u", handle(3, ClientType::Web), vec![]).map(|c| c.id), Some(1));
        // Binding again through the route's own connection reports that connection.
        assert_eq!(r.bind("u", handle(3, ClientType::Web), vec![]).map(|c| c.id), Some(3));
        assert_eq!(r.lookup("u").len(), 2);
        // The kicked connection's later unbind leaves the new route alone.
        r.unbind("u", 1);
        assert_eq!(r.lookup("u").len(), 2);
        r.unbind("u", 3);
        r.unbind("u", 2);
        assert!(r.lookup("u").is_empty());
        assert_eq!(r.user_count(), 0);
    }

    #[test]
    fn tags_select_connections() {
        let r = Router::default();
        r.bind("a", handle(1, ClientType::Web), split_tags(Some("vip, beta")));
        r.bind("b", handle(2, ClientType::Web), split_tags(None));
        let vip = r.select(Some(&["vip".to_owned()]));
        assert_eq!(vip.len(), 1);
        assert_eq!(vip[0].0, "a");
        assert_eq!(r.select(None).len(), 2);
        assert_eq!(r.users()[0].1[0].tags, vec!["vip".to_owned(), "beta".to_owned()]);
        r.set_tags("a", 1, split_tags(Some("gold")));
        r.set_tags("a", 2, split_tags(Some("ignored: not this connection's route")));
        assert_eq!(r.users()[0].1[0].tags, vec!["gold".to_owned()]);
    }
}
