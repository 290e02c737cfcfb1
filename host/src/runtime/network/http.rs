//! Outbound `wasi:http`: the host's `send_request`. Each request — and so
//! each redirect hop a guest follows, which is a request of its own — is
//! checked against the grants, its host name resolved by the host, every
//! address checked (`private`), and the connection made to a checked
//! address; TLS is rustls with the web roots and the job's `ca`; the
//! guest's timeouts are capped by `[network] timeouts`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::{NetGuard, host_of, unreachable_reason};
use crate::config::network::{Timeouts, parse_ip, read_ca};
use crate::config::{Network, Scheme};

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Sent = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The `wasi:http` hooks of one run.
pub(crate) struct HttpHooks {
    pub guard: Arc<NetGuard>,
}

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> Sent {
        let guard = self.guard.clone();
        Box::new(async move { send(&guard, request, options).await })
    }
}

/// A request's destination, as the guest named it.
struct Destination {
    scheme: Scheme,
    /// Lower case; an IPv6 literal keeps its brackets.
    host: String,
    port: u16,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

fn destination(uri: &http::Uri) -> Result<Destination, Error> {
    let (scheme, default_port) = match uri.scheme_str() {
        Some("http") => (Scheme::Http, 80),
        Some("https") => (Scheme::Https, 443),
        _ => return Err(Error::HttpProtocolError),
    };
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(Error::HttpRequestUriInvalid);
    }
    Ok(Destination { scheme, host, port: authority.port_u16().unwrap_or(default_port) })
}

