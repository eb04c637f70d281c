//! A fake Discord on 127.0.0.1, inside the test process: REST and gateway, stateful (guild,
//! channels, messages, pins, interactions), recording every request and validating every JSON
//! body against Discord's published OpenAPI description. It enforces Discord's documented
//! limits and errors, and can be told to answer 500 or 429 on chosen routes.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Bodies validated by every fake in this test process.
static SUITE_VALIDATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub const APP_ID: u64 = 900_000_000_000_000_001;
pub const BOT_ID: u64 = 900_000_000_000_000_002;
pub const GUILD: u64 = 800_000_000_000_000_001;
pub const CATEGORY: u64 = 800_000_000_000_000_002;
pub const GENERAL: u64 = 800_000_000_000_000_003;

/// Compiled body schemas by (method, route template); None: the route takes no JSON body.
type SchemaCache = Mutex<HashMap<(String, String), Option<Arc<jsonschema::Validator>>>>;

/// Validates request bodies against `shared/discord/openapi.json`.
pub struct OpenApi {
    doc: Value,
    routes: Vec<(regex::Regex, String)>,
    cache: SchemaCache,
}

impl OpenApi {
    /// Loads the description; under CI its absence is a failure, elsewhere a skip, said aloud.
    pub fn load() -> Option<OpenApi> {
        let path = crate::helpers::shared_file("discord/openapi.json")?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => panic!("{} exists but cannot be read: {e}", path.display()),
        };
        let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
        let routes = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(|template| {
                let re = regex::escape(template);
                let re = regex::Regex::new(r"\\\{[^}]+\\\}")
                    .unwrap()
                    .replace_all(&re, "[^/]+");
                (
                    regex::Regex::new(&format!("^{re}$")).unwrap(),
                    template.clone(),
                )
            })
            .collect();
        Some(OpenApi {
            doc,
            routes,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn validator(
        &self,
        method: &str,
        path: &str,
    ) -> Result<Option<Arc<jsonschema::Validator>>, String> {
        // A literal path (`/users/@me/channels`) wins over a template that also matches.
        let mut matches: Vec<&String> = self
            .routes
            .iter()
            .filter(|(re, _)| re.is_match(path))
            .map(|(_, t)| t)
            .collect();
        matches.sort_by_key(|t| t.matches('{').count());
        let Some(template) = matches.first() else {
            return Err(format!(
                "{method} {path} is not a route in Discord's OpenAPI description"
            ));
        };
        let key = (method.to_string(), (*template).clone());
        if let Some(v) = self.cache.lock().unwrap().get(&key) {
            return Ok(v.clone());
        }
        let op = &self.doc["paths"][template.as_str()][method.to_lowercase()];
        if op.is_null() {
            return Err(format!(
                "{method} {template} is not an operation in Discord's OpenAPI description"
            ));
        }
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        let validator = if schema.is_null() {
            None
        } else {
            let mut root = schema.as_object().cloned().unwrap_or_default();
            root.insert("components".into(), self.doc["components"].clone());
            let v = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&Value::Object(root))
                .map_err(|e| format!("schema for {method} {template} does not compile: {e}"))?;
            Some(Arc::new(v))
        };
        self.cache.lock().unwrap().insert(key, validator.clone());
        Ok(validator)
    }

    /// Ok(true) if a schema was checked, Ok(false) if the route takes no JSON body.
    pub fn validate(&self, method: &str, path: &str, body: Option<&Value>) -> Result<bool, String> {
        let validator = self.validator(method, path)?;
        match (validator, body) {
            (Some(v), Some(b)) => {
                let errors: Vec<String> = v
                    .iter_errors(b)
                    .map(|e| format!("{} at {}", e, e.instance_path))
                    .collect();
                if errors.is_empty() {
                    Ok(true)
                } else {
                    Err(format!("{method} {path}: {}\nbody: {b}", errors.join("; ")))
                }
            }
            (None, Some(b)) => Err(format!("{method} {path} takes no JSON body, got {b}")),
            (_, None) => Ok(false),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: Option<Value>,
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
    /// The bot token it carried (`Authorization: Bot …`), telling replicas apart.
    pub token: String,
}

#[derive(Clone, Debug)]
pub struct Fault {
    pub method: String,
    /// The route, with `*` for one path segment: `/channels/*/messages`.
    pub route: String,
    pub status: u16,
    pub retry_after: Option<f64>,
    pub times: usize,
    /// With a window, the fault holds for every request until then, whatever `times` says.
    pub until: Option<Instant>,
    /// Discord's JSON error code and message for a non-429 fault.
    pub code: u32,
    pub message: String,
    /// A 429 that Discord marks global (`X-RateLimit-Global`).
    pub global: bool,
    pub stall: Stall,
}

/// How a fault answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// With its status.
    No,
    /// Never: the request hangs, unhandled.
    Before,
    /// The request is carried out, then no answer comes: the client cannot know it worked.
    After,
}

impl Fault {
    fn active(&self, now: Instant) -> bool {
        match self.until {
            Some(u) => now < u,
            None => self.times > 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Interaction {
    pub id: u64,
    pub token: String,
    pub created: Instant,
    /// Extra age, for tests of expiry (an `Instant` cannot go back before the machine booted).
    pub aged: Duration,
    pub acked: bool,
    pub response: Option<Value>,
    pub response_after: Option<Duration>,
    pub original_edit: Option<Value>,
}

#[derive(Default)]
pub struct State_ {
    pub channels: Vec<Value>,
    pub messages: BTreeMap<u64, Value>,
    pub edits: HashMap<u64, usize>,
    /// (channel, nonce) → (message id, when it was first seen).
    pub nonces: HashMap<(u64, String), (u64, Instant)>,
    /// How long Discord drops a repeated nonce: a few minutes there, shorter in tests.
    pub nonce_window: Option<Duration>,
    /// Channels deleted by a test, as a person would delete them.
    pub deleted: Vec<u64>,
    pub interactions: HashMap<u64, Interaction>,
    pub requests: Vec<Recorded>,
    pub faults: Vec<Fault>,
    pub validated: usize,
    pub invalid: Vec<String>,
    pub commands: Value,
    pub identified: usize,
    /// Files uploaded with any request: (file name, content).
    pub files: Vec<(String, Vec<u8>)>,
    next_id: u64,
}

pub struct FakeDiscord {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State_>>,
    openapi: Option<Arc<OpenApi>>,
    gateway: Arc<Mutex<Option<mpsc::UnboundedSender<Value>>>>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<State_>>,
    openapi: Option<Arc<OpenApi>>,
    gateway: Arc<Mutex<Option<mpsc::UnboundedSender<Value>>>>,
    addr: SocketAddr,
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339()
}

pub fn user_json(id: u64, name: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "username": name, "discriminator": "0", "global_name": name, "avatar": null, "bot": bot, "public_flags": 0})
}

fn error(status: u16, code: u32, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn matches_route(route: &str, path: &str) -> bool {
    if route == "**" {
        // Every route that Discord's global limit covers: interaction answers are exempt.
        return !path.starts_with("/interactions/") && !path.starts_with("/webhooks/");
    }
    let a: Vec<&str> = route.split('/').collect();
    let b: Vec<&str> = path.split('/').collect();
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| *x == "*" || x == y)
}

impl State_ {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        1_100_000_000_000_000_000 + self.next_id
    }

    fn message(&mut self, channel: u64, body: &Value, author: Value) -> Value {
        let id = self.id();
        let msg = json!({
            "id": id.to_string(), "channel_id": channel.to_string(), "author": author,
            "content": body["content"].as_str().unwrap_or(""), "timestamp": now_iso(), "edited_timestamp": null,
            "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
            "attachments": [], "embeds": body["embeds"].as_array().cloned().unwrap_or_default(),
            "components": body["components"].as_array().cloned().unwrap_or_default(),
            "pinned": false, "type": 0, "flags": body["flags"].as_u64().unwrap_or(0),
            "allowed_mentions": body["allowed_mentions"].clone(), "nonce": body["nonce"].clone(),
        });
        self.messages.insert(id, msg.clone());
        msg
    }
}

/// Checks a message body against Discord's limits; Err is a 50035 message.
fn check_message(body: &Value) -> Result<(), String> {
    if let Some(c) = body["content"].as_str()
        && c.chars().count() > 2000
    {
        return Err(format!(
            "content: must be 2000 or fewer in length (got {})",
            c.chars().count()
        ));
    }
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > 10 {
        return Err("embeds: at most 10".into());
    }
    let mut total = 0;
    for e in &embeds {
        let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        if len(&e["title"]) > 256 || len(&e["description"]) > 4096 {
            return Err("embed title or description too long".into());
        }
        total += len(&e["title"]) + len(&e["description"]);
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            return Err("embed: at most 25 fields".into());
        }
        for f in &fields {
            if len(&f["name"]) > 256
                || len(&f["value"]) > 1024
                || len(&f["name"]) == 0
                || len(&f["value"]) == 0
            {
                return Err("embed field name or value length".into());
            }
            total += len(&f["name"]) + len(&f["value"]);
        }
    }
    if total > 6000 {
        return Err("embeds: more than 6000 characters in total".into());
    }
    Ok(())
}

/// The `payload_json` and the files of a multipart/form-data body.
type Multipart = (Option<Value>, Vec<(String, Vec<u8>)>);

fn multipart(headers: &HeaderMap, body: &[u8]) -> Option<Multipart> {
    let ct = headers.get("content-type")?.to_str().ok()?;
    let boundary = ct.strip_prefix("multipart/form-data; boundary=")?;
    let text = String::from_utf8_lossy(body).into_owned();
    let mut payload = None;
    let mut files = Vec::new();
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        if head.contains("name=\"payload_json\"") {
            payload = serde_json::from_str(content).ok();
        } else if let Some(f) = head.split("filename=\"").nth(1) {
            let name = f.split('"').next().unwrap_or("").to_string();
            files.push((name, content.as_bytes().to_vec()));
        }
    }
    Some((payload, files))
}

