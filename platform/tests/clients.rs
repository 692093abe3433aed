//! The client constructors and ops endpoints against the real local stack.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cezbek_platform::config::{EtcdConfig, PostgresConfig, S3Config};
use cezbek_platform::s3::S3Client;
use cezbek_platform::sqs::SqsClient;
use cezbek_platform::{CancellationToken, Readiness, etcd, http, kafka, postgres};
use cezbek_testkit::TestContext;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

#[tokio::test]
async fn s3_put_get_list_copy_delete_and_presigned_upload() {
    let context = TestContext::new("s3");
    let s3 = S3Client::connect(&context.s3_config().await).await;
    s3.check().await.expect("the test bucket is reachable");

    let key = "incoming/TOKO/first.csv";
    s3.put_object(key, b"transaction_id,msisdn\n1,0812\n".to_vec(), "text/csv").await.unwrap();
    let body = s3.get_object(key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&body[..], b"transaction_id,msisdn\n1,0812\n");

    s3.copy_object(key, "processed/TOKO/first.csv", None).await.unwrap();
    s3.delete_object(key, None).await.unwrap();
    let incoming = s3.list_objects("incoming/").await.unwrap();
    assert!(incoming.is_empty(), "{incoming:?}");
    let processed = s3.list_objects("processed/").await.unwrap();
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0].key, "processed/TOKO/first.csv");
    assert_eq!(processed[0].size, 29);
    assert!(!processed[0].etag.contains('"'), "ETag is unquoted: {}", processed[0].etag);

    // A partner uploads with nothing but the presigned URL.
    let url = s3.presign_put("incoming/TOKO/upload.csv", Duration::from_secs(300)).await.unwrap();
    let uploaded = reqwest::Client::new()
        .put(url)
        .header("content-type", "application/octet-stream")
        .body("a,b\n")
        .send()
        .await
        .unwrap();
    assert!(uploaded.status().is_success(), "{}", uploaded.status());
    let body = s3.get_object("incoming/TOKO/upload.csv").await.unwrap().text().await.unwrap();
    assert_eq!(body, "a,b\n");

    let missing = s3.get_object("incoming/TOKO/nothing.csv").await.unwrap_err();
    assert!(missing.to_string().contains("404"), "{missing}");
}

/// Keys with `%`, `?`, `+`, spaces and non-ASCII characters copy and delete; a copy or delete
/// conditional on an ETag leaves a newer upload under the same key alone; a read from the end
/// of an object is nothing left to read, not an error.
#[tokio::test]
async fn s3_odd_keys_conditional_moves_and_a_read_from_the_end() {
    let context = TestContext::new("s3odd");
    let s3 = S3Client::connect(&context.s3_config().await).await;
    let key = "incoming/TOKO/50% off? +promo ünïcode.csv";
    s3.put_object(key, b"first".to_vec(), "text/csv").await.unwrap();
    let first = s3.list_objects("incoming/").await.unwrap().remove(0);
    assert_eq!(first.key, key);
    s3.copy_object(key, "processed/TOKO/odd.csv", Some(&first.etag)).await.unwrap();
    let copied = s3.get_object("processed/TOKO/odd.csv").await.unwrap().text().await.unwrap();
    assert_eq!(copied, "first");
    let rest = s3.get_object_from(key, &first.etag, 5).await.unwrap();
    assert!(rest.is_none(), "a read from the end has nothing left");

    // A newer upload under the same key: the older version's delete leaves it.
    s3.put_object(key, b"second".to_vec(), "text/csv").await.unwrap();
    let refused = s3.delete_object(key, Some(&first.etag)).await.unwrap_err();
    assert!(refused.to_string().contains("412"), "{refused}");
    let body = s3.get_object(key).await.unwrap().text().await.unwrap();
    assert_eq!(body, "second");
    let second = s3.list_objects("incoming/").await.unwrap().remove(0);
    s3.delete_object(key, Some(&second.etag)).await.unwrap();
    assert!(s3.list_objects("incoming/").await.unwrap().is_empty());
}

