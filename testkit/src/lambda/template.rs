//! template.yaml as data: its resources, CloudFormation's short-form intrinsics, and what the
//! stack emulator and the template tests read from it (functions, routes, event sources).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use serde_yaml_ng::Value;

/// The repository's root (the directory holding template.yaml).
pub fn root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

/// template.yaml, parsed (short-form intrinsics kept as tagged values).
pub fn load() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

/// A short-form intrinsic (`!Ref X`, `!GetAtt X.Arn`, `!Sub "…"`): its name and value.
pub fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_string(),
            &t.value,
        )),
        _ => None,
    }
}

/// The logical id a `!Ref` or `!GetAtt` names.
pub fn ref_target(v: &Value) -> String {
    match intrinsic(v) {
        Some((tag, inner)) if tag == "Ref" => inner.as_str().expect("a name").to_string(),
        Some((tag, inner)) if tag == "GetAtt" => inner
            .as_str()
            .expect("a name")
            .split('.')
            .next()
            .expect("a logical id")
            .to_string(),
        _ => panic!("not a !Ref or !GetAtt: {v:?}"),
    }
}

/// Every resource by logical id.
pub fn resources(t: &Value) -> BTreeMap<String, Value> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .map(|(k, v)| (k.as_str().expect("a logical id").to_string(), v.clone()))
        .collect()
}

/// The resources of one type by logical id.
pub fn of_type(t: &Value, ty: &str) -> BTreeMap<String, Value> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .collect()
}

/// A number written as a number or a string.
pub fn num(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v:?}"))
}

/// The `functions/<name>` crate each function resource is built from, by logical id.
pub fn function_names(t: &Value) -> BTreeMap<String, String> {
    of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, f)| {
            let binary = f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .expect("BuildProperties.Binary")
                .to_string();
            (id, binary)
        })
        .collect()
}

/// A function as the template declares it.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// Logical id.
    pub logical_id: String,
    /// Binary (crate) name.
    pub binary: String,
    /// Timeout (function's own, else the global one).
    pub timeout: Duration,
    /// Memory in MB.
    pub memory_mb: u32,
    /// Environment variables, unresolved (global ones first, the function's own win).
    pub env: Vec<(String, Value)>,
    /// Application log level and format (`LoggingConfig`), which Lambda passes as
    /// `AWS_LAMBDA_LOG_LEVEL` / `AWS_LAMBDA_LOG_FORMAT`.
    pub logging: Value,
    /// Its SQS event sources.
    pub queues: Vec<SqsSourceDef>,
    /// Its schedules' inputs.
    pub schedules: Vec<ScheduleDef>,
    /// Its EventBridge rules (`EventBridgeRule` events).
    pub rules: Vec<RuleDef>,
}

/// An `EventBridgeRule` event of a function: which bus, and the pattern it matches.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// The bus's logical id.
    pub bus: String,
    /// `Pattern`, as JSON.
    pub pattern: serde_json::Value,
}

impl RuleDef {
    /// Whether an event (`source`, `detail-type`, …) matches the pattern: every field the
    /// pattern names must hold one of the values it lists (EventBridge's exact-match patterns,
    /// the only kind the template uses).
    pub fn matches(&self, event: &serde_json::Value) -> bool {
        self.pattern
            .as_object()
            .into_iter()
            .flatten()
            .all(|(field, allowed)| {
                allowed
                    .as_array()
                    .is_some_and(|values| values.contains(&event[field]))
            })
    }
}

/// An `SQS` event of a function.
#[derive(Debug, Clone)]
pub struct SqsSourceDef {
    /// The queue's logical id.
    pub queue: String,
    /// `BatchSize` (Lambda's default for SQS is 10).
    pub batch_size: i32,
    /// Whether `FunctionResponseTypes` holds `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
}

/// A `ScheduleV2` (or `Schedule`) event of a function.
#[derive(Debug, Clone)]
pub struct ScheduleDef {
    /// `ScheduleExpression`.
    pub expression: String,
    /// `Input`, the JSON the scheduler delivers (`{}` when absent).
    pub input: serde_json::Value,
}

fn globals(t: &Value) -> &Value {
    &t["Globals"]["Function"]
}

fn setting<'a>(t: &'a Value, f: &'a Value, name: &str) -> &'a Value {
    let own = &f["Properties"][name];
    if own.is_null() {
        &globals(t)[name]
    } else {
        own
    }
}