async fn rest(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/api/v10")
        .unwrap_or(uri.path())
        .to_string();
    let (json_body, files) = match multipart(&headers, &body) {
        Some(parts) => parts,
        None if body.is_empty() => (None, Vec::new()),
        None => (serde_json::from_slice(&body).ok(), Vec::new()),
    };
    if !files.is_empty() {
        s.state.lock().unwrap().files.extend(files);
    }
    let m = method.as_str().to_string();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start_matches("Bot ").to_string())
        .unwrap_or_default();
    // Validate against the OpenAPI description before anything else.
    if let Some(api) = &s.openapi {
        match api.validate(&m, &path, json_body.as_ref()) {
            Ok(true) => s.state.lock().unwrap().validated += 1,
            Ok(false) => {}
            Err(e) => s.state.lock().unwrap().invalid.push(e),
        }
    }
    let arrived = Instant::now();
    let stall = {
        let mut st = s.state.lock().unwrap();
        match st.faults.iter_mut().find(|f| {
            f.stall != Stall::No
                && f.active(arrived)
                && f.method == m
                && matches_route(&f.route, &path)
        }) {
            Some(f) => {
                f.times = f.times.saturating_sub(1);
                f.stall
            }
            None => Stall::No,
        }
    };
    if stall == Stall::Before {
        s.state.lock().unwrap().requests.push(Recorded {
            method: m,
            path,
            body: json_body,
            status: 0,
            at: arrived,
            token,
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    let mut resp = handle(&s, &m, &path, json_body.clone(), stall == Stall::After);
    if m == "POST" && matches_route("/channels/*/messages", &path) {
        // As Discord does: one bucket hash for message creates in every channel; the limit
        // itself is per channel.
        let h = resp.headers_mut();
        h.insert(
            "x-ratelimit-bucket",
            axum::http::HeaderValue::from_static("fake-message-create"),
        );
        h.insert(
            "x-ratelimit-limit",
            axum::http::HeaderValue::from_static("5"),
        );
        h.insert(
            "x-ratelimit-remaining",
            axum::http::HeaderValue::from_static("4"),
        );
        h.insert(
            "x-ratelimit-reset-after",
            axum::http::HeaderValue::from_static("1.0"),
        );
    }
    let status = resp.status().as_u16();
    s.state.lock().unwrap().requests.push(Recorded {
        method: m,
        path,
        body: json_body,
        status,
        at: arrived,
        token,
    });
    if stall == Stall::After {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    resp
}

fn handle(s: &Shared, m: &str, path: &str, body: Option<Value>, stalled: bool) -> Response {
    let mut st = s.state.lock().unwrap();
    let now = Instant::now();
    if !stalled
        && let Some(f) = st.faults.iter_mut().find(|f| {
            f.stall == Stall::No && f.active(now) && f.method == m && matches_route(&f.route, path)
        })
    {
        f.times = f.times.saturating_sub(1);
        let f = f.clone();
        return match f.retry_after {
            Some(a) if f.global => (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", format!("{}", a.ceil() as u64)),
                    ("x-ratelimit-global", "true".to_string()),
                    ("x-ratelimit-scope", "global".to_string()),
                ],
                axum::Json(json!({"message": "You are being rate limited.", "retry_after": a, "global": true})),
            )
                .into_response(),
            Some(a) => (
                StatusCode::from_u16(f.status).unwrap(),
                [
                    ("retry-after", format!("{}", a.ceil() as u64)),
                    ("x-ratelimit-scope", "user".to_string()),
                ],
                axum::Json(json!({"message": "You are being rate limited.", "retry_after": a, "global": false})),
            )
                .into_response(),
            None => error(f.status, f.code, &f.message),
        };
    }
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let body = body.unwrap_or(Value::Null);
    let bot = user_json(BOT_ID, "warroom", true);
    match (m, seg.as_slice()) {
        ("GET", ["gateway"]) | ("GET", ["gateway", "bot"]) => axum::Json(json!({
            "url": format!("ws://{}/ws", s.addr), "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        }))
        .into_response(),
        ("GET", ["oauth2", "applications", "@me"]) | ("GET", ["applications", "@me"]) => axum::Json(json!({
            "id": APP_ID.to_string(), "name": "warroom", "icon": null, "description": "", "bot_public": false,
            "bot_require_code_grant": false, "verify_key": "00", "flags": 0, "owner": user_json(1, "owner", false)
        }))
        .into_response(),
        ("PUT", ["applications", _, "guilds", _, "commands"]) | ("PUT", ["applications", _, "commands"]) => {
            let list: Vec<Value> = body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    let id = st.id();
                    c["id"] = json!(id.to_string());
                    c["application_id"] = json!(APP_ID.to_string());
                    c["version"] = json!("1");
                    c["type"] = c.get("type").cloned().unwrap_or(json!(1));
                    c["default_member_permissions"] = Value::Null;
                    c
                })
                .collect();
            st.commands = Value::Array(list.clone());
            axum::Json(Value::Array(list)).into_response()
        }
        ("GET", ["guilds", _g, "channels"]) => axum::Json(Value::Array(st.channels.clone())).into_response(),
        ("POST", ["guilds", g, "channels"]) => {
            let name = body["name"].as_str().unwrap_or("");
            if name.is_empty() || name.chars().count() > 100 {
                return error(400, 50035, "Invalid Form Body: name must be 1-100 characters");
            }
            if st.channels.len() >= 500 {
                return error(400, 30013, "Maximum number of guild channels reached (500)");
            }
            let parent = body["parent_id"].as_str().map(str::to_string);
            if let Some(p) = &parent
                && st.channels.iter().filter(|c| c["parent_id"].as_str() == Some(p)).count() >= 50
            {
                return error(400, 50035, "Invalid Form Body: category has 50 channels");
            }
            let id = st.id();
            let ch = json!({"id": id.to_string(), "type": 0, "guild_id": g, "name": name, "parent_id": parent,
                "position": st.channels.len(), "topic": body["topic"].clone(), "permission_overwrites": [], "nsfw": false});
            st.channels.push(ch.clone());
            (StatusCode::CREATED, axum::Json(ch)).into_response()
        }
        ("PUT", ["guilds", _g, "members", _u, "roles", _r])
        | ("DELETE", ["guilds", _g, "members", _u, "roles", _r]) => {
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["users", "@me", "channels"]) => {
            let id = st.id();
            let user = body["recipient_id"].as_str().unwrap_or("0").parse::<u64>().unwrap_or(0);
            let ch = json!({"id": id.to_string(), "type": 1, "recipients": [user_json(user, "someone", false)]});
            st.channels.push(ch.clone());
            axum::Json(ch).into_response()
        }
        ("POST", ["channels", c, "messages"]) => {
            let Ok(channel) = c.parse::<u64>() else { return error(404, 10003, "Unknown Channel") };
            if !st.channels.iter().any(|x| x["id"].as_str() == Some(c)) {
                return error(404, 10003, "Unknown Channel");
            }
            if let Err(e) = check_message(&body) {
                return error(400, 50035, &format!("Invalid Form Body: {e}"));
            }
            let window = st.nonce_window.unwrap_or(Duration::from_secs(5 * 60));
            if body["enforce_nonce"].as_bool() == Some(true)
                && let Some(n) = body["nonce"].as_str()
                && let Some((existing, seen)) = st.nonces.get(&(channel, n.to_string())).copied()
                && seen.elapsed() < window
            {
                let msg = st.messages[&existing].clone();
                return axum::Json(msg).into_response();
            }
            let msg = st.message(channel, &body, bot);
            if let Some(n) = body["nonce"].as_str() {
                let id: u64 = msg["id"].as_str().unwrap().parse().unwrap();
                st.nonces.insert((channel, n.to_string()), (id, Instant::now()));
            }
            axum::Json(msg).into_response()
        }
        ("GET", ["channels", c, "messages"]) => {
            if !st.channels.iter().any(|x| x["id"].as_str() == Some(c)) {
                return error(404, 10003, "Unknown Channel");
            }
            // Newest first, as Discord lists them; a listed message carries no nonce.
            let list: Vec<Value> = st
                .messages
                .values()
                .rev()
                .filter(|m| m["channel_id"].as_str() == Some(c))
                .take(50)
                .map(|m| {
                    let mut m = m.clone();
                    if let Some(o) = m.as_object_mut() {
                        o.remove("nonce");
                    }
                    m
                })
                .collect();
            axum::Json(Value::Array(list)).into_response()
        }
        ("PATCH", ["channels", c, "messages", mid]) => {
            if !st.channels.iter().any(|x| x["id"].as_str() == Some(c)) {
                return error(404, 10003, "Unknown Channel");
            }
            let Ok(mid) = mid.parse::<u64>() else { return error(404, 10008, "Unknown Message") };
            if let Err(e) = check_message(&body) {
                return error(400, 50035, &format!("Invalid Form Body: {e}"));
            }
            let Some(msg) = st.messages.get_mut(&mid) else { return error(404, 10008, "Unknown Message") };
            for k in ["content", "embeds", "components"] {
                if !body[k].is_null() {
                    msg[k] = body[k].clone();
                }
            }
            msg["edited_timestamp"] = json!(now_iso());
            let out = msg.clone();
            *st.edits.entry(mid).or_default() += 1;
            axum::Json(out).into_response()
        }
        ("PUT", ["channels", _c, "pins", mid]) | ("PUT", ["channels", _c, "messages", "pins", mid]) => {
            let Ok(mid) = mid.parse::<u64>() else { return error(404, 10008, "Unknown Message") };
            let Some(msg) = st.messages.get_mut(&mid) else { return error(404, 10008, "Unknown Message") };
            msg["pinned"] = json!(true);
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["interactions", id, token, "callback"]) => {
            let Ok(id) = id.parse::<u64>() else { return error(404, 10062, "Unknown interaction") };
            let Some(i) = st.interactions.get_mut(&id) else { return error(404, 10062, "Unknown interaction") };
            if i.token != *token {
                return error(401, 50027, "Invalid Webhook Token");
            }
            if (i.created.elapsed() + i.aged) > Duration::from_secs(15 * 60) {
                return error(401, 50027, "Invalid Webhook Token");
            }
            if i.acked {
                return error(400, 40060, "Interaction has already been acknowledged.");
            }
            if (i.created.elapsed() + i.aged) > Duration::from_secs(3) {
                return error(404, 10062, "Unknown interaction");
            }
            if let Some(d) = body["data"].as_object()
                && let Err(e) = check_message(&Value::Object(d.clone()))
            {
                return error(400, 50035, &format!("Invalid Form Body: {e}"));
            }
            i.acked = true;
            i.response_after = Some(i.created.elapsed());
            i.response = Some(body);
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["webhooks", _app, token]) => {
            // A follow-up: Discord takes one only for an interaction that was acknowledged.
            let found = st.interactions.values().find(|i| i.token == *token).cloned();
            let Some(i) = found else { return error(404, 10015, "Unknown Webhook") };
            if !i.acked {
                return error(404, 10015, "Unknown Webhook");
            }
            if let Err(e) = check_message(&body) {
                return error(400, 50035, &format!("Invalid Form Body: {e}"));
            }
            let msg = st.message(GENERAL, &body, bot);
            axum::Json(msg).into_response()
        }
        ("PATCH", ["webhooks", _app, token, "messages", "@original"]) => {
            let found = st.interactions.values_mut().find(|i| i.token == *token);
            let Some(i) = found else { return error(404, 10015, "Unknown Webhook") };
            if (i.created.elapsed() + i.aged) > Duration::from_secs(15 * 60) {
                return error(401, 50027, "Invalid Webhook Token");
            }
            if let Err(e) = check_message(&body) {
                return error(400, 50035, &format!("Invalid Form Body: {e}"));
            }
            i.original_edit = Some(body.clone());
            let msg = st.message(GENERAL, &body, bot);
            axum::Json(msg).into_response()
        }
        _ => error(404, 0, &format!("the fake Discord has no route {m} {path}")),
    }
}

async fn ws(State(s): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| gateway(s, socket))
}

async fn gateway(s: Shared, mut socket: WebSocket) {
    let send = |v: Value| WsMessage::Text(v.to_string().into());
    if socket
        .send(send(json!({"op": 10, "d": {"heartbeat_interval": 41250}})))
        .await
        .is_err()
    {
        return;
    }
    // Wait for IDENTIFY.
    loop {
        match socket.recv().await {
            Some(Ok(WsMessage::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                if v["op"] == 2 {
                    break;
                }
                if v["op"] == 6 {
                    // RESUME: this fake keeps no sessions, so the session is not resumable.
                    let _ = socket.send(send(json!({"op": 9, "d": false}))).await;
                }
                if v["op"] == 1 {
                    let _ = socket.send(send(json!({"op": 11}))).await;
                }
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    *s.gateway.lock().unwrap() = Some(tx);
    let mut seq = 1;
    let ready = json!({"op": 0, "t": "READY", "s": seq, "d": {
        "v": 10, "user": user_json(BOT_ID, "warroom", true),
        "guilds": [{"id": GUILD.to_string(), "unavailable": true}],
        "session_id": "fake-session", "resume_gateway_url": format!("ws://{}/ws", s.addr),
        "application": {"id": APP_ID.to_string(), "flags": 0}, "shard": [0, 1]
    }});
    if socket.send(send(ready)).await.is_err() {
        return;
    }
    s.state.lock().unwrap().identified += 1;
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(WsMessage::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    if v["op"] == 1 && socket.send(send(json!({"op": 11}))).await.is_err() {
                        return;
                    }
                }
                Some(Ok(WsMessage::Close(_))) => {
                    // Answer the close handshake, as Discord does, so the client need not wait.
                    let _ = socket.send(WsMessage::Close(None)).await;
                    return;
                }
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            ev = rx.recv() => match ev {
                Some(mut ev) => {
                    if ev["op"] == 0 {
                        seq += 1;
                        ev["s"] = json!(seq);
                    }
                    if socket.send(send(ev)).await.is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    }
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State_::default()));
        {
            let mut st = state.lock().unwrap();
            st.channels.push(json!({"id": CATEGORY.to_string(), "type": 4, "guild_id": GUILD.to_string(), "name": "incidents", "position": 0, "parent_id": null}));
            st.channels.push(json!({"id": GENERAL.to_string(), "type": 0, "guild_id": GUILD.to_string(), "name": "general", "position": 1, "parent_id": null}));
        }
        let openapi = OpenApi::load().map(Arc::new);
        let gateway = Arc::new(Mutex::new(None));
        let shared = Shared {
            state: state.clone(),
            openapi: openapi.clone(),
            gateway: gateway.clone(),
            addr,
        };
        let app = Router::new()
            .route("/ws", get(ws))
            .fallback(rest)
            .with_state(shared);
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeDiscord {
            addr,
            state,
            openapi,
            gateway,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (bounded) until `f` holds over the fake's state.
    pub async fn until(&self, what: &str, f: impl Fn(&State_) -> bool) {
        self.wait(what, || f(&self.state.lock().unwrap())).await
    }

    /// Waits (bounded, 30 s: generous for a loaded 2-core CI machine) until `f` holds; `f` takes
    /// the state's lock itself if it needs it.
    pub async fn wait(&self, what: &str, f: impl Fn() -> bool) {
        self.wait_up_to(what, Duration::from_secs(30), f).await
    }

    /// Waits (bounded by `limit`) until `f` holds.
    pub async fn wait_up_to(&self, what: &str, limit: Duration, f: impl Fn() -> bool) {
        let steps = (limit.as_millis() / 10).max(1);
        for _ in 0..steps {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let st = self.state.lock().unwrap();
        let recent: Vec<String> = st
            .requests
            .iter()
            .rev()
            .take(15)
            .map(|r| format!("{} {} → {}", r.method, r.path, r.status))
            .collect();
        panic!(
            "timed out waiting for: {what}\nrecent requests: {recent:#?}\ninvalid: {:#?}",
            st.invalid
        );
    }

    pub fn fault(
        &self,
        method: &str,
        route: &str,
        status: u16,
        retry_after: Option<f64>,
        times: usize,
    ) {
        self.push_fault(Fault {
            method: method.into(),
            route: route.into(),
            status,
            retry_after,
            times,
            until: None,
            code: 0,
            message: "500: Internal Server Error".into(),
            global: false,
            stall: Stall::No,
        });
    }

    /// A fault for every matching request during `for_`, answered as given.
    pub fn fault_for(
        &self,
        method: &str,
        route: &str,
        status: u16,
        code: u32,
        message: &str,
        for_: Duration,
    ) {
        self.push_fault(Fault {
            method: method.into(),
            route: route.into(),
            status,
            retry_after: None,
            times: 0,
            until: Some(Instant::now() + for_),
            code,
            message: message.into(),
            global: false,
            stall: Stall::No,
        });
    }

    /// A 429 (not global) asking for `retry_after` seconds on one route, during `for_`.
    pub fn limited_for(&self, method: &str, route: &str, retry_after: f64, for_: Duration) {
        self.push_fault(Fault {
            method: method.into(),
            route: route.into(),
            status: 429,
            retry_after: Some(retry_after),
            times: 0,
            until: Some(Instant::now() + for_),
            code: 0,
            message: String::new(),
            global: false,
            stall: Stall::No,
        });
    }

    /// A global 429 asking for `retry_after` seconds, for every request during `for_`.
    pub fn global_429_for(&self, retry_after: f64, for_: Duration) {
        for method in ["GET", "POST", "PATCH", "PUT", "DELETE"] {
            self.push_fault(Fault {
                method: method.into(),
                route: "**".into(),
                status: 429,
                retry_after: Some(retry_after),
                times: 0,
                until: Some(Instant::now() + for_),
                code: 0,
                message: String::new(),
                global: true,
                stall: Stall::No,
            });
        }
    }

    /// The next `times` matching requests get no answer (`Stall::Before`), or are carried out
    /// and then get none (`Stall::After`).
    pub fn stall(&self, method: &str, route: &str, how: Stall, times: usize) {
        self.push_fault(Fault {
            method: method.into(),
            route: route.into(),
            status: 0,
            retry_after: None,
            times,
            until: None,
            code: 0,
            message: String::new(),
            global: false,
            stall: how,
        });
    }

    fn push_fault(&self, f: Fault) {
        self.state.lock().unwrap().faults.push(f);
    }

    /// Deletes a channel, as a person with the rights would.
    pub fn delete_channel(&self, id: u64) {
        let mut st = self.state.lock().unwrap();
        st.channels
            .retain(|c| c["id"].as_str() != Some(&id.to_string()));
        st.deleted.push(id);
    }

    /// Message-create requests (any outcome) that arrived in [from, to).
    pub fn creates_between(&self, from: Instant, to: Instant) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.method == "POST" && matches_route("/channels/*/messages", &r.path))
            .filter(|r| r.at >= from && r.at < to)
            .count()
    }

    /// Every message's content, wherever it was posted (channels, DMs, follow-ups).
    pub fn contents(&self) -> Vec<(u64, String)> {
        self.state
            .lock()
            .unwrap()
            .messages
            .values()
            .map(|m| {
                (
                    m["channel_id"].as_str().unwrap_or("0").parse().unwrap_or(0),
                    m["content"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Makes the next command expire before the bot can answer it (Discord's 3 s).
    pub fn command_expired(
        &self,
        user: (u64, &str),
        channel: u64,
        name: &str,
        options: Value,
    ) -> u64 {
        let id = self.command(user, channel, name, options);
        if let Some(i) = self.state.lock().unwrap().interactions.get_mut(&id) {
            i.aged = Duration::from_secs(4);
        }
        id
    }

    fn dispatch(&self, t: &str, d: Value) {
        let tx = self
            .gateway
            .lock()
            .unwrap()
            .clone()
            .expect("the bot is connected");
        tx.send(json!({"op": 0, "t": t, "d": d}))
            .expect("gateway open");
    }

    /// Asks the bot to reconnect (gateway op 7), as Discord does during maintenance.
    pub fn ask_reconnect(&self) {
        let tx = self
            .gateway
            .lock()
            .unwrap()
            .clone()
            .expect("the bot is connected");
        tx.send(json!({"op": 7, "d": null})).expect("gateway open");
    }

    fn member(user: u64, name: &str, roles: &[u64]) -> Value {
        json!({"user": user_json(user, name, false), "roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "joined_at": now_iso(), "deaf": false, "mute": false, "flags": 0, "pending": false, "permissions": "2147483647",
            "nick": null, "avatar": null})
    }

    fn new_interaction(&self) -> (u64, String) {
        let mut st = self.state.lock().unwrap();
        let id = st.id();
        let token = format!("tok-{id}");
        st.interactions.insert(
            id,
            Interaction {
                id,
                token: token.clone(),
                created: Instant::now(),
                aged: Duration::ZERO,
                acked: false,
                response: None,
                response_after: None,
                original_edit: None,
            },
        );
        (id, token)
    }

    fn interaction_base(
        &self,
        id: u64,
        token: &str,
        kind: u8,
        user: (u64, &str),
        channel: u64,
    ) -> Value {
        json!({"id": id.to_string(), "application_id": APP_ID.to_string(), "type": kind, "token": token, "version": 1,
            "guild_id": GUILD.to_string(), "channel_id": channel.to_string(), "channel": {"id": channel.to_string(), "type": 0},
            "member": Self::member(user.0, user.1, &[]), "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
            "authorizing_integration_owners": {"0": GUILD.to_string()}, "context": 0, "app_permissions": "2147483647",
            "attachment_size_limit": 26214400})
    }

    /// Injects a slash command; `options` is Discord's option list for it.
    pub fn command(&self, user: (u64, &str), channel: u64, name: &str, options: Value) -> u64 {
        let (id, token) = self.new_interaction();
        let mut d = self.interaction_base(id, &token, 2, user, channel);
        d["data"] = json!({"id": "1", "name": name, "type": 1, "options": options, "guild_id": GUILD.to_string()});
        self.dispatch("INTERACTION_CREATE", d);
        id
    }

    /// Injects an autocomplete request; `options` marks the focused option.
    pub fn autocomplete(&self, user: (u64, &str), channel: u64, name: &str, options: Value) -> u64 {
        let (id, token) = self.new_interaction();
        let mut d = self.interaction_base(id, &token, 4, user, channel);
        d["data"] = json!({"id": "1", "name": name, "type": 1, "options": options, "guild_id": GUILD.to_string()});
        self.dispatch("INTERACTION_CREATE", d);
        id
    }

    /// Injects a button press on a message.
    pub fn press(&self, user: (u64, &str), message: &Value, custom_id: &str) -> u64 {
        let (id, token) = self.new_interaction();
        let channel: u64 = message["channel_id"].as_str().unwrap().parse().unwrap();
        let mut d = self.interaction_base(id, &token, 3, user, channel);
        d["data"] = json!({"custom_id": custom_id, "component_type": 2});
        d["message"] = message.clone();
        self.dispatch("INTERACTION_CREATE", d);
        id
    }

    /// Waits for the interaction's first response and returns it.
    pub async fn response(&self, id: u64) -> Value {
        self.until("an interaction response", |s| {
            s.interactions[&id].response.is_some()
        })
        .await;
        self.state.lock().unwrap().interactions[&id]
            .response
            .clone()
            .unwrap()
    }

    /// Waits for the interaction's first response and returns its message text.
    pub async fn reply(&self, id: u64) -> String {
        self.response(id).await["data"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn messages_in(&self, channel: u64) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .messages
            .values()
            .filter(|m| m["channel_id"].as_str() == Some(&channel.to_string()))
            .cloned()
            .collect()
    }

    pub fn channel_named(&self, prefix: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .channels
            .iter()
            .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .cloned()
    }

    /// Whether bodies are being checked against the OpenAPI description (it is off, said
    /// aloud, only outside CI when `shared/` is not beside the repository).
    pub fn validating(&self) -> bool {
        self.openapi.is_some()
    }

    /// Fails the test on any invalid body, and, when validation is on, on fewer than `min`
    /// validated bodies. Says how many were checked.
    pub fn assert_validated_at_least(&self, min: usize) {
        let n = self.assert_valid();
        if self.validating() {
            assert!(
                n >= min,
                "validated only {n} bodies, expected at least {min}"
            );
        }
    }

    /// Fails the test on any invalid body, and says how many were checked.
    pub fn assert_valid(&self) -> usize {
        let st = self.state.lock().unwrap();
        assert!(
            st.invalid.is_empty(),
            "request bodies that fail Discord's OpenAPI description:\n{:#?}",
            st.invalid
        );
        if self.openapi.is_some() {
            let total = SUITE_VALIDATED
                .fetch_add(st.validated, std::sync::atomic::Ordering::SeqCst)
                + st.validated;
            // Written to the stderr handle, not with eprintln!, so that the figure shows in the
            // test output even for a passing test.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "validated {} request bodies against Discord's OpenAPI description ({total} in this suite so far)",
                st.validated
            );
        }
        st.validated
    }
}
