//! The per-connection plumbing both sessions share: the frame decoder, the current cipher,
//! the body pipeline limits, the transmit queue and the read/write clocks.

use std::collections::VecDeque;

use crate::body;
use crate::crypto::{AesCipher, CryptoError};
use crate::frame::{Command, Flags, FrameDecoder, Packet, HEARTBEAT_BYTE};
use crate::message::Message;

#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) decoder: FrameDecoder,
    pub(crate) cipher: Option<AesCipher>,
    pub(crate) compress_over: usize,
    pub(crate) max_inflated: usize,
    transmit: VecDeque<Vec<u8>>,
    pub(crate) last_write: u64,
    pub(crate) last_read: u64,
}

impl Wire {
    pub(crate) fn new(max_body: usize, compress_over: usize, max_inflated: usize) -> Wire {
        Wire {
            decoder: FrameDecoder::new(max_body),
            cipher: None,
            compress_over,
            max_inflated,
            transmit: VecDeque::new(),
            last_write: 0,
            last_read: 0,
        }
    }

    /// Queues `msg` through the body pipeline (compressed over the limit, encrypted when a
    /// cipher is set and `encrypt` is true). The server's.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn send<M: Message>(
        &mut self,
        now: u64,
        cmd: Command,
        session_id: i32,
        msg: &M,
        extra: Flags,
        encrypt: bool,
    ) {
        self.send_body(now, cmd, session_id, msg.encode(), extra, encrypt);
    }

    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn send_body(
        &mut self,
        now: u64,
        cmd: Command,
        session_id: i32,
        plain: Vec<u8>,
        extra: Flags,
        encrypt: bool,
    ) {
        let (body, flags) = self.seal(plain, encrypt);
        self.send_packet(now, Packet { cmd, flags: flags | extra, session_id, body });
    }

    /// The wire body of `plain` and its flags, without sending it (so its size can be checked
    /// first).
    pub(crate) fn seal(&self, plain: Vec<u8>, encrypt: bool) -> (Vec<u8>, Flags) {
        let cipher = if encrypt { self.cipher.as_ref() } else { None };
        body::seal(plain, cipher, self.compress_over)
    }

    /// Queues a body sent as-is (no compression, no encryption).
    pub(crate) fn send_raw<M: Message>(&mut self, now: u64, cmd: Command, session_id: i32, msg: &M) {
        self.send_packet(now, Packet { cmd, flags: Flags::NONE, session_id, body: msg.encode() });
    }

    pub(crate) fn send_packet(&mut self, now: u64, p: Packet) {
        self.transmit.push_back(p.to_bytes());
        self.last_write = now;
    }

    pub(crate) fn send_heartbeat(&mut self, now: u64) {
        self.transmit.push_back(vec![HEARTBEAT_BYTE]);
        self.last_write = now;
    }

    pub(crate) fn open(&self, p: &Packet) -> Result<Vec<u8>, CryptoError> {
        body::open(&p.body, p.flags, self.cipher.as_ref(), self.max_inflated)
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub(crate) fn clear(&mut self) {
        self.transmit.clear();
        self.decoder = FrameDecoder::new(self.decoder.max_body());
        self.cipher = None;
    }
}
