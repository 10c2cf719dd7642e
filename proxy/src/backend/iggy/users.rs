//! An Iggy user's permissions, read with the proxy's own connection (which needs Iggy's
//! `read_users`, as the root user has) and turned into [`Grants`] with stream and topic ids
//! resolved to names.

use iggy::prelude::{Identifier, IggyError, StreamClient, UserClient};

use super::error::map_error;
use super::pool::Retry;
use super::IggyBackend;
use crate::backend::BackendResult;
use crate::security::grants::Grants;

impl IggyBackend {
    pub(super) async fn grants_impl(&self, username: &str) -> BackendResult<Option<Grants>> {
        let Ok(id) = Identifier::named(username) else {
            return Ok(None);
        };
        let id = &id;
        let user = match self
            .pool
            .run(Retry::Once, |c| async move { c.get_user(id).await })
            .await
        {
            Ok(user) => user,
            Err(IggyError::ResourceNotFound(_)) => None,
            Err(e) => return Err(map_error(e, username)),
        };
        let Some(user) = user else {
            return Ok(None);
        };
        let mut grants = match &user.permissions {
            Some(p) => Grants::from_global(&p.global),
            None => Grants::default(),
        };
        grants.default_stream.clone_from(&self.default_stream);
        grants.overrides = self
            .overrides
            .iter()
            .map(|(kafka, t)| (kafka.clone(), (t.stream.clone(), t.topic.clone())))
            .collect();
        let Some(streams) = user.permissions.and_then(|p| p.streams) else {
            return Ok(Some(grants));
        };
        for (stream_id, permissions) in streams {
            let sid =
                Identifier::numeric(stream_id as u32).map_err(|e| map_error(e, "stream id"))?;
            let sid = &sid;
            let details = self
                .pool
                .run(Retry::Once, |c| async move { c.get_stream(sid).await })
                .await
                .map_err(|e| map_error(e, "stream"))?;
            // Permissions on a stream that no longer exists grant nothing.
            let Some(details) = details else { continue };
            let topics = details.topics;
            grants.add_stream(details.name, &permissions, |topic_id| {
                topics
                    .iter()
                    .find(|t| t.id as usize == topic_id)
                    .map(|t| t.name.clone())
            });
        }
        Ok(Some(grants))
    }
}
