//! One contract suite for the store port, run against the in-memory adapter and against
//! DynamoDB on moto server over the real AWS wire protocol.

use shared::ids::FlowId;
use shared::ids::{IgAccountId, Igsid, OrgId};
use testkit::moto;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use shared::cipher::TokenCipher;
use shared::domain::*;
use shared::store::{
    Condition, DynamoStore, Item, Key, MemoryStore, PageRequest, Repo, SkRange, Store, StoreError,
    TransactWrite,
};

fn item(pk: &str, sk: &str, extra: Value) -> Item {
    let mut m = extra.as_object().cloned().unwrap_or_default();
    m.insert("pk".into(), json!(pk));
    m.insert("sk".into(), json!(sk));
    Item::new(m).unwrap()
}

async fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

async fn dynamo() -> Arc<dyn Store> {
    let sdk = moto::sdk().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = moto::unique("igbridge-test");
    shared::provision::create_table(&client, &table)
        .await
        .unwrap();
    Arc::new(DynamoStore::new(client, table))
}

async fn put_get_round_trips_attribute_types(store: Arc<dyn Store>) {
    let it = item(
        "P#1",
        "S#1",
        json!({"s":"text","n":42,"neg":-7,"big":1_700_000_000_123i64,"f":1.5,"b":true,
               "l":[1,"two",{"three":3}],"m":{"nested":{"deep":"x"}},"organization_id":"org-1",
               "expires_at":1_800_000_000i64,"absent":null}),
    );
    store.put(it.clone(), Condition::Always).await.unwrap();
    let got = store.get(&Key::new("P#1", "S#1")).await.unwrap().unwrap();
    assert_eq!(got, it);
    assert!(got.get("absent").is_none(), "nulls are not stored");
    assert_eq!(got.expires_at(), Some(1_800_000_000));
    assert!(store.get(&Key::new("P#1", "S#2")).await.unwrap().is_none());
}

async fn if_absent_lets_exactly_one_writer_win(store: Arc<dyn Store>) {
    store
        .put(item("P", "S", json!({"who":"first"})), Condition::IfAbsent)
        .await
        .unwrap();
    let err = store
        .put(item("P", "S", json!({"who":"second"})), Condition::IfAbsent)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed), "{err:?}");
    let got = store.get(&Key::new("P", "S")).await.unwrap().unwrap();
    assert_eq!(got.str("who"), Some("first"), "the loser wrote nothing");

    // Concurrent claims: exactly one succeeds.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.put(item("CLAIM", "X", json!({"i": i})), Condition::IfAbsent)
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::ConditionFailed) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(wins, 1);
}

async fn if_present_and_if_equals_guard_updates(store: Arc<dyn Store>) {
    let err = store
        .put(item("P", "S", json!({"version":1})), Condition::IfPresent)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed));
    store
        .put(item("P", "S", json!({"version":1})), Condition::Always)
        .await
        .unwrap();
    let v1 = Condition::IfEquals {
        attribute: "version".into(),
        value: json!(1),
    };
    store
        .put(item("P", "S", json!({"version":2})), v1.clone())
        .await
        .unwrap();
    // A writer that read version 1 now loses.
    let err = store
        .put(
            item("P", "S", json!({"version":2,"stale":true})),
            v1.clone(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed));
    let err = store.delete(&Key::new("P", "S"), v1).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed));
    let got = store.get(&Key::new("P", "S")).await.unwrap().unwrap();
    assert_eq!(got.get("version"), Some(&json!(2)));
    assert!(got.get("stale").is_none());
}

