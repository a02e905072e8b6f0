//! The operator console in a real headless browser (Chromium driven over WebDriver with
//! fantoccini), against the real binary, the real RabbitMQ and real HTTPS listeners on
//! 127.0.0.1. Each test has its own exchange and queues and deletes them at the end.
//!
//! The browser tests need `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`); without them they print why and pass, unless `CONSOLE_REQUIRE_BROWSER=1`
//! (CI), where a missing browser fails them. The tests that need no browser always run.
//! With `CONSOLE_SCREENSHOTS=1` the tests write the screenshots of `docs/console/`.

#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

mod browser;
mod console;

mod actions;
mod pages;
mod safety;
