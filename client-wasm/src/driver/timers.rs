//! Time: the one browser timer set to the earliest deadline (session timeouts, connect and
//! probe deadlines, reconnect), and liveness probes after throttled periods.

use super::*;

impl Driver {
    // ---- time -----------------------------------------------------------------------------

    /// Sets the one timer to the earliest deadline.
    pub(super) fn arm(&mut self) {
        let mut wake: Option<f64> = None;
        let mut consider = |t: Option<f64>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        if self.socket.is_some() {
            consider(self.session.poll_timeout().map(|t| t as f64));
            consider(self.connect_deadline);
            consider(self.probe_deadline);
        }
        consider(self.reconnect_at);
        let Some(at) = wake else { return self.clear_timer() };
        if self.timer.as_ref().is_some_and(|(_, t)| *t == at) {
            return;
        }
        self.clear_timer();
        let handle = browser::set_timeout(self.cb.timer.as_ref().unchecked_ref(), at - now());
        self.timer = Some((handle, at));
    }

    pub(super) fn clear_timer(&mut self) {
        if let Some((h, _)) = self.timer.take() {
            browser::clear_timeout(&h);
        }
    }

    pub(super) fn on_timer(&mut self) {
        let scheduled = self.timer.take().map(|(_, at)| at);
        let t = now();
        // Throttled timers (background tabs, sleeping laptops) fire late: check liveness.
        self.tick(t, scheduled.is_some_and(|at| t - at > LATE_MS));
    }

    /// Handles every deadline that has passed.
    pub(super) fn tick(&mut self, t: f64, check_liveness: bool) {
        if self.reconnect_at.is_some_and(|at| at <= t) {
            self.open_socket();
        }
        if self.socket.is_some() {
            if self.connect_deadline.is_some_and(|at| at <= t) {
                let e = if self.socket_opened {
                    js_error(ErrorCode::Timeout, "connect timed out: no answer to the handshake (connectTimeout)")
                } else {
                    // A proxy that never answers the upgrade (a firewall dropping packets, a
                    // wrong host) looks like this.
                    js_error(
                        ErrorCode::Timeout,
                        &[
                            "connect timed out: ",
                            &self.url,
                            " did not open within connectTimeout (is the proxy reachable?)",
                        ]
                        .concat(),
                    )
                };
                self.fire("error", e.clone());
                self.last_error = Some(e);
                self.drop_socket("connect timeout");
            } else if self.probe_deadline.is_some_and(|at| at <= t) {
                self.drop_socket("no answer to heartbeat");
            } else {
                self.session.handle_timeout(t as u64);
                if check_liveness {
                    self.probe(t, false);
                }
                self.process(t);
            }
        }
        self.arm();
    }

    /// Sends a heartbeat the server echoes; no read before the probe deadline means the
    /// connection is dead (what centrifuge-js does after a throttled period).
    pub(super) fn probe(&mut self, t: f64, force: bool) {
        if self.state != State::Ready || self.probe_deadline.is_some() {
            return;
        }
        if force || t - self.last_read > PROBE_IDLE_MS {
            if let Some(ws) = &self.socket {
                let _ = ws.send_with_u8_array(&[HEARTBEAT_BYTE]);
                self.heartbeat_sent();
            }
            self.probe_deadline = Some(t + self.probe_timeout);
        }
    }
}
