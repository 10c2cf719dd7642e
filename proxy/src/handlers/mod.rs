//! One module per Kafka API family; each takes the typed request and returns the typed
//! response. The connection loop owns framing, correlation ids and header versions.

pub mod acls;
pub mod admin;
pub mod api_versions;
pub mod configs;
pub mod coordinator;
pub mod delete_records;
pub mod fetch;
pub mod group_offsets;
pub mod groups;
pub mod leader_epoch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod producer_id;
pub mod records;
pub mod sasl;
pub mod transactions;

use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use std::sync::Arc;

use crate::broker::Broker;
use crate::budget::{ConnectionShare, Reservation};
use crate::partitions::Line;
use crate::security::authorize::{self, Denied, Gate};
use crate::security::grants::Grants;
use crate::security::Session;

/// What the connection does after a request.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one short-lived value per request; boxing would add an allocation per response"
)]
pub enum Outcome {
    Respond(ResponseKind),
    /// Produce with acks=0: Kafka sends nothing back.
    NoResponse,
    /// Protocol violation or unserved API: close the connection, as a broker does.
    Close(String),
}

/// A finished request: its outcome and the memory budget its response holds until written
/// (a Fetch reserves room for its records before reading them).
#[derive(Debug)]
pub struct Handled {
    pub outcome: Outcome,
    pub budget: Reservation,
}

impl From<Outcome> for Handled {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            budget: Reservation::default(),
        }
    }
}

/// Runs a request to completion, whichever way it is scheduled. `client_host` is the peer's
/// address as Kafka tools show it (`/127.0.0.1`).
pub async fn handle(
    broker: &Broker,
    client_host: &str,
    header: RequestHeader,
    request: RequestKind,
) -> Outcome {
    let scope = ConnectionScope::new(broker, Session::plaintext("PLAINTEXT"));
    match dispatch(broker, &scope, header, request) {
        Dispatch::Concurrent(work) => work.await.outcome,
        Dispatch::Exclusive(header, request) => {
            handle_exclusive(broker, &scope, client_host, &header, request).await
        }
    }
}

/// The requests that run alone on their connection (see [`Dispatch::Exclusive`]). Group
/// requests are among them: like a Kafka broker, the proxy handles one at a time per
/// connection, so a JoinGroup waiting for its rebalance holds back what follows it.
pub async fn handle_exclusive(
    broker: &Broker,
    scope: &ConnectionScope,
    client_host: &str,
    header: &RequestHeader,
    request: RequestKind,
) -> Outcome {
    match restrict(scope, request) {
        Restricted::Serve(request, restriction) => {
            restriction.complete(serve_exclusive(broker, scope, client_host, header, request).await)
        }
        Restricted::Answer(answer) => Outcome::Respond(answer),
    }
}

/// What the connection's Iggy permissions took out of a request (see `security::authorize`).
struct Restriction(Option<(Arc<Grants>, Denied)>);

impl Restriction {
    fn complete(self, outcome: Outcome) -> Outcome {
        match (self.0, outcome) {
            (Some((grants, denied)), Outcome::Respond(response)) => {
                Outcome::Respond(authorize::complete(&grants, response, denied))
            }
            (_, outcome) => outcome,
        }
    }
}

/// A request after the connection's Iggy permissions were applied.
#[allow(
    clippy::large_enum_variant,
    reason = "one short-lived value per request, as RequestKind itself"
)]
enum Restricted {
    Serve(RequestKind, Restriction),
    /// Nothing of the request may be served: this is the whole answer.
    Answer(ResponseKind),
}

fn restrict(scope: &ConnectionScope, request: RequestKind) -> Restricted {
    let Some(grants) = scope.session.access.grants() else {
        return Restricted::Serve(request, Restriction(None));
    };
    match authorize::restrict(&grants, request) {
        Gate::Pass(request, denied) => {
            Restricted::Serve(request, Restriction(Some((grants, denied))))
        }
        Gate::Answer(answer) => Restricted::Answer(answer),
    }
}

