//! The agent's calls to the API server, on top of the generic client.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tugboat_client::{Client, ClientError};

#[derive(Clone)]
pub struct ApiClient {
    client: Client,
}

fn json_body(value: &Value) -> Option<(&'static str, Bytes)> {
    Some(("application/json", Bytes::from(value.to_string())))
}

impl ApiClient {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// GET of one object; `None` when it does not exist.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        match self.client.request(Method::GET, path, None).await {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create(&self, collection: &str, object: &Value) -> Result<Value, ClientError> {
        self.client.create(collection, object).await
    }

    pub async fn put(&self, path: &str, object: &Value) -> Result<Value, ClientError> {
        Ok(serde_json::from_slice(&self.client.request(Method::PUT, path, json_body(object)).await?)?)
    }

    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ClientError> {
        let body = Some(("application/merge-patch+json", Bytes::from(patch.to_string())));
        Ok(serde_json::from_slice(&self.client.request(Method::PATCH, path, body).await?)?)
    }

    /// DELETE with options; a missing object is not an error.
    pub async fn delete(&self, path: &str, options: &Value) -> Result<(), ClientError> {
        match self.client.request(Method::DELETE, path, json_body(options)).await {
            Ok(_) | Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Whether an error means the object is gone (or was replaced: its UID precondition failed).
pub fn is_gone(error: &ClientError) -> bool {
    matches!(error, ClientError::Status { code: StatusCode::NOT_FOUND | StatusCode::CONFLICT, .. })
}
