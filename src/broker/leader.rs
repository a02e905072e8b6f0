//! Which broker URL to try first: the one of the node that leads the input queue.
//!
//! On a cluster, every message of a queue passes through its leader (quorum queues) or its
//! home node (classic queues). A worker connected to another node has each delivery and each
//! ack forwarded between nodes, so connecting to the leader saves a hop both ways. With
//! `amqp.management_url` set, each connect asks the management API where the input queue
//! lives (`GET /api/queues/{vhost}/{queue}`: `leader`, or `node` for a classic queue) and which
//! AMQP listeners that node has (`GET /api/overview`: `listeners`), and tries the matching
//! URL of `amqp.url`/`amqp.urls` first. Any failure (no management plugin, no such queue yet,
//! a timeout) keeps the order as written: the lookup is a preference, never a requirement.

use crate::config::AmqpSettings;
use crate::redact::Redactor;
use serde::Deserialize;
use std::time::Duration;

/// How long the lookup may take before the URLs are tried as written.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// One AMQP listener of a cluster node, as `/api/overview` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Listener {
    /// The node, e.g. `rabbit@rmq-1`.
    pub node: String,
    /// `amqp` or `amqp/ssl` (others are ignored).
    pub protocol: String,
    /// The address it listens on; `::` or `0.0.0.0` for every address.
    #[serde(default)]
    pub ip_address: String,
    /// The port.
    pub port: u16,
}

/// The positions of `candidates` (`(host, port)` of each URL, in the order written) with the
/// URLs of `leader` first, the rest in their order. A URL is the leader's when its port is one
/// of the leader's AMQP listeners and either its host is the node's host (`rabbit@rmq-1`
/// matches `rmq-1` and `rmq-1.example.com`) or the listener's address, or no other node
/// listens on that port (several nodes on one machine).
pub fn order(candidates: &[(String, u16)], leader: &str, listeners: &[Listener]) -> Vec<usize> {
    let amqp = |l: &&Listener| l.protocol == "amqp" || l.protocol == "amqp/ssl";
    let node_host = leader.split_once('@').map_or(leader, |(_, host)| host);
    let is_leader = |(host, port): &(String, u16)| {
        let ports_of = |node_is_leader: bool| {
            listeners
                .iter()
                .filter(amqp)
                .filter(move |l| (l.node == leader) == node_is_leader && l.port == *port)
        };
        let mut own = ports_of(true).peekable();
        if own.peek().is_none() {
            return false;
        }
        let host_matches = host.eq_ignore_ascii_case(node_host)
            || host
                .to_ascii_lowercase()
                .starts_with(&format!("{}.", node_host.to_ascii_lowercase()));
        let address_matches = own.any(|l| l.ip_address == *host);
        host_matches || address_matches || ports_of(false).next().is_none()
    };
    let (first, rest): (Vec<usize>, Vec<usize>) =
        (0..candidates.len()).partition(|&i| is_leader(&candidates[i]));
    first.into_iter().chain(rest).collect()
}

/// The queue's node as `/api/queues/{vhost}/{name}` answers it.
#[derive(Deserialize)]
struct QueueInfo {
    leader: Option<String>,
    node: Option<String>,
}

/// `/api/overview`, the part read here.
#[derive(Deserialize)]
struct Overview {
    #[serde(default)]
    listeners: Vec<Listener>,
}

