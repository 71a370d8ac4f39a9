//! template.yaml against the code: its routes are the routes the routers serve (and each goes to
//! the function that serves it), its queues and table are the ones the code and `provision`
//! expect, each function is given exactly the settings, secrets, resources and clients its
//! manifest (`shared::function`) lists, and its policies grant no wildcard.

use shared::ids::ClaimedEventId;
use shared::ids::FlowId;
use shared::ids::RevocationId;
use shared::ids::{ChatId, EventId, FacebookUserId, IgAccountId, Igsid, Mid, OrgId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use shared::app::Services;
use shared::clock::SystemClock;
use shared::config::{AwsResources, Config, SECRET_SETTINGS, Settings};
use shared::function::{Function, Resource};
use shared::routes::{HttpFunction, ROUTES};
use testkit::lambda::template::{
    Value, function_names, intrinsic, load as template, num, of_type, ref_target, resources, root,
};
use tower::ServiceExt;

#[test]
fn template_routes_are_the_routes_the_code_declares() {
    let t = template();
    let functions = function_names(&t);
    let integrations = of_type(&t, "AWS::ApiGatewayV2::Integration");
    let mut declared = BTreeSet::new();
    for (id, r) in of_type(&t, "AWS::ApiGatewayV2::Route") {
        let key = r["Properties"]["RouteKey"].as_str().unwrap();
        let (method, path) = key.split_once(' ').unwrap();
        let (_, target) = intrinsic(&r["Properties"]["Target"]).unwrap();
        let integration = target
            .as_str()
            .unwrap()
            .strip_prefix("integrations/${")
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{id}: target is not an integration"));
        let props = &integrations[integration]["Properties"];
        assert_eq!(props["PayloadFormatVersion"].as_str(), Some("2.0"), "{id}");
        assert_eq!(props["IntegrationType"].as_str(), Some("AWS_PROXY"), "{id}");
        let function = &functions[&ref_target(&props["IntegrationUri"])];
        declared.insert((method.to_string(), path.to_string(), function.clone()));
    }
    let code: BTreeSet<_> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_string(),
                r.function.crate_name().to_string(),
            )
        })
        .collect();
    assert_eq!(declared, code);
    // The eleven public routes, both OAuth callbacks also take the tab's post-back (the
    // install is bound to the tab that started it: issue 13), and the status page (GET, POST,
    // and the frame LiveChat's app settings show).
    assert_eq!(ROUTES.len(), 16);
}

/// The configuration events/local.env gives (as `cargo lambda watch --env-file` reads it).
fn local_config() -> Config {
    Config::from_settings(&testkit::samples::local_settings()).unwrap()
}

