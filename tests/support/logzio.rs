//! The local Logz.io listener for integration tests: a thin layer over
//! [`webhook_relay::devtools::local_logzio`], which holds the logic.

#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

pub use webhook_relay::devtools::local_logzio::*;

/// The token the test listener accepts.
pub const TEST_TOKEN: &str = "test-logzio-token";

/// Starts a local listener that accepts [`TEST_TOKEN`].
pub async fn start() -> LocalLogzio {
    LocalLogzio::start(TEST_TOKEN)
        .await
        .expect("starting the local Logz.io listener")
}

/// Writes the listener's CA PEM to `dir/logzio-ca.pem` and returns the path, for configs that
/// take a CA file.
pub fn write_ca(logzio: &LocalLogzio, dir: &Path) -> PathBuf {
    let path = dir.join("logzio-ca.pem");
    std::fs::write(&path, logzio.ca_pem()).expect("writing the local Logz.io CA");
    path
}
