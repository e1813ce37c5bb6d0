//! JSON encoding that never fails on unknown enum values.
//!
//! prost keeps an enum field as an `i32`, so a frame relayed from a newer (or
//! misbehaving) protobuf peer may hold a value this schema does not name.
//! pbjson refuses to serialize those, while the proto3 JSON mapping says to
//! write the number. The fast path serializes directly; only when that fails
//! is a copy with the unknown values cleared serialized to a
//! `serde_json::Value` and the numbers patched back in.
//!
//! Invariant: every enum field reachable from `ClientFrame` and `ServerFrame`
//! is listed in an [`UnknownEnums`] impl below (the test
//! `codec::tests::unknown_enum_values_become_numbers` covers each).

use crate::v1::{self, client_frame, server_frame};

/// An enum field whose value was cleared, to be written back as a number.
pub(super) struct Patch {
    /// JSON name of the oneof member holding the field.
    member: &'static str,
    /// JSON name of the field.
    field: &'static str,
    value: i32,
}

/// Frames whose enum fields can be cleared of values the schema does not name.
pub(super) trait UnknownEnums {
    /// Sets every unknown enum value to 0 and says where they were.
    fn clear_unknown_enums(&mut self) -> Vec<Patch>;
}

fn clear<E: TryFrom<i32>>(
    value: &mut i32,
    member: &'static str,
    field: &'static str,
    patches: &mut Vec<Patch>,
) {
    if E::try_from(*value).is_err() {
        patches.push(Patch {
            member,
            field,
            value: *value,
        });
        *value = 0;
    }
}

impl UnknownEnums for v1::ServerFrame {
    fn clear_unknown_enums(&mut self) -> Vec<Patch> {
        use server_frame::Frame;
        let mut p = Vec::new();
        match &mut self.frame {
            Some(Frame::Deliver(d)) => clear::<v1::Qos>(&mut d.qos, "deliver", "qos", &mut p),
            Some(Frame::SendResult(r)) => {
                clear::<v1::ErrorCode>(&mut r.code, "sendResult", "code", &mut p)
            }
            Some(Frame::Error(e)) => clear::<v1::ErrorCode>(&mut e.code, "error", "code", &mut p),
            Some(Frame::GoAway(g)) => {
                clear::<v1::GoAwayReason>(&mut g.reason, "goAway", "reason", &mut p)
            }
            _ => {}
        }
        p
    }
}

impl UnknownEnums for v1::ClientFrame {
    fn clear_unknown_enums(&mut self) -> Vec<Patch> {
        let mut p = Vec::new();
        if let Some(client_frame::Frame::Send(s)) = &mut self.frame {
            clear::<v1::Qos>(&mut s.qos, "send", "qos", &mut p);
        }
        p
    }
}

/// Appends the canonical JSON of `frame` to `out`.
pub(super) fn encode_json<F>(frame: &F, out: &mut Vec<u8>)
where
    F: serde::Serialize + Clone + UnknownEnums,
{
    let start = out.len();
    if serde_json::to_writer(&mut *out, frame).is_ok() {
        return;
    }
    out.truncate(start);
    let mut clean = frame.clone();
    let patches = clean.clear_unknown_enums();
    let Ok(mut value) = serde_json::to_value(&clean) else {
        debug_assert!(false, "JSON encoding failed without unknown enum values");
        return;
    };
    for patch in patches {
        if let Some(obj) = value
            .get_mut(patch.member)
            .and_then(serde_json::Value::as_object_mut)
        {
            obj.insert(patch.field.to_owned(), patch.value.into());
        }
    }
    let res = serde_json::to_writer(out, &value);
    debug_assert!(res.is_ok(), "serializing a serde_json::Value failed");
}
