//! The CLI's side of the HTTP API: `trigger`, `cancel` and `retry` talk to
//! the running host at `--listen` with the admin token (`WASMCRON_TOKEN`,
//! `--token-file`, or STATE/token).

use std::process::ExitCode;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{FAILED, Globals, RUNTIME_FAILURE};

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// Why a request got no answer the command can use.
#[derive(Debug)]
pub enum Failure {
    /// Nothing listens at the address.
    NoHost {
        base: String,
        error: String,
    },
    /// The host refused, with its error.
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    Other(anyhow::Error),
}

impl Failure {
    /// Prints the failure for a person, and the exit code: 1 when the host
    /// refused, 3 when no host answered.
    pub fn report(self, job_hint: Option<&str>) -> ExitCode {
        match self {
            Failure::NoHost { base, error } => {
                eprintln!("error: no wasmcron host answers at {base} ({error})");
                eprintln!("  start one with `wasmcron run` (it listens on --listen), or pass the host's --listen ADDR");
                if let Some(job) = job_hint {
                    eprintln!("  to run the job here and now without a host: `wasmcron once {job}`");
                }
                ExitCode::from(RUNTIME_FAILURE)
            }
            Failure::Refused { status, code, message } => {
                eprintln!("error: {message} ({} {code})", status.as_u16());
                ExitCode::from(FAILED)
            }
            Failure::Other(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(RUNTIME_FAILURE)
            }
        }
    }
}

impl Client {
    pub fn new(globals: &Globals) -> anyhow::Result<Client> {
        let token = match globals.supplied_token()? {
            Some(token) => token,
            None => admin_token_file(&globals.state)?,
        };
        Ok(Client { base: base_url(&globals.listen), token, http: reqwest::Client::new() })
    }

    /// Sends a request; the answer's status, `Location` and JSON body when
    /// it is a success.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, Value), Failure> {
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token).query(query).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|error| {
            if error.is_connect() {
                Failure::NoHost { base: self.base.clone(), error: root_cause(&error) }
            } else {
                Failure::Other(anyhow::Error::new(error).context(format!("asking the host at {}", self.base)))
            }
        })?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("the host at {} answered {status} with no JSON", self.base))
            .map_err(Failure::Other)?;
        if status.is_success() {
            return Ok((status, body));
        }
        let text = |field: &str| body["error"][field].as_str().unwrap_or("").to_owned();
        Err(Failure::Refused { status, code: text("code"), message: text("message") })
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(Method::GET, path, &[], &[], Vec::new()).await.map(|(_, body)| body)
    }
}

/// The admin token a host wrote to `STATE/token` at its first start.
fn admin_token_file(state: &std::path::Path) -> anyhow::Result<String> {
    let path = state.join(crate::api::auth::ADMIN_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the API token {}: a host writes it at its first start; pass the host's --state DIR \
             (or --token-file FILE, or set WASMCRON_TOKEN)",
            path.display()
        )
    })?;
    crate::api::auth::validate(&text, &path.display().to_string())
}

/// `http://ADDR`, with an unspecified address (`0.0.0.0`, `[::]`) reached on loopback.
fn base_url(listen: &str) -> String {
    let listen = match listen.parse::<std::net::SocketAddr>() {
        Ok(address) if address.ip().is_unspecified() => {
            let loopback: std::net::IpAddr = if address.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(loopback, address.port()).to_string()
        }
        _ => listen.to_owned(),
    };
    format!("http://{listen}")
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        assert_eq!(super::base_url("0.0.0.0:7878"), "http://127.0.0.1:7878");
        assert_eq!(super::base_url("[::]:80"), "http://[::1]:80");
        assert_eq!(super::base_url("127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(super::base_url("example.org:7878"), "http://example.org:7878");
    }
}
