//! Carrying out what the router decided (`crate::router::Action`): pushes
//! to shard queues, deliveries to this shard's sessions, envelopes for
//! peers, requests for the QoS 1 store. A delivery can make a session
//! route again; those routes are carried out at once, depth-first (as the
//! shard did before the router was a value), ahead of the rest of the batch.
use std::sync::Arc;

use super::Shard;
use crate::router::Action;
use crate::session::Delivery;

impl Shard {
    /// Carries out every action the router has produced, in order, until
    /// it has none.
    pub(super) fn run_actions(&self) {
        let mut acts = std::mem::take(&mut *self.actions.borrow_mut());
        loop {
            self.router.borrow_mut().drain(&mut acts);
            if acts.is_empty() {
                break;
            }
            for a in acts.drain(..) {
                self.act(a);
            }
        }
        *self.actions.borrow_mut() = acts;
    }

    fn act(&self, a: Action) {
        match a {
            Action::Send(to, msg) => self.send_to(to, msg),
            Action::DeliverUser(user, msg) => {
                let router = self.router.borrow();
                let keys = router.tables().user_conns(&user).iter().copied();
                self.deliver_live(keys, &msg);
            }
            Action::DeliverRoom(room, msg) => {
                let router = self.router.borrow();
                self.deliver_live(router.tables().room_members(&room), &msg);
            }
            Action::StoreForMembers(room, msg) => {
                let users: Vec<Arc<str>> = {
                    let router = self.router.borrow();
                    let conns = self.conns.borrow();
                    router
                        .tables()
                        .room_members(&room)
                        .filter_map(|k| conns.get(k).and_then(|c| c.session().user().cloned()))
                        .collect()
                };
                self.router.borrow_mut().store_for(users, &msg);
            }
            Action::DeliverStored(user, seq, msg) => {
                let keys = self.router.borrow().tables().user_conns(&user).to_vec();
                for key in keys {
                    let stored = Delivery::Stored { seq, msg: &msg };
                    self.drive(key, |s, cx| s.handle_routed(cx, stored));
                }
            }
            Action::Bus(nodes, env) => {
                for node in nodes {
                    self.bus_send(&node, &env);
                }
            }
            Action::BusAll(env) => self.bus_broadcast(&env),
            Action::Store(op) => {
                self.store.borrow_mut().submit(op);
                // The in-process store answers at once: collected now, so
                // the completion's actions follow in order.
                self.collect_store();
            }
        }
    }
}
