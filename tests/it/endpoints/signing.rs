//! Standard Webhooks signatures checked by the receiving end with its own implementation of
//! the spec (HMAC-SHA256 over `{id}.{timestamp}.{body}`, base64, `v1,` per secret), during a
//! rotation with two secrets: a receiver that knows either secret accepts the request.

use super::{QUICK, Setup, deliver};
use crate::endpoint_server::{Endpoint, Reply, Seen};
use base64::Engine as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use webhook_relay::pipeline::outcome::Outcome;

const CURRENT: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PREVIOUS: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The receiver's check, written from the spec: does any `v1` signature match `secret`'s?
fn verifies(secret: &str, seen: &Seen) -> bool {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let (Some(id), Some(ts), Some(signatures)) = (
        seen.header("webhook-id"),
        seen.header("webhook-timestamp"),
        seen.header("webhook-signature"),
    ) else {
        return false;
    };
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(&seen.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let expected = engine.encode(ring::hmac::sign(&key, &content).as_ref());
    signatures
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .any(|(version, sig)| version == "v1" && sig == expected)
}

#[tokio::test]
async fn both_secrets_of_a_rotation_verify_and_the_id_is_stable_across_retries() {
    // The first answer fails, so the retry shows the id staying the same.
    let calls = AtomicU32::new(0);
    let endpoint = Endpoint::start(
        move |_: &Seen| match calls.fetch_add(1, Ordering::Relaxed) {
            0 => Reply::new(503, ""),
            _ => Reply::new(200, "{}"),
        },
    )
    .await;
    let webhook = format!(
        "[[webhook]]\nname = \"signed\"\nurl = \"{}\"\ntriggers = [\"RequestApproved\"]\n\
         body_template = '{{}}'\n[webhook.signing]\nsecrets = [\"${{WHSEC_CURRENT}}\", \
         \"${{WHSEC_PREVIOUS}}\"]\n",
        endpoint.url("/hook")
    );
    let setup = Setup::new(
        &webhook,
        &[&endpoint],
        &[("WHSEC_CURRENT", CURRENT), ("WHSEC_PREVIOUS", PREVIOUS)],
        QUICK,
    );
    let deliverer = setup.deliverer();
    let body = r#"{"note": "signed", "text": "ünïcode"}"#;
    let outcome = deliver(&deliverer, &setup.request("signed", "evt-1", body)).await;
    assert!(
        matches!(outcome, Outcome::Delivered { attempts: 2, .. }),
        "{outcome:?}"
    );

    let seen = endpoint.seen();
    assert_eq!(seen.len(), 2);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for request in &seen {
        assert!(verifies(CURRENT, request), "current secret: {request:?}");
        assert!(verifies(PREVIOUS, request), "previous secret: {request:?}");
        assert!(!verifies("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", request));
        let ts: u64 = request
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!(ts.abs_diff(now) < 300, "the attempt's Unix time");
        assert_eq!(
            request
                .header("webhook-signature")
                .unwrap()
                .split(' ')
                .count(),
            2
        );
    }
    assert_eq!(
        seen[0].header("webhook-id"),
        seen[1].header("webhook-id"),
        "the id is the delivery's idempotency key"
    );
    assert_eq!(
        seen[0].header("webhook-id"),
        seen[0].header("idempotency-key")
    );
    // A tampered body fails.
    let mut tampered = seen[0].clone();
    tampered.body = b"{}".to_vec();
    assert!(!verifies(CURRENT, &tampered));
}
