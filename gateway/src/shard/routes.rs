//! What sessions ask for (`session::Route`): the router takes the routing
//! ones (tables, owner shards), the backend services the rest.
use super::Shard;
use crate::router::tables::ConnKey;
use crate::session::Route;
use crate::store::ReplyTo;

impl Shard {
    /// Carries out one route of the session at `key` (id `conn_id`).
    pub(super) fn apply_route(&self, key: ConnKey, conn_id: u64, route: Route) {
        let me = ReplyTo {
            shard: self.id as u16,
            key,
            conn_id,
        };
        let online = matches!(route, Route::Online { .. });
        let rest = self.router.borrow_mut().route(me, route);
        self.run_actions();
        if online {
            // Authenticated during a drain: told to go now (see
            // `Session::drain`).
            let redirect = self.drain_redirect.borrow().clone();
            if let Some(redirect) = redirect {
                self.drain_conn(key, &redirect);
            }
        }
        match rest {
            Some(r @ (Route::ToBackend { .. } | Route::Event(_))) => self.backend_route(key, me, r),
            Some(Route::Authorize { action, room, send }) => {
                self.authorize(key, me, action, room, send)
            }
            Some(Route::SseOpened) => self.sse_opened(key, conn_id),
            Some(Route::SsePost { conn_id: to, body }) => self.sse_post(me, to, body),
            _ => {}
        }
    }
}
