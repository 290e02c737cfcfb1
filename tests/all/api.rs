//! A host's HTTP API as the end-to-end tests call it: the real binary's
//! loopback address, its two tokens read from its state folder, reqwest.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::daemon::Host;
use crate::support::{Sandbox, wait_for};

/// A host's API, with its two tokens.
pub struct Api {
    pub base: String,
    pub admin: String,
    pub read: String,
    pub runtime: tokio::runtime::Runtime,
    pub http: reqwest::Client,
}

/// An answer: status, headers, the body as text and as JSON (null if it is not).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Api {
    /// Waits until the host answers `/readyz` with 200.
    pub fn ready(sandbox: &Sandbox, host: &Host) -> Api {
        Api::ready_with(sandbox, host, None)
    }

    /// `ready`, for a host given its admin token rather than writing one.
    pub fn ready_with(sandbox: &Sandbox, host: &Host, admin: Option<&str>) -> Api {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let token = |file: &str| {
            let path = sandbox.state().join(file);
            wait_for(&format!("{}", path.display()), Duration::from_secs(30), || path.exists());
            std::fs::read_to_string(path).unwrap().trim().to_owned()
        };
        let api = Api {
            base: format!("http://{}", host.listen),
            admin: admin.map(str::to_owned).unwrap_or_else(|| token("token")),
            read: token("token.read"),
            runtime,
            http: reqwest::Client::new(),
        };
        wait_for("the host to be ready", Duration::from_secs(60), || {
            api.call(Method::GET, "/readyz", None, Vec::new(), &[]).is_ok_and(|a| a.status == StatusCode::OK)
        });
        api
    }

    pub fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> reqwest::Result<Answer> {
        self.runtime.block_on(send(&self.http, &self.base, method, path, token, body, headers))
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Some(&self.admin), Vec::new(), &[]).unwrap()
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Answer {
        self.call(Method::POST, path, Some(&self.admin), body.to_vec(), &[]).unwrap()
    }

    pub fn run(&self, id: i64) -> Value {
        let answer = self.get(&format!("/api/v1/runs/{id}"));
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body
    }

    pub fn wait_status(&self, id: i64, what: impl Fn(&str) -> bool, within: Duration) -> Value {
        wait_for(&format!("run {id}'s status"), within, || what(self.run(id)["status"].as_str().unwrap()));
        self.run(id)
    }
}

pub async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> reqwest::Result<Answer> {
    let mut request = http.request(method, format!("{base}{path}")).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let (status, headers) = (response.status(), response.headers().clone());
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer { status, headers, text, body })
}
