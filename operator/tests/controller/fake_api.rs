//! A fake Kubernetes API server behind `tower_test::mock::pair`, for driving the real
//! `Controller` in tests (the kube-rs controller-rs pattern, extended to a small stateful fake
//! because the controller runs eight watches concurrently).
//!
//! - Lists answer from per-collection fixtures; watches stay open and silent, so every reconcile
//!   in a test is caused by the initial lists or by a requeue.
//! - Server-side apply, create, replace and status patches are answered like an API server would
//!   (uid, resourceVersion, generation), and the object is remembered for later GETs.
//! - Failures can be injected per method and path.
//! - Every request is recorded (method, path, query, body) so tests assert the exact traffic.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Option<Value>,
    /// When the request arrived.
    pub at: tokio::time::Instant,
}

impl Recorded {
    /// GET list or watch: the Controller's own traffic, not the reconciler's.
    pub fn is_list_or_watch(&self) -> bool {
        self.method == "GET" && (self.query.contains_key("watch") || is_collection(&self.path))
    }
    /// A server-side apply (PATCH with the apply content type).
    pub fn is_apply(&self) -> bool {
        self.method == "PATCH" && self.content_type.starts_with("application/apply-patch")
    }
    /// The raw query string, for RBAC mapping.
    pub fn query_string(&self) -> String {
        self.query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }
    /// `METHOD path`, for readable assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A collection path: `/api/v1/<res>`, `/apis/<g>/<v>/<res>` or the namespaced forms.
pub fn is_collection(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segs.as_slice(),
        ["api", _, _]
            | ["apis", _, _, _]
            | ["api", _, "namespaces", _, _]
            | ["apis", _, _, "namespaces", _, _]
    )
}

struct Failure {
    method: String,
    path: String,
    code: u16,
    remaining: usize,
}

#[derive(Default)]
struct State {
    log: Vec<Recorded>,
    lists: HashMap<String, Vec<Value>>,
    objects: HashMap<String, Value>,
    failures: Vec<Failure>,
    next_rv: u64,
}

/// Handle on the fake API server; clone freely.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    changed: Arc<tokio::sync::watch::Sender<usize>>,
}

type RespBody = BoxBody<Bytes, Infallible>;

impl FakeApi {
    /// Starts the fake and returns a kube `Client` talking to it.
    pub fn start() -> (kube::Client, FakeApi) {
        let (service, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<RespBody>>();
        let fake = FakeApi {
            state: Arc::new(Mutex::new(State {
                next_rv: 100,
                ..State::default()
            })),
            changed: Arc::new(tokio::sync::watch::channel(0).0),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let response = server.handle(request).await;
                    respond.send_response(response);
                });
            }
        });
        (kube::Client::new(service, "default"), fake)
    }

    /// Items returned when `path` (a cluster-wide collection) is listed.
    pub fn set_list(&self, path: &str, items: Vec<Value>) {
        let mut st = self.state.lock().unwrap();
        for item in &items {
            let obj_path = object_path(path, item);
            st.objects.insert(obj_path, item.clone());
        }
        st.lists.insert(path.to_string(), items);
    }

    /// An object that GET returns (not in any list: "not in the watch cache").
    pub fn put_object(&self, path: &str, object: Value) {
        self.state
            .lock()
            .unwrap()
            .objects
            .insert(path.to_string(), object);
    }

    /// The stored object at `path`.
    pub fn object(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// The next `times` requests with `method` on exactly `path` fail with `code`.
    pub fn fail(&self, method: &str, path: &str, code: u16, times: usize) {
        self.state.lock().unwrap().failures.push(Failure {
            method: method.into(),
            path: path.into(),
            code,
            remaining: times,
        });
    }

    /// Everything recorded so far.
    pub fn log(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }

    /// The reconciler's requests (everything but lists and watches).
    pub fn writes(&self) -> Vec<Recorded> {
        self.log()
            .into_iter()
            .filter(|r| !r.is_list_or_watch())
            .collect()
    }

    /// Waits until `done(log)` holds; panics with the log after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let log = self.log();
            if done(&log) {
                return log;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                let lines: Vec<String> = log
                    .iter()
                    .map(|r| format!("  {} ?{}", r.line(), r.query_string()))
                    .collect();
                panic!(
                    "timed out waiting for {what}; requests so far:\n{}",
                    lines.join("\n")
                );
            }
        }
    }

    async fn handle(&self, request: Request<kube::client::Body>) -> Response<RespBody> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        let query: BTreeMap<String, String> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let recorded = Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body,
            at: tokio::time::Instant::now(),
        };
        let response = {
            let mut st = self.state.lock().unwrap();
            st.log.push(recorded.clone());
            answer(&mut st, &recorded)
        };
        self.changed.send_modify(|n| *n += 1);
        response
    }
}

