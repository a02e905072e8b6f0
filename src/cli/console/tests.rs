//! The console's rules that need no broker: where it may listen, the filter's time range,
//! the auth gate's token check.

use super::*;

fn config() -> Arc<Config> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("webhooks")).unwrap();
    std::fs::write(
        dir.path().join("relay.toml"),
        "[policy]\nallow_idle = true\n",
    )
    .unwrap();
    Arc::new(crate::config::load(dir.path(), &crate::config::Env::default()).unwrap())
}

#[test]
fn loopback_needs_no_token_and_any_other_address_does() {
    let loopback: SocketAddr = "127.0.0.1:8088".parse().unwrap();
    let v6: SocketAddr = "[::1]:8088".parse().unwrap();
    let open: SocketAddr = "0.0.0.0:8088".parse().unwrap();
    assert!(console(config(), loopback, None, false).is_ok());
    assert!(console(config(), v6, None, false).is_ok());
    assert!(matches!(
        console(config(), open, None, false),
        Err(StartError::Exposed(_))
    ));
    assert!(matches!(
        console(config(), open, Some(String::new()), false),
        Err(StartError::Exposed(_))
    ));
    assert!(matches!(
        console(config(), open, Some("short".into()), false),
        Err(StartError::WeakToken)
    ));
    let with_token = console(config(), open, Some("a-long-enough-token".into()), false).unwrap();
    assert!(with_token.auth.required());
}
