//! The console's static assets (`ui/assets/`), compiled in. Each answer carries a strong ETag
//! (a digest of the bytes) and `Cache-Control: no-cache`, so a browser keeps its copy and
//! revalidates it with one small request; an upgrade's new assets are seen at once.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/assets/", $name)))),*]
    };
}

/// Every embedded file, by its path under `/assets/`.
const FILES: &[(&str, &[u8])] = assets!(
    "app.css",
    "app.js",
    "logo.svg",
    "pages/login.js",
    "pages/dashboard.js",
    "pages/incidents.js",
    "pages/notifications.js",
    "pages/customers.js",
    "pages/devices.js",
    "pages/device.js",
    "pages/logs.js",
    "pages/scripts.js",
    "pages/integrations.js",
    "pages/api-keys.js",
    "pages/users.js",
    "pages/agents.js",
    "pages/audit.js",
    "pages/approvals.js",
    "pages/detection.js",
    "pages/settings.js",
);

#[derive(Debug)]
pub(super) struct Asset {
    pub(super) bytes: &'static [u8],
    content_type: &'static str,
    etag: String,
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn table() -> &'static HashMap<&'static str, Asset> {
    static TABLE: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    TABLE.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, bytes)| {
                let digest = crate::identity::crypto::sha256(bytes);
                let etag = format!("\"{}\"", crate::identity::crypto::hex(&digest[..12]));
                let asset = Asset {
                    bytes,
                    content_type: content_type(name),
                    etag,
                };
                (*name, asset)
            })
            .collect()
    })
}

pub(super) fn find(name: &str) -> Option<&'static Asset> {
    table().get(name)
}

/// `GET /assets/{*path}`.
pub(super) async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = find(&path) else {
        return ApiError::NotFound(format!(
            "asset {:?}",
            path.chars().take(100).collect::<String>()
        ))
        .into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == asset.etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let response_headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        response_headers.insert(header::ETAG, etag);
    }
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
