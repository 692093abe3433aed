//! Cross-implementation checks: Python's fastavro, given only the `.avsc` files, reads what the
//! Rust codec writes, and the Rust codec reads what fastavro writes. The Python side computes
//! the CRC-64-AVRO fingerprint itself, from the spec.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use cezbek_schemas::{Reward, Transaction, decode, decode_transaction, encode};
use serde_json::Value;

fn interop(args: &[&str], input: &str) -> String {
    let stack = cezbek_testkit::stack();
    let script = stack.root.join("dev/py/avro_interop.py");
    let mut child = Command::new(stack.python())
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the stack's Python runs");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write to python");
    let output = child.wait_with_output().expect("python finishes");
    assert!(
        output.status.success(),
        "avro_interop.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn schema_dir() -> String {
    cezbek_testkit::stack().root.join("schemas/avro").display().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn fastavro_reads_what_rust_writes() {
    let transactions = support::samples(support::transaction(), 40);
    let rewards = support::samples(support::reward(), 40);
    let mut input = String::new();
    let mut expected: Vec<Value> = Vec::new();
    for transaction in &transactions {
        input.push_str(&hex(&encode(transaction).unwrap()));
        input.push('\n');
        expected.push(serde_json::to_value(transaction).unwrap());
    }
    for reward in &rewards {
        input.push_str(&hex(&encode(reward).unwrap()));
        input.push('\n');
        expected.push(serde_json::to_value(reward).unwrap());
    }
    let output = interop(&["decode", "--schema-dir", &schema_dir()], &input);
    let decoded: Vec<Value> =
        output.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(decoded.len(), expected.len());
    for (index, (got, want)) in decoded.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "record {index} differs");
    }
}

#[test]
fn rust_reads_what_fastavro_writes() {
    let transactions = support::samples(support::transaction(), 40);
    let rewards = support::samples(support::reward(), 40);
    let lines = |values: Vec<String>| values.join("\n");
    let transaction_json =
        lines(transactions.iter().map(|t| serde_json::to_string(t).unwrap()).collect());
    let reward_json = lines(rewards.iter().map(|r| serde_json::to_string(r).unwrap()).collect());
    let avro = |name: &str| {
        cezbek_testkit::stack().root.join("schemas/avro").join(name).display().to_string()
    };

    let written = interop(&["encode", "--schema", &avro("transaction.avsc")], &transaction_json);
    let decoded: Vec<Transaction> =
        written.lines().map(|line| decode_transaction(&unhex(line)).unwrap()).collect();
    assert_eq!(decoded, transactions);

    let written = interop(&["encode", "--schema", &avro("reward.avsc")], &reward_json);
    let decoded: Vec<Reward> = written.lines().map(|line| decode(&unhex(line)).unwrap()).collect();
    assert_eq!(decoded, rewards);
}
