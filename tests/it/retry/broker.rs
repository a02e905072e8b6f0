//! The broker side: quorum queues with their redelivery limit, and several broker URLs
//! tried in turn.

use super::{WAIT, header_number, hook, retry_path_drained};
use crate::harness::{TestApp, app, closed_port, publish_id, rabbitmq_url};
use crate::support::logzio::Scripted;
use lapin::options::QueueDeclareOptions;
use serde_json::json;
use webhook_relay::broker::dead_letter::DeadLetterInfo;
use webhook_relay::broker::topology;
use webhook_relay::config::QueueType;
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::pipeline::outcome::Reason;

/// With `queue_type = "quorum"` every queue is a quorum queue: an event is delivered end to
/// end, through the quorum retry path too, and a message the broker delivered more than
/// `redelivery_limit` times is dead-lettered unprocessed as `redelivery_limit`.
#[tokio::test]
async fn quorum_queues_deliver_and_dead_letter_a_poison_message() {
    let mut app = app("retry-quorum")
        .webhook(&hook("approvals", 0, ""))
        .amqp_extra("queue_type = \"quorum\"\nredelivery_limit = 2")
        .delivery(
            r#"
timeout = "2s"
max_attempts = 5
initial_backoff = "100ms"
max_backoff = "200ms"
max_elapsed = "30s"
retry_window = "1ms"
"#,
        )
        .build()
        .await;
    let queue = app.config.amqp.queue.clone();
    assert_quorum_queues(&app, "approvals").await;
    publish_id(&app, "poison").await;
    // Delivered and returned three times (redelivery_limit + 1) before any worker runs.
    for returned in 0..3 {
        let message = app
            .admin
            .fetch(&queue)
            .await
            .expect("basic.get")
            .expect("the poison message");
        let count = header_number(&message, "x-delivery-count").unwrap_or(0);
        assert_eq!(count, returned, "x-delivery-count before return {returned}");
        webhook_relay::broker::settle::release(&message)
            .await
            .expect("nack requeue");
    }

    app.start_worker();
    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "the poison message is dead-lettered");
    let info = DeadLetterInfo::from_properties(&letters[0].properties);
    assert_eq!(info.reason, Some(Reason::RedeliveryLimit));
    assert_eq!(info.attempts, Some(0), "unprocessed");
    assert_eq!(letters[0].message_id(), Some("poison"));
    assert!(app.wait_count(Metrics::acked, 1, WAIT).await);
    assert!(
        app.listener().requests().is_empty(),
        "no request for the poison message"
    );

    // A good event, failing once: parked in the quorum wait queue, then delivered.
    app.listener().push_response(Scripted::status(503));
    publish_id(&app, "good-1").await;
    assert_eq!(
        app.listener().wait_for_accepted(1, WAIT).await,
        vec![json!({"id": "good-1"})]
    );
    assert!(retry_path_drained(&app, "approvals", WAIT).await);
    assert!(app.wait_count(Metrics::acked, 3, WAIT).await);
    assert_eq!(app.listener().requests().len(), 2, "one 503, one 200");
    assert_eq!(app.count(Metrics::parked), 1);
    assert_eq!(app.count(Metrics::retries_consumed), 1);
    assert_eq!(app.count(Metrics::dead_lettered), 1);
    assert_eq!(app.ready_count(&queue).await, 0);
    app.finish().await;
}

/// Every queue of the app and of `webhook`'s retry path is a quorum queue: declaring it again
/// with the quorum arguments is accepted (the broker refuses a declare whose `x-queue-type`,
/// or any other argument, differs).
async fn assert_quorum_queues(app: &TestApp, webhook: &str) {
    let amqp = &app.config.amqp;
    assert_eq!(amqp.queue_type, QueueType::Quorum);
    let settings = topology::QueueSettings::from(amqp);
    let mut queues = vec![
        (
            amqp.queue.clone(),
            topology::input_queue_arguments(settings),
        ),
        (
            amqp.dead_letter_queue.clone(),
            topology::dead_letter_queue_arguments(settings),
        ),
    ];
    let hook = app.config.webhook(webhook).expect("webhook in the config");
    queues.extend(topology::retry_path(&amqp.queue, hook, settings));
    for (name, arguments) in queues {
        let declared = app
            .admin
            .channel()
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await;
        assert!(declared.is_ok(), "`{name}` is a quorum queue: {declared:?}");
    }
}

