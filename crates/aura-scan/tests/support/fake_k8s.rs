//! A fake Kubernetes API server for tests: serves the List fixtures of `tests/fixtures/k8s/` (written from the
//! documented API shapes: `PodList`, `ServiceList`, `DeploymentList`, … with `apiVersion`, `kind`,
//! `metadata.resourceVersion`) at the real paths (`/api/v1/pods`, `/api/v1/namespaces/{ns}/services`,
//! `/apis/apps/v1/deployments`, …), filtered by namespace and by equality label selectors as the API server
//! does, behind a bearer token, with `Status` errors (401, 403 for namespace `forbidden`, 404). Shared by the
//! aura-scan and aura-cli tests through `#[path]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};

/// A running fake API server; stops when dropped.
pub struct FakeK8s {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Every request seen, as `PATH?QUERY`.
    pub requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeK8s {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: u16, reason: &str, message: &str) -> (StatusCode, String) {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
}

/// `app=web,tier!=cache,env,!canary` (equality-based selectors, as `kubectl -l` sends them).
fn selector_matches(selector: &str, labels: &serde_json::Map<String, serde_json::Value>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels.get(k.trim()).and_then(|x| x.as_str()) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                labels.get(k.trim()).and_then(|x| x.as_str()) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                !labels.contains_key(k)
            } else {
                labels.contains_key(term)
            }
        })
}

fn answer(dir: &Path, uri: &Uri) -> (StatusCode, String) {
    let path = uri.path();
    if path == "/version" {
        return match std::fs::read_to_string(dir.join("version.json")) {
            Ok(body) => (StatusCode::OK, body),
            Err(_) => status(500, "InternalError", "no version fixture"),
        };
    }
    let rest = path
        .strip_prefix("/api/v1/")
        .map(|r| (r, ["pods", "services"].as_slice()))
        .or_else(|| {
            path.strip_prefix("/apis/apps/v1/")
                .map(|r| (r, ["deployments", "statefulsets", "daemonsets"].as_slice()))
        });
    let Some((rest, resources)) = rest else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (namespace, resource) = match parts.as_slice() {
        [res] => (None, *res),
        ["namespaces", ns, res] => (Some(*ns), *res),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
    };
    if !resources.contains(&resource) {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    if namespace == Some("forbidden") {
        return status(
            403,
            "Forbidden",
            &format!(
                "{resource} is forbidden: User \"system:serviceaccount:aura:scanner\" cannot list resource \"{resource}\" in the namespace \"forbidden\""
            ),
        );
    }
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{resource}.json"))) else {
        return status(500, "InternalError", "missing fixture");
    };
    let Ok(mut list) = serde_json::from_str::<serde_json::Value>(&text) else {
        return status(500, "InternalError", "bad fixture");
    };
    let selector: Option<String> = uri.query().and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "labelSelector").then(|| {
                url::form_urlencoded::parse(format!("v={v}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            })
        })
    });
    if let Some(items) = list.get_mut("items").and_then(|i| i.as_array_mut()) {
        items.retain(|item| {
            let meta = &item["metadata"];
            let ns_ok = namespace.is_none_or(|ns| meta["namespace"] == ns);
            let empty = serde_json::Map::new();
            let labels = meta["labels"].as_object().unwrap_or(&empty);
            ns_ok
                && selector
                    .as_deref()
                    .is_none_or(|s| selector_matches(s, labels))
        });
    }
    (StatusCode::OK, list.to_string())
}

/// Starts the fake API server over `dir`, accepting only `Authorization: Bearer <token>`.
pub async fn start(dir: PathBuf, token: &str) -> FakeK8s {
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = requests.clone();
    let expected = format!("Bearer {token}");
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let dir = dir.clone();
        let seen = seen.clone();
        let expected = expected.clone();
        async move {
            seen.lock().unwrap().push(
                uri.path_and_query()
                    .map_or_else(|| uri.path().to_owned(), |p| p.to_string()),
            );
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let (code, body) = if auth == expected {
                answer(&dir, &uri)
            } else {
                status(401, "Unauthorized", "Unauthorized")
            };
            (code, [("content-type", "application/json")], body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    FakeK8s {
        url: format!("http://{addr}"),
        requests,
        task,
    }
}

/// Writes a kubeconfig whose context `test` points at `url` with a bearer token; returns its path.
pub fn kubeconfig(dir: &Path, url: &str, token: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: kind-shop\n  cluster:\n    server: {url}\ncontexts:\n- name: test\n  context:\n    cluster: kind-shop\n    user: scanner\n    namespace: default\nusers:\n- name: scanner\n  user:\n    token: {token}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}