async fn send(
    guard: &NetGuard,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let (mut sender, connection, timeouts) = match open(guard, request.uri(), options).await {
        Ok(opened) => opened,
        Err(error) => return Err(unsent(request, error).await),
    };
    // Sent to the origin itself: the request line carries only the path.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;

    // The connection is driven beside the exchange, and handed to the
    // caller to keep driving while the guest reads the body.
    let driver = tokio::spawn(async move { connection.await.map_err(Error::from) });
    let io: IoFuture = Box::new(async move { driver.await.unwrap_or(Ok(())) });
    let request = request.map(|body| Outgoing(Some(body)));
    let response = tokio::time::timeout(timeouts.first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    Ok((response.map(|body| Paced::new(body, timeouts.between_bytes).boxed_unsync()), io))
}

type Connection = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, Outgoing>;

/// Checks the destination of `uri` and opens a connection to it: the
/// grant, the host's own name lookup, the addresses, TCP, TLS, HTTP/1.1.
async fn open(
    guard: &NetGuard,
    uri: &http::Uri,
    options: Option<RequestOptions>,
) -> Result<(hyper::client::conn::http1::SendRequest<Outgoing>, Connection, Timeouts), Error> {
    let to = destination(uri)?;
    if let Some(reason) = guard.refusal(to.scheme, &to.host, to.port) {
        guard.deny(to.to_string(), &reason);
        return Err(Error::HttpRequestDenied);
    }
    let network = guard.network().expect("a grant was found, so the job has [network]");
    let timeouts = clamp(options, network.timeouts);

    let addresses = resolve(&to, timeouts.connect).await?;
    let (reachable, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addresses.into_iter().partition(|address| network.reachable(address.ip()));
    if reachable.is_empty() {
        let refused: Vec<IpAddr> = refused.iter().map(SocketAddr::ip).collect();
        guard.deny(to.to_string(), &unreachable_reason(&to.host, &refused));
        return Err(Error::HttpRequestDenied);
    }

    let stream = tokio::time::timeout(timeouts.connect, connect(&reachable))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let stream: Box<dyn Stream> = match to.scheme {
        Scheme::Https => {
            let name = rustls::pki_types::ServerName::try_from(to.host.trim_matches(['[', ']']).to_owned())
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            let config = tls_config(network).map_err(|e| Error::InternalError(Some(e)))?;
            let tls = tokio_rustls::TlsConnector::from(config);
            let connected = tokio::time::timeout(timeouts.connect, tls.connect(name, stream))
                .await
                .map_err(|_| Error::ConnectionTimeout)?;
            Box::new(connected.map_err(Error::Tls)?)
        }
        _ => Box::new(stream),
    };
    let (sender, connection) = tokio::time::timeout(
        timeouts.connect,
        hyper::client::conn::http1::Builder::new().handshake::<_, Outgoing>(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    Ok((sender, connection, timeouts))
}

/// How long the body of a request that was never sent is read, at most,
/// before its error is answered; and how much of it.
const UNSENT_BODY_WAIT: Duration = Duration::from_secs(5);
const UNSENT_BODY_MAX: usize = 1 << 20;

/// Answers a request that was refused or could not be sent with `error`.
/// Its body is read (and dropped) first, up to a bound: a guest writing
/// the body before it awaits the response would otherwise see its body
/// stream break, and never learn why (`http-request-denied`, a TLS error).
async fn unsent(request: http::Request<WasiBody>, error: Error) -> Error {
    drain(request.into_body()).await;
    error
}

/// Reads what is left of a guest's request body and drops it, within bounds.
async fn drain(mut body: WasiBody) {
    let rest = async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > UNSENT_BODY_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(UNSENT_BODY_WAIT, rest).await;
}

/// A guest's request body on its way to the server. hyper drops a request
/// body once the response has come, and a server may answer before it has
/// read the whole request (an empty one included): the rest of the body is
/// then drained, so the guest's writes and `finish` still succeed and it
/// goes on to read the response.
struct Outgoing(Option<WasiBody>);

impl Body for Outgoing {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        if let Some(body) = self.0.take()
            && !body.is_end_stream()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(drain(body));
        }
    }
}

/// The guest's timeouts, none longer than the declared caps; the caps where
/// it asked for none.
fn clamp(options: Option<RequestOptions>, caps: Timeouts) -> Timeouts {
    let options = options.unwrap_or_default();
    let capped = |asked: Option<Duration>, cap: Duration| asked.map_or(cap, |asked| asked.min(cap));
    Timeouts {
        connect: capped(options.connect_timeout, caps.connect),
        first_byte: capped(options.first_byte_timeout, caps.first_byte),
        between_bytes: capped(options.between_bytes_timeout, caps.between_bytes),
    }
}

async fn resolve(to: &Destination, within: Duration) -> Result<Vec<SocketAddr>, Error> {
    if let Some(ip) = parse_ip(&to.host) {
        return Ok(vec![SocketAddr::new(ip, to.port)]);
    }
    let lookup = tokio::net::lookup_host((to.host.as_str(), to.port));
    match tokio::time::timeout(within, lookup).await {
        Err(_) => Err(Error::DnsTimeout),
        Ok(Err(error)) => Err(Error::DnsError { rcode: Some(error.to_string()), info_code: None }),
        Ok(Ok(addresses)) => {
            Ok(addresses.map(|address| SocketAddr::new(address.ip().to_canonical(), address.port())).collect())
        }
    }
}

/// Connects to the first of `addresses` that answers.
async fn connect(addresses: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => {
                tracing::debug!(%address, host = host_of(address.ip()), "connect failed: {error}");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// rustls with Mozilla's roots; and the job's `ca` if it names one (read
/// at each request, so a renewed file is picked up without a reload).
fn tls_config(network: &Network) -> Result<Arc<rustls::ClientConfig>, String> {
    static WEB: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let build = |extra: Vec<rustls::pki_types::CertificateDer<'static>>| -> Result<_, String> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for cert in extra {
            roots.add(cert).map_err(|e| format!("a certificate of [network] ca is not usable: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    };
    match &network.ca {
        None => Ok(WEB.get_or_init(|| build(Vec::new()).expect("the web roots make a valid config")).clone()),
        Some(path) => build(read_ca(path)?),
    }
}

/// A response body that fails if the server pauses longer than `gap`
/// between frames.
struct Paced {
    body: hyper::body::Incoming,
    gap: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Paced {
    fn new(body: hyper::body::Incoming, gap: Duration) -> Self {
        Paced { body, gap, timer: Box::pin(tokio::time::sleep(gap)) }
    }
}

impl Body for Paced {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.gap;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Error::from(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
