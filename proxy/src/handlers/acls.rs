//! DescribeAcls, read-only: the connection's principal's Iggy permissions as Kafka ACLs
//! (`security::grants`). Rights on every topic of the default stream are shown as the topic
//! `*`; on other streams as the Kafka topics mapped there; consumer groups as the group `*`
//! (allowed to principals that may read some topic); Iggy's server permissions as the cluster.
//! On a connection that acts as the proxy's own Iggy user there is no authorizer, and the
//! answer is SECURITY_DISABLED, as from a Kafka broker without one.

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{ApiKey, DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::tally;
use crate::broker::Broker;
use crate::security::authorize::security_disabled;
use crate::security::grants::{Grants, Rights};
use crate::security::Session;

const ANY: i8 = 1;
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const LITERAL: i8 = 3;
const ALLOW: i8 = 3;
const READ: i8 = 3;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DELETE: i8 = 6;
const ALTER: i8 = 7;
const DESCRIBE: i8 = 8;

pub fn describe_acls(
    broker: &Broker,
    session: &Session,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let Some(grants) = session.access.grants() else {
        return DescribeAclsResponse::default()
            .with_error_code(tally(broker, ApiKey::DescribeAcls, security_disabled()))
            .with_error_message(Some(StrBytes::from_static_str(
                "no authorization on this listener: clients act as the proxy's Iggy user",
            )));
    };
    let principal = StrBytes::from_string(session.principal());
    let resources = bindings(&grants)
        .into_iter()
        .filter(|(kind, _, _)| {
            request.resource_type_filter == ANY || request.resource_type_filter == *kind
        })
        .filter(|(_, name, _)| {
            request
                .resource_name_filter
                .as_ref()
                .is_none_or(|f| f.as_str() == name)
        })
        .filter_map(|(kind, name, operations)| {
            let acls: Vec<AclDescription> = operations
                .into_iter()
                .filter(|op| request.operation == ANY || request.operation == *op)
                .map(|op| {
                    AclDescription::default()
                        .with_principal(principal.clone())
                        .with_host(StrBytes::from_static_str("*"))
                        .with_operation(op)
                        .with_permission_type(ALLOW)
                })
                .collect();
            (!acls.is_empty()).then(|| {
                DescribeAclsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(StrBytes::from_string(name))
                    .with_pattern_type(LITERAL)
                    .with_acls(acls)
            })
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

fn operations(r: Rights) -> Vec<i8> {
    let mut ops = Vec::new();
    for (has, op) in [
        (r.describe, DESCRIBE),
        (r.read, READ),
        (r.write, WRITE),
        (r.manage, CREATE),
        (r.manage, DELETE),
        (r.manage, ALTER),
    ] {
        if has {
            ops.push(op);
        }
    }
    ops
}

/// (resource type, name, operations) for every right in `grants`.
fn bindings(grants: &Grants) -> Vec<(i8, String, Vec<i8>)> {
    let mut out = Vec::new();
    let mut topic = |name: String, rights: Rights| {
        let ops = operations(rights);
        if !ops.is_empty() {
            out.push((TOPIC, name, ops));
        }
    };
    topic("*".into(), grants.stream(&grants.default_stream));
    for kafka in grants.overrides.keys() {
        topic(kafka.clone(), grants.kafka_topic(kafka));
    }
    if let Some(stream) = grants.streams.get(&grants.default_stream) {
        for name in stream.topics.keys() {
            if !grants.overrides.contains_key(name) {
                topic(name.clone(), grants.kafka_topic(name));
            }
        }
    }
    if grants.reads_anything() {
        out.push((GROUP, "*".into(), vec![DESCRIBE, READ]));
    }
    let mut cluster = Vec::new();
    if grants.cluster_describe {
        cluster.push(DESCRIBE);
    }
    if grants.cluster_alter {
        cluster.push(ALTER);
    }
    if !cluster.is_empty() {
        out.push((CLUSTER, "kafka-cluster".into(), cluster));
    }
    out
}
