//! `check`: exit codes, one line per problem, `--json`.

use super::{APPROVALS, assert_exit, cli, json};
use crate::harness::app;
use crate::support::logzio::TEST_TOKEN;

/// `check`: 0 for a clean config; 1 for a template path that can never exist, on one line
/// naming file, webhook and field; warnings alone still exit 0; `--json` says the same.
#[tokio::test]
async fn check_exit_codes_and_one_line_per_problem() {
    let app = app("cli-check").webhook(APPROVALS).build().await;
    let dir = app.config_dir();

    let clean = cli(&app, &["check"], &[]).await;
    assert_exit(&clean, 0);
    let last = clean.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ok ") && last.contains("1 webhook (1 active), 0 errors, 0 warnings"),
        "{}",
        clean.stdout
    );

    // An impossible path: an error naming file, webhook and field.
    let typo = dir.join("webhooks/01.toml");
    std::fs::write(
        &typo,
        r#"
[[webhook]]
name = "mail-typo"
url = "@URL@"
triggers = ["RequestCreated"]
body_template = '{"email": "{{ data.requester.mail }}"}'
"#
        .replace(
            "@URL@",
            &app.listener()
                .url("apono")
                .replace(TEST_TOKEN, "${LOGZIO_TOKEN}"),
        ),
    )
    .unwrap();
    let failed = cli(&app, &["check"], &[]).await;
    assert_exit(&failed, 1);
    let errors: Vec<&str> = failed
        .stdout
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", failed.stdout);
    let expected = format!(
        "error: {}: webhook `mail-typo`: body_template: `data.requester.mail` can never exist",
        typo.display()
    );
    assert!(errors[0].starts_with(&expected), "{}", errors[0]);
    assert!(
        errors[0].contains("did you mean `data.requester.email`"),
        "{}",
        errors[0]
    );
    assert!(
        failed.stdout.lines().last().unwrap().starts_with("failed "),
        "{}",
        failed.stdout
    );
    let report = json(&cli(&app, &["--json", "check"], &[]).await);
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(report["errors"], 1, "{report:#}");
    let finding = &report["findings"][0];
    assert_eq!(finding["severity"], "error", "{report:#}");
    assert_eq!(finding["file"], typo.display().to_string());
    assert_eq!(finding["webhook"], "mail-typo");
    assert_eq!(finding["field"], "body_template");

    // Warnings only: no triggers, a token written into the file, a retry window close to the
    // consumer timeout, and a duplicate. They are printed, and the exit code stays 0.
    const INLINE: &str = "inline-token-5150";
    let url = app.listener().url_with_token(INLINE, "apono");
    std::fs::write(
        &typo,
        format!(
            r#"
[[webhook]]
name = "silent"
url = "{url}"
triggers = []
body_template = '{{}}'

[[webhook]]
name = "slow"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{{}}'
[webhook.delivery]
retry_window = "25m"
max_elapsed = "2h"

[[webhook]]
name = "approvals-again"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{{"id": "{{{{ data.id }}}}", "email": "{{{{ data.requester.email }}}}"}}'
"#
        )
        .replace(
            "@URL0@",
            &app.listener()
                .url("apono")
                .replace(TEST_TOKEN, "${LOGZIO_TOKEN}"),
        ),
    )
    .unwrap();
    let warned = cli(&app, &["check"], &[]).await;
    assert_exit(&warned, 0);
    let warnings: Vec<&str> = warned
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    let file = typo.display().to_string();
    for needle in [
        format!("{file}: webhook `silent`: triggers: the webhook has no triggers"),
        format!("{file}: webhook `silent`: url (query parameter token): holds a secret"),
        format!("{file}: webhook `slow`: delivery.retry_window: "),
        format!("{file}: webhook `approvals-again`: is identical to webhook `approvals`"),
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(&needle)),
            "no warning with `{needle}`:\n{}",
            warned.stdout
        );
    }
    assert_eq!(warnings.len(), 4, "{}", warned.stdout);
    assert!(!warned.stdout.contains("error: "), "{}", warned.stdout);
    assert!(!warned.stdout.contains(INLINE), "{}", warned.stdout);
    assert!(
        warned
            .stdout
            .lines()
            .last()
            .unwrap()
            .contains("4 webhooks (4 active), 0 errors, 4 warnings"),
        "{}",
        warned.stdout
    );
    let warned_json = cli(&app, &["--json", "check"], &[]).await;
    assert_exit(&warned_json, 0);
    let report = json(&warned_json);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["warnings"], 4, "{report:#}");
    assert_eq!(report["webhooks"], 4, "{report:#}");
    app.finish().await;
}
