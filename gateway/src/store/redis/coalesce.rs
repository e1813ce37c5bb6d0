//! Merging the cumulative acks of one batch: one per device, the highest.
use std::sync::Arc;

use crate::store::Op;

/// Acks are cumulative: of several acks of one device in a batch only the
/// highest matters. Keeps that one, at the position of the device's last ack
/// (a read between them sees an older cursor and replays a little more,
/// which the client drops by sequence), and removes the rest.
pub(super) fn coalesce_acks(batch: &mut Vec<Op>) {
    use std::collections::HashMap;
    let acks = batch
        .iter()
        .filter(|op| matches!(op, Op::Ack { .. }))
        .count();
    if acks < 2 {
        return;
    }
    let mut highest: HashMap<(Arc<str>, Arc<str>), (usize, u64)> = HashMap::new();
    for (i, op) in batch.iter().enumerate() {
        if let Op::Ack { user, device, seq } = op {
            let e = highest
                .entry((user.clone(), device.clone()))
                .or_insert((i, *seq));
            *e = (i, e.1.max(*seq));
        }
    }
    let mut i = 0;
    batch.retain_mut(|op| {
        let keep = match op {
            Op::Ack { user, device, seq } => match highest.get(&(user.clone(), device.clone())) {
                Some(&(last, max)) if last == i => {
                    *seq = max;
                    true
                }
                _ => false,
            },
            _ => true,
        };
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(user: &str, seq: u64) -> Op {
        Op::Ack {
            user: Arc::from(user),
            device: Arc::from("d"),
            seq,
        }
    }

    #[test]
    fn keeps_the_highest_ack_per_device_at_its_last_position() {
        let conn = crate::store::ReplyTo {
            shard: 0,
            key: 0,
            conn_id: 1,
        };
        let read = Op::Read {
            user: Arc::from("a"),
            device: Arc::from("d"),
            after: None,
            max: 1,
            conn,
        };
        let mut batch = vec![ack("a", 5), ack("b", 1), read, ack("a", 3), ack("b", 2)];
        coalesce_acks(&mut batch);
        let shape: Vec<String> = batch
            .iter()
            .map(|op| match op {
                Op::Ack { user, seq, .. } => format!("ack {user} {seq}"),
                Op::Read { .. } => "read".into(),
                Op::Append { .. } | Op::RoomAppend(_) | Op::RoomRead { .. } => "other".into(),
            })
            .collect();
        assert_eq!(shape, ["read", "ack a 5", "ack b 2"]);
    }
}
