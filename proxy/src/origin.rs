//! Web origins as browsers send them in `Origin`, and the rule deciding which pages may open a
//! WebSocket. The rule never looks at the request's `Host` header: a non-browser attacker sets
//! Host freely, and a DNS-rebinding page gets its own host name into Host, so "Origin equals
//! Host" would let both through. The proxy compares against origins it was configured with.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A parsed origin: scheme, lower-cased host (IPv6 in brackets), port (explicit or the
/// scheme's default), so that `https://A.example:443` equals `https://a.example`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    https: bool,
    host: String,
    port: u16,
}

/// Splits `host[:port]` (IPv6 as `[addr][:port]`); the host lower-cased, the port if given.
/// `None` for anything else: user info, paths, empty or bad ports, stray characters.
fn authority(s: &str) -> Option<(String, Option<u16>)> {
    let bad = |c: char| c.is_ascii_whitespace() || c.is_ascii_control() || "/?#@\\".contains(c);
    if s.is_empty() || s.chars().any(bad) {
        return None;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        let port = if after.is_empty() { None } else { Some(after.strip_prefix(':')?) };
        (&s[..v6.len() + 2], port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || (!host.starts_with('[') && host.contains(['[', ']'])) {
        return None;
    }
    let port = match port {
        None => None,
        // Digits only: `u16::from_str` would also take a leading '+'.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

impl Origin {
    /// Parses `http://host[:port]` or `https://host[:port]` (a trailing `/` is tolerated, as in
    /// configuration). The string `null` and other schemes give `None`.
    pub(crate) fn parse(s: &str) -> Option<Origin> {
        let s = s.trim().trim_end_matches('/');
        let (https, rest) = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
            _ => return None,
        };
        let (host, port) = authority(rest)?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        (port != 0).then_some(Origin { https, host, port })
    }

    /// Whether a `Host` header names this origin's host and port (no port: the scheme's
    /// default, since TLS may end in front of the proxy). Only demo mode checks Host (the
    /// push API); the WebSocket rule ignores it.
    #[cfg(any(test, feature = "demo"))]
    pub(crate) fn matches_host(&self, host: &str) -> bool {
        authority(host.trim()).is_some_and(|(h, p)| h == self.host && p.unwrap_or(self.default_port()) == self.port)
    }

    fn default_port(&self) -> u16 {
        if self.https {
            443
        } else {
            80
        }
    }

    /// Whether the host is `localhost`, an address in 127.0.0.0/8 or `[::1]`. A page with such an
    /// origin runs from the user's own machine: DNS rebinding cannot produce one, because the
    /// origin holds the name the attacker's page was loaded from, not the address it resolved to.
    pub(crate) fn is_loopback(&self) -> bool {
        if self.host == "localhost" {
            return true;
        }
        if let Some(v6) = self.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
        }
        self.host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.port == self.default_port() {
            write!(f, "{scheme}://{}", self.host)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The WebSocket origin rule (for requests that carry an `Origin` header):
/// * an `allowed_origins` entry equal to it, or `*`, allows it;
/// * so does `public_origin`, the origin the proxy's own pages are served from;
/// * with neither configured, only loopback origins are allowed (a local demo or development
///   page), so an unconfigured proxy on a public address refuses every browser page elsewhere.
pub(crate) fn allowed(allowed: &[String], public: Option<&Origin>, origin: &str) -> bool {
    if allowed.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some(origin) = Origin::parse(origin) else { return false };
    match public {
        Some(p) => *p == origin,
        None => allowed.is_empty() && origin.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let o = Origin::parse("HTTPS://Push.Example.com").unwrap();
        assert_eq!(o, Origin::parse("https://push.example.com:443/").unwrap());
        assert_eq!(o.to_string(), "https://push.example.com");
        assert_eq!(Origin::parse("http://[::1]:8080").unwrap().to_string(), "http://[::1]:8080");
        for bad in [
            "null",
            "ftp://a",
            "https://",
            "https://a/b",
            "https://u@a",
            "https://a:",
            "https://a:+1",
            "https://a:0",
            "https://a:70000",
            "https://[::1",
            "https://[nope]",
            "https://a b",
            "https://a]",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn host_headers() {
        let o = Origin::parse("https://push.example.com").unwrap();
        assert!(o.matches_host("push.example.com"));
        assert!(o.matches_host("PUSH.example.com:443"));
        assert!(!o.matches_host("push.example.com:8443"));
        assert!(!o.matches_host("evil.example"));
        assert!(!o.matches_host(""));
        let l = Origin::parse("http://127.0.0.1:8080").unwrap();
        assert!(l.matches_host("127.0.0.1:8080"));
        assert!(!l.matches_host("127.0.0.1"));
        assert!(Origin::parse("http://[::1]:8080").unwrap().matches_host("[::1]:8080"));
    }

    #[test]
    fn loopback() {
        for o in ["http://localhost:3000", "http://127.0.0.1:8080", "https://127.9.9.9", "http://[::1]:1"] {
            assert!(Origin::parse(o).unwrap().is_loopback(), "{o}");
        }
        for o in ["http://localhost.evil.example", "http://10.0.0.1", "http://[::2]", "http://127.0.0.1.nip.io"] {
            assert!(!Origin::parse(o).unwrap().is_loopback(), "{o}");
        }
    }

    #[test]
    fn the_origin_rule() {
        let public = Origin::parse("https://push.example.com").unwrap();
        let none: &[String] = &[];
        // The public origin, whatever Host the request claims (Host is not an input).
        assert!(allowed(none, Some(&public), "https://push.example.com"));
        assert!(!allowed(none, Some(&public), "https://evil.example"));
        assert!(!allowed(none, Some(&public), "http://push.example.com"));
        assert!(!allowed(none, Some(&public), "http://127.0.0.1:8080"));
        // Unset: loopback pages only.
        assert!(allowed(none, None, "http://127.0.0.1:8080"));
        assert!(allowed(none, None, "http://localhost:5173"));
        assert!(!allowed(none, None, "https://push.example.com"));
        assert!(!allowed(none, None, "null"));
        // A list: its entries, plus the public origin when set; no loopback default.
        let list = vec!["https://app.example.com/".to_owned()];
        assert!(allowed(&list, None, "https://app.example.com"));
        assert!(!allowed(&list, None, "https://app.example.com.evil"));
        assert!(!allowed(&list, None, "http://127.0.0.1:8080"));
        assert!(allowed(&list, Some(&public), "https://push.example.com"));
        assert!(allowed(&["*".to_owned()], None, "https://anything"));
    }
}
