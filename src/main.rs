//! The `webhook-relay` binary: everything lives in the library; see [`webhook_relay::cli`].

fn main() -> std::process::ExitCode {
    webhook_relay::cli::main()
}
