//! The Instagram webhook's ack path for a ~1 KB body and for a 1000-entry body:
//! - `verify_split_encode`: verify the signature, split the body into jobs and write each job
//!   (what the issue calls the ack work; comparable with the Python baseline, which does the
//!   same: `tests/benches/baseline/ack.py`);
//! - `production`: the same plus what the function really does before enqueueing: seal each job
//!   under the organization's data key and write the queue message.
//!
//! `cargo bench -p igbridge-shared --bench ack` (or `scripts/bench ack`, which runs the Python
//! baseline on the same bodies, written to `target/bench-bodies/`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use shared::datakey::DataKey;
use shared::ids::OrgId;
use shared::instagram::webhook::{sign, signature_is_valid, split};
use shared::jobs::SealedEnvelope;

fn body(entries: usize) -> Vec<u8> {
    let entry = |i: usize| {
        json!({"id": "17841400000000001", "time": 1569262486134u64, "messaging": [{
            "sender": {"id": format!("IGSID_{i}")}, "recipient": {"id": "17841400000000001"},
            "timestamp": 1569262485349u64,
            "message": {"mid": format!("aWdfZAG1faXRlbToxOklHTWVzc2FnZAExNzg0MTQwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI1OTI{i:08}"),
                        "text": "Hi, where is my order #1042? I ordered it last week and it has not arrived yet, could you check please? \u{00e4}\u{00f6}\u{00e5}"}}]})
    };
    let v = json!({"object": "instagram", "entry": (0..entries).map(entry).collect::<Vec<_>>()});
    v.to_string().into_bytes()
}

/// Verify, split, write each job: the bytes written.
fn ack(secret: &[u8], sig: &str, body: &[u8]) -> usize {
    assert!(signature_is_valid(secret, Some(sig), body));
    split(body)
        .unwrap()
        .iter()
        .map(|j| j.job_json().len() + j.group().len() + j.dedup_id().len())
        .sum()
}

/// Verify, split, seal each job, write each queue message: the bytes enqueued.
fn production(secret: &[u8], sig: &str, body: &[u8], key: &DataKey) -> usize {
    assert!(signature_is_valid(secret, Some(sig), body));
    let now = chrono::Utc::now();
    split(body)
        .unwrap()
        .iter()
        .map(|j| {
            let ids = (j.group(), j.dedup_id());
            SealedEnvelope::seal_job(
                &OrgId::from("org"),
                key,
                now,
                (&ids.0, &ids.1),
                j.job_json(),
            )
            .to_message()
            .body
            .len()
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let secret = b"meta-app-secret";
    let key = DataKey::random();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-bodies");
    std::fs::create_dir_all(&dir).unwrap();
    let mut group = c.benchmark_group("instagram_ack");
    for (name, entries) in [("1KB_body", 2), ("1000_entries", 1000)] {
        let b = body(entries);
        std::fs::write(dir.join(format!("{name}.json")), &b).unwrap();
        let sig = sign(secret, &b);
        group.throughput(Throughput::Bytes(b.len() as u64));
        group.bench_function(
            format!("verify_split_encode/{name}_{}B", b.len()),
            |bench| bench.iter(|| ack(secret, &sig, &b)),
        );
        group.bench_function(format!("production/{name}_{}B", b.len()), |bench| {
            bench.iter(|| production(secret, &sig, &b, &key))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
