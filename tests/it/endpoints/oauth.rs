//! OAuth2 client credentials against a real token endpoint with short-lived tokens: one fetch
//! for many concurrent deliveries, the cached token reused, a 401 refreshing it once, an
//! expired token refreshed before use, and token endpoint failures classified.

use super::{QUICK, Setup, deliver};
use crate::endpoint_server::{Endpoint, Reply, Seen};
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webhook_relay::pipeline::outcome::{Outcome, Reason};

const SECRET: &str = "client-secret-1";

/// The identity provider and the API it guards: tokens `tok-N`, each valid for `lifetime`
/// seconds unless revoked.
#[derive(Default)]
struct Provider {
    issued: u32,
    lifetime: u64,
    valid: HashMap<String, bool>,
    /// Answer token requests with this instead (status, body).
    failing: Option<(u16, String)>,
}

fn answer(provider: &Mutex<Provider>, request: &Seen) -> Reply {
    let mut p = provider.lock().unwrap();
    match request.path.as_str() {
        "/token" => {
            if let Some((status, body)) = &p.failing {
                return Reply::new(*status, body.clone());
            }
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("relay:{SECRET}"));
            let form = request.body_text();
            if request.header("authorization") != Some(&format!("Basic {basic}"))
                || !form.contains("grant_type=client_credentials")
                || !form.contains("scope=events.write")
            {
                return Reply::new(401, r#"{"error":"invalid_client"}"#);
            }
            p.issued += 1;
            let token = format!("tok-{}", p.issued);
            p.valid.insert(token.clone(), true);
            let body = format!(
                r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{}}}"#,
                p.lifetime
            );
            // Slow enough that concurrent deliveries all ask while the first fetch runs.
            Reply::new(200, body).after(Duration::from_millis(200))
        }
        _ => {
            let token = request
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            match p.valid.get(token) {
                Some(true) => Reply::new(200, "{}"),
                _ => Reply::new(401, r#"{"error":"invalid_token"}"#),
            }
        }
    }
}

fn webhook(name: &str, endpoint: &Endpoint, secret_var: &str) -> String {
    format!(
        "[[webhook]]\nname = \"{name}\"\nurl = \"{}\"\ntriggers = [\"RequestApproved\"]\n\
         body_template = '{{}}'\n[webhook.auth]\ntype = \"oauth2\"\ntoken_url = \"{}\"\n\
         client_id = \"relay\"\nclient_secret = \"${{{secret_var}}}\"\nscope = \"events.write\"\n",
        endpoint.url("/hook"),
        endpoint.url("/token"),
    )
}

fn bearer(seen: &Seen) -> String {
    seen.header("authorization").unwrap_or("").to_string()
}

#[tokio::test]
async fn tokens_are_fetched_once_shared_cached_and_refreshed_on_401_and_expiry() {
    let provider = Arc::new(Mutex::new(Provider {
        lifetime: 3600,
        ..Provider::default()
    }));
    let shared = Arc::clone(&provider);
    let endpoint = Endpoint::start(move |r| answer(&shared, r)).await;
    let setup = Setup::new(
        &webhook("api", &endpoint, "CLIENT_SECRET"),
        &[&endpoint],
        &[("CLIENT_SECRET", SECRET)],
        QUICK,
    );
    let deliverer = setup.deliverer();

    // Ten concurrent deliveries with no token yet: one fetch, the others wait for it.
    let requests: Vec<_> = (0..10)
        .map(|i| setup.request("api", &format!("e{i}"), "{}"))
        .collect();
    let outcomes =
        futures_util::future::join_all(requests.iter().map(|r| deliver(&deliverer, r))).await;
    for outcome in &outcomes {
        assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    }
    assert_eq!(endpoint.seen_at("/token").len(), 1, "no stampede");
    let hooks = endpoint.seen_at("/hook");
    assert_eq!(hooks.len(), 10);
    assert!(hooks.iter().all(|s| bearer(s) == "Bearer tok-1"));

    // Cached: the next delivery reuses it.
    let outcome = deliver(&deliverer, &setup.request("api", "e10", "{}")).await;
    assert!(
        matches!(outcome, Outcome::Delivered { attempts: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(endpoint.seen_at("/token").len(), 1, "cached");

    // Revoked: the 401 refreshes the token once and the same attempt succeeds with it. The
    // new token lives one second.
    {
        let mut p = provider.lock().unwrap();
        p.valid.insert("tok-1".into(), false);
        p.lifetime = 1;
    }
    let outcome = deliver(&deliverer, &setup.request("api", "e11", "{}")).await;
    assert!(
        matches!(outcome, Outcome::Delivered { attempts: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        endpoint.seen_at("/token").len(),
        2,
        "one refresh on the 401"
    );
    let hooks = endpoint.seen_at("/hook");
    let last_two: Vec<String> = hooks[hooks.len() - 2..].iter().map(bearer).collect();
    assert_eq!(last_two, ["Bearer tok-1", "Bearer tok-2"]);

    // Expired: refreshed before use, so the endpoint never sees the stale token.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let outcome = deliver(&deliverer, &setup.request("api", "e12", "{}")).await;
    assert!(
        matches!(outcome, Outcome::Delivered { attempts: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(endpoint.seen_at("/token").len(), 3, "refreshed on expiry");
    let hooks = endpoint.seen_at("/hook");
    assert_eq!(bearer(hooks.last().unwrap()), "Bearer tok-3");
    // 10 + 1 + (401, again) + 1: no 401 before the expired token was replaced.
    assert_eq!(hooks.len(), 14);
    assert!(
        endpoint
            .seen_at("/token")
            .iter()
            .all(|t| t.method == "POST")
    );
    assert_eq!(deliverer.token_cache("api").map(|c| c.requests()), Some(3));
}

#[tokio::test]
async fn invalid_client_is_permanent_with_a_hint_and_a_token_endpoint_outage_is_retried() {
    let provider = Arc::new(Mutex::new(Provider {
        lifetime: 3600,
        ..Provider::default()
    }));
    let shared = Arc::clone(&provider);
    let endpoint = Endpoint::start(move |r| answer(&shared, r)).await;
    let setup = Setup::new(
        &webhook("wrong", &endpoint, "WRONG_SECRET"),
        &[&endpoint],
        &[("WRONG_SECRET", "not-the-client-secret")],
        QUICK,
    );
    let deliverer = setup.deliverer();
    let Outcome::DeadLetter(failure) =
        deliver(&deliverer, &setup.request("wrong", "e1", "{}")).await
    else {
        panic!("not a dead letter");
    };
    assert_eq!(failure.reason, Reason::Rejected);
    assert_eq!(failure.attempts, 1, "refused for good at once");
    assert!(
        failure.last_error.contains("invalid_client")
            && failure.last_error.contains("auth.client_secret"),
        "{}",
        failure.last_error
    );
    assert!(!failure.last_error.contains("not-the-client-secret"));
    assert!(
        endpoint.seen_at("/hook").is_empty(),
        "the target is never called"
    );

    provider.lock().unwrap().failing = Some((503, "down".into()));
    let before = endpoint.seen_at("/token").len();
    let Outcome::DeadLetter(failure) =
        deliver(&deliverer, &setup.request("wrong", "e2", "{}")).await
    else {
        panic!("not a dead letter");
    };
    assert_eq!(failure.reason, Reason::DeliveryFailed, "{failure:?}");
    assert_eq!(failure.attempts, 4, "retried up to max_attempts");
    assert_eq!(endpoint.seen_at("/token").len() - before, 4);
    assert!(
        failure.last_error.contains("http 503"),
        "{}",
        failure.last_error
    );
}
