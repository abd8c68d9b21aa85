//! The JS API calls (connect, bind, unbind, push, ack, fetch, close) and the session events
//! that settle their promises or become JS events.

use super::*;

impl Driver {
    // ---- API ------------------------------------------------------------------------------

    /// `connect()`: resolves with `{ fast, heartbeat }` once a session is established.
    pub fn connect(&mut self) -> Promise {
        let (p, res, rej) = deferred();
        if self.state == State::Ready {
            self.out.push(Effect::Settle(res, connect_info(self.last_fast, self.heartbeat.unwrap_or(0))));
            return p;
        }
        self.waiters.push((res, rej));
        if self.state == State::Closed {
            self.start_page_listeners();
            if let Some(b) = &mut self.reconnect {
                b.reset();
            }
            self.last_error = None;
            self.fatal = false;
            self.set_state(State::Connecting);
            self.open_socket();
        } else if self.socket.is_none() && !self.suspended {
            // An explicit connect() skips the rest of the backoff.
            self.open_socket();
        }
        self.arm();
        p
    }

    /// Registers a request's promise; errors (now or later) name `method`.
    pub(super) fn request(&mut self, method: &'static str, r: Result<RequestId, JsValue>) -> Promise {
        self.request_for(method, None, r)
    }

    fn request_for(&mut self, method: &'static str, url: Option<String>, r: Result<RequestId, JsValue>) -> Promise {
        let (p, resolve, reject) = deferred();
        match r {
            Ok(id) => self.requests.push(Request { id, method, url, resolve, reject }),
            Err(e) => self.out.push(Effect::Settle(reject, in_method(method, e))),
        }
        self.flush();
        self.arm();
        p
    }

    /// `bind(userId, tags?, alias?)`.
    pub fn bind(&mut self, user_id: &str, tags: Option<String>, alias: Option<String>) -> Promise {
        self.auto_bind = None;
        let r = self.session.bind(now() as u64, user_id, alias.as_deref(), tags.as_deref());
        self.request("bind", r.map_err(|e| client_error(&e)))
    }

    /// `unbind()`.
    pub fn unbind(&mut self) -> Promise {
        self.auto_bind = None;
        let r = self.session.unbind(now() as u64);
        self.request("unbind", r.map_err(|e| client_error(&e)))
    }

    /// `push(content, { ack })`: resolves when sent ("none") or acked by the server ("auto").
    pub fn push(&mut self, content: &JsValue, options: &JsValue) -> Promise {
        let r = (|| {
            let bytes = fetch::body_bytes(content)?;
            let ack = if options.is_undefined() || options.is_null() {
                JsValue::UNDEFINED
            } else if options.is_object() {
                Reflect::get(options, &"ack".into())?
            } else {
                return Err(js_error(ErrorCode::InvalidArgument, "push: options must be an object ({ ack })"));
            };
            let mode = match ack.as_string().as_deref() {
                None if ack.is_undefined() => AckMode::None,
                Some("none") => AckMode::None,
                Some("auto") => AckMode::Auto,
                Some("biz") => AckMode::Biz,
                _ => return Err(js_error(ErrorCode::InvalidArgument, "push: ack must be \"none\" or \"auto\"")),
            };
            self.session.push(now() as u64, bytes, mode).map_err(|e| client_error(&e))
        })();
        match r {
            Ok(Some(id)) => self.request("push", Ok(id)),
            Ok(None) => {
                self.flush();
                self.arm();
                Promise::resolve(&JsValue::UNDEFINED)
            }
            Err(e) => Promise::reject(&in_method("push", e)),
        }
    }

    /// `ack(pushId)` for biz-ack pushes: only ids of "biz" pushes received on this connection
    /// and not acked yet are accepted (an ack of any other id would be sent for nothing).
    pub fn ack(&mut self, push_id: i32) -> Result<(), JsValue> {
        if !self.ack_awaited(push_id)? {
            let msg = [
                "ack: push ",
                &decimal(push_id.into()),
                " is not waiting for an ack on this connection (unknown id, not a \"biz\" push, acked \
                 already, or received before a reconnect)",
            ]
            .concat();
            return Err(js_error(ErrorCode::InvalidArgument, &msg));
        }
        Ok(())
    }

    /// Sends the ack if `push_id` waits for one; `Ok(false)` if it does not.
    fn ack_awaited(&mut self, push_id: i32) -> Result<bool, JsValue> {
        if self.socket.is_none() || self.connect_deadline.is_some() {
            return Err(js_error(ErrorCode::NotConnected, "ack: not connected"));
        }
        let Some(i) = self.awaiting_ack.iter().position(|id| *id == push_id) else { return Ok(false) };
        self.session.ack(now() as u64, push_id).map_err(|e| in_method("ack", client_error(&e)))?;
        self.awaiting_ack.remove(i);
        self.flush();
        self.arm();
        Ok(true)
    }

