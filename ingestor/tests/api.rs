//! The publish API and uploads against the real broker, etcd, PostgreSQL and S3 of the stack.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, Options, key, partner, start};

fn purchase(id: &str) -> Value {
    json!({
        "transaction_id": id,
        "msisdn": "0812-3456-7890",
        "amount": 150000,
        "currency": "IDR",
        "occurred_at": "2026-03-01T10:15:00+07:00",
        "merchant": "Kopi Kenangan",
        "mcc": 5814,
        "email": "ayu@example.com",
    })
}

async fn with_partner(name: &str) -> Harness {
    let harness = start(name, Options::default()).await;
    harness.put_partner(&partner("TOKO", "ACTIVE", json!([key("k1", None)]))).await;
    harness
}

#[tokio::test]
async fn every_reason_to_refuse_a_signature_is_a_401_with_its_reason() {
    let harness = with_partner("auth401").await;
    let body = serde_json::to_vec(&purchase("t-1")).unwrap();
    let now = Utc::now().timestamp();
    let post = |headers| harness.send(Method::POST, "/v1/transactions", headers, &body);

    let (status, problem) = post(Vec::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["_content_type"], "application/problem+json");
    assert!(problem["detail"].as_str().unwrap().contains("headers are required"));

    let cases = [
        ("unknown partner", harness.sign("WARUNG", "k1", "POST", "/v1/transactions", &body, now)),
        ("unknown key", harness.sign("TOKO", "k9", "POST", "/v1/transactions", &body, now)),
        ("within 300 s", harness.sign("TOKO", "k1", "POST", "/v1/transactions", &body, now - 301)),
        ("within 300 s", harness.sign("TOKO", "k1", "POST", "/v1/transactions", &body, now + 400)),
        // Signed for another path, and over another body.
        ("does not match", harness.sign("TOKO", "k1", "POST", "/v1/uploads", &body, now)),
        ("does not match", harness.sign("TOKO", "k1", "POST", "/v1/transactions", b"{}", now)),
    ];
    for (expected, headers) in cases {
        let (status, problem) = post(headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{expected}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(expected), "{expected}: {problem}");
    }

    // A good signature passes once; the same signature again is a replay.
    let good = harness.sign("TOKO", "k1", "POST", "/v1/transactions", &body, now);
    let (status, outcome) = post(good.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{outcome}");
    let (status, problem) = post(good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(problem["detail"].as_str().unwrap().contains("already used"), "{problem}");

    // Key expiry and suspension arrive live from etcd.
    let expired = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    harness.put_partner(&partner("TOKO", "ACTIVE", json!([key("k1", Some(&expired))]))).await;
    let (status, problem) =
        post(harness.sign("TOKO", "k1", "POST", "/v1/transactions", &body, now + 1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(problem["detail"].as_str().unwrap().contains("expired"), "{problem}");

    harness.put_partner(&partner("TOKO", "SUSPENDED", json!([key("k1", None)]))).await;
    let (status, problem) =
        post(harness.sign("TOKO", "k1", "POST", "/v1/transactions", &body, now + 2)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(problem["detail"].as_str().unwrap().contains("suspended"), "{problem}");

    let metrics = harness.metrics().await;
    for reason in [
        "missing_headers",
        "unknown_partner",
        "unknown_key",
        "stale_timestamp",
        "bad_signature",
        "replay",
        "expired_key",
        "suspended_partner",
    ] {
        assert!(
            metrics
                .contains(&format!("cezbek_ingestor_auth_failures_total{{reason=\"{reason}\"}}")),
            "no metric for {reason}"
        );
    }
    // Only the one good request reached the topic.
    let on_topic = harness.topic(1, Duration::from_secs(10)).await;
    assert_eq!(on_topic.len(), 1);
}

#[tokio::test]
async fn a_batch_with_some_bad_items_accepts_the_good_ones_and_names_each_problem() {
    let harness = with_partner("batch").await;
    let mut refund_without_original = purchase("t-4");
    refund_without_original["kind"] = json!("REFUND");
    let batch = json!([
        purchase("t-1"),
        purchase("t-2"),
        {"transaction_id": "t-3", "msisdn": "12ab", "amount": 12.5, "currency": "XXY",
         "occurred_at": "yesterday", "mcc": 12345, "partner": "OTHER", "colour": "red"},
        refund_without_original,
        purchase("t-1"),
        "not an object",
        {"transaction_id": "t-6", "msisdn": "+6281234567890", "amount": -5, "currency": "IDR",
         "occurred_at": "2026-03-01T03:15:00Z", "quantity": true},
    ]);
    let body = serde_json::to_vec(&batch).unwrap();
    let (status, outcome) = harness.signed("TOKO", Method::POST, "/v1/transactions", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{outcome}");
    let accepted: Vec<(u64, &str)> = outcome["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["index"].as_u64().unwrap(), item["transaction_id"].as_str().unwrap()))
        .collect();
    assert_eq!(accepted, [(0, "t-1"), (1, "t-2")]);
    let rejected = outcome["rejected"].as_array().unwrap();
    let fields = |index: u64| -> Vec<String> {
        let item = rejected.iter().find(|item| item["index"] == index).unwrap();
        item["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut bad = fields(2);
    bad.sort();
    assert_eq!(
        bad,
        ["amount", "colour", "currency", "mcc", "msisdn", "occurred_at", "partner"],
        "{outcome}"
    );
    assert_eq!(fields(3), ["original_transaction_id"]);
    assert_eq!(fields(4), ["transaction_id"]);
    assert_eq!(fields(5), ["item"]);
    let mut sixth = fields(6);
    sixth.sort();
    assert_eq!(sixth, ["amount", "quantity"], "every problem at once: {outcome}");
    let duplicate = rejected.iter().find(|item| item["index"] == 4).unwrap();
    assert!(duplicate["errors"][0]["reason"].as_str().unwrap().contains("item 0"));

    // Exactly the accepted items are on the topic, normalised and stamped.
    let on_topic = harness.topic(2, Duration::from_secs(10)).await;
    assert_eq!(on_topic.len(), 2, "{on_topic:?}");
    let first = on_topic.iter().find(|t| t.transaction_id.as_str() == "t-1").unwrap();
    assert_eq!(first.partner.as_str(), "TOKO");
    assert_eq!(first.msisdn.as_str(), "+6281234567890");
    assert_eq!(first.amount, 150_000);
    assert_eq!(first.occurred_at.to_rfc3339(), "2026-03-01T03:15:00+00:00");
    assert_eq!(first.source.channel, cezbek_schemas::SourceChannel::Api);
    assert_eq!(first.key(), "TOKO:+6281234567890");

    // Nothing valid: 422 with the same shape, as a problem.
    let body = serde_json::to_vec(&json!([{"transaction_id": "x"}])).unwrap();
    let (status, outcome) = harness.signed("TOKO", Method::POST, "/v1/transactions", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(outcome["_content_type"], "application/problem+json");
    assert_eq!(outcome["accepted"], json!([]));
    assert_eq!(outcome["rejected"][0]["transaction_id"], "x");
    assert!(outcome["rejected"][0]["errors"].as_array().unwrap().len() >= 4, "{outcome}");
}

#[tokio::test]
async fn bodies_over_the_limits_are_refused_whole() {
    let harness = with_partner("limits").await;
    let harness = &harness;
    let send = |body: Vec<u8>| async move {
        harness.signed("TOKO", Method::POST, "/v1/transactions", &body).await
    };

    let mut big = purchase("big");
    big["merchant"] = json!("m".repeat(1024 * 1024));
    let (status, problem) = send(serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert_eq!(problem["_content_type"], "application/problem+json");

    let too_many: Vec<Value> = (0..1001).map(|i| purchase(&format!("m-{i}"))).collect();
    let (status, problem) = send(serde_json::to_vec(&too_many).unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("at most 1000"));

    let (status, _) = send(b"[]".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, problem) = send(b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().unwrap().contains("not valid JSON"));

    // 1,000 items is allowed, and all of them are acknowledged before the answer.
    let full: Vec<Value> = (0..1000).map(|i| purchase(&format!("f-{i}"))).collect();
    let (status, outcome) = send(serde_json::to_vec(&full).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(outcome["accepted"].as_array().unwrap().len(), 1000);
    assert_eq!(harness.topic(1000, Duration::from_secs(20)).await.len(), 1000);
}

#[tokio::test]
async fn the_openapi_document_is_served() {
    let harness = with_partner("openapi").await;
    let document: Value = harness
        .http
        .get(format!("{}/openapi.json", harness.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    for path in ["/v1/transactions", "/v1/uploads", "/v1/uploads/{upload_id}"] {
        assert!(document["paths"][path].is_object(), "{path} is not documented");
    }
    // Generated from the handlers: the types the handler reads and answers with are there,
    // with the constraints the server enforces.
    let schemas = &document["components"]["schemas"];
    let fields = &schemas["TransactionFields"];
    assert_eq!(fields["additionalProperties"], false, "{fields}");
    assert_eq!(fields["properties"]["currency"]["$ref"], "#/components/schemas/Currency");
    assert!(schemas["Currency"]["enum"].as_array().unwrap().contains(&json!("IDR")));
    assert!(schemas["Transaction"]["allOf"].is_array(), "the refund rule is stated");
    let publish = &document["paths"]["/v1/transactions"]["post"];
    assert_eq!(publish["security"][0]["partnerSignature"], json!([]));
    let refused = &publish["responses"]["401"]["content"];
    assert!(refused["application/problem+json"].is_object(), "{refused}");
    assert!(document["components"]["securitySchemes"]["partnerSignature"].is_object());
}

#[tokio::test]
async fn an_acknowledgement_that_comes_too_late_is_a_503_saying_what_to_send_again() {
    // A deadline no broker meets: every item is sent but none is acknowledged in time.
    let options = Options { ack_timeout: Duration::from_micros(1), ..Options::default() };
    let harness = start("acklate", options).await;
    harness.put_partner(&partner("TOKO", "ACTIVE", json!([key("k1", None)]))).await;
    let batch: Vec<Value> = (0..20).map(|i| purchase(&format!("late-{i}"))).collect();
    let body = serde_json::to_vec(&batch).unwrap();
    let headers =
        harness.sign("TOKO", "k1", "POST", "/v1/transactions", &body, Utc::now().timestamp());
    let mut request = harness.http.post(format!("{}/v1/transactions", harness.base));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("retry-after").is_some());
    let problem: Value = response.json().await.unwrap();
    let acked = problem["acked"].as_array().unwrap().len();
    let not_acked = problem["not_acked"].as_array().unwrap().len();
    assert_eq!(acked + not_acked, 20, "{problem}");
    assert!(not_acked > 0, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("re-sending is safe"));
    // The producer still delivers them; re-sending would be absorbed by the ledger.
    assert_eq!(harness.topic(20, Duration::from_secs(10)).await.len(), 20);
}

/// Headers and limits before work: a request that is unsigned, signed for an unknown partner,
/// or too large by its own declared length is answered without its body being read, so a
/// caller cannot make the ingestor read (and hash) a megabyte first. Each request below
/// declares 100 MB and sends a few bytes; the answer comes all the same.
#[tokio::test]
async fn headers_and_the_declared_length_are_checked_before_the_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let harness = with_partner("headersfirst").await;
    let address = harness.base.trim_start_matches("http://").to_owned();
    let ask = |headers: Vec<(&'static str, String)>| {
        let address = address.clone();
        async move {
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            let mut request = String::from(
                "POST /v1/transactions HTTP/1.1\r\nHost: ingestor\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n",
            );
            for (name, value) in headers {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
            request.push_str("\r\n[{\"transaction_id\":");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = vec![0u8; 8192];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
                .await
                .expect("answered without waiting for the body")
                .unwrap();
            String::from_utf8_lossy(&answer[..read]).into_owned()
        }
    };
    let now = Utc::now().timestamp();
    let unsigned = ask(Vec::new()).await;
    assert!(unsigned.starts_with("HTTP/1.1 401"), "{unsigned}");
    let unknown = ask(harness.sign("NOPE", "k1", "POST", "/v1/transactions", b"", now)).await;
    assert!(
        unknown.starts_with("HTTP/1.1 401") && unknown.contains("unknown partner"),
        "{unknown}"
    );
    let stale = ask(harness.sign("TOKO", "k1", "POST", "/v1/transactions", b"", i64::MIN)).await;
    assert!(stale.starts_with("HTTP/1.1 401") && stale.contains("Timestamp"), "{stale}");
    let signed = ask(harness.sign("TOKO", "k1", "POST", "/v1/transactions", b"", now)).await;
    assert!(signed.starts_with("HTTP/1.1 413"), "{signed}");
}