/// EKS with IRSA: no keys configured, only the role and the projected token file EKS puts in
/// the environment, exchanged by the SDK's credential chain with STS (moto's) for temporary
/// keys that S3 and SQS requests then carry.
#[tokio::test]
async fn s3_and_sqs_use_keys_from_a_web_identity() {
    let context = TestContext::new("irsa");
    let (static_config, queue_url) = context.s3_config_with_queue();
    let token_file = std::env::temp_dir().join(format!("cezbek-{}-token", context.id));
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjZXpiZWsifQ.c2ln\n").unwrap();
    let config = S3Config { static_keys: None, ..static_config };
    let endpoint = config.endpoint.clone().unwrap();
    // The variables EKS injects (and where STS is, here), given to the SDK as its environment.
    let environment = aws_types::os_shim_internal::Env::from_slice(&[
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/cezbek-services"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ENDPOINT_URL_STS", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
    ]);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .env(environment)
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .load()
        .await;
    let s3 = S3Client::new(&sdk, &config);
    s3.put_object("incoming/TOKO/irsa.csv", b"a\n".to_vec(), "text/csv").await.unwrap();
    let body = s3.get_object("incoming/TOKO/irsa.csv").await.unwrap().text().await.unwrap();
    assert_eq!(body, "a\n");

    // A presigned URL made with temporary keys must carry their token, or S3 refuses it.
    let url = s3.presign_put("incoming/TOKO/p.csv", Duration::from_secs(60)).await.unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(query["X-Amz-Credential"].starts_with("ASIA"), "{url}");
    assert!(!query["X-Amz-Security-Token"].is_empty(), "{url}");

    // The keys are cached until shortly before they expire: the token is not read per request.
    std::fs::remove_file(&token_file).unwrap();
    s3.check().await.unwrap();
    let sqs = SqsClient::new(&sdk, &queue_url).unwrap();
    let notices = sqs.receive(10, Duration::from_secs(1)).await.unwrap();
    assert!(notices.iter().any(|notice| notice.body.contains("irsa.csv")), "{notices:?}");
}

#[tokio::test]
async fn s3_listing_follows_continuation_pages() {
    let context = TestContext::new("s3pages");
    let s3 = S3Client::connect(&context.s3_config().await).await;
    // moto pages at 1000 keys, as S3 does.
    let count = 1_005;
    let mut uploads = tokio::task::JoinSet::new();
    for index in 0..count {
        let s3 = s3.clone();
        uploads.spawn(async move {
            s3.put_object(&format!("many/{index:05}"), vec![b'x'], "text/plain").await
        });
    }
    while let Some(result) = uploads.join_next().await {
        result.unwrap().unwrap();
    }
    let listed = s3.list_objects("many/").await.unwrap();
    assert_eq!(listed.len(), count);
}

#[tokio::test]
async fn s3_check_fails_for_a_missing_bucket() {
    let context = TestContext::new("s3missing");
    let mut config = context.s3_config().await;
    config.bucket = format!("absent-{}", context.id);
    let error = S3Client::connect(&config).await.check().await.unwrap_err();
    assert!(error.contains("404"), "{error}");
}

#[tokio::test]
async fn postgres_pool_uses_the_configured_schema() {
    let context = TestContext::new("pgschema");
    let config = context.postgres_config().await;
    let pool = postgres::connect(&config).await.unwrap();
    let schema: String =
        sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&pool).await.unwrap();
    assert_eq!(Some(schema), config.schema);
    sqlx::query("CREATE TABLE probe (id int)").execute(&pool).await.unwrap();
    let owner: String = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'probe' AND table_schema = current_schema()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(Some(owner), config.schema);
    postgres::check(&pool).await.unwrap();
}

#[tokio::test]
async fn postgres_lazy_pool_reports_an_unreachable_server() {
    let config = PostgresConfig {
        url: "postgres://cezbek:cezbek@127.0.0.1:1/cezbek".into(),
        max_connections: 1,
        schema: None,
        acquire_timeout: Duration::from_secs(1),
        statement_timeout: Duration::ZERO,
    };
    let pool = postgres::connect_lazy(&config).unwrap();
    assert!(postgres::check(&pool).await.is_err());
}