/// `amqp.url` names a closed port and `amqp.urls` the real broker: the worker tries them in
/// turn, connects and delivers.
#[tokio::test]
async fn several_broker_urls_are_tried_in_turn() {
    let closed = format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port());
    let app = app("retry-urls")
        .webhook(&hook("approvals", 0, ""))
        .amqp_url(&closed)
        .amqp_extra(&format!("urls = [\"{}\"]", rabbitmq_url()))
        .start()
        .await;
    publish_id(&app, "urls-1").await;
    assert_eq!(
        app.listener().wait_for_accepted(1, WAIT).await,
        vec![json!({"id": "urls-1"})]
    );
    assert!(app.wait_count(Metrics::acked, 1, WAIT).await);
    assert_eq!(app.count(Metrics::connections), 1);
    app.finish().await;
}

/// What the fake management API was asked: `(path, Authorization header)`.
type Asked = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A fake management API on 127.0.0.1: every queue's leader is `leader`, and each node listens
/// on its proxy's port. Records what it was asked.
async fn fake_management(leader: &str, nodes: &[(&str, u16)]) -> (String, Asked) {
    let asked = Asked::default();
    let listeners: Vec<serde_json::Value> = nodes
        .iter()
        .map(|(node, port)| json!({"node": node, "protocol": "amqp", "ip_address": "::", "port": port}))
        .collect();
    let overview = json!({"listeners": listeners}).to_string();
    let queue_info = json!({"type": "quorum", "leader": leader}).to_string();
    let record = asked.clone();
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (record, overview, queue_info) = (record.clone(), overview.clone(), queue_info.clone());
        async move {
            let path = request.uri().path().to_string();
            let auth = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            record.lock().unwrap().push((path.clone(), auth));
            if path == "/api/overview" {
                overview
            } else {
                queue_info
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), asked)
}

/// With `amqp.management_url`, the worker asks which node leads the input queue and connects
/// there first, even when its URL is not the first written; the API is asked with the broker
/// URL's credentials. When the API does not answer, the URLs are tried in order.
#[tokio::test]
async fn the_input_queues_leader_is_tried_first() {
    use crate::support::proxy::TcpProxy;
    let broker: std::net::SocketAddr = {
        let url = url::Url::parse(&rabbitmq_url()).unwrap();
        let host = url.host_str().unwrap().to_string();
        tokio::net::lookup_host((host.as_str(), url.port().unwrap_or(5672)))
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let (one, two) = (TcpProxy::start(broker), TcpProxy::start(broker));
    let via =
        |proxy: &TcpProxy| format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.addr().port());
    let nodes = [
        ("rabbit@one", one.addr().port()),
        ("rabbit@two", two.addr().port()),
    ];
    let (management, asked) = fake_management("rabbit@two", &nodes).await;
    let app = app("retry-leader")
        .webhook(&hook("approvals", 0, ""))
        .amqp_url(&via(&one))
        .amqp_extra(&format!(
            "urls = [\"{}\"]\nmanagement_url = \"{management}\"",
            via(&two)
        ))
        .start()
        .await;
    publish_id(&app, "leader-1").await;
    assert_eq!(
        app.listener().wait_for_accepted(1, WAIT).await,
        vec![json!({"id": "leader-1"})]
    );
    assert!(app.wait_count(Metrics::acked, 1, WAIT).await);
    assert!(
        two.connection_count() >= 1,
        "connected to the leader's node"
    );
    assert_eq!(
        one.connection_count(),
        0,
        "the first URL written was not tried"
    );
    let asked = asked.lock().unwrap().clone();
    let paths: Vec<&str> = asked.iter().map(|(path, _)| path.as_str()).collect();
    let queue_path = format!("/api/queues/%2F/{}", app.config.amqp.queue);
    assert!(
        !paths.is_empty()
            && paths
                .chunks(2)
                .all(|pair| pair == [queue_path.as_str(), "/api/overview"]),
        "per connect: the input queue in the default vhost, then the listeners: {paths:?}"
    );
    assert!(
        asked
            .iter()
            .all(|(_, auth)| auth == "Basic Z3Vlc3Q6Z3Vlc3Q="),
        "the broker URL's credentials: {asked:?}"
    );
    app.finish().await;

    // No management API: the order as written.
    let (one, two) = (TcpProxy::start(broker), TcpProxy::start(broker));
    let app = app_with_order(&via(&one), &via(&two), closed_port()).await;
    publish_id(&app, "leader-2").await;
    assert!(app.wait_count(Metrics::acked, 1, WAIT).await);
    assert!(one.connection_count() >= 1, "the first URL written");
    assert_eq!(two.connection_count(), 0);
    app.finish().await;
}

async fn app_with_order(first: &str, second: &str, management_port: u16) -> TestApp {
    app("retry-leader-down")
        .webhook(&hook("approvals", 0, ""))
        .amqp_url(first)
        .amqp_extra(&format!(
            "urls = [\"{second}\"]\nmanagement_url = \"http://127.0.0.1:{management_port}\""
        ))
        .start()
        .await
}