/// Asks the management API for the input queue's leader and its listeners. `Err` says why
/// not, redacted, for one log line.
pub async fn lookup(
    settings: &AmqpSettings,
    redactor: &Redactor,
) -> Result<(String, Vec<Listener>), String> {
    let Some((management, _)) = &settings.management_url else {
        return Err("amqp.management_url is not set".into());
    };
    let base = url::Url::parse(management.expose()).map_err(|e| e.to_string())?;
    let amqp = url::Url::parse(settings.url.expose()).map_err(|e| e.to_string())?;
    let vhost = vhost_of(&amqp);
    let (user, password) = api_credentials(&base, &amqp)?;
    crate::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(LOOKUP_TIMEOUT)
        .build()
        .map_err(|e| e.without_url().to_string())?;
    let get = |path: String| {
        client
            .get(api_url(&base, &path))
            .basic_auth(user.clone(), Some(password.clone()))
            .send()
    };
    let fetch = async {
        let queue_path = format!(
            "/api/queues/{}/{}",
            encode_segment(&vhost),
            encode_segment(&settings.queue)
        );
        let queue: QueueInfo = json(get(queue_path).await).await?;
        let leader = queue
            .leader
            .or(queue.node)
            .ok_or("the queue has no leader or node")?;
        let overview: Overview = json(get("/api/overview".into()).await).await?;
        Ok::<_, String>((leader, overview.listeners))
    };
    match tokio::time::timeout(LOOKUP_TIMEOUT, fetch).await {
        Ok(result) => result.map_err(|e| redactor.scrub(&e)),
        Err(_) => Err(format!(
            "no answer within {}s",
            LOOKUP_TIMEOUT.as_secs_f64()
        )),
    }
}

/// Who asks the management API: the user of `amqp.management_url`, else the broker URL's,
/// but never the broker's password in clear over `http` when the broker itself is reached
/// over TLS.
fn api_credentials(base: &url::Url, amqp: &url::Url) -> Result<(String, String), String> {
    if !base.username().is_empty() {
        Ok(credentials(base))
    } else if base.scheme() == "https" || amqp.scheme() == "amqp" {
        Ok(credentials(amqp))
    } else {
        Err(
            "amqp.management_url is http:// while amqp.url is amqps://: the broker's password \
             is not sent over plain HTTP; use https:// or put a user in amqp.management_url"
                .into(),
        )
    }
}

/// `path` of the API below `base` (which may sit under a proxy's path, e.g. `/rabbitmq/`),
/// without the credentials (they go in a header).
fn api_url(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url
}

/// A successful answer's JSON, or why not (the URL left out).
async fn json<T: serde::de::DeserializeOwned>(
    response: reqwest::Result<reqwest::Response>,
) -> Result<T, String> {
    let response = response.map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the management API answered {status}"));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("unexpected answer: {e}"))
}

/// The virtual host of an AMQP URL, as lapin reads it: its path without the leading `/`,
/// decoded, and `/` when there is no path (`amqp://h`; `amqp://h/` names the empty vhost).
fn vhost_of(url: &url::Url) -> String {
    match url.path() {
        "" => "/".into(),
        path => percent_decode(path.strip_prefix('/').unwrap_or(path)),
    }
}

