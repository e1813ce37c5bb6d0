//! `proto::codec::decode_client` in both encodings: never panics, and a frame
//! that decodes re-encodes to bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::codec::{decode_client, encode_client, Encoding};

fuzz_target!(|data: &[u8]| {
    for enc in [Encoding::Proto, Encoding::Json] {
        if let Ok(frame) = decode_client(enc, data) {
            let mut out = Vec::new();
            encode_client(enc, &frame, &mut out);
            let again = decode_client(enc, &out).expect("re-encoded frame decodes");
            assert_eq!(again, frame);
        }
    }
});
