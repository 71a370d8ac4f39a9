//! template.yaml deployed on moto, as CloudFormation would create it: the table (keys, index,
//! TTL), the FIFO queues with their visibility, retention and redrive policies, the Secrets
//! Manager secrets, the event bus; then each function's environment resolved from the template
//! (`!Ref`, `!GetAtt`, `!Sub`, `!Join`, `!If`). Resources moto does not run (IAM, logs, alarms,
//! the HTTP API itself) are left to the template tests and the emulators beside this one.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use super::template::{self, FunctionDef, Value, intrinsic, num, of_type};

/// What a deployment is given.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Parameter values (the template's defaults fill the rest).
    pub parameters: BTreeMap<String, String>,
    /// The HTTP API's endpoint (`!GetAtt HttpApi.ApiEndpoint`).
    pub api_endpoint: String,
    /// A shorter visibility timeout for every work queue, so a test sees a killed batch again in
    /// seconds rather than the template's minutes. Everything else is as declared.
    pub visibility_timeout: Option<i32>,
}

/// A deployed stack: the physical id of each resource and the attributes functions reference.
pub struct Stack {
    /// The stack's name (unique per deployment).
    pub name: String,
    /// The AWS configuration (moto).
    pub sdk: SdkConfig,
    template: Value,
    parameters: BTreeMap<String, String>,
    refs: BTreeMap<String, String>,
    attributes: BTreeMap<String, String>,
}

impl Stack {
    /// Creates every resource moto emulates, in dependency order.
    pub async fn deploy(sdk: SdkConfig, options: StackOptions) -> Self {
        let template = template::load();
        let mut parameters: BTreeMap<String, String> = template["Parameters"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter_map(|(k, p)| {
                let default = p["Default"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| p["Default"].as_i64().map(|n| n.to_string()))?;
                Some((k.as_str()?.to_string(), default))
            })
            .collect();
        parameters.extend(options.parameters.clone());
        let mut stack = Self {
            name: crate::moto::unique("sys"),
            sdk,
            template,
            parameters,
            refs: BTreeMap::new(),
            attributes: BTreeMap::new(),
        };
        stack.attributes.insert(
            "HttpApi.ApiEndpoint".into(),
            options.api_endpoint.trim_end_matches('/').into(),
        );
        stack.create_tables().await;
        stack.create_queues(options.visibility_timeout).await;
        stack.create_secrets().await;
        stack.create_buses().await;
        stack
    }

    /// What `!Ref logical_id` gives.
    pub fn reference(&self, logical_id: &str) -> &str {
        self.refs
            .get(logical_id)
            .unwrap_or_else(|| panic!("{logical_id} was not created"))
    }

    /// What `!GetAtt logical_id.attribute` gives.
    pub fn attribute(&self, logical_id: &str, attribute: &str) -> &str {
        self.attributes
            .get(&format!("{logical_id}.{attribute}"))
            .unwrap_or_else(|| panic!("{logical_id}.{attribute} is not known"))
    }

    /// The template.
    pub fn template(&self) -> &Value {
        &self.template
    }

    /// A value of the template with its intrinsics resolved.
    pub fn resolve(&self, v: &Value) -> String {
        let Some((tag, inner)) = intrinsic(v) else {
            return match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("cannot resolve {other:?}"),
            };
        };
        match tag.as_str() {
            "Ref" => self.lookup(inner.as_str().expect("a name")),
            "GetAtt" => self.lookup(inner.as_str().expect("X.Attr")),
            "Sub" => self.substitute(inner.as_str().expect("a !Sub string")),
            "Join" => {
                let parts = inner.as_sequence().expect("[separator, [values]]");
                let sep = parts[0].as_str().unwrap_or("");
                let values: Vec<String> = parts[1]
                    .as_sequence()
                    .expect("values")
                    .iter()
                    .map(|v| self.resolve(v))
                    .collect();
                values.join(sep)
            }
            "If" => {
                let parts = inner.as_sequence().expect("[condition, then, else]");
                let condition = parts[0].as_str().expect("a condition name");
                let holds = self.condition(&self.template["Conditions"][condition]);
                self.resolve(&parts[if holds { 1 } else { 2 }])
            }
            other => panic!("intrinsic !{other} is not emulated"),
        }
    }

