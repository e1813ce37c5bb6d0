//! The fallback transport's POSTs (`session::sse`) between the connection
//! that posted (its key already checked) and the SSE stream it posts to,
//! which may be on another shard: the stream's shard hands the frames to
//! its session, then the POST's shard answers the POST. Two hops on the
//! mesh at most, and the POST is answered only once its frames were taken,
//! so a client posting one request at a time keeps its order. While an
//! upgrade moves the shard's connections a POST is answered 503 (the
//! stream may be in the new process already: retry).
use super::Shard;
use crate::mesh::DataMsg;
use crate::router::tables::ConnKey;
use crate::session::Delivery;
use crate::store::ReplyTo;

impl Shard {
    /// A stream opened on this shard: `conn_id` at `key`.
    pub(super) fn sse_opened(&self, key: ConnKey, conn_id: u64) {
        self.sse.borrow_mut().insert(conn_id, key);
    }

    /// The connection `conn_id` is gone (closed or handed over).
    pub(super) fn sse_forget(&self, conn_id: u64) {
        self.sse.borrow_mut().remove(&conn_id);
    }

    /// A POST (the connection `reply`) to the stream `conn_id`.
    pub(super) fn sse_post(&self, reply: ReplyTo, conn_id: u64, body: Vec<u8>) {
        let shard = (conn_id >> 48) as usize;
        if shard == self.id {
            let status = self.sse_take(conn_id, &body);
            return self.sse_posted(reply, status);
        }
        if shard >= self.deps.mesh.len() {
            return self.sse_posted(reply, 404);
        }
        self.send_to(
            shard,
            DataMsg::SsePost {
                conn_id,
                body,
                reply,
            },
        );
    }

    /// Frames posted to this shard's stream `conn_id`: its session takes
    /// them; the status to answer the POST with.
    pub(super) fn sse_take(&self, conn_id: u64, body: &[u8]) -> u16 {
        if self.gate.is_closed() {
            return 503;
        }
        let found = self.sse.borrow().get(&conn_id).copied();
        let status = match found {
            Some(key) => self
                .drive_if(key, Some(conn_id), |s, cx| s.handle_post(cx, body))
                .unwrap_or(404),
            None => 404,
        };
        if status == 404 {
            tracing::debug!(
                shard = self.id,
                conn_id,
                known = found.is_some(),
                "a POST to no open SSE stream"
            );
        }
        status
    }

    /// Answers the POST `reply` (here or on its shard).
    pub(super) fn sse_posted(&self, reply: ReplyTo, status: u16) {
        if usize::from(reply.shard) != self.id {
            return self.send_to(reply.shard as usize, DataMsg::SsePosted { reply, status });
        }
        self.drive_if(reply.key, Some(reply.conn_id), |s, cx| {
            s.handle_routed(cx, Delivery::PostDone(status))
        });
    }
}
