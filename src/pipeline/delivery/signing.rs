//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature`, the last one `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">` per key, space-separated (several keys during a rotation).

use crate::config::Signing;
use base64::Engine as _;

/// The message id header: the delivery's idempotency key.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The attempt's Unix time, in seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// `v1,<signature>` per key, space-separated.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The `webhook-signature` value for message `id` sent at `timestamp` with `body`.
pub fn signature(signing: &Signing, id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(id.len() + body.len() + 24);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    signing
        .keys
        .iter()
        .map(|key| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose());
            let tag = ring::hmac::sign(&key, &signed);
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The signature as `test` shows it: one `v1,***` per key.
pub fn shown_signature(signing: &Signing) -> String {
    vec!["v1,***"; signing.keys.len()].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode_whsec;
    use crate::redact::Secret;

    fn signing(secrets: &[&str]) -> Signing {
        Signing {
            keys: secrets
                .iter()
                .map(|s| Secret::new(decode_whsec(s).unwrap()))
                .collect(),
        }
    }

    /// The test vector of the Standard Webhooks reference libraries (libraries/rust,
    /// `test_sign`): secret, message id, timestamp and payload, and the signature they publish.
    #[test]
    fn the_specs_published_vector() {
        let signing = signing(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]);
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            signature(
                &signing,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                body
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn one_signature_per_key_in_order() {
        let current = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let previous = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let both = signing(&[current, previous]);
        let value = signature(&both, "id", 1, b"{}");
        let parts: Vec<&str> = value.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&signing(&[current]), "id", 1, b"{}"));
        assert_eq!(parts[1], signature(&signing(&[previous]), "id", 1, b"{}"));
        assert_ne!(parts[0], parts[1]);
        assert_eq!(shown_signature(&both), "v1,*** v1,***");
    }
}