fn object_path(collection: &str, item: &Value) -> String {
    // Lists are cluster-wide; objects live at their namespaced path.
    let ns = item["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = item["metadata"]["name"].as_str().unwrap_or("");
    let segs: Vec<&str> = collection.trim_matches('/').split('/').collect();
    let (prefix, res) = segs.split_at(segs.len() - 1);
    format!("/{}/namespaces/{ns}/{}/{name}", prefix.join("/"), res[0])
}

/// Percent-decoding of the few characters label selectors use.
fn decode(s: &str) -> String {
    s.replace("%2F", "/")
        .replace("%3D", "=")
        .replace("%2C", ",")
        .replace("%21", "!")
}

/// `k=v,k2=v2` equality selectors, as the API server applies them to lists.
fn matches_selector(item: &Value, selector: &str) -> bool {
    selector.split(',').all(|term| {
        let (k, v) = term.split_once('=').expect("equality selectors only");
        item["metadata"]["labels"][k] == v
    })
}

fn json_response(code: u16, value: &Value) -> Response<RespBody> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap()
}

fn status_response(code: u16, reason: &str, message: &str) -> Response<RespBody> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}),
    )
}

fn watch_response() -> Response<RespBody> {
    // Open and silent: no events after the initial list.
    let stream = futures_util::stream::pending::<Result<hyper::body::Frame<Bytes>, Infallible>>();
    Response::builder()
        .status(200)
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

fn stamp(st: &mut State, object: &mut Value, previous: Option<&Value>) {
    st.next_rv += 1;
    let old_gen = previous
        .and_then(|p| p["metadata"]["generation"].as_i64())
        .unwrap_or(0);
    let spec_changed = previous.is_none_or(|p| p.get("spec") != object.get("spec"));
    let meta = &mut object["metadata"];
    meta["resourceVersion"] = json!(st.next_rv.to_string());
    meta["uid"] = previous
        .and_then(|p| p["metadata"]["uid"].as_str())
        .map(|u| json!(u))
        .unwrap_or_else(|| json!(format!("uid-{}", st.next_rv)));
    meta["generation"] = json!(if spec_changed {
        old_gen + 1
    } else {
        old_gen.max(1)
    });
}

fn answer(st: &mut State, req: &Recorded) -> Response<RespBody> {
    if let Some(f) = st
        .failures
        .iter_mut()
        .find(|f| f.remaining > 0 && f.method == req.method && f.path == req.path)
    {
        f.remaining -= 1;
        let code = f.code;
        let reason = match code {
            409 => "Conflict",
            404 => "NotFound",
            _ => "InternalError",
        };
        return status_response(code, reason, &format!("injected failure {code}"));
    }
    let path = req.path.as_str();
    match req.method.as_str() {
        "GET" if req.query.contains_key("watch") => watch_response(),
        "GET" if is_collection(path) => {
            let selector = req.query.get("labelSelector").map(|s| decode(s));
            let items: Vec<Value> = st
                .lists
                .get(path)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|item| {
                    selector
                        .as_deref()
                        .is_none_or(|sel| matches_selector(item, sel))
                })
                .collect();
            json_response(
                200,
                &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "50"}, "items": items}),
            )
        }
        "GET" => match st.objects.get(path) {
            Some(o) => json_response(200, o),
            None => status_response(404, "NotFound", &format!("{path} not found")),
        },
        "PATCH" if path.ends_with("/status") => {
            let obj_path = path.trim_end_matches("/status").to_string();
            let mut obj = st
                .objects
                .get(&obj_path)
                .cloned()
                .unwrap_or_else(|| json!({"metadata": {}}));
            obj["status"] = req
                .body
                .as_ref()
                .map(|b| b["status"].clone())
                .unwrap_or(Value::Null);
            st.next_rv += 1;
            obj["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
            st.objects.insert(obj_path, obj.clone());
            json_response(200, &obj)
        }
        "PATCH" => {
            let previous = st.objects.get(path).cloned();
            let mut obj = req.body.clone().unwrap_or(Value::Null);
            stamp(st, &mut obj, previous.as_ref());
            st.objects.insert(path.to_string(), obj.clone());
            json_response(if previous.is_some() { 200 } else { 201 }, &obj)
        }
        "POST" => {
            let mut obj = req.body.clone().unwrap_or(Value::Null);
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let obj_path = format!("{path}/{name}");
            if st.objects.contains_key(&obj_path) {
                return status_response(
                    409,
                    "AlreadyExists",
                    &format!("{obj_path} already exists"),
                );
            }
            stamp(st, &mut obj, None);
            st.objects.insert(obj_path, obj.clone());
            json_response(201, &obj)
        }
        "PUT" => {
            let current_rv = st
                .objects
                .get(path)
                .map(|o| o["metadata"]["resourceVersion"].clone());
            let sent_rv = req
                .body
                .as_ref()
                .map(|b| b["metadata"]["resourceVersion"].clone());
            if current_rv.is_none() {
                return status_response(404, "NotFound", &format!("{path} not found"));
            }
            if current_rv != sent_rv {
                return status_response(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version",
                );
            }
            let previous = st.objects.get(path).cloned();
            let mut obj = req.body.clone().unwrap_or(Value::Null);
            stamp(st, &mut obj, previous.as_ref());
            st.objects.insert(path.to_string(), obj.clone());
            json_response(200, &obj)
        }
        _ => status_response(405, "MethodNotAllowed", "not supported by the fake"),
    }
}
