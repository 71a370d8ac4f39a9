//! Wiring: the services every function and the local server build once per start, from AWS
//! (DynamoDB, SQS) or in memory. Lambda `main`s and `igbridge serve` only call these.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::clock::{Clock, SystemClock};
use crate::config::{AwsResources, Config, ConfigError};
#[cfg(feature = "eventbridge")]
use crate::events::EventBridgePublisher;
use crate::events::{EventPublisher, MemoryPublisher};
use crate::function::Resource;
use crate::ingest::{InstagramIngest, LivechatIngest};
use crate::instagram::graph::GraphClient;
use crate::lifecycle::Lifecycle;
use crate::lifecycle::callbacks::Callbacks;
use crate::livechat::LivechatClient;
#[cfg(feature = "sqs")]
use crate::queue::SqsQueue;
use crate::queue::{MemoryQueue, MemoryQueueSettings, Queue, Unwired};
use crate::relay::inbound::Inbound;
use crate::relay::outbound::Outbound;
use crate::store::{DynamoStore, MemoryStore, Repo};

/// The shared services.
#[derive(Clone)]
pub struct Services {
    /// Configuration.
    pub config: Config,
    /// Records.
    pub repo: Repo,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Instagram → LiveChat work queue.
    pub to_livechat: Arc<dyn Queue>,
    /// Its dead-letter queue.
    pub to_livechat_dlq: Arc<dyn Queue>,
    /// LiveChat → Instagram work queue.
    pub to_instagram: Arc<dyn Queue>,
    /// Its dead-letter queue.
    pub to_instagram_dlq: Arc<dyn Queue>,
    /// The one HTTP client for the platforms.
    pub http: crate::http::LazyClient,
    /// Lifecycle events for ops.
    pub events: Arc<dyn EventPublisher>,
    /// CloudWatch metrics (EMF lines on stdout in Lambda; off locally unless asked).
    pub metrics: crate::metrics::Metrics,
    /// What this process's workers last wrote for the status page (at most once an hour).
    pub written: Arc<crate::health::Written>,
}

impl Services {
    /// Services on DynamoDB, and on the SQS queues and EventBridge bus `res` names; a queue or
    /// bus it leaves out is [`Unwired`](crate::queue::Unwired). A resource this build has no
    /// client for (a `shared` feature left out) is an error naming it.
    pub fn aws(sdk: &SdkConfig, config: Config, res: &AwsResources) -> Result<Self, ConfigError> {
        let queues = aws_queues(sdk, res)?;
        Ok(Self {
            config,
            repo: Self::aws_repo(sdk, res),
            clock: Arc::new(SystemClock),
            to_livechat: queues[0].clone(),
            to_livechat_dlq: queues[1].clone(),
            to_instagram: queues[2].clone(),
            to_instagram_dlq: queues[3].clone(),
            http: crate::http::LazyClient::default(),
            events: aws_events(sdk, res)?,
            metrics: crate::metrics::Metrics::off(),
            written: Arc::default(),
        })
    }

