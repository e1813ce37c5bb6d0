//! The TLS 1.3 record layer that moved connections use after an upgrade
//! (`gateway::tls13`), against rustls' own record protection on the same
//! keys, sequence numbers and bytes:
//! - what ours seals is byte for byte what rustls' encrypter makes of the
//!   same application data (AES-256-GCM and ChaCha20-Poly1305: the suites
//!   whose keys rustls' public API builds; AES-128-GCM is the same code on
//!   a shorter key, checked against a live rustls connection in
//!   `gateway/src/tls13_tests.rs`);
//! - a record of arbitrary bytes opens with ours exactly when it decrypts
//!   with rustls, to the same application data;
//! - ours never panics and never grows past the bytes it was given, on
//!   arbitrary input, for every suite.
#![no_main]

use gateway::tls13::{Error, Keys, RecordLayer, Suite};
use libfuzzer_sys::fuzz_target;
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, OutboundChunks, OutboundPlainMessage, Tls13AeadAlgorithm,
};
use rustls::crypto::ring::cipher_suite;
use rustls::{ContentType, ProtocolVersion, SupportedCipherSuite};

fn aead(s: SupportedCipherSuite) -> &'static dyn Tls13AeadAlgorithm {
    match s {
        SupportedCipherSuite::Tls13(t) => t.aead_alg,
        _ => unreachable!("a TLS 1.3 suite"),
    }
}

fuzz_target!(|input: &[u8]| {
    // ctl (1) | seq (8) | key (32) | iv (12) | data
    if input.len() < 53 {
        return;
    }
    let (ctl, rest) = (input[0], &input[1..]);
    // Ours never uses the last sequence number (it could not count on from
    // it; 2^64 records are never sent): the differential stays below it.
    let seq = (u64::from_be_bytes(rest[..8].try_into().unwrap()) >> (ctl & 0x1f)).min(u64::MAX - 1);
    let key: [u8; 32] = rest[8..40].try_into().unwrap();
    let iv: [u8; 12] = rest[40..52].try_into().unwrap();
    let data = &rest[52..];
    let (suite, theirs) = match ctl >> 6 {
        0 => (
            Suite::Aes256Gcm,
            Some(cipher_suite::TLS13_AES_256_GCM_SHA384),
        ),
        1 => (
            Suite::Chacha20Poly1305,
            Some(cipher_suite::TLS13_CHACHA20_POLY1305_SHA256),
        ),
        2 => (Suite::Aes128Gcm, None),
        _ => (Suite::Chacha20Poly1305, None),
    };
    let key_len = if suite == Suite::Aes128Gcm { 16 } else { 32 };
    let keys = Keys {
        suite,
        key: key[..key_len].to_vec(),
        iv,
        seq,
    };
    let mut ours = RecordLayer::new(keys.clone(), keys).unwrap();

    // Arbitrary bytes as records: errors, never a panic, never more
    // plaintext than bytes.
    let mut incoming = data.to_vec();
    let mut plain = Vec::new();
    let _ = ours.open(&mut incoming, &mut plain);
    assert!(plain.len() <= data.len());

    let Some(theirs) = theirs else { return };
    let alg = aead(theirs);
    // A layer at `seq` with the 32-byte key, both ways.
    let fresh_layer = || {
        let k = Keys {
            suite,
            key: key.to_vec(),
            iv,
            seq,
        };
        RecordLayer::new(k.clone(), k).unwrap()
    };
    // Sealing: byte for byte rustls' record (one record's worth; ours
    // makes no record of nothing, and stops an AES-GCM key at 2^24).
    let chunk = &data[..data.len().min(gateway::tls13::MAX_PLAIN)];
    if chunk.is_empty() {
        return;
    }
    let mut fresh = fresh_layer();
    let mut sealed = Vec::new();
    let ok = fresh.seal(chunk, &mut sealed);
    let mut enc = alg.encrypter(AeadKey::from(key), Iv::from(iv));
    let msg = OutboundPlainMessage {
        typ: ContentType::ApplicationData,
        version: ProtocolVersion::TLSv1_2,
        payload: OutboundChunks::Single(chunk),
    };
    let used_up = suite == Suite::Aes256Gcm && seq >= 1 << 24;
    match enc.encrypt(msg, seq) {
        Ok(_) if used_up => assert_eq!(ok, Err(Error::Exhausted)),
        Ok(record) => {
            assert_eq!(ok, Ok(()));
            assert_eq!(sealed, record.encode(), "sealed differently from rustls");
        }
        // rustls refuses only what ours refuses (a last sequence number).
        Err(_) => assert_eq!(ok, Err(Error::Exhausted)),
    }

    // Opening: one record whose inner plaintext is arbitrary (content,
    // content type, padding: whatever the bytes say), sealed with ring so
    // that it authenticates, or (ctl bit 5) left as arbitrary ciphertext.
    // Ours opens application data exactly when rustls decrypts it to
    // application data, the same bytes; when rustls refuses, ours does.
    let tag_len = 16;
    let body_len = data.len() + if ctl & 0x20 == 0 { tag_len } else { 0 };
    if body_len < 17 || body_len > 16_640 {
        return;
    }
    let mut record = vec![23, 3, 3];
    record.extend_from_slice(&(body_len as u16).to_be_bytes());
    if ctl & 0x20 == 0 {
        let algorithm = match suite {
            Suite::Aes256Gcm => &ring::aead::AES_256_GCM,
            _ => &ring::aead::CHACHA20_POLY1305,
        };
        let sealing =
            ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(algorithm, &key).unwrap());
        let mut nonce = iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        let header: [u8; 5] = record[..5].try_into().unwrap();
        let mut inner = data.to_vec();
        sealing
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(header),
                &mut inner,
            )
            .unwrap();
        record.extend_from_slice(&inner);
    } else {
        record.extend_from_slice(data);
    }
    let data = &record[5..].to_vec();
    let mut dec = alg.decrypter(AeadKey::from(key), Iv::from(iv));
    let mut payload = data.to_vec();
    let msg = InboundOpaqueMessage::new(
        ContentType::ApplicationData,
        ProtocolVersion::TLSv1_2,
        &mut payload,
    );
    let theirs = dec.decrypt(msg, seq);
    let mut fresh = fresh_layer();
    let mut plain = Vec::new();
    let ours = fresh.open(&mut record, &mut plain);
    match theirs {
        Ok(m) if m.typ == ContentType::ApplicationData && m.payload.len() <= 16_384 => {
            assert_eq!(ours, Ok(false));
            assert_eq!(plain, m.payload);
        }
        Ok(_) => assert!(plain.is_empty()),
        Err(_) => assert!(ours.is_err(), "rustls refused what ours opened"),
    }
});
