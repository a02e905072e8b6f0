//! `webhooks`: the table of configured webhooks and its `--json` rows.

use super::{APPROVALS, assert_exit, cli, json};
use crate::harness::app;

/// The table: ● for active, ○ for inactive, method, URL with the token redacted, triggers and
/// filters in short form, the file; columns aligned. `--json` has the same rows.
#[tokio::test]
async fn webhooks_table_shows_status_redacted_urls_triggers_filters_and_file() {
    let app = app("cli-webhooks")
        .webhook(APPROVALS)
        .webhook(
            r#"
[[webhook]]
name = "prod-grants"
status = "inactive"
method = "PUT"
url = "@URL0@"
triggers = ["RequestGranted", "RequestExpired"]
body_template = '{}'

[webhook.filters]
integration_names = ["prod-postgres", "prod-mysql"]
permissions = ["readonly"]
"#,
        )
        .build()
        .await;
    let port = app.listener().port();
    let out = cli(&app, &["webhooks"], &[]).await;
    assert_exit(&out, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "header, two rows, summary:\n{}", out.stdout);
    let url = format!("https://127.0.0.1:{port}/?token=***&type=apono");
    let dir = app.config_dir().display().to_string();
    let (file0, file1) = (
        format!("{dir}/webhooks/00.toml"),
        format!("{dir}/webhooks/01.toml"),
    );
    let expected = [
        vec!["NAME", "METHOD", "URL", "TRIGGERS", "FILTERS", "FILE"],
        vec![
            "●",
            "active",
            "approvals",
            "POST",
            &url,
            "Approved",
            "-",
            &file0,
        ],
        vec![
            "○",
            "inactive",
            "prod-grants",
            "PUT",
            &url,
            "Granted,Expired",
            "integration_names=prod-postgres,prod-mysql",
            "permissions=readonly",
            &file1,
        ],
    ];
    for (line, cells) in lines.iter().zip(&expected) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words, cells, "{}", out.stdout);
    }
    // Aligned: each column starts at the same character offset on every line.
    let column = |line: &str, cell: &str| {
        let byte = line
            .find(cell)
            .unwrap_or_else(|| panic!("{cell} in {line}"));
        line[..byte].chars().count()
    };
    for cells in [
        ("NAME", "approvals", "prod-grants"),
        ("URL", "https", "https"),
    ] {
        let (h, a, b) = cells;
        assert_eq!(column(lines[0], h), column(lines[1], a), "{}", out.stdout);
        assert_eq!(column(lines[0], h), column(lines[2], b), "{}", out.stdout);
    }
    assert_eq!(lines[3], "2 webhooks, 1 active (● active, ○ inactive)");

    let rows = json(&cli(&app, &["--json", "webhooks"], &[]).await);
    let rows = rows.as_array().expect("an array of webhooks");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "approvals");
    assert_eq!(rows[0]["active"], true);
    assert_eq!(rows[1]["active"], false);
    assert_eq!(rows[1]["method"], "PUT");
    assert_eq!(rows[1]["url"], url);
    assert_eq!(
        rows[1]["triggers"],
        serde_json::json!(["RequestGranted", "RequestExpired"])
    );
    app.finish().await;
}
