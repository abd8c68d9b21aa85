//! The WebSocket: opening, closing, reading and writing, and what a lost connection means
//! (reconnect, wait or give up).

use super::*;

impl Driver {
    // ---- transport ------------------------------------------------------------------------

    pub(super) fn open_socket(&mut self) {
        self.reconnect_at = None;
        if self.socket.is_some() {
            return;
        }
        if !browser::online() {
            // Wait for the "online" event instead of spinning.
            self.set_state(State::Offline);
            return;
        }
        // Each attempt reports its own failure.
        self.last_error = None;
        let ws = match WebSocket::new_with_str(&self.url, "mpush") {
            Ok(ws) => ws,
            Err(e) => {
                // A URL the browser refuses (e.g. ws:// from an https page) never starts working.
                let err = js_error(ErrorCode::InvalidOption, &describe(&e, "the WebSocket could not be created"));
                self.fire("error", err.clone());
                self.last_error = Some(err);
                self.give_up();
                return;
            }
        };
        // As a property: the typed setter would be one more import.
        let _ = Reflect::set(&ws, &"binaryType".into(), &"arraybuffer".into());
        for (name, h) in &self.cb.socket {
            let _ = ws.add_event_listener_with_callback(name, h.as_ref().unchecked_ref());
        }
        self.socket = Some(ws);
        self.socket_opened = false;
        self.connect_deadline = Some(now() + self.connect_timeout);
    }

    /// Forgets the socket: removes our listeners and closes it if still open. Returns whether
    /// there was one.
    pub(super) fn detach(&mut self, code: u16, reason: &str) -> bool {
        let Some(ws) = self.socket.take() else { return false };
        for (name, h) in &self.cb.socket {
            let _ = ws.remove_event_listener_with_callback(name, h.as_ref().unchecked_ref());
        }
        if ws.ready_state() <= WebSocket::OPEN {
            let _ = ws.close_with_code_and_reason(code, reason);
        }
        self.connect_deadline = None;
        self.probe_deadline = None;
        true
    }

    /// Closes the socket ourselves and treats the connection as lost.
    pub(super) fn drop_socket(&mut self, reason: &'static str) {
        if self.detach(CLOSE_ABNORMAL, reason) {
            self.lost(CLOSE_ABNORMAL, reason);
        }
    }

    /// The connection is gone (socket already detached): fail what was pending on it and
    /// reconnect, wait, or give up.
    pub(super) fn lost(&mut self, code: u16, reason: &str) {
        let t = now();
        self.session.handle_disconnected(t as u64);
        self.drain(t);
        self.awaiting_ack.clear();
        self.bound_user = None;
        self.fire("disconnect", object(&[("code", code.into()), ("reason", reason.into())]));
        if self.state == State::Closed {
            return;
        }
        match &mut self.reconnect {
            _ if self.fatal => self.give_up(),
            _ if self.suspended => self.set_state(State::Reconnecting),
            None => self.give_up(),
            // No network: wait for "online" (which tries at once) without using up an attempt.
            Some(_) if !browser::online() => self.set_state(State::Offline),
            Some(b) if self.max_attempts.is_some_and(|max| b.attempt() >= max) => {
                let attempts = b.attempt();
                let cause = self.last_error.take().unwrap_or_else(|| closed_error(code, reason));
                let msg = [
                    "gave up after ",
                    &decimal(attempts.into()),
                    " failed reconnect attempts (reconnect.maxAttempts): ",
                    &describe(&cause, "connection lost"),
                ]
                .concat();
                let e = with_cause(js_error(ErrorCode::AttemptLimit, &msg), &cause);
                self.fire("error", e.clone());
                self.last_error = Some(e);
                self.give_up();
            }
            Some(b) => {
                let delay = b.next_delay(browser::random());
                let attempt = b.attempt();
                self.set_state(State::Reconnecting);
                self.reconnect_at = Some(t + delay);
                let error = self.last_error.clone().unwrap_or(JsValue::UNDEFINED);
                self.fire(
                    "reconnecting",
                    object(&[
                        ("attempt", attempt.into()),
                        ("delay", delay.into()),
                        ("code", code.into()),
                        ("reason", reason.into()),
                        ("error", error),
                    ]),
                );
            }
        }
        self.arm();
    }