#[tokio::test]
async fn etcd_check_passes_on_the_stack_and_fails_elsewhere() {
    let context = TestContext::new("etcd");
    let config = context.etcd_config();
    etcd::check(&config).await.unwrap();
    let mut client = etcd::connect(&config).await.unwrap();
    let key = format!("{}probe", config.prefix);
    client.put(key.as_str(), "1", None).await.unwrap();
    let read = client.get(key.as_str(), None).await.unwrap();
    assert_eq!(read.kvs()[0].value(), b"1");

    let nowhere = EtcdConfig {
        endpoints: vec!["http://127.0.0.1:1".into()],
        connect_timeout: Duration::from_millis(500),
        ..config
    };
    assert!(etcd::check(&nowhere).await.is_err());
}

#[tokio::test]
async fn kafka_produce_consume_and_commit_with_the_platform_settings() {
    let context = TestContext::new("kafka");
    let config = context.kafka_config();
    context.create_topics(&config, 3).await;
    // Creating again is not an error.
    kafka::ensure_topics(&config, &[(config.transactions_topic.as_str(), 3)]).await.unwrap();

    let producer = kafka::producer(&config).unwrap();
    kafka::check(&producer).await.unwrap();
    for index in 0..10 {
        let payload = format!("message-{index}");
        let record = FutureRecord::to(&config.transactions_topic)
            .key("TOKO:+6281234567890")
            .payload(&payload);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(error, _)| error).unwrap();
    }

    let group = format!("group-{}", context.id);
    let consumer = kafka::consumer(&config, &group).unwrap();
    consumer.subscribe(&[&config.transactions_topic]).unwrap();
    let mut received = Vec::new();
    let mut last = None;
    while received.len() < 10 {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("messages arrive")
            .unwrap();
        received.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        last = Some((message.partition(), message.offset()));
    }
    // One key, so one partition, in order.
    assert_eq!(received, (0..10).map(|i| format!("message-{i}")).collect::<Vec<_>>());
    let (partition, offset) = last.unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&config.transactions_topic, partition, Offset::Offset(offset + 1))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    let committed = consumer.committed(Duration::from_secs(10)).unwrap();
    let element = committed.find_partition(&config.transactions_topic, partition).unwrap();
    assert_eq!(element.offset(), Offset::Offset(offset + 1));
}

#[tokio::test]
async fn ops_endpoints_report_health_readiness_and_metrics() {
    let registry = prometheus::Registry::new();
    let counter = prometheus::IntCounter::new("cezbek_probe_total", "a probe").unwrap();
    registry.register(Box::new(counter.clone())).unwrap();
    counter.inc_by(3);
    let readiness = Readiness::new(&["kafka", "etcd"]);
    let shutdown = CancellationToken::new();
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(http::serve(
        listener,
        http::ops_router(registry, readiness.clone()),
        shutdown.clone(),
    ));

    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let not_ready = get("/readyz").await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert_eq!(not_ready.text().await.unwrap(), "not ready: etcd, kafka");
    readiness.set("kafka", true);
    readiness.set("etcd", true);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("cezbek_probe_total 3"), "{metrics}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops on shutdown")
        .unwrap()
        .unwrap();
}