    /// The records on DynamoDB.
    pub fn aws_repo(sdk: &SdkConfig, res: &AwsResources) -> Repo {
        Repo::new(Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &res.table_name,
        )))
    }

    /// Services held in memory (local runs and tests), on the given clock.
    pub fn memory(config: Config, clock: Arc<dyn Clock>) -> Self {
        let pair = |name: &str| -> (Arc<dyn Queue>, Arc<dyn Queue>) {
            let dlq = Arc::new(MemoryQueue::new(
                format!("{name}-dlq"),
                clock.clone(),
                MemoryQueueSettings {
                    visibility_timeout: std::time::Duration::from_secs(
                        crate::provision::DLQ_VISIBILITY_TIMEOUT_SECS as u64,
                    ),
                    ..MemoryQueueSettings::default()
                },
            ));
            let queue = Arc::new(MemoryQueue::new(
                name,
                clock.clone(),
                MemoryQueueSettings {
                    dead_letter: Some(dlq.clone()),
                    ..MemoryQueueSettings::default()
                },
            ));
            (queue, dlq)
        };
        let (to_livechat, to_livechat_dlq) = pair("to-livechat");
        let (to_instagram, to_instagram_dlq) = pair("to-instagram");
        Self {
            config,
            repo: Repo::new(Arc::new(MemoryStore::new())),
            clock,
            to_livechat,
            to_livechat_dlq,
            to_instagram,
            to_instagram_dlq,
            http: crate::http::LazyClient::default(),
            events: Arc::new(MemoryPublisher::default()),
            metrics: crate::metrics::Metrics::off(),
            written: Arc::default(),
        }
    }

    /// The Graph API client.
    pub fn graph(&self) -> GraphClient {
        GraphClient::new(
            self.http.get(),
            &self.config.graph_api_base_url,
            &self.config.graph_api_version,
            self.config.meta_app_secret.clone(),
        )
    }

    /// The LiveChat client.
    pub fn livechat(&self) -> LivechatClient {
        LivechatClient::new(
            self.http.get(),
            &self.config.livechat_api_base_url,
            &self.config.livechat_accounts_base_url,
            &self.config.livechat_client_id,
            self.config.livechat_client_secret.clone(),
        )
    }

    /// The Instagram webhook's state.
    pub fn instagram_ingest(&self) -> Arc<InstagramIngest> {
        Arc::new(InstagramIngest {
            app_secret: self.config.meta_app_secret.clone(),
            verify_token: self.config.meta_verify_token.clone(),
            repo: self.repo.clone(),
            queue: self.to_livechat.clone(),
            dead_letter: self.to_livechat_dlq.clone(),
            clock: self.clock.clone(),
            keys: self.data_keys(),
        })
    }

    /// What the services act with.
    pub fn deps(&self) -> crate::deps::Deps {
        crate::deps::Deps {
            repo: self.repo.clone(),
            cipher: self.config.cipher.clone(),
            clock: self.clock.clone(),
            events: self.events.clone(),
            graph: self.graph(),
            livechat: self.livechat(),
        }
    }

    /// The instagram-to-livechat worker.
    pub fn inbound(&self) -> Inbound {
        Inbound {
            deps: self.deps(),
            keys: self.data_keys(),
            observer: self.observer(),
            public_base_url: self.config.public_base_url.clone(),
        }
    }

    /// What the workers tell about their jobs (metrics, backlog, activity).
    pub fn observer(&self) -> crate::health::Observer {
        crate::health::Observer::new(
            self.repo.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            self.written.clone(),
        )
    }

    /// The organizations' data keys (crypto-shredding of queued jobs).
    pub fn data_keys(&self) -> crate::datakey::DataKeys {
        crate::datakey::DataKeys::new(
            self.repo.clone(),
            self.config.cipher.clone(),
            self.clock.clone(),
        )
    }

    /// The LiveChat chat webhook's state.
    pub fn livechat_ingest(&self) -> Arc<LivechatIngest> {
        Arc::new(LivechatIngest {
            webhook_secret: self.config.livechat_webhook_secret.clone(),
            repo: self.repo.clone(),
            queue: self.to_instagram.clone(),
            dead_letter: self.to_instagram_dlq.clone(),
            clock: self.clock.clone(),
            keys: self.data_keys(),
        })
    }

    /// The lifecycle service (uninstall, deauthorize, data deletion, sweeps).
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            deps: self.deps(),
            meta_app_id: self.config.meta_app_id.clone(),
            meta_app_secret: self.config.meta_app_secret.clone(),
        }
    }

    /// The uninstall function's callbacks (LiveChat's app webhook, Meta's callbacks).
    pub fn callbacks(&self) -> Arc<Callbacks> {
        Arc::new(Callbacks {
            lifecycle: self.lifecycle(),
            app_webhook_token: self.config.livechat_app_webhook_token.clone(),
            livechat_client_id: self.config.livechat_client_id.clone(),
            meta_app_secret: self.config.meta_app_secret.clone(),
            public_base_url: self.config.public_base_url.clone(),
        })
    }

    /// The install flow's state.
    pub fn install(&self) -> Arc<crate::install::Install> {
        Arc::new(crate::install::Install {
            deps: self.deps(),
            sealer: crate::install::state::FlowSealer::new(self.config.cipher.clone()),
            public_base_url: self.config.public_base_url.clone(),
            livechat_client_id: self.config.livechat_client_id.clone(),
            livechat_accounts_base_url: self.config.livechat_accounts_base_url.clone(),
            facebook_dialog_base_url: self.config.facebook_dialog_base_url.clone(),
            graph_api_version: self.config.graph_api_version.clone(),
            meta_app_id: self.config.meta_app_id.clone(),
            lifecycle: self.lifecycle(),
        })
    }

    /// The health check, with both queue pairs for its replays.
    pub fn health(&self) -> crate::health::check::HealthCheck {
        use crate::health::replay::QueuePair;
        crate::health::check::HealthCheck {
            deps: self.deps(),
            metrics: self.metrics.clone(),
            meta_app_id: self.config.meta_app_id.clone(),
            meta_app_secret: self.config.meta_app_secret.clone(),
            queues: vec![
                QueuePair {
                    work: self.to_livechat.clone(),
                    dead_letter: self.to_livechat_dlq.clone(),
                },
                QueuePair {
                    work: self.to_instagram.clone(),
                    dead_letter: self.to_instagram_dlq.clone(),
                },
            ],
        }
    }

    /// The livechat-to-instagram worker.
    pub fn outbound(&self) -> Outbound {
        Outbound {
            deps: self.deps(),
            public_base_url: self.config.public_base_url.clone(),
            keys: self.data_keys(),
            observer: self.observer(),
        }
    }
}

