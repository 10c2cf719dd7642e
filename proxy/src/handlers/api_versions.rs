//! ApiVersions, rendered from the version table.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::protocol::versions::SUPPORTED_APIS;

pub fn handle(_version: i16, _request: &ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(supported_api_versions())
}

/// KIP-511: a client that sent a newer ApiVersions than we know gets a v0 response with
/// UNSUPPORTED_VERSION and our table, then retries with a version we listed.
pub fn unsupported_version_fallback() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(supported_api_versions())
}

fn supported_api_versions() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.advertised_min)
                .with_max_version(s.max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn lists_the_table() {
        let r = handle(3, &ApiVersionsRequest::default());
        assert_eq!(r.error_code, 0);
        let produce = r
            .api_keys
            .iter()
            .find(|a| a.api_key == ApiKey::Produce as i16)
            .unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
        assert_eq!(r.api_keys.len(), SUPPORTED_APIS.len());
    }
}
