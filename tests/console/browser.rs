//! A headless Chromium for one test: chromedriver started on a free loopback port, a
//! WebDriver session on it, both ended when the test ends.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A browser session and the chromedriver serving it; dropping it kills the driver.
pub struct Browser {
    pub client: Client,
    driver: Driver,
}

/// The chromedriver process, killed when dropped (also when a test panics).
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `name` on the `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The program named by the variable `var` (which must exist when set), else the first of
/// `names` on the `PATH`.
fn program(var: &str, names: &[&str]) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => names.iter().find_map(|name| on_path(name)),
    }
}

/// The chromium binary and chromedriver (`CHROME` and `CHROMEDRIVER` override the `PATH`),
/// when both are installed.
fn installed() -> Option<(PathBuf, PathBuf)> {
    let chromium = program("CHROME", &["chromium", "chromium-browser", "google-chrome"])?;
    let driver = program("CHROMEDRIVER", &["chromedriver"])?;
    Some((chromium, driver))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Browser {
    /// A fresh headless session, or `None` (after saying why) when the browser is not
    /// installed and not required.
    pub async fn start(test: &str) -> Option<Browser> {
        let Some((chromium, driver_path)) = installed() else {
            assert!(
                std::env::var("CONSOLE_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "CONSOLE_REQUIRE_BROWSER=1 but chromium or chromedriver is not installed \
                 (apt-get install chromium chromium-driver)"
            );
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "[console] {test}: SKIPPED: chromium or chromedriver is not installed \
                 (apt-get install chromium chromium-driver; CONSOLE_REQUIRE_BROWSER=1 makes this \
                 a failure)"
            );
            return None;
        };
        let port = free_port();
        let driver = Driver(
            Command::new(&driver_path)
                .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let client = connect(port, &chromium).await;
        client
            .set_window_size(1366, 900)
            .await
            .expect("window size");
        Some(Browser { client, driver })
    }

    /// Opens `url` and waits for the page.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}`: {e}"))
            .text()
            .await
            .expect("element text")
    }

    /// Clicks the first element matching `css` and waits for the next page to load.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}`: {e}"))
            .click()
            .await
            .expect("click");
    }

    /// Waits (bounded) until an element matches `css`, e.g. on the page a click leads to.
    pub async fn wait_for(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}`: {e}"));
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
            .len()
    }

    /// The page's HTML as the browser has it.
    pub async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    /// With `CONSOLE_SCREENSHOTS=1`, saves the page as `docs/console/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        if std::env::var("CONSOLE_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console");
        std::fs::create_dir_all(&dir).expect("docs/console");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Ends the session, then the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        drop(self.driver);
    }
}

/// A session on the chromedriver at `port`, retried while it starts (bounded).
async fn connect(port: u16, chromium: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1366,900"],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot start a chromedriver session: {e}"),
        }
    }
}
