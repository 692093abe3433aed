//! `cezbek events`: the event log as JSON lines, for people and for `jq`.
//!
//! `tail` reads a topic directly (assigned partitions, no consumer group, nothing committed);
//! `decode` reads raw messages on standard input, one per line as `kcat -e -f '%s\n'` prints
//! them. A message that is not a Cezbek event is printed with its error and its bytes in
//! base64, never skipped.

use std::io::{BufRead, Write};
use std::time::Duration;

use base64::Engine;
use cezbek_platform::config::KafkaConfig;
use cezbek_platform::kafka;
use cezbek_schemas::decode_any;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Map, Value, json};

/// Where `tail` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Only messages produced from now on.
    End,
    Beginning,
    /// The first message of each partition at or after this time.
    Since(DateTime<Utc>),
}

#[derive(Debug, Clone)]
pub struct Tail {
    /// A topic name, or `transactions`, `rewards`, `dlq` for the configured ones.
    pub topic: String,
    pub start: Start,
    /// Only messages with this key (a customer: `PARTNER:+62…`).
    pub key: Option<String>,
    /// Stop at the end of each partition as it was when `tail` started.
    pub until_end: bool,
}

/// The longest wait for the broker's metadata and offsets.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of lines joined while looking for the end of a message that held a line
/// break (kcat separates messages by `\n`, which Avro bodies may contain).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Prints the messages of a topic as JSON lines until interrupted (or, with `until_end`,
/// until caught up).
pub fn tail(config: &KafkaConfig, tail: &Tail, out: &mut impl Write) -> Result<(), String> {
    let topic = match tail.topic.as_str() {
        "transactions" => config.transactions_topic.clone(),
        "rewards" => config.rewards_topic.clone(),
        "dlq" => config.dead_letter_topic.clone(),
        other => other.to_owned(),
    };
    let consumer: BaseConsumer = kafka::base_config(config)
        .set("group.id", "cezbek-events-tail")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|error| format!("cannot create a Kafka consumer: {error}"))?;
    let metadata = consumer
        .fetch_metadata(Some(&topic), BROKER_TIMEOUT)
        .map_err(|error| format!("cannot read the metadata of {topic}: {error}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic && found.error().is_none())
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} does not exist (or has no partitions)"));
    }
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, BROKER_TIMEOUT)
            .map_err(|error| format!("cannot read the offsets of {topic}/{partition}: {error}"))?;
        let offset = match tail.start {
            Start::End => Offset::Offset(high),
            Start::Beginning => Offset::Offset(low),
            Start::Since(time) => Offset::Offset(time.timestamp_millis()),
        };
        assignment
            .add_partition_offset(&topic, partition, offset)
            .map_err(|error| format!("{topic}/{partition}: {error}"))?;
        ends.push((partition, high));
    }
    if let Start::Since(_) = tail.start {
        // The offsets above hold times; the broker turns each into the first offset at or
        // after it (or the end, when there is none).
        assignment = consumer
            .offsets_for_times(assignment, BROKER_TIMEOUT)
            .map_err(|error| format!("cannot find offsets by time in {topic}: {error}"))?;
    }
    consumer.assign(&assignment).map_err(|error| format!("cannot assign {topic}: {error}"))?;
    // Partitions already at their end (or starting past it) have nothing to wait for.
    let mut waiting: Vec<(i32, i64)> = ends
        .into_iter()
        .filter(|(partition, high)| {
            let start = assignment
                .find_partition(&topic, *partition)
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .unwrap_or(*high);
            start < *high
        })
        .collect();
    loop {
        if tail.until_end && waiting.is_empty() {
            return Ok(());
        }
        let Some(polled) = consumer.poll(Duration::from_millis(500)) else { continue };
        let message = polled.map_err(|error| format!("reading {topic} failed: {error}"))?;
        let (partition, offset) = (message.partition(), message.offset());
        waiting.retain(|(waiting_partition, high)| {
            *waiting_partition != partition || offset + 1 < *high
        });
        let key = message.key().map(String::from_utf8_lossy);
        if tail.key.as_deref().is_some_and(|wanted| key.as_deref() != Some(wanted)) {
            continue;
        }
        let line = describe(&message);
        writeln!(out, "{line}").map_err(|error| format!("cannot write: {error}"))?;
    }
}

/// A consumed message as JSON: where it is, its key and headers, and its event.
fn describe(message: &BorrowedMessage<'_>) -> Value {
    let mut line = Map::new();
    line.insert("topic".into(), json!(message.topic()));
    line.insert("partition".into(), json!(message.partition()));
    line.insert("offset".into(), json!(message.offset()));
    if let Some(millis) = message.timestamp().to_millis() {
        line.insert("timestamp".into(), json!(millis));
    }
    line.insert("key".into(), json!(message.key().map(String::from_utf8_lossy)));
    if let Some(headers) = message.headers() {
        let headers: Map<String, Value> = headers
            .iter()
            .map(|header| {
                let value = header.value.map(String::from_utf8_lossy);
                (header.key.to_owned(), json!(value))
            })
            .collect();
        line.insert("headers".into(), Value::Object(headers));
    }
    line.extend(event_fields(message.payload().unwrap_or_default()));
    Value::Object(line)
}

