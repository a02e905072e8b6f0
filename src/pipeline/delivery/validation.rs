//! Response validators: the body of a 2xx answer, as far as it was kept, is read as JSON and
//! each validator's path must hold one of its expected values. Any failure makes the attempt
//! fail as `response_rejected`.

use super::attempt::{RESPONSE_BODY_LIMIT, ResponseInfo};
use crate::config::ResponseValidator;
use crate::redact::Redactor;

/// How much of a found value a verdict quotes, in characters.
const VALUE_CHARS: usize = 80;

/// One validator's verdict on one answer, as `test` shows it and a dead letter quotes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Validation {
    /// The validator's path, e.g. `$.data.status`.
    pub path: String,
    /// The value found there as compact JSON (scrubbed, cut to 80 characters); `None` when
    /// the body is not JSON or the path holds nothing.
    pub found: Option<String>,
    /// The expected values as compact JSON.
    pub expected: Vec<String>,
    /// Whether the value is one of the expected ones.
    pub passed: bool,
    /// Whether a failure is retried (`retry_on_mismatch`).
    pub retry_on_mismatch: bool,
}

impl Validation {
    /// What failed, e.g. `$.data.status is "error", expected one of "ok", "accepted"`.
    pub fn mismatch(&self) -> String {
        let found = match &self.found {
            Some(value) => format!("is {value}"),
            None => "is missing".to_string(),
        };
        format!(
            "{} {found}, expected one of {}",
            self.path,
            self.expected.join(", ")
        )
    }
}

/// Why the body could not be checked at all, when it could not.
pub fn unreadable(response: &ResponseInfo) -> Option<String> {
    if response.truncated {
        return Some(format!(
            "the body is longer than the {RESPONSE_BODY_LIMIT} bytes read, so it cannot be \
             checked"
        ));
    }
    None
}

/// Every validator's verdict on `response`'s body, and the mismatch texts when any failed
/// (the body not JSON counts as a failure of every validator).
pub fn check(
    validators: &[ResponseValidator],
    response: &ResponseInfo,
    redactor: &Redactor,
) -> (Vec<Validation>, Vec<String>) {
    let parsed = serde_json::from_str::<serde_json::Value>(&response.body).ok();
    let verdicts: Vec<Validation> = validators
        .iter()
        .map(|v| {
            let value = parsed.as_ref().and_then(|body| v.path.find(body));
            Validation {
                path: v.path.text.clone(),
                found: value.map(|value| {
                    redactor
                        .scrub(&value.to_string())
                        .chars()
                        .take(VALUE_CHARS)
                        .collect()
                }),
                expected: v.expected.iter().map(ToString::to_string).collect(),
                passed: value.is_some_and(|value| v.accepts(value)),
                retry_on_mismatch: v.retry_on_mismatch,
            }
        })
        .collect();
    let mut mismatches = Vec::new();
    if let Some(why) = unreadable(response) {
        mismatches.push(why);
    } else if parsed.is_none() && !validators.is_empty() {
        mismatches.push("the body is not JSON".to_string());
    } else {
        mismatches.extend(
            verdicts
                .iter()
                .filter(|v| !v.passed)
                .map(Validation::mismatch),
        );
    }
    (verdicts, mismatches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JsonPath;
    use serde_json::json;

    fn validator(path: &str, expected: &[serde_json::Value], retry: bool) -> ResponseValidator {
        ResponseValidator {
            path: JsonPath::parse(path).unwrap(),
            expected: expected.to_vec(),
            retry_on_mismatch: retry,
        }
    }

    fn answer(body: &str) -> ResponseInfo {
        ResponseInfo {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            truncated: false,
        }
    }

    #[test]
    fn passing_and_failing_paths_say_what_they_found() {
        let validators = [
            validator("$.data.status", &[json!("ok"), json!("accepted")], false),
            validator("$.data.code", &[json!(0)], false),
            validator("$.data.missing", &[json!(true)], false),
        ];
        let (verdicts, mismatches) = check(
            &validators,
            &answer(r#"{"data":{"status":"ok","code":7}}"#),
            &Redactor::default(),
        );
        assert_eq!(
            verdicts.iter().map(|v| v.passed).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert_eq!(verdicts[0].found.as_deref(), Some("\"ok\""));
        assert_eq!(
            mismatches,
            [
                "$.data.code is 7, expected one of 0",
                "$.data.missing is missing, expected one of true"
            ]
        );
    }

    #[test]
    fn a_body_that_is_not_json_or_cut_short_fails() {
        let validators = [validator("$.data.status", &[json!("ok")], false)];
        let (_, mismatches) = check(&validators, &answer("OK"), &Redactor::default());
        assert_eq!(mismatches, ["the body is not JSON"]);
        let mut long = answer(r#"{"data":{"status":"ok"}}"#);
        long.truncated = true;
        let (_, mismatches) = check(&validators, &long, &Redactor::default());
        assert!(mismatches[0].contains("longer than"), "{mismatches:?}");
    }

    #[test]
    fn a_found_value_is_scrubbed() {
        let validators = [validator("$.echo", &[json!("x")], false)];
        let body = r#"{"echo":"token s3cr3t-value"}"#;
        let (verdicts, mismatches) =
            check(&validators, &answer(body), &Redactor::new(["s3cr3t-value"]));
        assert_eq!(verdicts[0].found.as_deref(), Some("\"token ***\""));
        assert!(!mismatches[0].contains("s3cr3t"));
    }
}
