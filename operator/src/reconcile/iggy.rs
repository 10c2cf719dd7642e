//! The Iggy side of a reconcile: provisioning (credentials from an opted-in Secret, the
//! server's identity, the conflict check, topics) and, on deletion, removing only what the
//! bridge created ([`crate::ownership`]).

use kube::runtime::events::EventType;
use kube::Api;

use super::{publish, Context, Error};
use crate::conditions::Conditions;
use crate::crd::KafkaBridge;
use crate::ownership::{self, IggyOwnership};
use crate::provision::{self, ProvisionError};
use crate::secrets;

/// Reads the Iggy credentials (from an opted-in Secret only), identifies the server, checks
/// for a conflicting bridge and provisions the stream and topics; the outcome becomes the
/// IggyProvisioned condition (never an error of the reconcile itself, so children are still
/// applied while Iggy is down). Returns the ownership record to write into the status, when
/// it was learnt or changed.
pub(super) async fn provision_iggy(
    kb: &KafkaBridge,
    ctx: &Context,
    conditions: &mut Conditions,
) -> Option<IggyOwnership> {
    let access = match secrets::iggy_access(kb, &ctx.client).await {
        Ok(a) => a,
        Err(e) => {
            conditions.set("IggyProvisioned", false, e.reason, &e.message);
            return None;
        }
    };
    // Unreachable or not, the conflict check comes first: by address resolution when the
    // server cannot be identified, so a second spelling of a down server is still caught.
    let probe = ownership::probe(&access).await;
    let server_id = probe.as_ref().ok().map(|p| p.server_id.clone());
    if let Some(other) = conflicting_bridge(kb, ctx, server_id.as_deref()).await {
        conditions.set(
            "IggyProvisioned",
            false,
            "TopicConflict",
            &format!(
                "stream {} on the Iggy server at {} (server id {}) is already provisioned by \
                 KafkaBridge {other}; this bridge provisions and deletes nothing there",
                kb.spec.iggy.stream,
                kb.spec.iggy.address,
                server_id.as_deref().unwrap_or("unknown")
            ),
        );
        // Identified, but owning nothing: a bridge in conflict never created anything.
        return Some(IggyOwnership {
            server_id,
            ..IggyOwnership::default()
        });
    }
    let probe = match probe {
        Ok(p) => p,
        Err(e) => {
            provision_failed(conditions, &e);
            return None;
        }
    };
    let previous = ctx
        .ownership(kb)
        .filter(|o| o.server_id.as_deref() == Some(probe.server_id.as_str()));
    let identified = IggyOwnership {
        server_id: Some(probe.server_id.clone()),
        ..previous.unwrap_or_default()
    };
    let owned = IggyOwnership {
        created_stream: identified.created_stream || !probe.stream_exists,
        ..identified
    };
    match provision::provision(&access, &kb.spec.topics).await {
        Ok(report) => {
            for topic in &report.created {
                publish(
                    ctx,
                    kb,
                    EventType::Normal,
                    "TopicCreated",
                    &format!("created Iggy topic {}/{topic}", access.stream),
                )
                .await;
            }
            for (topic, change) in &report.settings_updated {
                publish(
                    ctx,
                    kb,
                    EventType::Normal,
                    "TopicSettingsUpdated",
                    &format!("{topic}: {change}"),
                )
                .await;
            }
            for (topic, from, to) in &report.grown {
                publish(
                    ctx,
                    kb,
                    EventType::Normal,
                    "PartitionsGrown",
                    &format!("{topic}: {from} -> {to} partitions"),
                )
                .await;
            }
            if report.decrease_refused.is_empty() {
                conditions.set(
                    "IggyProvisioned",
                    true,
                    "Provisioned",
                    &format!(
                        "stream {} with {} topic(s)",
                        access.stream,
                        kb.spec.topics.len()
                    ),
                );
            } else {
                let what: Vec<String> = report
                    .decrease_refused
                    .iter()
                    .map(|(t, have, want)| format!("{t} has {have}, spec asks {want}"))
                    .collect();
                let message = format!("partitions are never decreased: {}", what.join("; "));
                conditions.set(
                    "IggyProvisioned",
                    false,
                    "PartitionDecreaseRefused",
                    &message,
                );
            }
            Some(owned.with_created(&report.created))
        }
        Err(e) => {
            provision_failed(conditions, &e);
            Some(owned)
        }
    }
}

fn provision_failed(conditions: &mut Conditions, e: &ProvisionError) {
    let reason = match e {
        ProvisionError::Unreachable(..) => "IggyUnreachable",
        ProvisionError::Refused(..) => "IggyRefused",
    };
    conditions.set("IggyProvisioned", false, reason, &e.to_string());
}

/// Another KafkaBridge (created earlier, in the operator's scope) provisioning the same stream
/// on the same Iggy server ([`ownership::conflicting`]).
async fn conflicting_bridge(
    kb: &KafkaBridge,
    ctx: &Context,
    my_id: Option<&str>,
) -> Option<String> {
    let all: Api<KafkaBridge> = ctx.scoped();
    let list = match all.list(&Default::default()).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list KafkaBridges to check for conflicts");
            // Unknown is treated as a conflict: never provision or delete on a guess.
            return Some("(unknown: cannot list KafkaBridges)".into());
        }
    };
    ownership::conflicting(kb, my_id, &list.items).await
}

/// Deletes what the bridge created in Iggy (`status.iggy`), unless it is in conflict with
/// another bridge or never provisioned anything: then nothing, with an event saying why
/// (`Ok(None)`).
pub(super) async fn delete_iggy_topics(
    kb: &KafkaBridge,
    ctx: &Context,
) -> Result<Option<Vec<String>>, Error> {
    let owned = ctx.ownership(kb).unwrap_or_default();
    if let Some(other) = conflicting_bridge(kb, ctx, owned.server_id.as_deref()).await {
        publish(
            ctx,
            kb,
            EventType::Normal,
            "CleanupSkipped",
            &format!(
                "in conflict with KafkaBridge {other} (same stream on the same Iggy server): \
                 nothing deleted in Iggy"
            ),
        )
        .await;
        return Ok(None);
    }
    if owned.server_id.is_none() {
        publish(
            ctx,
            kb,
            EventType::Normal,
            "CleanupSkipped",
            "this bridge never provisioned Iggy: nothing to delete",
        )
        .await;
        return Ok(None);
    }
    let access = secrets::iggy_access(kb, &ctx.client)
        .await
        .map_err(|e| Error::Credentials(e.message))?;
    Ok(Some(ownership::delete_owned(&access, &owned).await?))
}