/// The four queues, in [`AwsResources`] order; those it does not name are unwired.
fn aws_queues(sdk: &SdkConfig, res: &AwsResources) -> Result<[Arc<dyn Queue>; 4], ConfigError> {
    let named = [
        (Resource::ToLivechatQueue, &res.to_livechat_queue_url),
        (Resource::ToLivechatDlq, &res.to_livechat_dlq_url),
        (Resource::ToInstagramQueue, &res.to_instagram_queue_url),
        (Resource::ToInstagramDlq, &res.to_instagram_dlq_url),
    ];
    #[cfg(feature = "sqs")]
    let sqs = named
        .iter()
        .any(|(_, url)| url.is_some())
        .then(|| aws_sdk_sqs::Client::new(sdk));
    #[cfg(not(feature = "sqs"))]
    let _ = sdk;
    let queue =
        |(resource, url): &(Resource, &Option<String>)| -> Result<Arc<dyn Queue>, ConfigError> {
            let Some(url) = url else {
                return Ok(Arc::new(Unwired(resource.setting())));
            };
            #[cfg(feature = "sqs")]
            return Ok(Arc::new(SqsQueue::new(
                sqs.clone().expect("a client when a queue is named"),
                url,
            )));
            #[cfg(not(feature = "sqs"))]
            Err(not_built(resource, url))
        };
    Ok([
        queue(&named[0])?,
        queue(&named[1])?,
        queue(&named[2])?,
        queue(&named[3])?,
    ])
}

/// The lifecycle event publisher: EventBridge when `res` names the bus, else unwired.
fn aws_events(sdk: &SdkConfig, res: &AwsResources) -> Result<Arc<dyn EventPublisher>, ConfigError> {
    let Some(bus) = &res.event_bus_name else {
        return Ok(Arc::new(crate::events::Unwired));
    };
    #[cfg(feature = "eventbridge")]
    return Ok(Arc::new(EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(sdk),
        bus,
    )));
    #[cfg(not(feature = "eventbridge"))]
    {
        let _ = sdk;
        Err(not_built(&Resource::EventBus, bus))
    }
}

/// A resource named in the settings that this build cannot reach.
#[cfg(not(all(feature = "sqs", feature = "eventbridge")))]
fn not_built(resource: &Resource, _value: &str) -> ConfigError {
    ConfigError::Invalid {
        name: resource.setting().to_string(),
        reason: "this function is built without that client (shared::function)".into(),
    }
}

/// The Lambda side of the wiring: each function's `main` is one call to these.
pub mod lambda {
    use std::sync::Arc;

    use aws_lambda_events::event::sqs::SqsEvent;
    use lambda_runtime::{Error, LambdaEvent, service_fn};

    use super::Services;
    use crate::config::{AwsResources, Config, Settings};
    use crate::function::Function;
    use crate::queue::Queue;
    use crate::worker::{JobHandler, handle_sqs_event, start_by};

    /// Initialises logging and builds the services of `function` once per cold start: its
    /// settings from the environment and its own secrets (read once), and the SDK clients of
    /// the resources it uses, nothing else ([`Function::needs`]).
    pub async fn services(function: Function) -> Result<Services, Error> {
        crate::logging::init();
        let sdk = crate::aws::lambda_sdk_config();
        let mut settings = Settings::from_env();
        let resources = AwsResources::for_function(&settings, function)?;
        let secrets = Config::load_for(&sdk, &mut settings, function);
        // The table's connection opens while the secrets are read (the same round trip).
        let repo = Services::aws_repo(&sdk, &resources);
        let (config, ()) = tokio::join!(secrets, repo.warm_up());
        let mut services = Services::aws(&sdk, config?, &resources)?;
        services.repo = repo;
        let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|_| function.crate_name().to_string());
        services.metrics = crate::metrics::Metrics::stdout(&name);
        Ok(services)
    }

    /// Runs a queue worker under the Lambda runtime, reporting partial batch failures.
    pub async fn run_worker(
        services: &Services,
        handler: &dyn JobHandler,
        queue: Arc<dyn Queue>,
        dead_letter: Arc<dyn Queue>,
    ) -> Result<(), Error> {
        let (queue, dead_letter) = (queue.as_ref(), dead_letter.as_ref());
        lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
            let now = services.clock.now();
            let start_by = start_by(event.context.deadline, now);
            let response = handle_sqs_event(
                handler,
                queue,
                dead_letter,
                now,
                event.payload,
                Some(start_by),
            );
            Ok::<_, Error>(response.await)
        }))
        .await
    }
}