async fn serve_exclusive(
    broker: &Broker,
    scope: &ConnectionScope,
    client_host: &str,
    header: &RequestHeader,
    request: RequestKind,
) -> Outcome {
    let version = header.request_api_version;
    let respond = Outcome::Respond;
    let session = &scope.session;
    let listener = &*session.listener;
    match request {
        RequestKind::FindCoordinator(r) => respond(ResponseKind::FindCoordinator(
            coordinator::find_coordinator(broker, listener, version, r).await,
        )),
        RequestKind::SaslHandshake(r) => respond(ResponseKind::SaslHandshake(sasl::handshake(
            broker, session, r,
        ))),
        RequestKind::SaslAuthenticate(r) => respond(ResponseKind::SaslAuthenticate(
            sasl::authenticate(broker, session, r).await,
        )),
        RequestKind::DescribeAcls(r) => respond(ResponseKind::DescribeAcls(acls::describe_acls(
            broker, session, r,
        ))),
        RequestKind::JoinGroup(r) => {
            let caller = groups::Caller {
                client_id: header
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                host: client_host.to_string(),
            };
            respond(ResponseKind::JoinGroup(
                groups::join_group(broker, version, &caller, r).await,
            ))
        }
        RequestKind::SyncGroup(r) => {
            respond(ResponseKind::SyncGroup(groups::sync_group(broker, r).await))
        }
        RequestKind::Heartbeat(r) => {
            respond(ResponseKind::Heartbeat(groups::heartbeat(broker, r).await))
        }
        RequestKind::LeaveGroup(r) => respond(ResponseKind::LeaveGroup(
            groups::leave_group(broker, version, r).await,
        )),
        RequestKind::DescribeGroups(r) => respond(ResponseKind::DescribeGroups(
            groups::describe_groups(broker, version, r).await,
        )),
        RequestKind::ListGroups(r) => {
            respond(ResponseKind::ListGroups(groups::list_groups(broker, r)))
        }
        RequestKind::DeleteGroups(r) => respond(ResponseKind::DeleteGroups(
            groups::delete_groups(broker, r).await,
        )),
        RequestKind::OffsetCommit(r) => respond(ResponseKind::OffsetCommit(
            group_offsets::offset_commit(broker, r).await,
        )),
        RequestKind::OffsetFetch(r) => respond(ResponseKind::OffsetFetch(
            group_offsets::offset_fetch(broker, version, r).await,
        )),
        RequestKind::OffsetDelete(r) => respond(ResponseKind::OffsetDelete(
            group_offsets::offset_delete(broker, r).await,
        )),
        RequestKind::ApiVersions(r) => {
            respond(ResponseKind::ApiVersions(api_versions::handle(version, &r)))
        }
        RequestKind::Metadata(r) => respond(ResponseKind::Metadata(
            metadata::handle(broker, listener, version, r).await,
        )),
        RequestKind::InitProducerId(r) => {
            respond(ResponseKind::InitProducerId(producer_id::handle(broker, r)))
        }
        RequestKind::CreateTopics(r) => respond(ResponseKind::CreateTopics(
            admin::create_topics(broker, version, r).await,
        )),
        RequestKind::DeleteTopics(r) => respond(ResponseKind::DeleteTopics(
            admin::delete_topics(broker, version, r).await,
        )),
        RequestKind::CreatePartitions(r) => respond(ResponseKind::CreatePartitions(
            admin::create_partitions(broker, r).await,
        )),
        RequestKind::DescribeConfigs(r) => respond(ResponseKind::DescribeConfigs(
            configs::describe_configs(broker, r).await,
        )),
        RequestKind::AlterConfigs(r) => respond(ResponseKind::AlterConfigs(
            configs::alter_configs(broker, r).await,
        )),
        RequestKind::IncrementalAlterConfigs(r) => respond(ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter_configs(broker, r).await,
        )),
        RequestKind::DeleteRecords(r) => respond(ResponseKind::DeleteRecords(
            delete_records::handle(broker, r).await,
        )),
        RequestKind::DescribeCluster(r) => respond(ResponseKind::DescribeCluster(
            admin::describe_cluster(broker, listener, r),
        )),
        RequestKind::ElectLeaders(r) => respond(ResponseKind::ElectLeaders(
            admin::elect_leaders(broker, r).await,
        )),
        RequestKind::OffsetForLeaderEpoch(r) => respond(ResponseKind::OffsetForLeaderEpoch(
            leader_epoch::handle(broker, r).await,
        )),
        RequestKind::DescribeProducers(r) => respond(ResponseKind::DescribeProducers(
            transactions::describe_producers(broker, r).await,
        )),
        RequestKind::ListTransactions(r) => respond(ResponseKind::ListTransactions(
            transactions::list_transactions(&r),
        )),
        _ => Outcome::Close(format!(
            "api key {} v{version} is not served",
            header.request_api_key
        )),
    }
}

