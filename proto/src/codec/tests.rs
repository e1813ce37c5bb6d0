//! Tests of the frame encodings: the JSON form clients write, round trips in
//! both encodings, and errors.

use super::*;
use crate::v1::{client_frame::Frame as C, send::To, server_frame::Frame as S};

fn client(f: C) -> v1::ClientFrame {
    v1::ClientFrame { frame: Some(f) }
}

fn server(f: S) -> v1::ServerFrame {
    v1::ServerFrame { frame: Some(f) }
}

fn json_client(s: &str) -> v1::ClientFrame {
    decode_client(Encoding::Json, s.as_bytes()).unwrap()
}

#[test]
fn json_forms_clients_write() {
    assert_eq!(
        json_client(r#"{"ping":{"nonce":"7"}}"#),
        client(C::Ping(v1::Ping { nonce: 7 }))
    );
    // Numbers are accepted for 64-bit integers too.
    assert_eq!(
        json_client(r#"{"ack":{"seq":9}}"#),
        client(C::Ack(v1::Ack { seq: 9 }))
    );
    let send = json_client(r#"{"send":{"user":"bob","clientMsgId":"c1","payload":"aGk="}}"#);
    assert_eq!(
        send,
        client(C::Send(v1::Send {
            to: Some(To::User("bob".into())),
            client_msg_id: "c1".into(),
            qos: 0,
            payload: b"hi".to_vec().into(),
        }))
    );
    let qos1 = json_client(r#"{"send":{"room":"r","qos":"QOS_AT_LEAST_ONCE","payload":""}}"#);
    let Some(C::Send(s)) = qos1.frame else {
        panic!("{qos1:?}")
    };
    assert_eq!((s.to, s.qos), (Some(To::Room("r".into())), 1));
    assert_eq!(
        json_client(r#"{"auth":{"token":"t"}}"#),
        client(C::Auth(v1::Auth {
            token: "t".into(),
            device: String::new(),
            last_seq: 0,
            rooms: Vec::new(),
        }))
    );
    // A reconnect in one step: the rooms and their positions in the Auth.
    let j = r#"{"auth":{"token":"t","rooms":[{"room":"r","since":{"offset":"7","epoch":"e"}}]}}"#;
    let Some(C::Auth(a)) = json_client(j).frame else {
        panic!("not an auth")
    };
    let since = a.rooms[0].since.clone().unwrap();
    assert_eq!(
        (a.rooms[0].room.as_str(), since.offset, since.epoch.as_str()),
        ("r", 7, "e")
    );
    assert_eq!(json_client("{}"), v1::ClientFrame { frame: None });
}

#[test]
fn json_server_frames_use_canonical_names() {
    let mut out = Vec::new();
    let frame = server(S::SendResult(v1::SendResult {
        client_msg_id: "c1".into(),
        accepted: true,
        code: 0,
        message: String::new(),
        msg_id: "m1".into(),
        retry_after_ms: 0,
    }));
    encode_server(Encoding::Json, &frame, &mut out);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"sendResult":{"clientMsgId":"c1","accepted":true,"msgId":"m1"}}"#
    );
    out.clear();
    let deliver = server(S::Deliver(v1::Deliver {
        seq: 3,
        qos: v1::Qos::AtLeastOnce as i32,
        payload: b"hi".to_vec().into(),
        ..Default::default()
    }));
    encode_server(Encoding::Json, &deliver, &mut out);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"deliver":{"seq":"3","qos":"QOS_AT_LEAST_ONCE","payload":"aGk="}}"#
    );
    assert_eq!(decode_server(Encoding::Json, &out).unwrap(), deliver);
}

#[test]
fn roundtrip_both_encodings() {
    let frames = [
        client(C::Ping(v1::Ping { nonce: u64::MAX })),
        client(C::Send(v1::Send {
            to: Some(To::Backend(v1::Backend {})),
            client_msg_id: "x".into(),
            qos: 1,
            payload: vec![0, 255, 10].into(),
        })),
        client(C::Resume(v1::Resume { last_seq: 42 })),
        v1::ClientFrame { frame: None },
    ];
    for enc in [Encoding::Proto, Encoding::Json] {
        for f in &frames {
            let mut out = vec![0xEE];
            encode_client(enc, f, &mut out);
            assert_eq!(out[0], 0xEE, "encoders append");
            assert_eq!(&decode_client(enc, &out[1..]).unwrap(), f, "{enc:?}");
        }
        let go = server(S::GoAway(v1::GoAway {
            reason: v1::GoAwayReason::Draining as i32,
            reconnect_after_ms: 500,
            ..Default::default()
        }));
        let mut out = Vec::new();
        encode_server(enc, &go, &mut out);
        assert_eq!(decode_server(enc, &out).unwrap(), go);
    }
}

#[test]
fn unknown_enum_values_become_numbers() {
    let cases = [
        (
            server(S::Deliver(v1::Deliver {
                qos: 7,
                ..Default::default()
            })),
            r#"{"deliver":{"qos":7}}"#,
        ),
        (
            server(S::Error(v1::Error {
                code: 999,
                fatal: true,
                ..Default::default()
            })),
            r#"{"error":{"code":999,"fatal":true}}"#,
        ),
        (
            server(S::SendResult(v1::SendResult {
                code: -1,
                ..Default::default()
            })),
            r#"{"sendResult":{"code":-1}}"#,
        ),
        (
            server(S::GoAway(v1::GoAway {
                reason: 77,
                ..Default::default()
            })),
            r#"{"goAway":{"reason":77}}"#,
        ),
    ];
    for (frame, want) in cases {
        let mut out = b"[".to_vec();
        encode_server(Encoding::Json, &frame, &mut out);
        assert_eq!(std::str::from_utf8(&out[1..]).unwrap(), want);
    }
    let mut out = Vec::new();
    encode_client(
        Encoding::Json,
        &client(C::Send(v1::Send {
            qos: 5,
            ..Default::default()
        })),
        &mut out,
    );
    assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{"send":{"qos":5}}"#);
}

#[test]
fn decode_errors() {
    for bad in [&b"\xff\xff"[..], b"\x0a\x05\x0a"] {
        assert!(matches!(
            decode_client(Encoding::Proto, bad),
            Err(DecodeError::Proto(_))
        ));
    }
    for bad in [
        r#"{"ping":{"nonce":"x"}}"#,
        r#"{"ping":{},"ack":{}}"#,
        "[1]",
        "{",
        "\u{0}",
    ] {
        let err = decode_client(Encoding::Json, bad.as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::Json(_)), "{bad}");
        assert!(err.to_string().starts_with("bad JSON frame: "));
    }
    // Invalid UTF-8 in a JSON text frame.
    assert!(decode_client(Encoding::Json, b"{\"auth\":{\"token\":\"\xff\"}}").is_err());
    // An unknown JSON member (a future frame kind) is skipped, as in
    // protobuf: the frame decodes with no member (the server answers
    // UNKNOWN_FRAME).
    assert_eq!(
        decode_client(Encoding::Json, br#"{"nope":{}}"#)
            .unwrap()
            .frame,
        None
    );
    // An unknown protobuf field (a future frame member) is skipped.
    let unknown = [0xFA, 0x07, 0x00]; // field 127, length-delimited, empty
    assert_eq!(
        decode_client(Encoding::Proto, &unknown).unwrap().frame,
        None
    );
}

#[test]
fn subprotocols() {
    assert_eq!(
        Encoding::from_subprotocol(SUBPROTOCOL_JSON),
        Some(Encoding::Json)
    );
    assert_eq!(Encoding::from_subprotocol("IM.GATEWAY.V1+JSON"), None);
    assert_eq!(Encoding::Proto.subprotocol(), "im.gateway.v1+proto");
    assert!(Encoding::Json.is_text() && !Encoding::Proto.is_text());
    let offered = ["chat", SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO];
    assert_eq!(
        negotiate(&offered),
        Some((Encoding::Json, SUBPROTOCOL_JSON))
    );
    assert_eq!(negotiate::<String>(&[]), None);
}