    /// `fetch(input, init)` through the HTTP tunnel. A `Request` as `input` is read first (its
    /// body is a promise), merged with `init` as `new Request(input, init)` would.
    pub fn fetch(&mut self, input: &JsValue, init: &JsValue) -> Promise {
        if let Some(req) = input.dyn_ref::<web_sys::Request>() {
            return self.fetch_request(req, init);
        }
        let r = fetch::build_request(input, init).map(|req| {
            let url = fetch::response_url(&req.uri);
            (self.session.http_request(now() as u64, req).map_err(|e| client_error(&e)), url)
        });
        match r {
            Ok((r, url)) => self.request_for("fetch", Some(url), r),
            Err(e) => self.request("fetch", Err(e)),
        }
    }

    fn fetch_request(&mut self, req: &web_sys::Request, init: &JsValue) -> Promise {
        let weak = self.weak.clone();
        let init = init.clone();
        let read = (|| {
            // `new Request(req, undefined)` (or `null`) is `new Request(req)`: one import.
            let merged = web_sys::Request::new_with_request_and_init(req, init.unchecked_ref())
                .map_err(|e| js_error(ErrorCode::InvalidArgument, &describe(&e, "invalid Request")))?;
            let body = merged.array_buffer().map_err(|_| {
                js_error(ErrorCode::InvalidArgument, "the Request's body was already used (pass request.clone())")
            })?;
            Ok::<_, JsValue>((merged, body))
        })();
        let (merged, body) = match read {
            Ok(v) => v,
            Err(e) => return self.request("fetch", Err(e)),
        };
        // Once the body is read, the call goes on as fetch(url, { method, headers, body, timeout }).
        let send = Closure::once_into_js(move |buf: JsValue| -> JsValue {
            let get = |name: &str| Reflect::get(&merged, &name.into()).unwrap_or(JsValue::UNDEFINED);
            let parts = object(&[
                // Read as plain properties: the values go straight back to JS, and the typed
                // getters would be three more imports (strings copied in and out of wasm).
                ("method", get("method")),
                ("headers", get("headers")),
                ("body", Uint8Array::new(&buf).into()),
                ("timeout", Reflect::get(&init, &"timeout".into()).unwrap_or(JsValue::UNDEFINED)),
            ]);
            match weak.upgrade() {
                Some(shared) => {
                    enter(&shared, |d| d.fetch(&get("url"), &parts)).unwrap_or_else(|e| Promise::reject(&e)).into()
                }
                None => Promise::reject(&js_error(ErrorCode::Closed, "fetch: client is gone")).into(),
            }
        });
        // `Promise::then` takes a `Closure` it does not own; the once-closure frees itself.
        let then = Reflect::get(&body, &"then".into()).map(|f| f.unchecked_into::<Function>());
        match then.and_then(|then| then.call1(&body, &send)) {
            Ok(p) => p.unchecked_into(),
            Err(e) => Promise::reject(&e),
        }
    }