async fn delete_returns_old_item_and_take_is_single_use(store: Arc<dyn Store>) {
    let repo = Repo::new(store.clone());
    let state = OAuthState {
        nonce: "n1".into(),
        step: OAuthStep::Facebook,
        organization_id: Some("org-1".into()),
        created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        expires_at: 1_767_225_600 + OAUTH_STATE_TTL_SECS,
    };
    repo.put(&state, Condition::IfAbsent).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let r = repo.clone();
        tasks.push(tokio::spawn(async move {
            r.take::<OAuthState>(&OAuthState::key_for(&FlowId::from("n1")))
                .await
                .unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        if let Some(s) = t.await.unwrap() {
            got.push(s);
        }
    }
    assert_eq!(got, vec![state], "exactly one taker gets the state");
    assert!(
        store
            .get(&OAuthState::key_for(&FlowId::from("n1")))
            .await
            .unwrap()
            .is_none()
    );
    // Unconditional delete of a missing item: nothing, no error.
    assert!(
        store
            .delete(&Key::new("none", "none"), Condition::Always)
            .await
            .unwrap()
            .is_none()
    );
}

async fn query_ranges_are_sorted_and_paginate(store: Arc<dyn Store>) {
    for sk in ["B#3", "A#1", "B#1", "B#2", "C#1", "B#4", "B#5"] {
        store
            .put(item("Q", sk, json!({})), Condition::Always)
            .await
            .unwrap();
    }
    store
        .put(item("Q2", "B#9", json!({})), Condition::Always)
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut page = PageRequest {
        limit: Some(2),
        cursor: None,
    };
    let mut pages = 0;
    loop {
        let got = store
            .query("Q", &SkRange::Prefix("B#".into()), page)
            .await
            .unwrap();
        assert!(got.items.len() <= 2);
        seen.extend(got.items.iter().map(|i| i.key().sk));
        pages += 1;
        match got.next {
            Some(c) => {
                page = PageRequest {
                    limit: Some(2),
                    cursor: Some(c),
                }
            }
            None => break,
        }
        assert!(pages < 10, "pagination must end");
    }
    assert_eq!(seen, vec!["B#1", "B#2", "B#3", "B#4", "B#5"]);
    assert!(pages >= 3);

    let between = store
        .query(
            "Q",
            &SkRange::Between("A#1".into(), "B#2".into()),
            PageRequest::default(),
        )
        .await
        .unwrap();
    let sks: Vec<_> = between.items.iter().map(|i| i.key().sk).collect();
    assert_eq!(sks, vec!["A#1", "B#1", "B#2"]);
    let all = store
        .query("Q", &SkRange::All, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 7);
    assert!(all.next.is_none());
}

async fn organization_index_finds_every_item_of_one_org_only(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for i in 0..13 {
        let k = Key::new(format!("ORG#a#THING#{i}"), format!("S{i}"));
        store
            .put(
                item(&k.pk, &k.sk, json!({"organization_id":"org-a"})),
                Condition::Always,
            )
            .await
            .unwrap();
        expected.push(k);
    }
    for i in 0..3 {
        store
            .put(
                item(
                    &format!("ORG#b#{i}"),
                    "S",
                    json!({"organization_id":"org-b"}),
                ),
                Condition::Always,
            )
            .await
            .unwrap();
    }
    store
        .put(item("NOORG", "S", json!({})), Condition::Always)
        .await
        .unwrap();

    let mut found = Vec::new();
    let mut page = PageRequest {
        limit: Some(4),
        cursor: None,
    };
    for _ in 0..20 {
        let got = store
            .query_organization("org-a", page.clone())
            .await
            .unwrap();
        found.extend(got.items);
        match got.next {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
    let none = store
        .query_organization("org-z", PageRequest::default())
        .await
        .unwrap();
    assert!(none.items.is_empty());
}

async fn set_expiry_sets_ttl_and_reports_missing(store: Arc<dyn Store>) {
    store
        .put(item("E", "S", json!({"keep":"me"})), Condition::Always)
        .await
        .unwrap();
    assert!(
        store
            .set_expiry(&Key::new("E", "S"), 1_900_000_000)
            .await
            .unwrap()
    );
    let got = store.get(&Key::new("E", "S")).await.unwrap().unwrap();
    assert_eq!(got.expires_at(), Some(1_900_000_000));
    assert_eq!(got.str("keep"), Some("me"));
    assert!(
        !store
            .set_expiry(&Key::new("E", "missing"), 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .get(&Key::new("E", "missing"))
            .await
            .unwrap()
            .is_none(),
        "no item is created"
    );
}

async fn delete_many_handles_more_than_one_batch(store: Arc<dyn Store>) {
    let keys: Vec<Key> = (0..60).map(|i| Key::new(format!("D#{i}"), "S")).collect();
    for k in &keys {
        store
            .put(item(&k.pk, &k.sk, json!({})), Condition::Always)
            .await
            .unwrap();
    }
    store
        .put(item("KEEP", "S", json!({})), Condition::Always)
        .await
        .unwrap();
    let mut with_missing = keys.clone();
    with_missing.push(Key::new("never", "there"));
    store.delete_many(&with_missing).await.unwrap();
    for k in &keys {
        assert!(store.get(k).await.unwrap().is_none(), "{k:?} survived");
    }
    assert!(store.get(&Key::new("KEEP", "S")).await.unwrap().is_some());
}

async fn batch_reads_and_puts_cover_more_than_one_batch(store: Arc<dyn Store>) {
    // 260 items: more than one BatchWriteItem (25) and BatchGetItem (100) call each.
    let items: Vec<Item> = (0..260)
        .map(|i| {
            item(
                &format!("B#{i:03}"),
                "S",
                json!({"n": i, "organization_id": "org-b"}),
            )
        })
        .collect();
    store.put_many(items.clone()).await.unwrap();
    let mut keys: Vec<Key> = items.iter().map(Item::key).collect();
    keys.push(Key::new("B#missing", "S"));
    let mut got = store.get_many(&keys).await.unwrap();
    got.sort_by_key(Item::key);
    assert_eq!(got, items, "missing keys are left out, the rest read whole");
    // A put replaces the whole item.
    store
        .put_many(vec![item("B#000", "S", json!({"replaced": true}))])
        .await
        .unwrap();
    let one = store.get(&Key::new("B#000", "S")).await.unwrap().unwrap();
    assert_eq!(one.get("replaced"), Some(&json!(true)));
    assert!(one.get("n").is_none());
    assert!(store.get_many(&[]).await.unwrap().is_empty());
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

const ORG: &str = "00000000-0000-4000-8000-00000000a001";

/// One record of every kind (the test kit's), with expiring ones carrying `expires_at`.
fn every_record(cipher: &TokenCipher) -> Vec<(Item, bool)> {
    testkit::records::every_kind(ORG, cipher, now())
}

fn cipher() -> TokenCipher {
    TokenCipher::from_setting(&TokenCipher::generate_setting()).unwrap()
}

async fn records_round_trip_and_expiring_ones_carry_ttl(store: Arc<dyn Store>) {
    let repo = Repo::new(store.clone());
    for (it, expiring) in every_record(&cipher()) {
        let key = it.key();
        store.put(it.clone(), Condition::IfAbsent).await.unwrap();
        let back = store.get(&key).await.unwrap().unwrap();
        assert_eq!(back, it, "{key:?}");
        if expiring {
            assert!(back.expires_at().is_some(), "{key:?} must carry expires_at");
        }
    }
    let inst: Installation = repo
        .get(&Installation::key_for(&OrgId::from(ORG)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inst.status, InstallationStatus::Active);
    // A record read under the wrong type is an error, not a silent mix-up.
    let wrong = repo
        .get::<Contact>(&Installation::key_for(&OrgId::from(ORG)))
        .await;
    assert!(matches!(wrong, Err(StoreError::Codec(_))));
    // Every item of the organization is found by the index, the purge schedule is not.
    let keys = store
        .query_organization(ORG, PageRequest::default())
        .await
        .unwrap()
        .items;
    // (every kind that carries the organization: 18 of the 22)
    assert_eq!(keys.len(), 18);
    assert!(!keys.iter().any(|k| k.pk == PurgeEntry::PARTITION));
}

async fn purge_schedule_query_finds_only_due_entries(store: Arc<dyn Store>) {
    let repo = Repo::new(store.clone());
    for (due, org) in [(100, "a"), (200, "b"), (200, "c"), (300, "d")] {
        let e = PurgeEntry {
            subject: PurgeSubject::Organization(org.into()),
            due_at: due,
            scheduled_at: now(),
            deletion_code: None,
            marked: true,
            mark_cursor: None,
            accounts: None,
        };
        repo.put(&e, Condition::Always).await.unwrap();
    }
    let due = store
        .query(
            PurgeEntry::PARTITION,
            &PurgeEntry::due_range(200),
            PageRequest::default(),
        )
        .await
        .unwrap();
    let subjects: Vec<_> = due
        .items
        .into_iter()
        .map(|i| Repo::from_item::<PurgeEntry>(i).unwrap().subject)
        .collect();
    assert_eq!(
        subjects,
        vec![
            PurgeSubject::Organization("a".into()),
            PurgeSubject::Organization("b".into()),
            PurgeSubject::Organization("c".into())
        ]
    );
}

async fn tokens_are_never_stored_in_plaintext(store: Arc<dyn Store>) {
    for (it, _) in every_record(&cipher()) {
        store.put(it, Condition::Always).await.unwrap();
    }
    let mut all = Vec::new();
    for pk in [
        Installation::key_for(&OrgId::from(ORG)).pk,
        Contact::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from("17841400000000001"),
            &Igsid::from("IGSID_1001"),
        )
        .pk,
    ] {
        all.extend(
            store
                .query(&pk, &SkRange::All, PageRequest::default())
                .await
                .unwrap()
                .items,
        );
    }
    // The installation, the connection, the contact hold tokens; the backlog, the connection's
    // health, its activity and its broken notice (in the root partition too) hold none.
    assert_eq!(all.len(), 7);
    let mut sealed = 0;
    for it in all {
        let text = Value::Object(it.attributes().clone()).to_string();
        assert!(
            !text.contains("PLAINTEXT"),
            "plaintext token stored: {:?}",
            it.key()
        );
        let holds_tokens = matches!(
            it.str("kind"),
            Some("installation" | "instagram_connection" | "contact")
        );
        if holds_tokens {
            assert!(
                text.contains("v1:k1:"),
                "ciphertext expected in {:?}",
                it.key()
            );
            sealed += 1;
        }
    }
    assert_eq!(sealed, 3);
}

/// A transaction writes all or nothing: a check on another item (the fence) or one write's own
/// condition failing writes none of it; `IfOneOf` admits any of its values; DynamoDB's limits
/// (no two writes on one item, at most 100) are refused alike.
async fn transactions_write_all_or_nothing(store: Arc<dyn Store>) {
    store
        .put(
            item(
                "T#FENCE",
                "F",
                json!({"status": "uninstalled", "version": 3}),
            ),
            Condition::Always,
        )
        .await
        .unwrap();
    store
        .put(
            item("T#A", "1", json!({"v": "old", "version": 1})),
            Condition::Always,
        )
        .await
        .unwrap();
    let fence = |status: &str| TransactWrite::Check {
        key: Key::new("T#FENCE", "F"),
        condition: Condition::IfEquals {
            attribute: "status".into(),
            value: json!(status),
        },
    };
    let write = |pk: &str, v: &str, condition: Condition| TransactWrite::Put {
        item: item(pk, "1", json!({"v": v, "version": 2})),
        condition,
    };
    let value = |pk: &'static str| {
        let store = store.clone();
        async move {
            store
                .get(&Key::new(pk, "1"))
                .await
                .unwrap()
                .and_then(|i| i.str("v").map(str::to_string))
        }
    };
    // The fence fails: nothing is written.
    let err = store
        .transact(vec![
            fence("active"),
            write("T#A", "new", Condition::IfVersion(1)),
            write("T#B", "new", Condition::IfAbsent),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed), "{err:?}");
    assert_eq!(value("T#A").await.as_deref(), Some("old"));
    assert_eq!(value("T#B").await, None);
    // One write's own condition fails: nothing either.
    let err = store
        .transact(vec![
            fence("uninstalled"),
            write("T#A", "new", Condition::IfVersion(7)),
            write("T#B", "new", Condition::IfAbsent),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed), "{err:?}");
    assert_eq!(value("T#B").await, None);
    // Everything holds: everything is written; IfOneOf takes any listed value.
    let one_of = TransactWrite::Check {
        key: Key::new("T#FENCE", "F"),
        condition: Condition::IfOneOf {
            attribute: "status".into(),
            values: vec![json!("active"), json!("uninstalled")],
        },
    };
    store
        .transact(vec![
            one_of,
            write("T#A", "new", Condition::IfVersion(1)),
            write("T#B", "new", Condition::IfAbsent),
        ])
        .await
        .unwrap();
    assert_eq!(value("T#A").await.as_deref(), Some("new"));
    assert_eq!(value("T#B").await.as_deref(), Some("new"));
    let not_listed = TransactWrite::Check {
        key: Key::new("T#FENCE", "F"),
        condition: Condition::IfOneOf {
            attribute: "status".into(),
            values: vec![json!("active")],
        },
    };
    let err = store
        .transact(vec![not_listed, write("T#C", "x", Condition::Always)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed), "{err:?}");
    // DynamoDB's limits.
    let twice = vec![
        write("T#D", "x", Condition::Always),
        write("T#D", "y", Condition::Always),
    ];
    assert!(matches!(
        store.transact(twice).await,
        Err(StoreError::Invalid(_))
    ));
    let many: Vec<TransactWrite> = (0..101)
        .map(|i| TransactWrite::Put {
            item: item(&format!("T#MANY{i}"), "1", json!({})),
            condition: Condition::Always,
        })
        .collect();
    assert!(matches!(
        store.transact(many).await,
        Err(StoreError::Invalid(_))
    ));
    let hundred: Vec<TransactWrite> = (0..100)
        .map(|i| TransactWrite::Put {
            item: item(&format!("T#MANY{i}"), "1", json!({})),
            condition: Condition::IfAbsent,
        })
        .collect();
    store.transact(hundred).await.unwrap();
    assert!(
        store
            .get(&Key::new("T#MANY99", "1"))
            .await
            .unwrap()
            .is_some()
    );
}

macro_rules! contract {
    ($adapter:ident) => {
        mod $adapter {
            #[tokio::test]
            async fn put_get_round_trips_attribute_types() {
                super::put_get_round_trips_attribute_types(super::$adapter().await).await
            }
            #[tokio::test]
            async fn if_absent_lets_exactly_one_writer_win() {
                super::if_absent_lets_exactly_one_writer_win(super::$adapter().await).await
            }
            #[tokio::test]
            async fn if_present_and_if_equals_guard_updates() {
                super::if_present_and_if_equals_guard_updates(super::$adapter().await).await
            }
            #[tokio::test]
            async fn delete_returns_old_item_and_take_is_single_use() {
                super::delete_returns_old_item_and_take_is_single_use(super::$adapter().await).await
            }
            #[tokio::test]
            async fn query_ranges_are_sorted_and_paginate() {
                super::query_ranges_are_sorted_and_paginate(super::$adapter().await).await
            }
            #[tokio::test]
            async fn organization_index_finds_every_item_of_one_org_only() {
                super::organization_index_finds_every_item_of_one_org_only(super::$adapter().await)
                    .await
            }
            #[tokio::test]
            async fn set_expiry_sets_ttl_and_reports_missing() {
                super::set_expiry_sets_ttl_and_reports_missing(super::$adapter().await).await
            }
            #[tokio::test]
            async fn delete_many_handles_more_than_one_batch() {
                super::delete_many_handles_more_than_one_batch(super::$adapter().await).await
            }
            #[tokio::test]
            async fn records_round_trip_and_expiring_ones_carry_ttl() {
                super::records_round_trip_and_expiring_ones_carry_ttl(super::$adapter().await).await
            }
            #[tokio::test]
            async fn purge_schedule_query_finds_only_due_entries() {
                super::purge_schedule_query_finds_only_due_entries(super::$adapter().await).await
            }
            #[tokio::test]
            async fn batch_reads_and_puts_cover_more_than_one_batch() {
                super::batch_reads_and_puts_cover_more_than_one_batch(super::$adapter().await).await
            }
            #[tokio::test]
            async fn transactions_write_all_or_nothing() {
                super::transactions_write_all_or_nothing(super::$adapter().await).await
            }
            #[tokio::test]
            async fn tokens_are_never_stored_in_plaintext() {
                super::tokens_are_never_stored_in_plaintext(super::$adapter().await).await
            }
        }
    };
}

contract!(memory);
contract!(dynamo);

/// DynamoDB only: on the wire, `expires_at` is a Number (TTL ignores anything else) on every
/// expiring item, and the table really has TTL and the organization index.
#[tokio::test]
async fn dynamo_ttl_is_a_number_attribute_and_table_matches_the_template() {
    let sdk = moto::sdk().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = moto::unique("igbridge-ttl");
    shared::provision::create_table(&client, &table)
        .await
        .unwrap();
    // Provisioning twice is harmless.
    shared::provision::create_table(&client, &table)
        .await
        .unwrap();
    let store = DynamoStore::new(client.clone(), table.clone());
    for (it, expiring) in every_record(&cipher()) {
        let key = it.key();
        store.put(it, Condition::Always).await.unwrap();
        let raw = client
            .get_item()
            .table_name(&table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(key.pk.clone()),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S(key.sk.clone()),
            )
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        if expiring {
            let ttl = raw
                .get("expires_at")
                .unwrap_or_else(|| panic!("{key:?} has no TTL"));
            assert!(
                ttl.as_n().is_ok(),
                "{key:?}: expires_at must be N, got {ttl:?}"
            );
        }
        let as_text: HashMap<_, _> = raw
            .iter()
            .map(|(k, v)| (k.clone(), format!("{v:?}")))
            .collect();
        assert!(!format!("{as_text:?}").contains("PLAINTEXT"));
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let desc = ttl.time_to_live_description.unwrap();
    assert_eq!(desc.attribute_name(), Some("expires_at"));
    let t = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let gsi = &t.global_secondary_indexes()[0];
    assert_eq!(gsi.index_name(), Some("by-organization"));
    assert_eq!(gsi.key_schema()[0].attribute_name(), "organization_id");
}

#[test]
fn every_record_kind_has_a_retention() {
    use shared::lifecycle::retention::{RECORD_KINDS, Retention, retention_of};
    let kinds: Vec<&str> = RECORD_KINDS.iter().map(|(k, _)| *k).collect();
    let unique: std::collections::HashSet<_> = kinds.iter().collect();
    assert_eq!(unique.len(), kinds.len(), "kinds are distinct");
    // Every `impl Record for` in the sources is listed (so is in the purge's coverage).
    let mut declared = Vec::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices("impl Record for ") {
                let rest = &text[i..];
                let needle = "const KIND: &'static str = \"";
                let at = rest.find(needle).unwrap() + needle.len();
                declared.push(rest[at..at + rest[at..].find('"').unwrap()].to_string());
            }
        }
    }
    declared.sort();
    let mut listed: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    listed.sort();
    assert_eq!(
        declared, listed,
        "every record kind is listed in lifecycle::retention"
    );
    // The samples cover every kind and meet their retention.
    let samples = every_record(&cipher());
    assert_eq!(samples.len(), kinds.len(), "one sample per kind");
    for (item, _) in samples {
        let kind = item.str("kind").unwrap();
        match retention_of(kind).unwrap() {
            Retention::WithOrganization => {
                assert_eq!(item.str("organization_id"), Some(ORG), "{kind}")
            }
            Retention::Expires(max) => {
                assert!(item.expires_at().is_some(), "{kind}");
                assert!(max <= shared::domain::PURGE_AFTER_SECS, "{kind}");
            }
            Retention::Bookkeeping => {}
        }
    }
}

#[test]
fn items_without_keys_or_with_bad_ttl_are_refused() {
    assert!(Item::new(json!({"sk":"x"}).as_object().cloned().unwrap()).is_err());
    assert!(Item::new(json!({"pk":"","sk":"x"}).as_object().cloned().unwrap()).is_err());
    assert!(
        Item::new(
            json!({"pk":"p","sk":"x","expires_at":"soon"})
                .as_object()
                .cloned()
                .unwrap()
        )
        .is_err()
    );
    assert!(
        Item::new(
            json!({"pk":"p","sk":"x","organization_id":""})
                .as_object()
                .cloned()
                .unwrap()
        )
        .is_err()
    );
}
