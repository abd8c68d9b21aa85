//! Why a session ended, and the WebSocket close code and reason the browser sees.

/// Why a WebSocket session ended. Each variant maps to one close code and reason string
/// ([`CloseReason::code`], [`CloseReason::reason`]) and one `reason` label of the
/// `mpush_proxy_closes_total` metric ([`CloseReason::label`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The browser closed the WebSocket or its connection dropped (no close frame is sent).
    ClientClosed,
    /// The browser sent a text frame: 1003 "text frames are not supported".
    TextFrame,
    /// A binary message that is not exactly one packet: 1002 "bad packet length".
    BadLength,
    /// A frame whose command MPUSH does not define: 1002 "unknown command".
    UnknownCommand,
    /// A packet body over `upstream_max_body`: 1009 "packet too large".
    PacketTooLarge,
    /// The browser broke the WebSocket protocol: 1002 "websocket protocol error".
    WebSocketError,
    /// No upstream server accepted a TCP connection: 1013 "upstream unavailable" (try again
    /// later). 1014 "bad gateway" would fit too, but browsers and tungstenite treat it as
    /// reserved and fail the connection instead of reporting it.
    UpstreamUnavailable,
    /// The upstream server closed the TCP connection: 1011 "upstream closed".
    UpstreamClosed,
    /// Reading from or writing to the upstream failed or timed out: 1011 "upstream error".
    UpstreamError,
    /// The upstream byte stream cannot be cut into packets (bad length or body over
    /// `downstream_max_body`): 1011 "upstream framing error".
    UpstreamFraming,
    /// No packet either way for `idle_timeout`: 1000 "idle timeout".
    IdleTimeout,
    /// No frame from the browser within `pong_timeout` after a ping: 1000 "keepalive timeout".
    KeepaliveTimeout,
    /// A write to the browser took longer than `send_timeout`: 1008 "send timeout".
    SendTimeout,
    /// The proxy is shutting down: 1001 "going away".
    GoingAway,
}

impl CloseReason {
    /// Every reason, in metric order.
    pub const ALL: [CloseReason; 14] = [
        CloseReason::ClientClosed,
        CloseReason::TextFrame,
        CloseReason::BadLength,
        CloseReason::UnknownCommand,
        CloseReason::PacketTooLarge,
        CloseReason::WebSocketError,
        CloseReason::UpstreamUnavailable,
        CloseReason::UpstreamClosed,
        CloseReason::UpstreamError,
        CloseReason::UpstreamFraming,
        CloseReason::IdleTimeout,
        CloseReason::KeepaliveTimeout,
        CloseReason::SendTimeout,
        CloseReason::GoingAway,
    ];

    /// The WebSocket close code sent to the browser (`None`: the browser closed first).
    pub fn code(self) -> Option<u16> {
        use CloseReason::*;
        Some(match self {
            ClientClosed => return None,
            IdleTimeout | KeepaliveTimeout => 1000,
            GoingAway => 1001,
            BadLength | UnknownCommand | WebSocketError => 1002,
            TextFrame => 1003,
            SendTimeout => 1008,
            PacketTooLarge => 1009,
            UpstreamClosed | UpstreamError | UpstreamFraming => 1011,
            UpstreamUnavailable => 1013,
        })
    }

    /// The close reason string sent with [`CloseReason::code`].
    pub fn reason(self) -> &'static str {
        use CloseReason::*;
        match self {
            ClientClosed => "client closed",
            TextFrame => "text frames are not supported",
            BadLength => "bad packet length",
            UnknownCommand => "unknown command",
            PacketTooLarge => "packet too large",
            WebSocketError => "websocket protocol error",
            UpstreamUnavailable => "upstream unavailable",
            UpstreamClosed => "upstream closed",
            UpstreamError => "upstream error",
            UpstreamFraming => "upstream framing error",
            IdleTimeout => "idle timeout",
            KeepaliveTimeout => "keepalive timeout",
            SendTimeout => "send timeout",
            GoingAway => "going away",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        use CloseReason::*;
        match self {
            ClientClosed => "client_closed",
            TextFrame => "text_frame",
            BadLength => "bad_length",
            UnknownCommand => "unknown_command",
            PacketTooLarge => "packet_too_large",
            WebSocketError => "websocket_error",
            UpstreamUnavailable => "upstream_unavailable",
            UpstreamClosed => "upstream_closed",
            UpstreamError => "upstream_error",
            UpstreamFraming => "upstream_framing",
            IdleTimeout => "idle_timeout",
            KeepaliveTimeout => "keepalive_timeout",
            SendTimeout => "send_timeout",
            GoingAway => "going_away",
        }
    }

    pub(crate) fn index(self) -> usize {
        CloseReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sendable_and_labels_unique() {
        let mut labels = std::collections::HashSet::new();
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(labels.insert(r.label()));
            // 1004-1006 and 1015 must never be sent in a close frame; reasons fit in 123 bytes.
            if let Some(c) = r.code() {
                assert!((1000..=1013).contains(&c) && !(1004..=1006).contains(&c), "{r:?}");
            }
            assert!(r.reason().len() <= 123);
        }
    }
}