async fn probe(router: &axum::Router, method: &str, path: &str) -> (StatusCode, BTreeSet<String>) {
    let res = router
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let allow = res
        .headers()
        .get("allow")
        .map(|v| {
            v.to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    (res.status(), allow)
}

/// axum answers a method a path does not serve with 405 and the methods it does serve in
/// `Allow`, and a path it does not serve with 404: so each router's route set is observable.
#[tokio::test]
async fn each_function_serves_exactly_its_declared_routes() {
    let services = Services::memory(local_config(), Arc::new(SystemClock));
    for function in HttpFunction::ALL {
        let router = shared::web::router(&services, function);
        let paths: BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
        for path in paths {
            let concrete = path.replace("{code}", "ABC123");
            let (status, allow) = probe(&router, "PATCH", &concrete).await;
            let mut expected: BTreeSet<String> = ROUTES
                .iter()
                .filter(|r| r.path == path && r.function == function)
                .map(|r| r.method.to_string())
                .collect();
            if expected.is_empty() {
                assert_eq!(status, StatusCode::NOT_FOUND, "{function:?} {path}");
                continue;
            }
            if expected.contains("GET") {
                expected.insert("HEAD".into());
            }
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{function:?} {path}"
            );
            assert_eq!(allow, expected, "{function:?} {path}");
        }
        let (status, _) = probe(&router, "GET", "/not-a-route").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

/// The routers take every path from `shared::routes` (a literal path would be a route the
/// template and this test know nothing about).
#[test]
fn routers_only_use_the_declared_paths() {
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    sources(&root().join("shared/src"), &mut files);
    sources(&root().join("cli/src"), &mut files);
    let mut routes_seen = 0;
    for file in files {
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for (at, _) in text.match_indices(".route(") {
            let arg = &text[at + ".route(".len()..];
            assert!(
                arg.starts_with("routes::") || arg.starts_with("crate::routes::"),
                "{}: a route whose path is not from shared::routes",
                file.display()
            );
            routes_seen += 1;
        }
    }
    // Twelve distinct paths (the status page's two included), one `.route` call each.
    assert_eq!(routes_seen, 12);
}

#[test]
fn every_function_crate_is_deployed_on_arm64_with_json_logs() {
    let t = template();
    let on_disk: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let names = function_names(&t);
    assert_eq!(names.values().cloned().collect::<BTreeSet<_>>(), on_disk);
    let g = &t["Globals"]["Function"];
    assert_eq!(g["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(g["Architectures"][0].as_str(), Some("arm64"));
    assert_eq!(g["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"));
    let res = resources(&t);
    for (id, name) in &names {
        let f = &res[id];
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda")
        );
        let p = &f["Properties"];
        assert_eq!(
            p["CodeUri"].as_str(),
            Some(format!("functions/{name}").as_str())
        );
        // Its own log group, with the retention parameter, and its own role.
        let logs = &res[&ref_target(&p["LoggingConfig"]["LogGroup"])];
        assert_eq!(
            ref_target(&logs["Properties"]["RetentionInDays"]),
            "LogRetentionDays"
        );
        let role = &res[&ref_target(&p["Role"])];
        assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"));
        assert!(
            role["Properties"].get("ManagedPolicyArns").is_none(),
            "{id}"
        );
    }
    let roles: BTreeSet<String> = names
        .keys()
        .map(|id| ref_target(&res[id]["Properties"]["Role"]))
        .collect();
    assert_eq!(roles.len(), names.len(), "one role per function");
    assert_eq!(num(&t["Parameters"]["LogRetentionDays"]["Default"]), 30);
}

#[test]
fn queues_and_table_match_what_the_code_expects() {
    use shared::provision::{
        DLQ_RETENTION_SECS, MAX_RECEIVE_COUNT, RETENTION_SECS, VISIBILITY_TIMEOUT_SECS,
    };
    let t = template();
    let res = resources(&t);
    let names = function_names(&t);
    let worker_queue = [
        ("instagram-to-livechat", "ToLivechatQueue", "ToLivechatDlq"),
        (
            "livechat-to-instagram",
            "ToInstagramQueue",
            "ToInstagramDlq",
        ),
    ];
    for (worker, queue, dlq) in worker_queue {
        let q = &res[queue]["Properties"];
        assert_eq!(q["FifoQueue"].as_bool(), Some(true));
        assert_eq!(q["ContentBasedDeduplication"].as_bool(), Some(false));
        assert_eq!(
            num(&q["VisibilityTimeout"]),
            i64::from(VISIBILITY_TIMEOUT_SECS)
        );
        assert_eq!(num(&q["MessageRetentionPeriod"]), i64::from(RETENTION_SECS));
        assert_eq!(ref_target(&q["RedrivePolicy"]["deadLetterTargetArn"]), dlq);
        assert_eq!(
            num(&q["RedrivePolicy"]["maxReceiveCount"]),
            i64::from(MAX_RECEIVE_COUNT)
        );
        let d = &res[dlq]["Properties"];
        assert_eq!(d["FifoQueue"].as_bool(), Some(true));
        assert_eq!(
            num(&d["VisibilityTimeout"]),
            i64::from(shared::provision::DLQ_VISIBILITY_TIMEOUT_SECS)
        );
        let health = names
            .iter()
            .find(|(_, n)| *n == "connection-health")
            .map(|(id, _)| &res[id]["Properties"])
            .unwrap();
        assert!(
            num(&health["Timeout"]) < i64::from(shared::provision::DLQ_VISIBILITY_TIMEOUT_SECS),
            "a replay's hold outlasts the health function"
        );
        assert_eq!(
            num(&d["MessageRetentionPeriod"]),
            i64::from(DLQ_RETENTION_SECS)
        );

        let (id, _) = names.iter().find(|(_, n)| *n == worker).unwrap();
        let f = &res[id]["Properties"];
        assert!(
            num(&f["Timeout"]) * 6 <= i64::from(VISIBILITY_TIMEOUT_SECS),
            "{worker}: visibility must be at least six times the timeout"
        );
        let events = f["Events"].as_mapping().unwrap();
        assert_eq!(events.len(), 1);
        let source = &events.values().next().unwrap()["Properties"];
        assert_eq!(ref_target(&source["Queue"]), queue);
        assert_eq!(num(&source["BatchSize"]), shared::queue::BATCH_MAX as i64);
        assert_eq!(
            source["FunctionResponseTypes"][0].as_str(),
            Some("ReportBatchItemFailures")
        );
        // The env var the worker reads names the queue its event source polls.
        let env = &f["Environment"]["Variables"];
        let var = if queue == "ToLivechatQueue" {
            "TO_LIVECHAT"
        } else {
            "TO_INSTAGRAM"
        };
        assert_eq!(ref_target(&env[format!("{var}_QUEUE_URL").as_str()]), queue);
        assert_eq!(ref_target(&env[format!("{var}_DLQ_URL").as_str()]), dlq);
    }

    let table = &res["Table"]["Properties"];
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    let keys: Vec<(&str, &str)> = table["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap(),
                k["KeyType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [(shared::store::PK, "HASH"), (shared::store::SK, "RANGE")]
    );
    let gsi = &table["GlobalSecondaryIndexes"][0];
    assert_eq!(
        gsi["IndexName"].as_str(),
        Some(shared::store::ORGANIZATION_INDEX)
    );
    assert_eq!(
        gsi["KeySchema"][0]["AttributeName"].as_str(),
        Some(shared::store::ORGANIZATION)
    );
    assert_eq!(
        gsi["Projection"]["ProjectionType"].as_str(),
        Some("KEYS_ONLY")
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(shared::store::EXPIRES_AT)
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["SSESpecification"]["SSEEnabled"].as_bool(),
        Some(true)
    );
    // Restorable backups must not outlive the 7-day purge promise by default.
    assert!(num(&t["Parameters"]["BackupRetentionDays"]["Default"]) <= 1);
}

/// Each function's environment is exactly what `shared::function::Function::needs` lists (its
/// required settings, its resources, and the API version where it calls the Graph API), its
/// secrets come as keys of the secrets it holds, and with that it loads its configuration;
/// without any one of its required settings it does not start, and the error names that one.
#[test]
fn each_function_is_given_exactly_the_settings_it_needs() {
    let t = template();
    let res = resources(&t);
    assert!(
        t["Globals"]["Function"]["Environment"].is_null(),
        "no setting is given to every function"
    );
    let secret_names: BTreeSet<String> = secret_settings(&t).into_values().collect();
    assert_eq!(
        secret_names,
        SECRET_SETTINGS
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        "one secret per secret setting"
    );
    // What the operator fills in.
    let sample = |name: &str| -> String {
        match name {
            n if n.ends_with("_URL") => "https://example.com/x".into(),
            "TOKEN_ENCRYPTION_KEY" => "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
            "GRAPH_API_VERSION" => "v25.0".into(),
            _ => "value".into(),
        }
    };
    for (id, binary) in function_names(&t) {
        let function = Function::from_crate_name(&binary).expect("a function of the manifest");
        let needs = function.needs();
        let env = res[&id]["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .unwrap();
        let given: BTreeSet<String> = env
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .filter(|k| k != "APP_SECRET_IDS")
            .collect();
        let mut want: BTreeSet<String> = needs
            .settings
            .iter()
            .map(|s| s.to_string())
            .chain(needs.resources.iter().map(|r| r.setting().to_string()))
            .collect();
        if needs.optional.contains(&"GRAPH_API_VERSION") {
            want.insert("GRAPH_API_VERSION".into());
        }
        assert_eq!(given, want, "{id}: Environment");
        assert!(
            given.is_disjoint(&secret_names),
            "{id}: a secret in the environment"
        );
        for r in needs.resources {
            let target = ref_target(&env[r.setting()]);
            let expected = match r {
                Resource::Table => "Table",
                Resource::ToLivechatQueue => "ToLivechatQueue",
                Resource::ToLivechatDlq => "ToLivechatDlq",
                Resource::ToInstagramQueue => "ToInstagramQueue",
                Resource::ToInstagramDlq => "ToInstagramDlq",
                Resource::EventBus => "LifecycleBus",
            };
            assert_eq!(target, expected, "{id}: {}", r.setting());
        }

        let all: Vec<(String, String)> = given
            .iter()
            .map(|n| n.as_str())
            .chain(needs.secrets.iter().copied())
            .map(|n| (n.to_string(), sample(n)))
            .collect();
        let settings = Settings::from_pairs(all.clone());
        Config::for_function(&settings, function).expect("the template provides its settings");
        AwsResources::for_function(&settings, function).expect("and its resources");
        // Those two have defaults (the checks above point EVENT_BUS_NAME at the archived bus).
        let defaulted = ["GRAPH_API_VERSION", "EVENT_BUS_NAME"];
        for (required, _) in all.iter().filter(|(n, _)| !defaulted.contains(&n.as_str())) {
            let fewer = Settings::from_pairs(all.iter().filter(|(n, _)| n != required).cloned());
            let err = Config::for_function(&fewer, function)
                .err()
                .or_else(|| AwsResources::for_function(&fewer, function).err())
                .unwrap_or_else(|| panic!("{binary} starts without {required}"));
            assert!(
                err.to_string().contains(required.as_str()),
                "{binary}: {err} names {required}"
            );
        }
    }
}

/// Each function's role reaches the queues and the bus its manifest names, and no others; its
/// crate compiles in exactly the clients those need (`shared`'s `sqs` and `eventbridge`).
#[test]
fn roles_and_crate_features_follow_the_manifest() {
    let t = template();
    let res = resources(&t);
    for (id, binary) in function_names(&t) {
        let function = Function::from_crate_name(&binary).unwrap();
        let role = ref_target(&res[&id]["Properties"]["Role"]);
        let mut reached = BTreeSet::new();
        for policy in res[&role]["Properties"]["Policies"].as_sequence().unwrap() {
            for st in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
                let actions = strings(&st["Action"]);
                let service = |prefix: &str| {
                    actions
                        .iter()
                        .any(|a| a.as_str().is_some_and(|a| a.starts_with(prefix)))
                };
                if service("sqs:") || service("events:") {
                    for r in strings(&st["Resource"]) {
                        reached.insert(ref_target(&r));
                    }
                }
            }
        }
        let want: BTreeSet<String> = function
            .needs()
            .resources
            .iter()
            .filter_map(|r| match r {
                Resource::Table => None,
                Resource::ToLivechatQueue => Some("ToLivechatQueue"),
                Resource::ToLivechatDlq => Some("ToLivechatDlq"),
                Resource::ToInstagramQueue => Some("ToInstagramQueue"),
                Resource::ToInstagramDlq => Some("ToInstagramDlq"),
                Resource::EventBus => Some("LifecycleBus"),
            })
            .map(str::to_string)
            .collect();
        assert_eq!(reached, want, "{role}: queues and bus");

        let manifest =
            std::fs::read_to_string(root().join(format!("functions/{binary}/Cargo.toml"))).unwrap();
        let features = manifest
            .lines()
            .find(|l| l.starts_with("shared = "))
            .unwrap_or_else(|| panic!("{binary}: a shared dependency with features"));
        let has = |f: &str| features.contains(&format!("\"{f}\""));
        let queues = function.needs().resources.iter().any(|r| r.is_queue());
        assert_eq!(has("sqs"), queues, "{binary}: the sqs feature");
        assert_eq!(
            has("eventbridge"),
            function.uses(Resource::EventBus),
            "{binary}: the eventbridge feature"
        );
        assert!(!has("full") && !has("provision"), "{binary}: {features}");
    }
}

/// Each Secrets Manager secret and the one setting it holds (created empty, or generated).
fn secret_settings(t: &Value) -> BTreeMap<String, String> {
    of_type(t, "AWS::SecretsManager::Secret")
        .into_iter()
        .map(|(id, r)| {
            let p = &r["Properties"];
            let name = match p["SecretString"].as_str() {
                Some(json) => {
                    let v: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(json).unwrap();
                    assert_eq!(v.len(), 1, "{id}: one value per secret");
                    assert!(
                        v.values().all(|v| v == ""),
                        "{id}: no secret value in the template"
                    );
                    v.keys().next().unwrap().clone()
                }
                None => {
                    let g = &p["GenerateSecretString"];
                    assert_eq!(g["SecretStringTemplate"].as_str(), Some("{}"), "{id}");
                    g["GenerateStringKey"].as_str().unwrap().to_string()
                }
            };
            (id, name)
        })
        .collect()
}

/// Each function reads exactly the secrets `shared::function::Function::needs` gives it: its
/// `APP_SECRET_IDS` names them, and its role may read those and no other.
#[test]
fn each_function_holds_only_its_own_secrets() {
    let t = template();
    let res = resources(&t);
    let setting_of = secret_settings(&t);
    for (id, binary) in function_names(&t) {
        let want: BTreeSet<String> = Function::from_crate_name(&binary)
            .expect("a function of the manifest")
            .needs()
            .secrets
            .iter()
            .map(|s| s.to_string())
            .collect();
        let join = &res[&id]["Properties"]["Environment"]["Variables"]["APP_SECRET_IDS"];
        let Some((tag, args)) = intrinsic(join) else {
            panic!("{id}: APP_SECRET_IDS is a !Join")
        };
        assert_eq!(tag, "Join");
        let listed: BTreeSet<String> = args.as_sequence().unwrap()[1]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| setting_of[&ref_target(r)].clone())
            .collect();
        assert_eq!(listed, want, "{id}: APP_SECRET_IDS");
        let role = ref_target(&res[&id]["Properties"]["Role"]);
        let mut readable = BTreeSet::new();
        for policy in res[&role]["Properties"]["Policies"].as_sequence().unwrap() {
            for st in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
                if strings(&st["Action"])
                    .iter()
                    .any(|a| a.as_str() == Some("secretsmanager:GetSecretValue"))
                {
                    for r in strings(&st["Resource"]) {
                        readable.insert(setting_of[&ref_target(&r)].clone());
                    }
                }
            }
        }
        assert_eq!(readable, want, "{role}: secretsmanager:GetSecretValue");
    }
}

/// The internet-facing webhooks read only the partitions they look up: the Instagram webhook
/// route items, the LiveChat webhook organization partitions (checked against the code's keys).
#[test]
fn webhook_functions_read_only_their_partitions() {
    let t = template();
    let res = resources(&t);
    let route = shared::domain::AccountRoute::key_for(&IgAccountId::from("17841400000000001")).pk;
    let chat = shared::domain::ChatRoute::key_for(&OrgId::from("org"), &ChatId::from("CHAT1")).pk;
    let data_key = shared::domain::OrganizationKey::key_for(&OrgId::from("org")).pk;
    let installation = shared::domain::Installation::key_for(&OrgId::from("org")).pk;
    let contact = shared::domain::Contact::key_for(
        &OrgId::from("org"),
        &IgAccountId::from("17841400000000001"),
        &Igsid::from("IGSID"),
    )
    .pk;
    for (role, key) in [
        ("InstagramWebhookRole", route),
        ("LivechatWebhookRole", chat),
    ] {
        let mut reads = 0;
        let mut keys = 0;
        for policy in res[role]["Properties"]["Policies"].as_sequence().unwrap() {
            for st in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
                let actions = strings(&st["Action"]);
                if !actions
                    .iter()
                    .any(|a| a.as_str().unwrap().starts_with("dynamodb:"))
                {
                    continue;
                }
                let prefixes =
                    strings(&st["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
                assert_eq!(prefixes.len(), 1, "{role}: one LeadingKeys pattern");
                let pattern = prefixes[0].as_str().unwrap();
                // Never the installation (tokens) or the contacts.
                assert!(!glob(pattern, &installation), "{role}: {pattern}");
                assert!(!glob(pattern, &contact), "{role}: {pattern}");
                if glob(pattern, &key) {
                    reads += 1;
                    assert_eq!(actions, vec![Value::from("dynamodb:GetItem")], "{role}");
                } else {
                    keys += 1;
                    assert!(glob(pattern, &data_key), "{role}: {pattern}");
                    let want: Vec<Value> =
                        vec!["dynamodb:GetItem".into(), "dynamodb:PutItem".into()];
                    assert_eq!(actions, want, "{role}");
                }
            }
        }
        assert_eq!((reads, keys), (1, 1), "{role}");
    }
}

use testkit::lambda::template::glob;

/// The internet-facing install function (the install flow and the status page) may touch only
/// the partitions its records live in — checked here against the code's key functions, and in
/// shared/tests/suite/{install,health}.rs against every call the flows make — and never an
/// organization's contacts, chats, message or event links, claims or pending sends.
#[test]
fn the_install_function_reaches_only_its_partitions() {
    use shared::domain::*;
    use shared::store::keys;
    use testkit::lambda::template::{table_call_allowed, table_statements};
    let statements = table_statements(&template(), "OAuthInstallRole");
    let (org, ig) = ("00000000-0000-4000-8000-00000000a001", "17841400000000001");
    let reached = [
        Installation::key_for(&OrgId::from(org)).pk,
        InstagramConnection::key_for(&OrgId::from(org), &IgAccountId::from(ig)).pk,
        keys::backlog(&OrgId::from(org)).pk,
        keys::connection_health(&OrgId::from(org), &IgAccountId::from(ig)).pk,
        AccountRoute::key_for(&IgAccountId::from(ig)).pk,
        FacebookUserLink::key_for(
            &FacebookUserId::from("fbuser"),
            &OrgId::from(org),
            &IgAccountId::from(ig),
        )
        .pk,
        keys::oauth_state(&FlowId::from("nonce")).pk,
        keys::installation_entry(&OrgId::from(org)).pk,
        keys::data_key(&OrgId::from(org)).pk,
        keys::facebook_user_purge(1, &"x".into()).pk,
        keys::pending_revocation(&OrgId::from(org), &RevocationId::from("livechat")).pk,
    ];
    for pk in &reached {
        for action in ["dynamodb:GetItem", "dynamodb:PutItem"] {
            assert!(table_call_allowed(&statements, action, pk), "{action} {pk}");
        }
    }
    let never = [
        Contact::key_for(
            &OrgId::from(org),
            &IgAccountId::from(ig),
            &Igsid::from("IGSID"),
        )
        .pk,
        ChatRoute::key_for(&OrgId::from(org), &ChatId::from("CHAT")).pk,
        keys::message_link(&OrgId::from(org), &IgAccountId::from(ig), &Mid::from("mid")).pk,
        keys::event_link(
            &OrgId::from(org),
            &ChatId::from("CHAT"),
            &EventId::from("EV"),
        )
        .pk,
        keys::idempotency(
            &OrgId::from(org),
            shared::ids::Stream::Instagram,
            &ClaimedEventId::from("mid"),
        )
        .pk,
        keys::pending_sends(
            &OrgId::from(org),
            &IgAccountId::from(ig),
            &Igsid::from("IGSID"),
        ),
        keys::replay_lease().pk,
    ];
    for pk in &never {
        for action in ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"] {
            assert!(
                !table_call_allowed(&statements, action, pk),
                "{action} {pk}"
            );
        }
    }
    for action in [
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:UpdateItem",
    ] {
        assert!(
            !table_call_allowed(&statements, action, &reached[0]),
            "{action}"
        );
    }
}

/// connection-health runs at most twice at once: replay events (an admin's button, repairs)
/// can never take the account's concurrency from the webhooks and workers.
#[test]
fn the_health_function_has_a_reserved_concurrency_of_at_most_two() {
    let t = template();
    let res = resources(&t);
    let reserved =
        num(&res["ConnectionHealthFunction"]["Properties"]["ReservedConcurrentExecutions"]);
    assert!((1..=2).contains(&reserved), "{reserved}");
}

#[test]
fn the_lifecycle_roles_grant_every_table_call_the_lifecycle_makes() {
    let t = template();
    let res = resources(&t);
    for role in ["UninstallRole", "DeletionSweeperRole"] {
        let mut granted = BTreeSet::new();
        for policy in res[role]["Properties"]["Policies"].as_sequence().unwrap() {
            for st in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
                let on_table = matches!(
                    intrinsic(&st["Resource"]),
                    Some((tag, inner)) if tag == "GetAtt" && inner.as_str() == Some("Table.Arn")
                );
                if on_table {
                    for a in strings(&st["Action"]) {
                        granted.insert(a.as_str().unwrap().to_string());
                    }
                }
            }
        }
        let wanted: BTreeSet<String> = shared::lifecycle::TABLE_ACTIONS
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(granted, wanted, "{role}");
    }
}

#[test]
fn no_queue_keeps_anything_past_six_days() {
    let t = template();
    for (name, q) in of_type(&t, "AWS::SQS::Queue") {
        let secs = num(&q["Properties"]["MessageRetentionPeriod"]);
        assert!(secs <= 6 * 24 * 3600, "{name}: {secs}");
    }
}

fn strings(v: &Value) -> Vec<Value> {
    match v {
        Value::Sequence(s) => s.clone(),
        other => vec![other.clone()],
    }
}

/// Least privilege, mechanically: no wildcard action or resource, and each worker may only
/// consume its own queue and park in its own dead-letter queue.
#[test]
fn policies_grant_no_wildcards_and_workers_only_their_queues() {
    let t = template();
    let res = resources(&t);
    let mut grants: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (id, role) in of_type(&t, "AWS::IAM::Role") {
        for policy in role["Properties"]["Policies"].as_sequence().unwrap() {
            for st in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
                if st["Effect"].as_str() == Some("Deny") {
                    // A Deny only narrows an Allow's LeadingKeys (oauth-install's).
                    assert!(
                        !st["Condition"]["ForAnyValue:StringLike"]["dynamodb:LeadingKeys"]
                            .is_null(),
                        "{id}: a Deny narrows LeadingKeys"
                    );
                    continue;
                }
                assert_eq!(st["Effect"].as_str(), Some("Allow"));
                for action in strings(&st["Action"]) {
                    let action = action.as_str().unwrap().to_string();
                    assert!(!action.contains('*'), "{id}: wildcard action {action}");
                    for resource in strings(&st["Resource"]) {
                        assert_ne!(resource.as_str(), Some("*"), "{id}: wildcard resource");
                        let target = match intrinsic(&resource) {
                            Some((tag, inner)) if tag == "Sub" => {
                                inner.as_str().unwrap().to_string()
                            }
                            _ => ref_target(&resource),
                        };
                        grants
                            .entry(id.clone())
                            .or_default()
                            .push((action.clone(), target));
                    }
                }
            }
        }
    }
    let sqs_of = |role: &str| -> BTreeSet<(String, String)> {
        grants[role]
            .iter()
            .filter(|(a, _)| a.starts_with("sqs:"))
            .cloned()
            .collect()
    };
    let consume = |queue: &str, dlq: &str| -> BTreeSet<(String, String)> {
        [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ChangeMessageVisibility",
        ]
        .iter()
        .map(|a| (a.to_string(), queue.to_string()))
        .chain([("sqs:SendMessage".to_string(), dlq.to_string())])
        .collect()
    };
    assert_eq!(
        sqs_of("InstagramToLivechatRole"),
        consume("ToLivechatQueue", "ToLivechatDlq")
    );
    assert_eq!(
        sqs_of("LivechatToInstagramRole"),
        consume("ToInstagramQueue", "ToInstagramDlq")
    );
    let send = |a: &str, b: &str| -> BTreeSet<(String, String)> {
        [a, b]
            .iter()
            .map(|q| ("sqs:SendMessage".to_string(), q.to_string()))
            .collect()
    };
    assert_eq!(
        sqs_of("InstagramWebhookRole"),
        send("ToLivechatQueue", "ToLivechatDlq")
    );
    assert_eq!(
        sqs_of("LivechatWebhookRole"),
        send("ToInstagramQueue", "ToInstagramDlq")
    );
    for role in ["OAuthInstallRole", "UninstallRole", "DeletionSweeperRole"] {
        assert!(
            sqs_of(role).is_empty(),
            "{role} has no business with the queues"
        );
        // Lifecycle events go to the archived bus, nowhere else.
        assert!(grants[role].contains(&("events:PutEvents".into(), "LifecycleBus".into())));
    }
    // The internet-facing install cannot delete anything, let alone table-wide.
    let install_dynamo: BTreeSet<&str> = grants["OAuthInstallRole"]
        .iter()
        .filter(|(a, _)| a.starts_with("dynamodb:"))
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(
        install_dynamo,
        BTreeSet::from([
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:ConditionCheckItem"
        ])
    );
    // The health check replays: it reads both dead-letter queues and sends to both work queues,
    // and consumes neither work queue.
    let replay: BTreeSet<(String, String)> = ["ToLivechatDlq", "ToInstagramDlq"]
        .iter()
        .flat_map(|q| {
            [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
            ]
            .iter()
            .map(move |a| (a.to_string(), q.to_string()))
        })
        .chain(
            ["ToLivechatQueue", "ToInstagramQueue"]
                .iter()
                .map(|q| ("sqs:SendMessage".to_string(), q.to_string())),
        )
        .collect();
    assert_eq!(sqs_of("ConnectionHealthRole"), replay);
    let publishers: BTreeSet<&String> = grants
        .iter()
        .filter(|(_, g)| g.iter().any(|(a, _)| a.starts_with("events:")))
        .map(|(id, _)| id)
        .collect();
    // The install, the lifecycle, the workers (a refused token or grant) and the health check.
    assert_eq!(publishers.len(), 6, "{publishers:?}");
    // Every role writes only its own log group (secrets: each_function_holds_only_its_own_secrets).
    for (id, g) in &grants {
        let logs: BTreeSet<&String> = g
            .iter()
            .filter(|(a, _)| a.starts_with("logs:"))
            .map(|(_, r)| r)
            .collect();
        assert_eq!(logs.len(), 1, "{id}");
        let log_group = logs.into_iter().next().unwrap();
        assert_eq!(
            res[log_group.as_str()]["Type"].as_str(),
            Some("AWS::Logs::LogGroup")
        );
    }
}

/// The metrics the dashboard graphs and the alarms watch are ones the code emits, under the
/// namespace and the one dimension it writes, for a function that emits them; the workers'
/// parked and latency alarms exist.
#[test]
fn the_dashboard_and_alarms_use_only_metrics_the_code_emits() {
    use shared::metrics::{DIMENSION, Metric, NAMESPACE};
    let t = template();
    let emitted = |name: &str, function: &str| -> bool {
        let Some(f) = function
            .strip_prefix("${AWS::StackName}-")
            .and_then(Function::from_crate_name)
        else {
            return false;
        };
        Metric::ALL
            .iter()
            .any(|m| m.name() == name && m.emitters().contains(&f))
    };
    let dashboards = of_type(&t, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1);
    let (_, body) = intrinsic(&dashboards.values().next().unwrap()["Properties"]["DashboardBody"])
        .expect("a !Sub body");
    let body = body
        .as_str()
        .unwrap()
        .replace("${AWS::Region}", "us-east-1");
    let body: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
    let mut graphed = BTreeSet::new();
    for w in body["widgets"].as_array().unwrap() {
        for m in w["properties"]["metrics"].as_array().unwrap() {
            let m = m.as_array().unwrap();
            let (ns, name) = (m[0].as_str().unwrap(), m[1].as_str().unwrap());
            if ns != NAMESPACE {
                assert_eq!(ns, "AWS/SQS", "{m:?}");
                continue;
            }
            assert_eq!(m[2].as_str(), Some(DIMENSION), "{m:?}");
            let function = m[3].as_str().unwrap();
            assert!(
                emitted(name, function),
                "{name} for {function} is not emitted"
            );
            graphed.insert(name.to_string());
        }
    }
    let all: BTreeSet<String> = Metric::ALL.iter().map(|m| m.name().to_string()).collect();
    assert_eq!(graphed, all, "every metric is on the dashboard");

    let mut watched = BTreeSet::new();
    for (id, a) in of_type(&t, "AWS::CloudWatch::Alarm") {
        let p = &a["Properties"];
        if p["Namespace"].as_str() != Some(NAMESPACE) {
            continue;
        }
        let name = p["MetricName"].as_str().unwrap();
        let dims = p["Dimensions"].as_sequence().unwrap();
        assert_eq!(dims.len(), 1, "{id}: the one dimension");
        assert_eq!(dims[0]["Name"].as_str(), Some(DIMENSION), "{id}");
        let (_, value) = intrinsic(&dims[0]["Value"]).unwrap();
        let function = value.as_str().unwrap();
        assert!(emitted(name, function), "{id}: {name} for {function}");
        watched.insert(format!("{name} {function}"));
    }
    for w in ["instagram-to-livechat", "livechat-to-instagram"] {
        for m in ["Parked", "DeliveryLatency"] {
            assert!(
                watched.contains(&format!("{m} ${{AWS::StackName}}-{w}")),
                "{m} of {w} is alarmed: {watched:?}"
            );
        }
    }
}
