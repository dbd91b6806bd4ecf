//! Real-binary tests of the mesh WebSocket (`GET /api/v1/mesh/topics/{topic}/ws`) and of the per-topic metrics on
//! `/metrics`, on the embedded log, the real NATS JetStream and the real Redis: governed publishes over the socket,
//! deliveries with ack/nack and redelivery, backpressure by `max_in_flight`, unacknowledged deliveries handed back
//! when a socket closes, and the five per-topic series (published, delivered, redelivered, DLQ size, consumer lag).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const POLICY: &str = r#"
agents:
  bot: { level: standard }
  helper: { level: standard }
rules:
  - id: bot-talks
    description: only bot may send messages
    when: { kind: message, agent: [bot] }
    then: allow
"#;

async fn connect(aura: &Aura, path: &str, token: &str) -> Socket {
    let url = format!("ws://{}{path}", aura.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws
}

/// The next JSON text frame within `within` (`None` when none came).
async fn next(ws: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match frame.unwrap() {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn scrape(aura: &Aura) -> String {
    client()
        .get(aura.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn series(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

async fn socket_and_metrics(config: &str) {
    let home = home_with(&[("base.yaml", POLICY)]);
    std::fs::write(home.path().join("aura.yaml"), config).unwrap();
    let aura = Aura::start_in(home.path(), "data");
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let helper = aura.token("helper-token", "agent", Some("helper")).await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("jobs-{}-{nanos}", std::process::id());
    let base = format!("/api/v1/mesh/topics/{topic}/ws");

    // Bad parameters are refused before the upgrade, with a machine-readable code.
    let resp = client()
        .get(aura.url(&format!("{base}?max_in_flight=0")))
        .bearer_auth(&bot)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let resp = client().get(aura.url(&base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // A publish-only socket: each publish is decided by the kernel.
    let mut producer = connect(&aura, &base, &bot).await;
    let ready = next(&mut producer, Duration::from_secs(10)).await.unwrap();
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["group"], Value::Null);
    for n in 0..5 {
        send(
            &mut producer,
            json!({"op": "publish", "ref": format!("p{n}"),
                "message": {"target": "helper", "type": "task", "payload": {"n": n}}}),
        )
        .await;
        let ack = next(&mut producer, Duration::from_secs(10)).await.unwrap();
        assert_eq!(ack["type"], "published", "{ack}");
        assert_eq!(ack["ref"], format!("p{n}"));
        assert_eq!(ack["spooled"], false);
        assert!(ack["audit_seq"].as_u64().unwrap() > 0);
    }
    let mut refused = connect(&aura, &base, &helper).await;
    next(&mut refused, Duration::from_secs(10)).await.unwrap();
    send(
        &mut refused,
        json!({"op": "publish", "ref": "x", "message": {"target": "bot", "type": "result"}}),
    )
    .await;
    let err = next(&mut refused, Duration::from_secs(10)).await.unwrap();
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["code"], "message_refused");
    assert_eq!(err["ref"], "x");
    send(&mut refused, json!({"op": "dance"})).await;
    let err = next(&mut refused, Duration::from_secs(10)).await.unwrap();
    assert_eq!(err["code"], "invalid_frame", "{err}");
    send(&mut refused, json!({"op": "ack", "id": 99})).await;
    let err = next(&mut refused, Duration::from_secs(10)).await.unwrap();
    assert_eq!(err["code"], "unknown_delivery", "{err}");

    // A consumer with at most two deliveries in flight: never more than two unacknowledged, the first delivery is
    // nacked once and comes back as attempt 2, everything is acked in the end.
    let group_path = format!("{base}?group=workers&max_in_flight=2&ack_wait_ms=60000");
    let mut consumer = connect(&aura, &group_path, &helper).await;
    let ready = next(&mut consumer, Duration::from_secs(10)).await.unwrap();
    assert_eq!(ready["group"], "workers");
    let mut window = Vec::new();
    while window.len() < 2 {
        let m = next(&mut consumer, Duration::from_secs(15))
            .await
            .expect("a delivery");
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(m["body"]["source"], "bot");
        assert_eq!(m["attempt"], 1);
        window.push(m);
    }
    let extra = next(&mut consumer, Duration::from_millis(700)).await;
    assert!(extra.is_none(), "delivered past max_in_flight: {extra:?}");
    let nacked = window[0]["body"]["payload"]["n"].as_i64().unwrap();
    send(&mut consumer, json!({"op": "nack", "id": window[0]["id"]})).await;
    send(&mut consumer, json!({"op": "ack", "id": window[1]["id"]})).await;
    let mut done = BTreeSet::from([window[1]["body"]["payload"]["n"].as_i64().unwrap()]);
    let mut answers = BTreeMap::new();
    let mut redelivered = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while done.len() < 5 {
        assert!(tokio::time::Instant::now() < deadline, "done: {done:?}");
        let m = next(&mut consumer, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no delivery; done {done:?}"));
        if m["type"] != "message" {
            *answers
                .entry(m["type"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
            continue;
        }
        let n = m["body"]["payload"]["n"].as_i64().unwrap();
        if n == nacked {
            assert_eq!(m["attempt"], 2, "{m}");
            redelivered = true;
        }
        done.insert(n);
        send(&mut consumer, json!({"op": "ack", "id": m["id"]})).await;
    }
    assert!(
        redelivered,
        "the nacked message did not come back as attempt 2"
    );

    // Closing with a delivery in hand gives it back to the group at once (ack_wait is a minute).
    send(
        &mut producer,
        json!({"op": "publish", "message": {"target": "helper", "type": "task", "payload": {"n": "last"}}}),
    )
    .await;
    assert_eq!(
        next(&mut producer, Duration::from_secs(10)).await.unwrap()["type"],
        "published"
    );
    let last = loop {
        let m = next(&mut consumer, Duration::from_secs(10)).await.unwrap();
        if m["type"] == "message" {
            break m;
        }
    };
    assert_eq!(last["body"]["payload"]["n"], "last");
    consumer.close(None).await.unwrap();
    drop(consumer);
    let mut again = connect(&aura, &group_path, &helper).await;
    next(&mut again, Duration::from_secs(10)).await.unwrap();
    let m = loop {
        let m = next(&mut again, Duration::from_secs(15))
            .await
            .expect("the unacknowledged delivery came back");
        if m["type"] == "message" {
            break m;
        }
    };
    assert_eq!(m["body"]["payload"]["n"], "last");
    send(&mut again, json!({"op": "ack", "id": m["id"]})).await;
    assert_eq!(
        next(&mut again, Duration::from_secs(10)).await.unwrap()["type"],
        "acked"
    );

    // Metrics per topic, whatever the backend.
    let label = format!("topic=\"{topic}\"");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(&aura).await;
        let published = series(&text, "aura_mesh_published_total", &label);
        let delivered = series(&text, "aura_mesh_delivered_total", &label);
        let redelivered = series(&text, "aura_mesh_redelivered_total", &label);
        let dlq = series(&text, "aura_mesh_dlq_messages", &label);
        let lag = series(
            &text,
            "aura_mesh_consumer_lag",
            &format!("{label},group=\"workers\""),
        );
        if published == Some(6.0)
            && delivered.is_some_and(|d| d >= 7.0)
            && redelivered.is_some_and(|r| r >= 1.0)
            && dlq == Some(0.0)
            && lag == Some(0.0)
        {
            promtool_check(&text);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "per-topic series missing: published {published:?} delivered {delivered:?} redelivered \
             {redelivered:?} dlq {dlq:?} lag {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // `aura mesh sub --follow` consumes over the same WebSocket and prints one JSON line per message.
    let mut child = aura_cmd(&aura.home)
        .env("AURA_URL", &aura.url)
        .arg("--data-dir")
        .arg(&aura.data_dir)
        .args(["mesh", "sub", &topic, "--group", "cli-follow", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_line(&mut stdout));
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let line: Value =
        serde_json::from_str(&line.expect("a line from `aura mesh sub --follow`")).unwrap();
    assert_eq!(line["body"]["source"], "bot", "{line}");
    assert_eq!(line["attempt"], 1, "{line}");
    assert!(
        line.get("id").is_none() && line.get("type").is_none(),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_topic_metrics_on_the_embedded_log() {
    socket_and_metrics("mesh:\n  backend: embedded\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_topic_metrics_on_nats() {
    socket_and_metrics("mesh:\n  backend: nats\n  url: nats://127.0.0.1:4222\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_topic_metrics_on_redis() {
    socket_and_metrics("mesh:\n  backend: redis\n  url: redis://127.0.0.1:6379\n").await;
}
