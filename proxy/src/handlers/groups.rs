//! Group membership APIs of the classic protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! plus DescribeGroups, ListGroups and DeleteGroups. The protocol itself runs in
//! [`crate::groups`]; this module translates versions and fields.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::tally;
use crate::broker::Broker;
use crate::groups::state::{GroupState, JoinRequest};

/// Longest accepted group id; the offsets log stores ids with a 16-bit length.
pub const MAX_GROUP_ID_BYTES: usize = 1024;

/// Who is asking: the connection's peer, shown as CLIENT-HOST by Kafka tools.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub client_id: String,
    pub host: String,
}

/// Checks that this replica coordinates `group` and its offsets are loaded.
pub async fn coordinate(broker: &Broker, group: &str) -> Result<(), ResponseError> {
    if group.is_empty() || group.len() > MAX_GROUP_ID_BYTES {
        return Err(ResponseError::InvalidGroupId);
    }
    // `ready` checks that this replica may write the group's offsets partition (the fence).
    broker.groups.ready(group).await
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn opt_str(s: Option<&StrBytes>) -> Option<&str> {
    s.map(|s| s.as_str())
}

pub async fn join_group(
    broker: &Broker,
    version: i16,
    caller: &Caller,
    r: JoinGroupRequest,
) -> JoinGroupResponse {
    let group = r.group_id.0.to_string();
    let outcome = match coordinate(broker, &group).await {
        Err(e) => crate::groups::state::JoinOutcome::error(e, r.member_id.as_str()),
        Ok(()) => {
            let session = Duration::from_millis(r.session_timeout_ms.max(0) as u64);
            // v0 has no rebalance timeout: the session timeout served for both.
            let rebalance = if version >= 1 {
                Duration::from_millis(r.rebalance_timeout_ms.max(0) as u64)
            } else {
                session
            };
            let request = JoinRequest {
                member_id: r.member_id.to_string(),
                instance_id: r.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: caller.client_id.clone(),
                client_host: caller.host.clone(),
                session_timeout: session,
                rebalance_timeout: rebalance,
                protocol_type: r.protocol_type.to_string(),
                protocols: r
                    .protocols
                    .into_iter()
                    .map(|p| (p.name.to_string(), p.metadata))
                    .collect(),
                require_known_member_id: version >= 4,
            };
            broker.groups.join(&group, request).await
        }
    };
    let nullable = version >= 7;
    let or_empty = |s: Option<String>| match s {
        Some(s) => Some(StrBytes::from_string(s)),
        None if nullable => None,
        None => Some(StrBytes::default()),
    };
    JoinGroupResponse::default()
        .with_error_code(tally(broker, ApiKey::JoinGroup, outcome.error))
        .with_generation_id(outcome.generation)
        .with_protocol_type(or_empty(outcome.protocol_type))
        .with_protocol_name(or_empty(outcome.protocol_name))
        .with_leader(StrBytes::from_string(outcome.leader))
        .with_skip_assignment(version >= 9 && outcome.skip_assignment)
        .with_member_id(StrBytes::from_string(outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

pub async fn sync_group(broker: &Broker, r: SyncGroupRequest) -> SyncGroupResponse {
    let group = r.group_id.0.to_string();
    let outcome = match coordinate(broker, &group).await {
        Err(e) => crate::groups::state::SyncOutcome::error(e),
        Ok(()) => {
            let assignments = r
                .assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect();
            broker
                .groups
                .sync(
                    &group,
                    r.member_id.as_str(),
                    opt_str(r.group_instance_id.as_ref()),
                    r.generation_id,
                    opt_str(r.protocol_type.as_ref()),
                    opt_str(r.protocol_name.as_ref()),
                    assignments,
                )
                .await
        }
    };
    SyncGroupResponse::default()
        .with_error_code(tally(broker, ApiKey::SyncGroup, outcome.error))
        .with_protocol_type(outcome.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(outcome.protocol_name.map(StrBytes::from_string))
        .with_assignment(outcome.assignment)
}

pub async fn heartbeat(broker: &Broker, r: HeartbeatRequest) -> HeartbeatResponse {
    let group = r.group_id.0.to_string();
    let result = match coordinate(broker, &group).await {
        Err(e) => Err(e),
        Ok(()) => broker.groups.heartbeat(
            &group,
            r.member_id.as_str(),
            opt_str(r.group_instance_id.as_ref()),
            r.generation_id,
        ),
    };
    HeartbeatResponse::default().with_error_code(code(broker, ApiKey::Heartbeat, result))
}

/// v0-2 name one member by id; v3+ a batch of members by id and/or instance id.
pub async fn leave_group(
    broker: &Broker,
    version: i16,
    r: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group = r.group_id.0.to_string();
    if let Err(e) = coordinate(broker, &group).await {
        return LeaveGroupResponse::default().with_error_code(tally(
            broker,
            ApiKey::LeaveGroup,
            e.code(),
        ));
    }
    if version < 3 {
        let result = broker.groups.leave(&group, r.member_id.as_str(), None);
        return LeaveGroupResponse::default().with_error_code(code(
            broker,
            ApiKey::LeaveGroup,
            result,
        ));
    }
    let members = r
        .members
        .into_iter()
        .map(|m| {
            let result = broker.groups.leave(
                &group,
                m.member_id.as_str(),
                opt_str(m.group_instance_id.as_ref()),
            );
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(code(broker, ApiKey::LeaveGroup, result))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

pub async fn describe_groups(
    broker: &Broker,
    version: i16,
    r: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(r.groups.len());
    for group_id in r.groups {
        let id = group_id.0.to_string();
        let base = DescribedGroup::default()
            .with_group_id(group_id)
            // Every operation is allowed: the proxy has no ACLs (KIP-430 bit set of 0..=12
            // would claim otherwise).
            .with_authorized_operations(i32::MIN);
        if let Err(e) = coordinate(broker, &id).await {
            groups.push(
                base.with_error_code(tally(broker, ApiKey::DescribeGroups, e.code()))
                    .with_group_state(str(GroupState::Dead.name())),
            );
            continue;
        }
        let described = broker.groups.with_group(&id, |g| {
            let protocol = g.protocol.clone().unwrap_or_default();
            let mut members: Vec<_> = g.members.values().collect();
            members.sort_by(|a, b| a.id.cmp(&b.id));
            base.clone()
                .with_group_state(str(g.state.name()))
                .with_protocol_type(str(g.protocol_type.as_deref().unwrap_or("")))
                .with_protocol_data(str(&protocol))
                .with_members(
                    members
                        .into_iter()
                        .map(|m| {
                            // Kafka shows member metadata only once a protocol was chosen.
                            let stable = matches!(
                                g.state,
                                GroupState::Stable | GroupState::CompletingRebalance
                            );
                            DescribedGroupMember::default()
                                .with_member_id(str(&m.id))
                                .with_group_instance_id(m.instance_id.as_deref().map(str))
                                .with_client_id(str(&m.client_id))
                                .with_client_host(str(&m.client_host))
                                .with_member_metadata(if stable {
                                    m.metadata(&protocol)
                                } else {
                                    Default::default()
                                })
                                .with_member_assignment(if g.state == GroupState::Stable {
                                    m.assignment.clone()
                                } else {
                                    Default::default()
                                })
                        })
                        .collect(),
                )
        });
        groups.push(match described {
            Some(d) => d,
            // Kafka describes an unknown group as Dead; v6 (KIP-1043) says so with an error.
            None if version >= 6 => base
                .with_error_code(tally(
                    broker,
                    ApiKey::DescribeGroups,
                    ResponseError::GroupIdNotFound.code(),
                ))
                .with_error_message(Some(str(&format!("group {id} does not exist"))))
                .with_group_state(str(GroupState::Dead.name())),
            None => base.with_group_state(str(GroupState::Dead.name())),
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn list_groups(broker: &Broker, r: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = r
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = r
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, state, _)| {
            states.is_empty() || states.contains(&state.name().to_ascii_lowercase())
        })
        // Every group here speaks the classic protocol.
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|(id, state, protocol_type)| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(protocol_type))
                .with_group_state(str(state.name()))
                .with_group_type(str("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub async fn delete_groups(broker: &Broker, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(r.groups_names.len());
    for group_id in r.groups_names {
        let id = group_id.0.to_string();
        let result = match coordinate(broker, &id).await {
            Err(e) => Err(e),
            Ok(()) => broker.groups.delete_group(&id).await,
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(code(broker, ApiKey::DeleteGroups, result)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// Error code of a result, counted in the error metrics.
pub(crate) fn code(broker: &Broker, api: ApiKey, result: Result<(), ResponseError>) -> i16 {
    tally(broker, api, result.err().map_or(0, |e| e.code()))
}
