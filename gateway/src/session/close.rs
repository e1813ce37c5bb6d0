//! Closing: the last frame and the WebSocket close, our FIN once the output
//! is out, then the client's FIN or the linger deadline (`timer::LINGER`);
//! and the operator's ways in (kick, drain, forced close).
use proto::v1::{server_frame::Frame, ErrorCode, GoAway, GoAwayReason, ServerFrame};

use super::{Ctx, Phase, Session};
use crate::outbound::Wire;
use crate::stats::ShardStats;

impl Session {
    /// Closing, output flushed, FIN not yet sent: the driver half-closes.
    pub(crate) fn wants_fin(&self) -> bool {
        self.phase == Phase::Closing && self.out.is_empty() && !self.fin_sent
    }

    /// The driver sent our FIN.
    pub(crate) fn fin_sent(&mut self) {
        self.fin_sent = true;
        if self.peer_closed {
            self.phase = Phase::Closed;
        }
    }

    /// The peer closed its side (EOF) or the socket failed on read.
    pub(crate) fn handle_eof(&mut self, cx: &mut Ctx) {
        self.peer_closed = true;
        if self.phase == Phase::Closing && self.fin_sent {
            self.phase = Phase::Closed;
        }
        self.close_with(cx, None);
    }

    /// A write failed: the peer is gone, nothing more can be written.
    pub(crate) fn handle_write_error(&mut self, cx: &mut Ctx) {
        self.out.clear();
        self.peer_closed = true;
        if self.phase < Phase::Closing {
            self.begin_closing(cx);
        }
    }

    /// Closes without a last frame (drain deadline, shutdown).
    pub(crate) fn close(&mut self, cx: &mut Ctx) {
        self.close_with(cx, None);
    }

    /// The node stops (a drain's deadline passed): close with 1001 (going
    /// away) on WebSocket.
    pub(crate) fn close_going_away(&mut self, cx: &mut Ctx) {
        self.close_with_code(cx, None, Some(proto::ws::close_code::GOING_AWAY));
    }

    /// An operator kicked the user: go away and close.
    pub(crate) fn kick(&mut self, cx: &mut Ctx) {
        let bye = go_away_frame(GoAwayReason::Kicked, "kicked by an operator", 0);
        self.close_with(cx, Some(&bye));
    }

    /// The node drains: an authenticated client is asked to reconnect
    /// elsewhere (and closes itself). One not yet authenticated is left to
    /// finish its handshake (bounded by the handshake timeout): the driver
    /// drains it once it is open, so a client accepted just before a drain
    /// (or an upgrade's commit) is told why, never cut off silently.
    /// True when a go-away was sent.
    pub(crate) fn drain(
        &mut self,
        cx: &mut Ctx,
        reconnect_after_ms: u32,
        reconnect_to: &str,
    ) -> bool {
        match self.phase {
            Phase::Open => {
                let mut bye = go_away_frame(
                    GoAwayReason::Draining,
                    "node draining: reconnect",
                    reconnect_after_ms,
                );
                if let Some(Frame::GoAway(g)) = bye.frame.as_mut() {
                    g.reconnect_to = reconnect_to.to_owned();
                }
                self.send_frame(cx, &bye);
                cx.env.stats.go_away(GoAwayReason::Draining);
                // The client leaves because of it: that is the reason.
                self.bye = 1000 + GoAwayReason::Draining as u16;
                true
            }
            Phase::Upgrade | Phase::Auth | Phase::Closing | Phase::Closed => false,
        }
    }

    /// Starts closing: queues `last` (error or go-away, beyond the
    /// send-queue cap) and the WebSocket close; the driver then writes them
    /// and half-closes, and the session lingers until the client closes.
    pub(super) fn close_with(&mut self, cx: &mut Ctx, last: Option<&ServerFrame>) {
        self.close_with_code(cx, last, None);
    }

    /// `close_with`, with the WebSocket close code given (else chosen from
    /// `last`: 1009 frame too large, 1008 another error, 1001 a go-away,
    /// 1000 none).
    pub(super) fn close_with_code(
        &mut self,
        cx: &mut Ctx,
        last: Option<&ServerFrame>,
        ws_code: Option<u16>,
    ) {
        if self.phase >= Phase::Closing {
            return;
        }
        self.bye = match last.and_then(|f| f.frame.as_ref()) {
            Some(Frame::GoAway(g)) => 1000 + g.reason as u16,
            Some(Frame::Error(e)) => u16::try_from(e.code).unwrap_or(0),
            _ => 0,
        };
        if let Some(frame) = last {
            if self.out.capacity() == 0 {
                self.out = cx.fx.pool.take();
            }
            self.wire.encode(frame, &mut self.out);
            ShardStats::inc(&cx.env.stats.frames_out);
            if let Some(Frame::GoAway(g)) = &frame.frame {
                cx.env.stats.go_away(g.reason());
            }
        }
        if !matches!(self.wire, Wire::Tcp | Wire::Sse) && self.phase != Phase::Upgrade {
            let code = ws_code.unwrap_or(match last.and_then(|f| f.frame.as_ref()) {
                Some(Frame::Error(e)) if e.code() == ErrorCode::FrameTooLarge => 1009,
                Some(Frame::Error(_)) => 1008,
                Some(Frame::GoAway(_)) => 1001,
                _ => 1000,
            });
            if self.out.capacity() == 0 {
                self.out = cx.fx.pool.take();
            }
            proto::ws::encode_close(code, "", None, &mut self.out);
        }
        self.begin_closing(cx);
    }

    /// Enters the closing phase: the linger deadline counts from now.
    pub(super) fn begin_closing(&mut self, cx: &mut Ctx) {
        self.phase = Phase::Closing;
        self.stamp = cx.now;
        self.partial = None;
        self.syncing = false;
        self.timeout_moved = true;
    }
}

/// An error frame.
pub(crate) fn error_frame(code: ErrorCode, message: &str, fatal: bool) -> ServerFrame {
    ServerFrame {
        frame: Some(Frame::Error(proto::v1::Error {
            code: code as i32,
            message: message.to_owned(),
            fatal,
        })),
    }
}

/// A go-away frame.
pub(crate) fn go_away_frame(
    reason: GoAwayReason,
    message: &str,
    reconnect_after_ms: u32,
) -> ServerFrame {
    ServerFrame {
        frame: Some(Frame::GoAway(GoAway {
            reason: reason as i32,
            message: message.to_owned(),
            reconnect_after_ms,
            reconnect_to: String::new(),
        })),
    }
}

impl Session {
    /// Why the connection ended, for the backend's disconnect event: the
    /// go-away reason or error code it was closed with, else whether the
    /// client closed it.
    pub(crate) fn close_reason(&self) -> String {
        if self.bye >= 1000 {
            if let Ok(r) = GoAwayReason::try_from(i32::from(self.bye - 1000)) {
                return r.as_str_name().to_ascii_lowercase();
            }
        }
        if let Ok(code) = ErrorCode::try_from(i32::from(self.bye)) {
            if code != ErrorCode::Unspecified {
                return code.as_str_name().to_ascii_lowercase();
            }
        }
        match self.peer_closed {
            true => "client_closed".into(),
            false => "server_closed".into(),
        }
    }
}