/// The user and password of a URL, decoded.
fn credentials(url: &url::Url) -> (String, String) {
    (
        percent_decode(url.username()),
        percent_decode(url.password().unwrap_or_default()),
    )
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Every byte but RFC 3986's unreserved ones is encoded in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, percent-encoded (`/` becomes `%2F`).
fn encode_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(node: &str, address: &str, port: u16) -> Listener {
        Listener {
            node: node.into(),
            protocol: "amqp".into(),
            ip_address: address.into(),
            port,
        }
    }

    fn candidates(list: &[(&str, u16)]) -> Vec<(String, u16)> {
        list.iter().map(|(h, p)| (h.to_string(), *p)).collect()
    }

    #[test]
    fn nodes_on_one_machine_are_told_apart_by_port() {
        let listeners = [
            listener("relay1@localhost", "::", 5701),
            listener("relay2@localhost", "::", 5702),
            listener("relay3@localhost", "::", 5703),
        ];
        let urls = candidates(&[
            ("127.0.0.1", 5701),
            ("127.0.0.1", 5702),
            ("127.0.0.1", 5703),
        ]);
        assert_eq!(order(&urls, "relay3@localhost", &listeners), [2, 0, 1]);
        assert_eq!(order(&urls, "relay1@localhost", &listeners), [0, 1, 2]);
    }

    #[test]
    fn nodes_on_their_own_hosts_are_told_apart_by_host() {
        let listeners = [
            listener("rabbit@rmq-1", "::", 5672),
            listener("rabbit@rmq-2", "::", 5672),
            listener("rabbit@rmq-3", "::", 5672),
        ];
        let urls = candidates(&[
            ("rmq-1.mq.svc", 5672),
            ("rmq-2.mq.svc", 5672),
            ("RMQ-3", 5672),
        ]);
        assert_eq!(order(&urls, "rabbit@rmq-2", &listeners), [1, 0, 2]);
        assert_eq!(order(&urls, "rabbit@rmq-3", &listeners), [2, 0, 1]);
        // A load balancer's name matches no node: the order stays as written.
        let balanced = candidates(&[("rabbitmq", 5672)]);
        assert_eq!(order(&balanced, "rabbit@rmq-2", &listeners), [0]);
    }

    #[test]
    fn a_listener_on_one_address_matches_that_address() {
        let listeners = [
            listener("rabbit@a", "10.0.0.1", 5672),
            listener("rabbit@b", "10.0.0.2", 5672),
        ];
        let urls = candidates(&[("10.0.0.1", 5672), ("10.0.0.2", 5672)]);
        assert_eq!(order(&urls, "rabbit@b", &listeners), [1, 0]);
    }

    #[test]
    fn an_unknown_leader_or_other_protocols_keep_the_order() {
        let mut http = listener("rabbit@a", "::", 15672);
        http.protocol = "http".into();
        let listeners = [http, listener("rabbit@b", "::", 5672)];
        let urls = candidates(&[("b", 5672), ("a", 15672)]);
        assert_eq!(order(&urls, "rabbit@a", &listeners), [0, 1]);
        assert_eq!(order(&urls, "rabbit@zzz", &listeners), [0, 1]);
    }

    #[test]
    fn the_api_is_asked_below_its_path_and_never_with_a_tls_password_over_http() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        let api = api_url(&url("https://a:b@h/rabbitmq/"), "/api/overview");
        assert_eq!(api.as_str(), "https://h/rabbitmq/api/overview");
        let api = api_url(&url("http://h:15672"), "/api/queues/%2F/q");
        assert_eq!(api.as_str(), "http://h:15672/api/queues/%2F/q");

        let amqps = url("amqps://relay:pw@h/%2f");
        assert!(api_credentials(&url("http://h:15672"), &amqps).is_err());
        assert_eq!(
            api_credentials(&url("https://h"), &amqps).unwrap(),
            ("relay".into(), "pw".into())
        );
        assert_eq!(
            api_credentials(&url("http://mon:x@h"), &amqps).unwrap(),
            ("mon".into(), "x".into())
        );
        let amqp = url("amqp://relay:pw@h/%2f");
        assert!(api_credentials(&url("http://h"), &amqp).is_ok());
    }

    #[test]
    fn the_vhost_and_credentials_are_decoded_and_segments_encoded() {
        let url = url::Url::parse("amqp://us%40er:p%2Fw@h:5672/%2f").unwrap();
        assert_eq!(vhost_of(&url), "/");
        assert_eq!(credentials(&url), ("us@er".into(), "p/w".into()));
        let url = url::Url::parse("amqp://h").unwrap();
        assert_eq!(vhost_of(&url), "/");
        let url = url::Url::parse("amqp://h/").unwrap();
        assert_eq!(vhost_of(&url), "");
        let url = url::Url::parse("amqp://h/prod%2Feu").unwrap();
        assert_eq!(vhost_of(&url), "prod/eu");
        assert_eq!(encode_segment("/"), "%2F");
        assert_eq!(encode_segment("access-requests.in"), "access-requests.in");
        assert_eq!(encode_segment("a b"), "a%20b");
    }
}
