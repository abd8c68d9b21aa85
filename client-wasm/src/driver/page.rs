//! Page and network lifecycle: online/offline, visibility, and the back/forward cache.

use super::*;

impl Driver {
    // ---- page lifecycle -------------------------------------------------------------------

    pub(super) fn start_page_listeners(&mut self) {
        if std::mem::replace(&mut self.page_listening, true) {
            return;
        }
        let g = browser::global_target();
        for (name, h) in &self.cb.page {
            let _ = g.add_event_listener_with_callback(name, h.as_ref().unchecked_ref());
        }
        if let Some(d) = browser::document() {
            let _ = d.add_event_listener_with_callback("visibilitychange", self.cb.visibility.as_ref().unchecked_ref());
        }
        self.hidden_since = browser::page_hidden().then(now);
    }

    pub(super) fn stop_page_listeners(&mut self) {
        if !std::mem::replace(&mut self.page_listening, false) {
            return;
        }
        let g = browser::global_target();
        for (name, h) in &self.cb.page {
            let _ = g.remove_event_listener_with_callback(name, h.as_ref().unchecked_ref());
        }
        if let Some(d) = browser::document() {
            let _ =
                d.remove_event_listener_with_callback("visibilitychange", self.cb.visibility.as_ref().unchecked_ref());
        }
    }

    pub(super) fn on_online(&mut self) {
        if self.suspended || self.state == State::Closed {
            return;
        }
        if self.socket.is_none() {
            // Waiting (offline, or in backoff): try now.
            if self.state == State::Offline {
                self.set_state(State::Reconnecting);
            }
            self.open_socket();
        } else if self.connect_deadline.is_none() {
            // A session that lived through the outage (or a network change under an open
            // socket): probe it now rather than at the next heartbeat, minutes away. No answer
            // within the probe timeout drops it and reconnects.
            self.set_state(State::Ready);
            self.probe(now(), true);
        } else if self.state == State::Offline {
            self.set_state(if self.socket_opened { State::Handshaking } else { State::Reconnecting });
        }
        self.arm();
    }

    pub(super) fn on_offline(&mut self) {
        if self.suspended || self.state == State::Closed {
            return;
        }
        if self.socket.is_none() {
            self.reconnect_at = None;
        }
        // An open socket is kept: the network may come back before it breaks (a Wi-Fi hop).
        self.set_state(State::Offline);
        self.arm();
    }

    pub(super) fn on_visibility(&mut self) {
        let t = now();
        if browser::page_hidden() {
            self.hidden_since = Some(t);
            return;
        }
        if self.hidden_since.take().is_some_and(|since| t - since >= LATE_MS) {
            self.tick(t, true);
        }
    }

    /// Leaving for the back/forward cache: an open WebSocket would keep the page out of it.
    pub(super) fn on_pagehide(&mut self, ev: JsValue) {
        if !browser::event_flag(&ev, "persisted") || self.state == State::Closed {
            return;
        }
        self.suspended = true;
        self.reconnect_at = None;
        if self.detach(1000, "page hidden") {
            self.lost(1000, "page hidden");
        } else {
            self.set_state(State::Reconnecting);
        }
        self.arm();
    }

    pub(super) fn on_pageshow(&mut self) {
        if !std::mem::replace(&mut self.suspended, false) || self.state == State::Closed {
            return;
        }
        self.open_socket();
        self.arm();
    }
}