/// How a connection schedules a request.
#[allow(
    clippy::large_enum_variant,
    reason = "one short-lived value per request; boxing would add an allocation per request"
)]
pub enum Dispatch<'a> {
    /// May run while earlier requests on the same connection are still in flight. Produce has
    /// already taken its places in the partitions' append lines, so appends keep request order.
    Concurrent(BoxFuture<'a, Handled>),
    /// Runs alone, after everything before it finished: admin and metadata requests whose
    /// effects a client may rely on in request order, as on a Kafka broker.
    Exclusive(RequestHeader, RequestKind),
}

/// What the requests of one connection share.
#[derive(Debug, Clone)]
pub struct ConnectionScope {
    /// Orders the decoding of the connection's Produce requests (see [`produce`]).
    pub produce_line: Arc<Line>,
    /// The connection's share of the memory budget for work.
    pub memory: ConnectionShare,
    /// Its listener and client's identity.
    pub session: Arc<Session>,
}

impl ConnectionScope {
    pub fn new(broker: &Broker, session: Session) -> Self {
        Self {
            produce_line: Arc::default(),
            memory: broker.budget.connection_share(),
            session: Arc::new(session),
        }
    }
}

/// Decides, in request order, how `request` runs.
pub fn dispatch<'a>(
    broker: &'a Broker,
    scope: &ConnectionScope,
    header: RequestHeader,
    request: RequestKind,
) -> Dispatch<'a> {
    let version = header.request_api_version;
    if !matches!(
        request,
        RequestKind::Produce(_) | RequestKind::Fetch(_) | RequestKind::ListOffsets(_)
    ) {
        return Dispatch::Exclusive(header, request);
    }
    let (request, restriction) = match restrict(scope, request) {
        Restricted::Serve(request, restriction) => (request, restriction),
        Restricted::Answer(answer) => {
            return Dispatch::Concurrent(Box::pin(std::future::ready(
                Outcome::Respond(answer).into(),
            )))
        }
    };
    match request {
        RequestKind::Produce(r) => {
            let prepared = produce::prepare(broker, scope, r);
            Dispatch::Concurrent(Box::pin(async move {
                restriction
                    .complete(produce::execute(broker, prepared).await)
                    .into()
            }))
        }
        RequestKind::Fetch(r) => {
            let memory = scope.memory.clone();
            Dispatch::Concurrent(Box::pin(async move {
                let (response, budget) = fetch::handle(broker, &memory, version, r).await;
                Handled {
                    outcome: restriction.complete(Outcome::Respond(ResponseKind::Fetch(response))),
                    budget,
                }
            }))
        }
        RequestKind::ListOffsets(r) => Dispatch::Concurrent(Box::pin(async move {
            restriction
                .complete(Outcome::Respond(ResponseKind::ListOffsets(
                    list_offsets::handle(broker, version, r).await,
                )))
                .into()
        })),
        other => Dispatch::Exclusive(header, other),
    }
}

/// Counts `code` in the error metrics of `api` and returns it, for use where a response field
/// is filled in.
pub(crate) fn tally(broker: &Broker, api: ApiKey, code: i16) -> i16 {
    if code != 0 {
        broker.metrics.error(api_name(api), code);
    }
    code
}

/// Stable label for an API in metrics and logs.
pub fn api_name(api: ApiKey) -> &'static str {
    // `ApiKey` has no name accessor; Debug is the variant name.
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::DescribeAcls => "DescribeAcls",
        _ => "Other",
    }
}
