//! The Instagram webhook's ack path (verify + parse + split + encode jobs), for a ~1 KB body
//! and for a 1000-entry body. Run with `cargo bench -p igbridge-shared --bench ack`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use shared::instagram::webhook::{sign, signature_is_valid, split};
use shared::jobs::{Envelope, Job};

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

fn ack(secret: &[u8], sig: &str, body: &[u8]) -> usize {
    assert!(signature_is_valid(secret, Some(sig), body));
    let now = chrono::Utc::now();
    split(body)
        .unwrap()
        .into_iter()
        .map(|j| {
            Envelope::new(Job::InstagramEvent(j), now)
                .to_message()
                .body
                .len()
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let secret = b"meta-app-secret";
    let mut group = c.benchmark_group("instagram_ack");
    for (name, entries) in [("1KB_body", 2), ("1000_entries", 1000)] {
        let b = body(entries);
        let sig = sign(secret, &b);
        group.throughput(Throughput::Bytes(b.len() as u64));
        group.bench_function(format!("{name}_{}B", b.len()), |bench| {
            bench.iter(|| ack(secret, &sig, &b))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