    pub(super) fn give_up(&mut self) {
        let err = self.last_error.take().unwrap_or_else(|| js_error(ErrorCode::ConnectionLost, "connection lost"));
        for (_, rej) in std::mem::take(&mut self.waiters) {
            self.out.push(Effect::Settle(rej, err.clone()));
        }
        self.shutdown();
    }

    pub(super) fn shutdown(&mut self) {
        self.stop_page_listeners();
        self.reconnect_at = None;
        self.suspended = false;
        self.hidden_since = None;
        self.clear_timer();
        self.set_state(State::Closed);
    }

    pub(super) fn on_open(&mut self) {
        let t = now();
        self.last_read = t;
        self.socket_opened = true;
        match self.session.handle_connected(t as u64) {
            Ok(()) => self.set_state(State::Handshaking),
            Err(e) => {
                // The options make a handshake the server cannot take (device id and version
                // strings over maxPacketSize): retrying cannot help.
                let e = client_error(&e);
                self.fire("error", e.clone());
                self.last_error = Some(e);
                self.fatal = true;
                self.drop_socket("handshake failed");
            }
        }
        self.process(t);
    }

    pub(super) fn on_message(&mut self, ev: JsValue) {
        let t = now();
        let data = Reflect::get(&ev, &"data".into()).unwrap_or(JsValue::UNDEFINED);
        let Some(buf) = data.dyn_ref::<ArrayBuffer>() else {
            self.fire("error", js_error(ErrorCode::ProtocolError, "the server sent a text frame"));
            self.drop_socket("protocol error");
            return self.arm();
        };
        self.last_read = t;
        self.probe_deadline = None;
        if let Err(e) = self.session.handle_input(t as u64, &Uint8Array::new(buf).to_vec()) {
            self.closing_reason = "protocol error";
            self.fire("error", client_error(&e));
        }
        self.process(t);
    }

    pub(super) fn on_close(&mut self, ev: JsValue) {
        let code = Reflect::get(&ev, &"code".into()).ok().and_then(|v| v.as_f64()).unwrap_or(1006.0) as u16;
        let reason = Reflect::get(&ev, &"reason".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
        // connect_deadline is set while an attempt has not reached a session yet.
        if self.connect_deadline.is_some() && self.last_error.is_none() {
            let e = if self.socket_opened {
                closed_error(code, &reason)
            } else {
                let msg = [
                    "could not connect to ",
                    &self.url,
                    " (close code ",
                    &decimal(code.into()),
                    "): ",
                    NEVER_OPENED_HINT,
                ]
                .concat();
                js_error(ErrorCode::ConnectFailed, &msg)
            };
            // A failed attempt is never silent, whether or not anyone awaits connect().
            self.fire("error", e.clone());
            self.last_error = Some(e);
        }
        if self.detach(code, &reason) {
            self.lost(code, &reason);
        }
    }

    // ---- session pump ---------------------------------------------------------------------

    /// Drains events, writes packets, and closes the socket if the session gave up on it.
    pub(super) fn process(&mut self, t: f64) {
        self.drain(t);
        self.flush();
        if self.session.state() == ClientState::Closing {
            let reason = std::mem::replace(&mut self.closing_reason, "connection closed");
            self.drop_socket(reason);
        }
        self.arm();
    }

    pub(super) fn flush(&mut self) {
        while let Some(b) = self.session.poll_transmit() {
            if let Some(ws) = &self.socket {
                let _ = ws.send_with_u8_array(&b);
                if b == [HEARTBEAT_BYTE] {
                    self.heartbeat_sent();
                }
            }
        }
    }

    /// Records a heartbeat written to the socket and reports it ("heartbeat" event).
    pub(super) fn heartbeat_sent(&mut self) {
        let at = now();
        self.last_heartbeat_at = Some(at);
        self.fire("heartbeat", object(&[("at", at.into())]));
    }

    pub(super) fn drain(&mut self, t: f64) {
        while let Some(e) = self.session.poll_event() {
            self.on_event(t, e);
        }
    }
}

/// `CONNECTION_LOST` naming the close code and reason.
fn closed_error(code: u16, reason: &str) -> JsValue {
    let mut msg = ["the connection closed (code ", &decimal(code.into())].concat();
    if !reason.is_empty() {
        msg.push_str(", reason \"");
        msg.push_str(reason);
        msg.push('"');
    }
    msg.push_str(") before the handshake or fast connect completed");
    js_error(ErrorCode::ConnectionLost, &msg)
}