/// `type` and `event` of a message that decodes; `error` and `payload_base64` of one that
/// does not.
fn event_fields(payload: &[u8]) -> Map<String, Value> {
    match decode_any(payload).map(|event| serde_json::to_value(&event)) {
        Ok(Ok(Value::Object(fields))) => fields,
        Ok(Ok(other)) => Map::from_iter([("event".to_owned(), other)]),
        Ok(Err(error)) => undecodable(error.to_string(), payload),
        Err(error) => undecodable(error.to_string(), payload),
    }
}

fn undecodable(error: String, payload: &[u8]) -> Map<String, Value> {
    Map::from_iter([
        ("error".to_owned(), json!(error)),
        (
            "payload_base64".to_owned(),
            json!(base64::engine::general_purpose::STANDARD.encode(payload)),
        ),
    ])
}

/// Reads raw messages separated by line breaks and prints each as a JSON line. An Avro body
/// may itself hold a `\n`: lines are joined until they decode (a complete message is never a
/// prefix of another, so the first join that decodes is the message). Returns how many could
/// not be decoded.
pub fn decode_stream(input: &mut impl BufRead, out: &mut impl Write) -> Result<usize, String> {
    let mut failed = 0;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut line = Vec::new();
    let write = |out: &mut dyn Write, fields: Map<String, Value>| {
        writeln!(out, "{}", Value::Object(fields)).map_err(|error| format!("cannot write: {error}"))
    };
    loop {
        line.clear();
        let read = input.read_until(b'\n', &mut line).map_err(|e| format!("stdin: {e}"))?;
        if read == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if pending.is_empty() && line.is_empty() {
            continue;
        }
        pending.push(std::mem::take(&mut line));
        // Try the joins that end at this line, the longest (oldest start) first: a message that
        // began earlier and held line breaks; then the lines before it are not messages.
        let mut decoded_from = None;
        for start in 0..pending.len() {
            let joined = pending[start..].join(&b'\n');
            if let Ok(event) = decode_any(&joined) {
                decoded_from = Some((start, event));
                break;
            }
        }
        if let Some((start, event)) = decoded_from {
            for bad in pending.drain(..start) {
                failed += 1;
                write(out, undecodable("not a Cezbek event".into(), &bad))?;
            }
            pending.clear();
            let fields = match serde_json::to_value(&event) {
                Ok(Value::Object(fields)) => fields,
                _ => Map::new(),
            };
            write(out, fields)?;
            continue;
        }
        // Lines that grew past any message's size cannot start one.
        while pending.iter().map(Vec::len).sum::<usize>() > MAX_MESSAGE_BYTES {
            let bad = pending.remove(0);
            failed += 1;
            write(out, event_fields(&bad))?;
        }
    }
    for bad in pending {
        failed += 1;
        write(out, event_fields(&bad))?;
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cezbek_schemas::{
        Currency, Msisdn, PartnerCode, Source, SourceChannel, Transaction, TransactionId,
        TransactionKind, encode,
    };

    fn transaction(id: &str, merchant: &str) -> Transaction {
        Transaction {
            partner: PartnerCode::parse("TOKO").unwrap(),
            transaction_id: TransactionId::parse(id).unwrap(),
            kind: TransactionKind::Purchase,
            original_transaction_id: None,
            msisdn: Msisdn::parse("081234567890").unwrap(),
            amount: 15_000,
            currency: Currency::parse("IDR").unwrap(),
            quantity: 1,
            merchant: Some(merchant.to_owned()),
            mcc: None,
            email: None,
            wallet: None,
            occurred_at: DateTime::from_timestamp_millis(1_770_000_000_000).unwrap(),
            source: Source { channel: SourceChannel::Api, reference: "r".into(), line: None },
            ingested_at: DateTime::from_timestamp_millis(1_770_000_000_500).unwrap(),
        }
    }

    #[test]
    fn raw_messages_with_line_breaks_inside_decode_and_garbage_is_reported() {
        let mut input = Vec::new();
        input.extend(encode(&transaction("t-1", "plain")).unwrap());
        input.push(b'\n');
        input.extend(b"not an event\n");
        // A merchant with a line break: the Avro body holds a 0x0A byte.
        input.extend(encode(&transaction("t-2", "two\nlines")).unwrap());
        input.push(b'\n');
        let mut out = Vec::new();
        let failed = decode_stream(&mut input.as_slice(), &mut out).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(failed, 1);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["type"], "Transaction");
        assert_eq!(lines[0]["event"]["transaction_id"], "t-1");
        assert_eq!(lines[0]["event"]["occurred_at"], 1_770_000_000_000i64);
        assert_eq!(lines[1]["payload_base64"], "bm90IGFuIGV2ZW50");
        assert_eq!(lines[2]["event"]["merchant"], "two\nlines");
    }
}