/// An API behind its limits: a request unanswered within the time-out, or one beyond the
/// concurrency limit, is a 503 problem with `Retry-After`, while `/healthz` and the ops
/// listener keep answering.
#[tokio::test]
async fn api_requests_time_out_and_shed_beyond_the_concurrency_limit() {
    use cezbek_platform::config::HttpConfig;
    let (port, ops_port) = (cezbek_testkit::free_port(), cezbek_testkit::free_port());
    let mut config = HttpConfig::api(
        format!("127.0.0.1:{port}").parse().unwrap(),
        format!("127.0.0.1:{ops_port}").parse().unwrap(),
    );
    config.request_timeout = Duration::from_millis(300);
    config.max_concurrent_requests = 1;
    config.max_body_bytes = 4096;
    let api = http::Router::new()
        .route(
            "/echo",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/slow/{millis}",
            axum::routing::get(
                |axum::extract::Path(millis): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    "done"
                },
            ),
        )
        .route("/big", axum::routing::get(|| async { "a reward, ".repeat(2_000) }));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            http::serve_with_ops(
                &config,
                api,
                prometheus::Registry::new(),
                Readiness::new(&[]),
                shutdown,
            )
            .await
        }
    });
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A request id: the caller's, echoed, or a new one; also on an answer from the limits.
    let answered = client.get(format!("{base}/slow/10")).send().await.unwrap();
    assert_eq!(answered.status(), 200);
    let generated = answered.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let given = client
        .get(format!("{base}/slow/10"))
        .header("x-request-id", "req-from-the-caller")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "req-from-the-caller");
    let late = client
        .get(format!("{base}/slow/5000"))
        .header("x-request-id", "req-too-slow")
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 503);
    assert_eq!(late.headers()["retry-after"], "1");
    assert_eq!(late.headers()["x-request-id"], "req-too-slow");
    assert!(late.text().await.unwrap().contains("not answered within 0.3 s"));

    // A large answer is gzipped for a client that accepts it; a small one, or one for a client
    // that does not, is sent as it is.
    let gzipped =
        client.get(format!("{base}/big")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let compressed = gzipped.bytes().await.unwrap().len();
    assert!(compressed < 2_000, "20,000 repetitive bytes became {compressed}");
    let plain = client.get(format!("{base}/big")).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.bytes().await.unwrap().len(), 20_000);
    let small = client
        .get(format!("{base}/slow/1"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(small.headers().get("content-encoding").is_none());
    // Routing errors are problems too.
    let unknown = client.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["content-type"], "application/problem+json");
    let wrong_method = client.delete(format!("{base}/big")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["content-type"], "application/problem+json");

    // Bodies up to the limit: a larger one is a 413 problem, whether its length is declared or
    // it comes in chunks without one.
    let fits = client.post(format!("{base}/echo")).body(vec![b'x'; 4096]).send().await.unwrap();
    assert_eq!((fits.status().as_u16(), fits.text().await.unwrap()), (200, "4096".to_owned()));
    let declared = client.post(format!("{base}/echo")).body(vec![b'x'; 4097]).send().await.unwrap();
    assert_eq!(declared.status(), 413);
    assert_eq!(declared.headers()["content-type"], "application/problem+json");
    let chunked = chunked_post(port, "/echo", 5, 1000).await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("content-type: application/problem+json"), "{chunked}");

    // Requests at once beyond the limit of one: the others are shed at once, while health and
    // ops still answer.
    let started = std::time::Instant::now();
    let at_once = (0..4).map(|_| {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let response = client.get(format!("{base}/slow/200")).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    });
    let mut answers = Vec::new();
    for answer in at_once.collect::<Vec<_>>() {
        answers.push(answer.await.unwrap());
    }
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    let shed = answers
        .iter()
        .filter(|(status, body)| *status == 503 && body.contains("too many requests"))
        .count();
    assert_eq!((served, shed), (1, 3), "{answers:?} after {:?}", started.elapsed());
    assert_eq!(client.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    let ops = client.get(format!("http://127.0.0.1:{ops_port}/readyz")).send().await.unwrap();
    assert_eq!(ops.status(), 200);
    let public_metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(public_metrics.status(), 404, "metrics are only on the ops listener");
    // One latency histogram, by route pattern, method and status.
    let metrics = client.get(format!("http://127.0.0.1:{ops_port}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let served = "cezbek_http_request_duration_seconds_count{method=\"GET\",route=\"/slow/{millis}\",status=\"200\"}";
    assert!(metrics.lines().any(|line| line.starts_with(served)), "{metrics}");
    // The process's own figures, under their standard names.
    let resident = metrics
        .lines()
        .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
        .and_then(|value| value.parse::<f64>().ok());
    assert!(resident.is_some_and(|bytes| bytes > 1_000_000.0), "{metrics}");
    assert!(metrics.contains("process_cpu_seconds_total"), "{metrics}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}

/// A POST whose body comes in `chunks` chunks of `size` bytes, without a declared length (the
/// client here always declares one); the raw answer.
async fn chunked_post(port: u16, path: &str, chunks: usize, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n{}\r\n", "x".repeat(size));
        // The server may answer and close before the last chunk: that is the point.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}
