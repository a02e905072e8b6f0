//! Response validators: a 2xx answer whose JSON body holds an expected value is delivered; a
//! value that is not expected, missing, or a body that is not JSON fails as
//! `response_rejected` (permanent unless `retry_on_mismatch`), and the dead letter says which
//! path had which value.

use super::{QUICK, Setup, deliver};
use crate::endpoint_server::{Endpoint, Reply, Seen};
use crate::harness::app;
use crate::support::logzio::Scripted;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webhook_relay::broker::dead_letter::DeadLetterInfo;
use webhook_relay::model::event::{Trigger, sample};
use webhook_relay::pipeline::outcome::{Outcome, Reason};

fn webhook(name: &str, endpoint: &Endpoint, retry: bool) -> String {
    format!(
        "[[webhook]]\nname = \"{name}\"\nurl = \"{}\"\ntriggers = [\"RequestApproved\"]\n\
         body_template = '{{}}'\n[[webhook.response_validators]]\npath = \"$.data.status\"\n\
         expected = [\"ok\", \"accepted\"]\nretry_on_mismatch = {retry}\n\
         [[webhook.response_validators]]\npath = \"$.data.code\"\nexpected = [0]\n",
        endpoint.url("/hook")
    )
}

#[tokio::test]
async fn validators_pass_reject_and_retry_when_asked() {
    let answers: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let script = Arc::clone(&answers);
    let endpoint = Endpoint::start(move |_: &Seen| {
        let body = script
            .lock()
            .unwrap()
            .pop()
            .unwrap_or(r#"{"data":{"status":"ok","code":0}}"#);
        Reply::new(200, body)
    })
    .await;
    let hooks = format!(
        "{}{}",
        webhook("strict", &endpoint, false),
        webhook("patient", &endpoint, true)
    );
    let setup = Setup::new(&hooks, &[&endpoint], &[], QUICK);
    let deliverer = setup.deliverer();

    let outcome = deliver(&deliverer, &setup.request("strict", "e1", "{}")).await;
    assert_eq!(
        outcome,
        Outcome::Delivered {
            attempts: 1,
            status: 200
        }
    );

    for (body, said) in [
        (
            r#"{"data":{"status":"error","code":0}}"#,
            r#"$.data.status is "error", expected one of "ok", "accepted""#,
        ),
        (
            r#"{"data":{"status":"accepted"}}"#,
            "$.data.code is missing, expected one of 0",
        ),
        ("OK", "the body is not JSON"),
    ] {
        answers.lock().unwrap().push(body);
        let Outcome::DeadLetter(failure) =
            deliver(&deliverer, &setup.request("strict", "e2", "{}")).await
        else {
            panic!("not a dead letter for {body}");
        };
        assert_eq!(failure.reason, Reason::ResponseRejected);
        assert_eq!((failure.attempts, failure.last_status), (1, Some(200)));
        assert!(failure.last_error.contains(said), "{}", failure.last_error);
    }

    // retry_on_mismatch: retried until the answer is what is expected.
    answers
        .lock()
        .unwrap()
        .extend([r#"{"data":{"status":"pending","code":0}}"#; 2]);
    let outcome = deliver(&deliverer, &setup.request("patient", "e3", "{}")).await;
    assert_eq!(
        outcome,
        Outcome::Delivered {
            attempts: 3,
            status: 200
        }
    );
    // …and dead-lettered as response_rejected when it never is.
    answers
        .lock()
        .unwrap()
        .extend([r#"{"data":{"status":"pending","code":0}}"#; 4]);
    let Outcome::DeadLetter(failure) =
        deliver(&deliverer, &setup.request("patient", "e4", "{}")).await
    else {
        panic!("not a dead letter");
    };
    assert_eq!(failure.reason, Reason::ResponseRejected);
    assert_eq!(failure.attempts, 4);
}

/// Through the whole worker: the dead letter's reason and last error.
#[tokio::test]
async fn a_rejected_response_is_dead_lettered_with_the_path_and_value() {
    let app = app("response-rejected")
        .webhook(
            r#"
[[webhook]]
name = "validated"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook.response_validators]]
path = "$.data.status"
expected = ["ok"]
"#,
        )
        .start()
        .await;
    app.listener()
        .push_response(Scripted::status(200).with_body(r#"{"data":{"status":"quota exceeded"}}"#));
    app.publish(&sample(Trigger::RequestApproved)).await;
    let letters = app.dead_letters(1, Duration::from_secs(20)).await;
    assert_eq!(letters.len(), 1);
    let info = DeadLetterInfo::from_properties(&letters[0].properties);
    assert_eq!(info.reason, Some(Reason::ResponseRejected));
    assert_eq!(info.last_status, Some(200));
    assert_eq!(info.attempts, Some(1));
    let error = info.last_error.unwrap();
    assert!(
        error.contains(r#"$.data.status is "quota exceeded", expected one of "ok""#),
        "{error}"
    );
    app.finish().await;
}