/// Every function of the template.
pub fn functions(t: &Value) -> Vec<FunctionDef> {
    let names = function_names(t);
    of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, f)| {
            let mut env: Vec<(String, Value)> = Vec::new();
            for vars in [
                &globals(t)["Environment"]["Variables"],
                &f["Properties"]["Environment"]["Variables"],
            ] {
                for (k, v) in vars.as_mapping().into_iter().flatten() {
                    let k = k.as_str().expect("a variable name").to_string();
                    env.retain(|(name, _)| *name != k);
                    env.push((k, v.clone()));
                }
            }
            let events = f["Properties"]["Events"].as_mapping().cloned();
            let mut queues = Vec::new();
            let mut schedules = Vec::new();
            let mut rules = Vec::new();
            for (_, e) in events.iter().flatten() {
                let p = &e["Properties"];
                match e["Type"].as_str() {
                    Some("SQS") => queues.push(SqsSourceDef {
                        queue: ref_target(&p["Queue"]),
                        batch_size: p["BatchSize"].as_i64().map_or(10, |n| n as i32),
                        report_batch_item_failures: p["FunctionResponseTypes"]
                            .as_sequence()
                            .into_iter()
                            .flatten()
                            .any(|v| v.as_str() == Some("ReportBatchItemFailures")),
                    }),
                    Some("ScheduleV2" | "Schedule") => schedules.push(ScheduleDef {
                        expression: p["ScheduleExpression"].as_str().unwrap_or("").into(),
                        input: p["Input"].as_str().map_or(serde_json::json!({}), |s| {
                            serde_json::from_str(s).expect("a JSON Input")
                        }),
                    }),
                    Some("EventBridgeRule") => rules.push(RuleDef {
                        bus: ref_target(&p["EventBusName"]),
                        pattern: serde_json::to_value(&p["Pattern"]).expect("a JSON pattern"),
                    }),
                    other => panic!("{id}: event type {other:?} is not emulated"),
                }
            }
            // SAM merges a function's maps over the Globals' ones.
            let mut logging = globals(t)["LoggingConfig"].clone();
            for (k, v) in f["Properties"]["LoggingConfig"]
                .as_mapping()
                .into_iter()
                .flatten()
            {
                if let Some(m) = logging.as_mapping_mut() {
                    m.insert(k.clone(), v.clone());
                }
            }
            FunctionDef {
                binary: names[&id].clone(),
                timeout: Duration::from_secs(num(setting(t, &f, "Timeout")) as u64),
                memory_mb: num(setting(t, &f, "MemorySize")) as u32,
                env,
                logging,
                queues,
                schedules,
                rules,
                logical_id: id,
            }
        })
        .collect()
}

/// An HTTP API route: method, path template and the function its integration invokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDef {
    /// `GET`, `POST`, …
    pub method: String,
    /// `/meta/data-deletion/{code}`
    pub path: String,
    /// The route key as written (`GET /install`).
    pub key: String,
    /// The binary (crate) name of the function behind it.
    pub function: String,
}

/// Every `AWS::ApiGatewayV2::Route`, resolved to the function behind its integration.
pub fn routes(t: &Value) -> Vec<RouteDef> {
    let integrations = of_type(t, "AWS::ApiGatewayV2::Integration");
    let names = function_names(t);
    of_type(t, "AWS::ApiGatewayV2::Route")
        .into_values()
        .map(|r| {
            let key = r["Properties"]["RouteKey"]
                .as_str()
                .expect("RouteKey")
                .to_string();
            let (method, path) = key.split_once(' ').expect("METHOD /path");
            let target = match intrinsic(&r["Properties"]["Target"]) {
                Some((_, v)) => v.as_str().expect("a target").to_string(),
                None => r["Properties"]["Target"].as_str().expect("a target").into(),
            };
            let integration = target
                .trim_start_matches("integrations/${")
                .trim_end_matches('}');
            let uri = &integrations[integration]["Properties"]["IntegrationUri"];
            RouteDef {
                method: method.to_string(),
                path: path.to_string(),
                function: names[&ref_target(uri)].clone(),
                key,
            }
        })
        .collect()
}

/// IAM's StringLike: `*` matches any run of characters, `?` any one.
pub fn glob(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    go(&p, &v)
}

/// One statement of a role's policies on the table (`!GetAtt Table.Arn`).
#[derive(Debug, Clone)]
pub struct TableStatement {
    /// Allow or Deny.
    pub allow: bool,
    /// Its actions (`dynamodb:GetItem`, …).
    pub actions: Vec<String>,
    /// Its `dynamodb:LeadingKeys` patterns, if it has that condition.
    pub leading_keys: Option<Vec<String>>,
}

/// The statements of `role` on the table itself.
pub fn table_statements(t: &Value, role: &str) -> Vec<TableStatement> {
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::Sequence(s) => s
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            other => other.as_str().map(str::to_string).into_iter().collect(),
        }
    };
    let res = resources(t);
    let mut out = Vec::new();
    for policy in res[role]["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for st in policy["PolicyDocument"]["Statement"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let on_table = matches!(
                intrinsic(&st["Resource"]),
                Some((tag, inner)) if tag == "GetAtt" && inner.as_str() == Some("Table.Arn")
            );
            if !on_table {
                continue;
            }
            let condition = &st["Condition"];
            let keys = ["ForAllValues:StringLike", "ForAnyValue:StringLike"]
                .iter()
                .map(|op| &condition[*op]["dynamodb:LeadingKeys"])
                .find(|v| !v.is_null())
                .map(strings);
            out.push(TableStatement {
                allow: st["Effect"].as_str() == Some("Allow"),
                actions: strings(&st["Action"]),
                leading_keys: keys,
            });
        }
    }
    out
}

/// Whether `role` may make the table call `action` on partition `pk`, as IAM decides: some
/// Allow statement grants it (with its LeadingKeys matching, if it has them) and no Deny does.
pub fn table_call_allowed(statements: &[TableStatement], action: &str, pk: &str) -> bool {
    let applies = |s: &TableStatement| {
        s.actions.iter().any(|a| a == action)
            && s.leading_keys
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| glob(p, pk)))
    };
    statements.iter().any(|s| s.allow && applies(s))
        && !statements.iter().any(|s| !s.allow && applies(s))
}

/// Asserts that every table call in `seen` (action, partition) is one template.yaml's `role`
/// allows — the least-privilege policy checked against what the code really does.
pub fn assert_role_allows(role: &str, seen: &[(String, String)]) {
    let statements = table_statements(&load(), role);
    assert!(!statements.is_empty(), "{role} has table statements");
    let refused: Vec<&(String, String)> = seen
        .iter()
        .filter(|(action, pk)| !table_call_allowed(&statements, action, pk))
        .collect();
    assert!(
        refused.is_empty(),
        "{role} would be refused these table calls: {refused:#?}"
    );
}
