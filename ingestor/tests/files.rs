//! CSV ingestion from S3 against the real stack: reports, whole-file rejections, discovery by
//! bucket notification, exactly-once per object version, presigned uploads with curl.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{ADMIN, Harness, Options, VIEWER, by_id, key, partner, start};

const HEADER: &str = "transaction_id,msisdn,amount,currency,quantity,occurred_at,merchant,mcc,kind,original_transaction_id,email,wallet,notes";

async fn with_partners(name: &str, options: Options) -> Harness {
    let harness = start(name, options).await;
    harness.put_partner(&partner("TOKO", "ACTIVE", json!([key("k1", None)]))).await;
    harness.put_partner(&partner("WARUNG", "ACTIVE", json!([key("k1", None)]))).await;
    harness.put_partner(&partner("SLEEPY", "SUSPENDED", json!([key("k1", None)]))).await;
    harness
}

async fn summary_of(harness: &Harness, partner: &str, name: &str) -> Value {
    let text = harness
        .wait_for_object(&format!("reports/{partner}/{name}.summary.json"), Duration::from_secs(30))
        .await;
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_file_with_every_kind_of_bad_line_reports_each_and_sends_the_rest() {
    let harness = with_partners("csvbad", Options::default()).await;
    let long_merchant = "m".repeat(129);
    let lines = [
        HEADER.to_owned(),
        // 2: fine, with a quoted comma and a quoted quote.
        "ok-1,081234567890,15000,IDR,1,2026-03-01T10:00:00+07:00,\"Kopi, \"\"Kenangan\"\"\",5814,,,a@example.com,,x".into(),
        "bad-msisdn,08123abc,15000,IDR,1,2026-03-01T10:00:00+07:00,Shop,5411,,,,,".into(),
        "bad-negative,081234567890,-100,IDR,1,2026-03-01T10:00:00+07:00,Shop,5411,,,,,".into(),
        "bad-decimal,081234567890,150.50,IDR,1,2026-03-01T10:00:00+07:00,Shop,5411,,,,,".into(),
        "bad-currency,081234567890,15000,RUPIAH,1,2026-03-01T10:00:00+07:00,Shop,5411,,,,,".into(),
        "bad-date,081234567890,15000,IDR,1,01/03/2026 10:00,Shop,5411,,,,,".into(),
        "bad-mcc,081234567890,15000,IDR,1,2026-03-01T10:00:00+07:00,Shop,10000,,,,,".into(),
        "bad-refund,081234567890,15000,IDR,1,2026-03-01T10:00:00+07:00,Shop,5411,REFUND,,,,".into(),
        format!("bad-long,081234567890,15000,IDR,1,2026-03-01T10:00:00+07:00,{long_merchant},5411,,,,,"),
        // Also a formula to a spreadsheet: the report must keep it text.
        "@SUM(1+1)*cmd,081234567890,15000,IDR,1".into(),
        // 12–13: fine, a merchant with a line break inside quotes.
        "ok-2,+6281234567891,20000,IDR,2,2026-03-01T03:00:00Z,\"Two\nLines\",,,,,,".into(),
        // 14: a refund of ok-1.
        "ok-3,6281234567890,5000,IDR,1,2026-03-02T10:00:00+07:00,Shop,,REFUND,ok-1,,,".into(),
    ];
    let csv = format!("\u{feff}{}\r\n", lines.join("\r\n"));
    harness.s3.put_object("incoming/TOKO/march.csv", csv.into_bytes(), "text/csv").await.unwrap();

    let summary = summary_of(&harness, "TOKO", "march").await;
    assert_eq!(summary["status"], "done", "{summary}");
    let rejects = harness.get_text("reports/TOKO/march.rejects.csv").await.unwrap();
    assert_eq!(summary["rows"], 12, "{rejects}");
    assert_eq!(summary["accepted"], 3, "{rejects}");
    assert_eq!(summary["accepted"], 3);
    assert_eq!(summary["rejected"], 9);
    // Rows read, and their outcomes in another metric: summing outcomes counts a row once.
    let metrics = harness.metrics().await;
    for line in [
        "cezbek_ingestor_items_read_total{channel=\"csv\"} 12",
        "cezbek_ingestor_items_total{channel=\"csv\",outcome=\"accepted\"} 3",
        "cezbek_ingestor_items_total{channel=\"csv\",outcome=\"rejected\"} 9",
    ] {
        assert!(metrics.lines().any(|metric| metric == line), "no {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("cezbek_ingestor_csv_read_bytes_total"), "{metrics}");
    assert_eq!(
        summary["reasons"],
        json!({"msisdn": 1, "amount": 2, "currency": 1, "occurred_at": 1, "mcc": 1,
               "original_transaction_id": 1, "merchant": 1, "line": 1})
    );

    let rejects = harness.get_text("reports/TOKO/march.rejects.csv").await.unwrap();
    let report: Vec<&str> = rejects.lines().collect();
    assert_eq!(report[0], "line,raw,reasons");
    let numbers: Vec<&str> = report[1..].iter().map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(numbers, ["3", "4", "5", "6", "7", "8", "9", "10", "11"]);
    assert!(report[1].starts_with("3,\"bad-msisdn,08123abc,"), "{}", report[1]);
    assert!(report[4].contains("RUPIAH") && report[4].contains("currency:"));
    assert!(report[9].contains("has 5 fields; the header has 13"), "{}", report[9]);
    assert!(report[9].starts_with("11,\"'@SUM(1+1)*cmd,0812"), "{}", report[9]);
    assert!(report[8].contains("at most 128"), "{}", report[8]);

    // The file moved; the topic has exactly the good rows, with their lines.
    assert!(harness.get_text("incoming/TOKO/march.csv").await.is_none());
    assert!(harness.get_text("processed/TOKO/march.csv").await.is_some());
    let on_topic = by_id(&harness.topic(3, Duration::from_secs(10)).await);
    assert_eq!(on_topic.len(), 3);
    assert_eq!(on_topic["ok-1"].merchant.as_deref(), Some("Kopi, \"Kenangan\""));
    assert_eq!(on_topic["ok-1"].source.line, Some(2));
    assert_eq!(on_topic["ok-1"].source.reference, "incoming/TOKO/march.csv");
    assert_eq!(on_topic["ok-2"].merchant.as_deref(), Some("Two\nLines"));
    assert_eq!(on_topic["ok-2"].quantity, 2);
    assert_eq!(on_topic["ok-3"].source.line, Some(14));
    assert_eq!(on_topic["ok-3"].original_transaction_id.as_ref().unwrap().as_str(), "ok-1");
    assert_eq!(on_topic["ok-3"].msisdn.as_str(), "+6281234567890");
}

#[tokio::test]
async fn whole_files_are_rejected_with_a_report_when_they_cannot_be_read() {
    let harness = with_partners("csvwhole", Options::default()).await;
    let good_row = "r1,081234567890,15000,IDR,1,2026-03-01T10:00:00+07:00,Shop,5411,,,,,";
    let files = [
        ("incoming/TOKO/empty.csv", String::new()),
        ("incoming/TOKO/header-only.csv", format!("{HEADER}\n")),
        (
            "incoming/TOKO/no-amount.csv",
            "transaction_id,msisdn,currency,occurred_at\nx,0812345678,IDR,2026-03-01T10:00:00Z\n"
                .into(),
        ),
        ("incoming/NOBODY/file.csv", format!("{HEADER}\n{good_row}\n")),
        ("incoming/SLEEPY/file.csv", format!("{HEADER}\n{good_row}\n")),
    ];
    for (key, body) in &files {
        harness.s3.put_object(key, body.clone().into_bytes(), "text/csv").await.unwrap();
    }
    let empty = summary_of(&harness, "TOKO", "empty").await;
    assert_eq!(empty["status"], "failed");
    assert!(empty["failure"].as_str().unwrap().contains("header row is required"));

    let header_only = summary_of(&harness, "TOKO", "header-only").await;
    assert_eq!(header_only["status"], "done");
    assert_eq!(header_only["rows"], 0);

    let no_amount = summary_of(&harness, "TOKO", "no-amount").await;
    assert_eq!(no_amount["status"], "failed");
    assert!(no_amount["failure"].as_str().unwrap().contains("amount"), "{no_amount}");

    let unknown = summary_of(&harness, "NOBODY", "file").await;
    assert_eq!(unknown["status"], "failed");
    assert!(unknown["failure"].as_str().unwrap().contains("unknown partner"));
    let suspended = summary_of(&harness, "SLEEPY", "file").await;
    assert!(suspended["failure"].as_str().unwrap().contains("suspended"));
    for (key, _) in &files {
        assert!(harness.get_text(key).await.is_none(), "{key} is still in incoming/");
    }
    assert!(harness.topic(0, Duration::from_millis(500)).await.is_empty());
}

#[tokio::test]
async fn a_bucket_notification_finds_a_file_and_each_version_is_ingested_once() {
    // Listing only at start: what arrives later is found through SQS.
    let options = Options {
        with_queue: true,
        list_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let harness = with_partners("csvsqs", options).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "n-{i},0812345678{:02},{},IDR,1,2026-03-01T10:00:00Z,Shop,5411,,,,,",
                i % 7,
                1000 + i
            )
        })
        .collect();
    let body = format!("{HEADER}\n{}\n", rows.join("\n"));
    harness
        .s3
        .put_object("incoming/WARUNG/day 1.csv", body.clone().into_bytes(), "text/csv")
        .await
        .unwrap();
    let summary = summary_of(&harness, "WARUNG", "day 1").await;
    assert_eq!(summary["accepted"], 50, "{summary}");

    // The same bytes again (same ETag): recognised as already ingested, moved, not re-sent.
    harness
        .s3
        .put_object("incoming/WARUNG/day 1.csv", body.into_bytes(), "text/csv")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while harness.get_text("incoming/WARUNG/day 1.csv").await.is_some() {
        assert!(std::time::Instant::now() < deadline, "the repeated upload was never handled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(harness.topic(50, Duration::from_secs(10)).await.len(), 50);
}

#[tokio::test]
async fn a_presigned_upload_with_curl_is_ingested_and_its_status_reported() {
    let harness = with_partners("upload", Options::default()).await;

    // Admins name the partner; viewers may not create uploads.
    let admin = |token: &str, body: Value| {
        harness
            .http
            .post(format!("{}/v1/uploads", harness.base))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    assert_eq!(
        admin(VIEWER, json!({"partner": "TOKO"})).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(admin(ADMIN, json!({})).await.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        admin(ADMIN, json!({"partner": "SLEEPY"})).await.unwrap().status(),
        StatusCode::CONFLICT
    );
    let by_admin: Value =
        admin(ADMIN, json!({"partner": "WARUNG"})).await.unwrap().json().await.unwrap();
    assert!(by_admin["key"].as_str().unwrap().starts_with("incoming/WARUNG/"));

    // A partner signs for its own prefix only.
    let (status, _) =
        harness.signed("TOKO", Method::POST, "/v1/uploads", br#"{"partner":"WARUNG"}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, upload) = harness.signed("TOKO", Method::POST, "/v1/uploads", b"").await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    let upload_id = upload["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(upload["key"], format!("incoming/TOKO/{upload_id}.csv"));
    let status_path = format!("/v1/uploads/{upload_id}");
    let (_, pending) = harness.signed("TOKO", Method::GET, &status_path, b"").await;
    assert_eq!(pending["status"], "pending");
    // A read is not replay-guarded: the same signed read twice in a second is answered twice.
    let read = harness.sign("TOKO", "k1", "GET", &status_path, b"", chrono::Utc::now().timestamp());
    for _ in 0..2 {
        let (status, _) = harness.send(Method::GET, &status_path, read.clone(), b"").await;
        assert_eq!(status, StatusCode::OK);
    }

    let file = std::env::temp_dir().join(format!("{upload_id}.csv"));
    let body = format!(
        "{HEADER}\nu-1,081234567890,15000,IDR,1,2026-03-01T10:00:00Z,Shop,5411,,,,,\nu-2,bad,1,IDR,1,2026-03-01T10:00:00Z,Shop,5411,,,,,\n"
    );
    let body_bytes = body.len();
    std::fs::write(&file, body).unwrap();
    let curl = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--upload-file"])
        .arg(&file)
        .arg(upload["url"].as_str().unwrap())
        .status()
        .await
        .unwrap();
    assert!(curl.success(), "curl could not PUT to the presigned URL");
    std::fs::remove_file(&file).ok();

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (status, state) = harness.signed("TOKO", Method::GET, &status_path, b"").await;
        assert_eq!(status, StatusCode::OK);
        if state["status"] == "done" {
            break state;
        }
        assert!(std::time::Instant::now() < deadline, "upload still {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["summary"]["accepted"], 1);
    assert_eq!(done["summary"]["rejected"], 1);
    assert_eq!(done["summary"]["reasons"], json!({"msisdn": 1}));
    // Progress in bytes of the file's size; a finished job has no time left.
    assert_eq!(done["progress"]["rows"], 2, "{done}");
    assert_eq!(done["progress"]["bytes_read"], body_bytes, "{done}");
    assert_eq!(done["progress"]["bytes_total"], body_bytes, "{done}");
    assert!(done["progress"]["rows_per_second"].is_number(), "{done}");
    assert!(done["progress"]["eta_seconds"].is_null(), "{done}");

    // Another partner cannot see it; an admin viewer can.
    let (status, _) = harness.signed("WARUNG", Method::GET, &status_path, b"").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let viewed: Value = harness
        .http
        .get(format!("{}{status_path}", harness.base))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(viewed["status"], "done");

    // The rejected lines with their reasons, a page at a time, to the upload's partner only.
    let rejects_path = format!("{status_path}/rejects");
    let (status, page) = harness.signed("TOKO", Method::GET, &rejects_path, b"").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["next_after"], Value::Null);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["line"], 3);
    assert!(items[0]["raw"].as_str().unwrap().starts_with("u-2,bad,"), "{page}");
    assert!(items[0]["reasons"].as_str().unwrap().contains("msisdn"), "{page}");
    let after_it = format!("{rejects_path}?after=3&limit=1");
    let (_, rest) = harness.signed("TOKO", Method::GET, &after_it, b"").await;
    assert_eq!((&rest["items"], &rest["next_after"]), (&json!([]), &Value::Null), "{rest}");
    let (status, _) = harness.signed("WARUNG", Method::GET, &rejects_path, b"").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let too_many = format!("{rejects_path}?limit=1001");
    let (status, refused) = harness.signed("TOKO", Method::GET, &too_many, b"").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
}

/// `count` rows of one customer each, ids `{prefix}{n}`, as a whole file.
fn file_of(prefix: &str, count: usize) -> String {
    let rows: Vec<String> = (0..count)
        .map(|n| {
            format!(
                "{prefix}{n},081234567{:03},{},IDR,1,2026-03-01T10:00:00Z,Shop,5411,,,,,",
                n % 1000,
                1000 + n
            )
        })
        .collect();
    format!("{HEADER}\n{}\n", rows.join("\n"))
}

async fn job_pool(harness: &Harness) -> sqlx::PgPool {
    cezbek_platform::postgres::connect(&harness.postgres).await.unwrap()
}

/// A file overwritten while it is ingested: the older version's move is conditional on its
/// ETag, so it never deletes the newer upload, which is ingested as its own job. One file
/// worker, so the newer version waits until the older one is finished and moved (where an
/// unconditional delete lost it).
#[tokio::test]
async fn a_file_overwritten_during_ingestion_loses_neither_version() {
    let options = Options { file_workers: 1, ..Options::default() };
    let harness = with_partners("csvoverwrite", options).await;
    let pool = job_pool(&harness).await;
    let key = "incoming/TOKO/daily.csv";
    const OLDER: usize = 60_000;
    harness.s3.put_object(key, file_of("v1-", OLDER).into_bytes(), "text/csv").await.unwrap();
    // The older version is being read once its job has checkpointed some rows.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let read: Option<i64> =
            sqlx::query_scalar("SELECT max(rows_read) FROM ingest_jobs WHERE object_key = $1")
                .bind(key)
                .fetch_one(&pool)
                .await
                .unwrap();
        if read.unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the first version was never picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    harness.s3.put_object(key, file_of("v2-", 50).into_bytes(), "text/csv").await.unwrap();
    let running: String =
        sqlx::query_scalar("SELECT status FROM ingest_jobs WHERE object_key = $1")
            .bind(key)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(running, "processing", "the overwrite must land during ingestion; make v1 larger");

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ingest_jobs WHERE object_key = $1 AND status = 'done'",
        )
        .bind(key)
        .fetch_one(&pool)
        .await
        .unwrap();
        if done == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{done} of the 2 versions were ingested");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ids = by_id(&harness.topic(OLDER + 50, Duration::from_secs(60)).await);
    assert_eq!(ids.len(), OLDER + 50, "every row of both versions is on the topic");
    assert!(ids.contains_key("v1-0") && ids.contains_key("v2-49"));
    assert!(harness.get_text(key).await.is_none(), "the newer version was moved by its own job");
    assert!(harness.get_text("processed/TOKO/daily.csv").await.is_some());
}

/// A job whose last checkpoint reached the end of its file (its instance died before it could
/// finish) finishes when another instance takes it over: S3 answers a range from the end with
/// 416, which is the end of the file, not an error to retry forever.
#[tokio::test]
async fn a_job_checkpointed_at_the_end_of_its_file_finishes() {
    let options = Options {
        with_queue: true,
        list_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let harness = with_partners("csveof", options).await;
    let pool = job_pool(&harness).await;
    let key = "incoming/TOKO/done-but-not-moved.csv";
    let body = file_of("eof-", 10);
    // S3's ETag of a single-part upload is the body's MD5.
    let mut md5 = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut md5.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let output = md5.wait_with_output().unwrap();
    let etag = String::from_utf8(output.stdout).unwrap()[..32].to_owned();
    // The dead instance's checkpoint: every line read, its lease run out.
    sqlx::query(
        "INSERT INTO ingest_jobs (bucket, object_key, etag, partner, status, owner, lease_until,
                                  header, next_line, next_offset, rows_read, accepted, rejected)
         VALUES ($1, $2, $3, 'TOKO', 'processing', 'dead-instance', now() - interval '1 minute',
                 $4, 12, $5, 10, 10, 0)",
    )
    .bind(&harness.s3_config.bucket)
    .bind(key)
    .bind(&etag)
    .bind(HEADER)
    .bind(i64::try_from(body.len()).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    harness.s3.put_object(key, body.into_bytes(), "text/csv").await.unwrap();

    let summary = summary_of(&harness, "TOKO", "done-but-not-moved").await;
    assert_eq!(
        (summary["status"].as_str(), summary["accepted"].as_i64()),
        (Some("done"), Some(10))
    );
    assert_eq!(summary["etag"], etag.as_str(), "{summary}");
    assert!(harness.topic(1, Duration::from_secs(2)).await.is_empty(), "nothing is read again");
}

/// Many long bad lines: the rejects report is streamed from the database to S3 in parts (a
/// multipart upload once it outgrows one), and what the ingestor holds of rejected rows is
/// bounded by bytes, so the report is exact line for line however large it is.
#[tokio::test]
async fn a_file_of_long_rejected_lines_gets_its_whole_report_in_parts() {
    let harness = with_partners("csvrejects", Options::default()).await;
    const BAD: usize = 300;
    let padding = "x".repeat(40 * 1024);
    let mut lines = vec![HEADER.to_owned()];
    for n in 0..BAD {
        // A bad msisdn and a 40 KiB merchant: rejected, and echoed whole in the report.
        lines.push(format!(
            "bad-{n},08123abc,1000,IDR,1,2026-03-01T10:00:00Z,{padding}{n},5411,,,,,"
        ));
        if n % 100 == 0 {
            lines.push(format!(
                "good-{n},081234567890,1000,IDR,1,2026-03-01T10:00:00Z,Shop,5411,,,,,"
            ));
        }
    }
    let body = format!("{}\n", lines.join("\n"));
    harness.s3.put_object("incoming/TOKO/long.csv", body.into_bytes(), "text/csv").await.unwrap();

    let summary = summary_of(&harness, "TOKO", "long").await;
    assert_eq!(
        (summary["accepted"].as_u64(), summary["rejected"].as_u64()),
        (Some(3), Some(BAD as u64))
    );
    let report = harness.get_text("reports/TOKO/long.rejects.csv").await.unwrap();
    assert!(report.len() > 8 * 1024 * 1024, "large enough to need parts: {}", report.len());
    let rows: Vec<&str> = report.lines().collect();
    assert_eq!(rows[0], "line,raw,reasons");
    assert_eq!(rows.len(), BAD + 1, "one line per reject");
    let mut previous_line = 0;
    for (n, row) in rows[1..].iter().enumerate() {
        let line: u64 = row.split(',').next().unwrap().parse().unwrap();
        assert!(line > previous_line, "in line order");
        previous_line = line;
        assert!(row.contains(&format!("\"bad-{n},08123abc,")), "{}", &row[..80]);
        assert!(row.contains(&format!("{padding}{n},5411")), "line {n} is whole");
        let reasons = &row[row.len() - 150..];
        assert!(reasons.contains("msisdn: contains 'a'"), "{reasons}");
        assert!(reasons.contains("merchant: has 40"), "{reasons}");
    }
}