    fn condition(&self, v: &Value) -> bool {
        let (tag, inner) = intrinsic(v).expect("a condition function");
        let args = inner.as_sequence();
        match tag.as_str() {
            "Not" => !self.condition(&args.expect("[condition]")[0]),
            "Equals" => {
                let a = args.expect("[a, b]");
                self.resolve(&a[0]) == self.resolve(&a[1])
            }
            "And" => args.expect("conditions").iter().all(|c| self.condition(c)),
            "Or" => args.expect("conditions").iter().any(|c| self.condition(c)),
            "Condition" => self.condition(&self.template["Conditions"][inner.as_str().unwrap()]),
            other => panic!("condition !{other} is not emulated"),
        }
    }

    fn lookup(&self, name: &str) -> String {
        match name {
            "AWS::StackName" => return self.name.clone(),
            "AWS::Region" => return "us-east-1".into(),
            "AWS::AccountId" => return "123456789012".into(),
            "AWS::Partition" => return "aws".into(),
            _ => {}
        }
        if let Some((id, att)) = name.split_once('.') {
            return self.attribute(id, att).to_string();
        }
        self.parameters
            .get(name)
            .or_else(|| self.refs.get(name))
            .unwrap_or_else(|| panic!("!Ref {name}: no such parameter or resource"))
            .clone()
    }

    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("a closing brace") + start;
            out.push_str(&self.lookup(&rest[start + 2..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A function's environment as Lambda would set it from the template.
    pub fn function_env(&self, f: &FunctionDef) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = f
            .env
            .iter()
            .map(|(k, v)| (k.clone(), self.resolve(v)))
            .collect();
        if let Some(format) = f.logging["LogFormat"].as_str() {
            env.push(("AWS_LAMBDA_LOG_FORMAT".into(), format.into()));
        }
        if !f.logging["ApplicationLogLevel"].is_null() {
            let level = self.resolve(&f.logging["ApplicationLogLevel"]);
            env.push(("AWS_LAMBDA_LOG_LEVEL".into(), level));
        }
        env
    }

    /// Puts a secret's value, as the operator does after the first deploy.
    pub async fn fill_secret(&self, logical_id: &str, value: &serde_json::Value) {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
            .put_secret_value()
            .secret_id(self.reference(logical_id))
            .secret_string(value.to_string())
            .send()
            .await
            .expect("put-secret-value");
    }

    async fn create_tables(&mut self) {
        let client = aws_sdk_dynamodb::Client::new(&self.sdk);
        for (id, r) in of_type(&self.template, "AWS::DynamoDB::Table") {
            let p = &r["Properties"];
            let name = format!("{}-{id}", self.name);
            let keys = |v: &Value| -> Vec<KeySchemaElement> {
                v.as_sequence()
                    .expect("KeySchema")
                    .iter()
                    .map(|k| {
                        KeySchemaElement::builder()
                            .attribute_name(k["AttributeName"].as_str().unwrap())
                            .key_type(KeyType::from(k["KeyType"].as_str().unwrap()))
                            .build()
                            .unwrap()
                    })
                    .collect()
            };
            let mut create = client
                .create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest)
                .set_key_schema(Some(keys(&p["KeySchema"])));
            for a in p["AttributeDefinitions"].as_sequence().expect("attributes") {
                create = create.attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(a["AttributeName"].as_str().unwrap())
                        .attribute_type(ScalarAttributeType::from(
                            a["AttributeType"].as_str().unwrap(),
                        ))
                        .build()
                        .unwrap(),
                );
            }
            for g in p["GlobalSecondaryIndexes"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                create = create.global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(g["IndexName"].as_str().unwrap())
                        .set_key_schema(Some(keys(&g["KeySchema"])))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::from(
                                    g["Projection"]["ProjectionType"].as_str().unwrap(),
                                ))
                                .build(),
                        )
                        .build()
                        .unwrap(),
                );
            }
            let out = create.send().await.expect("create-table");
            let arn = out
                .table_description()
                .and_then(|d| d.table_arn())
                .unwrap_or_default();
            self.attributes.insert(format!("{id}.Arn"), arn.to_string());
            self.refs.insert(id, name);
        }
    }

    async fn create_queues(&mut self, visibility: Option<i32>) {
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        let queues = of_type(&self.template, "AWS::SQS::Queue");
        for (id, r) in &queues {
            let p = &r["Properties"];
            let fifo = p["FifoQueue"].as_bool().unwrap_or(false);
            let name = format!("{}-{id}{}", self.name, if fifo { ".fifo" } else { "" });
            let mut attributes = std::collections::HashMap::new();
            if fifo {
                attributes.insert(QueueAttributeName::FifoQueue, "true".to_string());
            }
            if let Some(b) = p["ContentBasedDeduplication"].as_bool() {
                attributes.insert(QueueAttributeName::ContentBasedDeduplication, b.to_string());
            }
            if !p["VisibilityTimeout"].is_null() {
                let declared = num(&p["VisibilityTimeout"]) as i32;
                let v = visibility.unwrap_or(declared);
                attributes.insert(QueueAttributeName::VisibilityTimeout, v.to_string());
            }
            if !p["MessageRetentionPeriod"].is_null() {
                let v = num(&p["MessageRetentionPeriod"]).to_string();
                attributes.insert(QueueAttributeName::MessageRetentionPeriod, v);
            }
            let create = client
                .create_queue()
                .queue_name(&name)
                .set_attributes(Some(attributes));
            let url = create
                .send()
                .await
                .expect("create-queue")
                .queue_url
                .unwrap();
            let arn = client
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("get-queue-attributes")
                .attributes
                .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
                .expect("a queue ARN");
            self.attributes.insert(format!("{id}.Arn"), arn);
            self.attributes.insert(format!("{id}.QueueName"), name);
            self.refs.insert(id.clone(), url);
        }
        // Redrive policies once every dead-letter queue exists.
        for (id, r) in &queues {
            let policy = &r["Properties"]["RedrivePolicy"];
            if policy.is_null() {
                continue;
            }
            let json = json!({
                "deadLetterTargetArn": self.resolve(&policy["deadLetterTargetArn"]),
                "maxReceiveCount": num(&policy["maxReceiveCount"]),
            });
            client
                .set_queue_attributes()
                .queue_url(self.reference(id))
                .attributes(QueueAttributeName::RedrivePolicy, json.to_string())
                .send()
                .await
                .expect("set-queue-attributes");
        }
    }

    async fn create_secrets(&mut self) {
        let client = aws_sdk_secretsmanager::Client::new(&self.sdk);
        for (id, r) in of_type(&self.template, "AWS::SecretsManager::Secret") {
            let p = &r["Properties"];
            let value = match p["SecretString"].as_str() {
                Some(s) => s.to_string(),
                None => {
                    let g = &p["GenerateSecretString"];
                    let mut object: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(g["SecretStringTemplate"].as_str().unwrap_or("{}"))
                            .expect("SecretStringTemplate");
                    let length = g["PasswordLength"].as_u64().unwrap_or(32) as usize;
                    let generated: String = uuid::Uuid::new_v4()
                        .simple()
                        .to_string()
                        .repeat(length / 32 + 1)[..length]
                        .to_string();
                    let key = g["GenerateStringKey"].as_str().expect("GenerateStringKey");
                    object.insert(key.into(), generated.into());
                    serde_json::Value::Object(object).to_string()
                }
            };
            let out = client
                .create_secret()
                .name(format!("{}/{id}", self.name))
                .secret_string(value)
                .send()
                .await
                .expect("create-secret");
            self.refs.insert(id, out.arn.expect("a secret ARN"));
        }
    }

    async fn create_buses(&mut self) {
        let client = aws_sdk_eventbridge::Client::new(&self.sdk);
        for (id, r) in of_type(&self.template, "AWS::Events::EventBus") {
            let name = self.resolve(&r["Properties"]["Name"]);
            let out = client
                .create_event_bus()
                .name(&name)
                .send()
                .await
                .expect("create-event-bus");
            self.attributes
                .insert(format!("{id}.Arn"), out.event_bus_arn.unwrap_or_default());
            self.refs.insert(id, name);
        }
    }
}