    /// `close()`: rejects what is pending with `CLOSED` and stops reconnecting. The stored
    /// session stays, so the next `connect()` (or page load) fast-connects.
    pub fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        let err = js_error(ErrorCode::Closed, "client closed");
        for r in std::mem::take(&mut self.requests) {
            self.out.push(Effect::Settle(r.reject, in_method(r.method, js_error(ErrorCode::Closed, "client closed"))));
        }
        for (_, rej) in std::mem::take(&mut self.waiters) {
            self.out.push(Effect::Settle(rej, err.clone()));
        }
        let had_socket = self.detach(1000, "client closed");
        self.awaiting_ack.clear();
        self.bound_user = None;
        self.session.handle_disconnected(now() as u64);
        self.drain(now());
        if had_socket {
            self.fire("disconnect", object(&[("code", 1000.into()), ("reason", "client closed".into())]));
        }
        self.shutdown();
    }

    /// See `MPushClient::debug_send_text`.
    pub fn debug_send_text(&self, text: &str) {
        if let Some(ws) = &self.socket {
            let _ = ws.send_with_str(text);
        }
    }

    pub(super) fn take_request(&mut self, id: RequestId) -> Option<Request> {
        let i = self.requests.iter().position(|r| r.id == id)?;
        Some(self.requests.swap_remove(i))
    }

    pub(super) fn on_event(&mut self, t: f64, e: ClientEvent) {
        match e {
            ClientEvent::HandshakeOk { heartbeat, session } => {
                self.storage.set(&self.session_key, &session.to_persistent_string());
                self.ready(t, false, heartbeat);
            }
            ClientEvent::FastConnected { heartbeat } => self.ready(t, true, heartbeat),
            ClientEvent::FastConnectRefused { .. } => self.storage.remove(&self.session_key),
            ClientEvent::ConnectFailed(err) => {
                self.closing_reason = "connect failed";
                if matches!(err, RequestError::Refused { .. }) {
                    // Every retry would be refused too, at the cost of an RSA decryption on the
                    // server: stop, as the Java client does (connect() rejects, state "closed").
                    self.closing_reason = "handshake refused";
                    self.fatal = true;
                }
                if err != RequestError::ConnectionLost {
                    let e = request_error(&err);
                    self.fire("error", e.clone());
                    self.last_error = Some(e);
                }
            }
            ClientEvent::Bound { request, user_id, rebind } => {
                self.bound_user = Some(user_id.clone());
                let info = object(&[("userId", user_id.into()), ("rebind", rebind.into())]);
                if let Some(r) = self.take_request(request) {
                    self.out.push(Effect::Settle(r.resolve, info.clone()));
                }
                self.fire("bind", info);
            }
            ClientEvent::Unbound { request } => {
                self.bound_user = None;
                if let Some(r) = self.take_request(request) {
                    self.out.push(Effect::Settle(r.resolve, JsValue::UNDEFINED));
                }
                self.fire("unbind", object(&[]));
            }
            ClientEvent::Push(m) => {
                if m.ack == AckMode::Biz {
                    if self.awaiting_ack.len() == MAX_AWAITING_ACK {
                        self.awaiting_ack.remove(0);
                    }
                    self.awaiting_ack.push(m.session_id);
                }
                let msg = events::push_payload(&m.content, m.session_id, m.ack);
                // The tab-sharing facade hands the push to the other tabs here: before this
                // drain ends and the session's auto ack is flushed to the socket.
                let tap = self.listeners.borrow().push_tap.clone();
                if let Some(tap) = tap {
                    events::emit(&[tap], "push", &msg);
                }
                self.fire("push", msg);
            }
            ClientEvent::PushAcked { request } => {
                if let Some(r) = self.take_request(request) {
                    self.out.push(Effect::Settle(r.resolve, JsValue::UNDEFINED));
                }
            }
            ClientEvent::Kick { device_id, user_id } => {
                self.auto_bind = None;
                self.bound_user = None;
                self.fire("kick", object(&[("deviceId", device_id.into()), ("userId", user_id.into())]));
            }
            ClientEvent::HttpResponse { request, response } => {
                if let Some(r) = self.take_request(request) {
                    match fetch::build_response(&response, r.url.as_deref()) {
                        Ok(resp) => self.out.push(Effect::Settle(r.resolve, resp.into())),
                        Err(e) => self.out.push(Effect::Settle(r.reject, in_method(r.method, e))),
                    }
                }
            }
            ClientEvent::RequestFailed { request, error } => {
                if crate::errors::is_bind_refusal(&error) {
                    // The server closed the connection; binding the option's user again after
                    // the reconnect would only be refused again (its token is bad or expired).
                    self.auto_bind = None;
                }
                let e = request_error(&error);
                match self.take_request(request) {
                    Some(r) => self.out.push(Effect::Settle(r.reject, in_method(r.method, e))),
                    // The automatic (re-)bind has no promise: report its failure as an event.
                    None if error != RequestError::ConnectionLost => self.fire("error", e),
                    None => {}
                }
            }
            ClientEvent::ServerError { code, reason, .. } => {
                self.fire("error", server_error(code.0, reason.as_deref()))
            }
            ClientEvent::ConnectionDead => self.closing_reason = "heartbeat timeout",
            _ => {}
        }
    }

    pub(super) fn ready(&mut self, t: f64, fast: bool, heartbeat: i32) {
        self.connect_deadline = None;
        if let Some(b) = &mut self.reconnect {
            b.reset();
        }
        self.heartbeat = Some(heartbeat);
        self.last_fast = fast;
        self.last_error = None;
        self.set_state(State::Ready);
        let info = connect_info(fast, heartbeat);
        self.fire("connect", info.clone());
        for (res, _) in std::mem::take(&mut self.waiters) {
            self.out.push(Effect::Settle(res, info.clone()));
        }
        // The session re-binds a user it bound before; the option's user is bound here once.
        if let Some((user, tags, alias)) = self.auto_bind.clone() {
            if self.session.bound_user().is_none() {
                if let Err(e) = self.session.bind(t as u64, &user, alias.as_deref(), tags.as_deref()) {
                    self.fire("error", client_error(&e));
                }
            }
        }
    }
}
