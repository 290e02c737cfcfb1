//! `[network]`: the outbound grants of one job, parsed and checked at load.
//!
//! A grant is `scheme://host[:port]`: the scheme is `http`, `https` or
//! `tcp`; the host is a name, a name under a leading `*.` label, an IP
//! address, or a CIDR range; `http` and `https` default to ports 80 and
//! 443, `tcp` needs one. Paths, queries and user info are refused: a grant
//! names an origin, never a resource. Whether an address is public, and
//! which non-public ranges a job may reach anyway (`private`), is decided
//! here too, so the runtime only asks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::error::ConfigError;
use crate::units;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// `[network]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub private: Vec<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<String>,
    pub first_byte: Option<String>,
    pub between_bytes: Option<String>,
}

/// What a job may reach. No `[network]` table means no network at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub allow: Vec<Grant>,
    /// Non-public ranges the grants may reach.
    pub private: Vec<IpNet>,
    /// Caps on the timeouts a guest may ask for; also what it gets if it asks for none.
    pub timeouts: Timeouts,
    /// Extra trust roots (PEM) for TLS, beside the standard web roots.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

/// One `allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scheme: Scheme,
    pub host: GrantHost,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantHost {
    /// Exactly this name (lower case, no trailing dot).
    Name(String),
    /// Any name ending in this suffix, which starts with a dot: `*.example.org`.
    Subdomains(String),
    /// An address or a range of them; a single address is a /32 or /128.
    Net(IpNet),
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tcp => "tcp",
        }
    }

    fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Http => Some(80),
            Scheme::Https => Some(443),
            Scheme::Tcp => None,
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            GrantHost::Name(name) => name.clone(),
            GrantHost::Subdomains(suffix) => format!("*{suffix}"),
            GrantHost::Net(net) if net.prefix_len() == net.max_prefix_len() => match net.addr() {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            },
            GrantHost::Net(IpNet::V6(net)) => format!("[{net}]"),
            GrantHost::Net(net) => net.to_string(),
        };
        write!(f, "{}://{host}:{}", self.scheme.as_str(), self.port)
    }
}

impl Grant {
    /// Whether this grant lets `scheme` reach the named `host` (lower case,
    /// as a guest gave it) on `port`. Names match names, never addresses.
    pub fn covers_name(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.scheme == scheme
            && self.port == port
            && match &self.host {
                GrantHost::Name(name) => name == host,
                GrantHost::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
                GrantHost::Net(_) => false,
            }
    }

    /// Whether this grant lets `scheme` reach the address `ip` on `port`.
    pub fn covers_ip(&self, scheme: Scheme, ip: IpAddr, port: u16) -> bool {
        self.scheme == scheme && self.port == port && matches!(&self.host, GrantHost::Net(net) if net.contains(&ip))
    }
}

impl Network {
    /// The grant letting `scheme` reach `host` (a name, or an address
    /// literal with or without brackets) on `port`, if one does.
    pub fn grant_for(&self, scheme: Scheme, host: &str, port: u16) -> Option<&Grant> {
        match parse_ip(host) {
            Some(ip) => self.allow.iter().find(|g| g.covers_ip(scheme, ip, port)),
            None => {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                self.allow.iter().find(|g| g.covers_name(scheme, &host, port))
            }
        }
    }

    /// The ports of the `tcp://` grants naming `host` (a name as a guest
    /// looked it up).
    pub fn tcp_ports_for_name<'a>(&'a self, host: &str) -> impl Iterator<Item = u16> + 'a {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow.iter().filter(move |g| g.covers_name(Scheme::Tcp, &host, g.port)).map(|g| g.port)
    }

    /// Whether any grant uses `scheme`.
    pub fn grants(&self, scheme: Scheme) -> bool {
        self.allow.iter().any(|g| g.scheme == scheme)
    }

    /// Whether an address may be connected to at all: public ones may, and
    /// non-public ones only inside a `private` range.
    pub fn reachable(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        is_public(ip) || self.private.iter().any(|net| net.contains(&ip))
    }
}

/// `host` as an address: `10.0.0.1`, `::1` or `[::1]`.
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse().ok()
}

/// Whether `ip` is a public unicast address. Everything else — loopback,
/// private (RFC 1918, unique local), link-local (where cloud metadata
/// services such as 169.254.169.254 live), shared (CGNAT), documentation,
/// benchmarking, multicast, reserved and unspecified — is not.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const NOT_PUBLIC: &[(u32, u8)] = &[
        (0x0000_0000, 8),  // 0.0.0.0/8, "this network"
        (0x0a00_0000, 8),  // 10.0.0.0/8
        (0x6440_0000, 10), // 100.64.0.0/10, shared address space (CGNAT)
        (0x7f00_0000, 8),  // 127.0.0.0/8, loopback
        (0xa9fe_0000, 16), // 169.254.0.0/16, link-local and cloud metadata
        (0xac10_0000, 12), // 172.16.0.0/12
        (0xc000_0000, 24), // 192.0.0.0/24, IETF protocol assignments
        (0xc000_0200, 24), // 192.0.2.0/24, documentation
        (0xc058_6300, 24), // 192.88.99.0/24, 6to4 relay anycast
        (0xc0a8_0000, 16), // 192.168.0.0/16
        (0xc612_0000, 15), // 198.18.0.0/15, benchmarking
        (0xc633_6400, 24), // 198.51.100.0/24, documentation
        (0xcb00_7100, 24), // 203.0.113.0/24, documentation
        (0xe000_0000, 4),  // 224.0.0.0/4, multicast
        (0xf000_0000, 4),  // 240.0.0.0/4, reserved, and broadcast
    ];
    let bits = u32::from(ip);
    !NOT_PUBLIC.iter().any(|&(net, len)| bits >> (32 - len) == net >> (32 - len))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    const NOT_PUBLIC: &[(u128, u8)] = &[
        (0, 127),                                        // :: and ::1
        (0x0000_0000_0000_0000_0000_ffff_0000_0000, 96), // IPv4-mapped (canonicalised first; any left is odd)
        (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96), // 64:ff9b::/96, NAT64: could reach any IPv4
        (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48), // 64:ff9b:1::/48, local NAT64
        (0x0100_0000_0000_0000_0000_0000_0000_0000, 64), // 100::/64, discard
        (0x2001_0000_0000_0000_0000_0000_0000_0000, 23), // 2001::/23, IETF protocol assignments
        (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // 2001:db8::/32, documentation
        (0x2002_0000_0000_0000_0000_0000_0000_0000, 16), // 2002::/16, 6to4: could reach any IPv4
        (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),  // fc00::/7, unique local (fd00:ec2::254 is AWS metadata)
        (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10), // fe80::/10, link-local
        (0xff00_0000_0000_0000_0000_0000_0000_0000, 8),  // ff00::/8, multicast
    ];
    let bits = u128::from(ip);
    !NOT_PUBLIC.iter().any(|&(net, len)| bits >> (128 - len) == net >> (128 - len))
}

/// Validates `[network]` from `file` (whose folder `base` relative paths start from).
pub fn validate(file: &Path, base: &Path, raw: RawNetwork) -> Result<Network, ConfigError> {
    let mut allow: Vec<Grant> = Vec::with_capacity(raw.allow.len());
    for (i, text) in raw.allow.iter().enumerate() {
        let field = format!("network.allow[{i}]");
        let grant = parse_grant(text).map_err(|reason| ConfigError::invalid(file, &field, text, reason))?;
        if !allow.contains(&grant) {
            allow.push(grant);
        }
    }
    let mut private = Vec::with_capacity(raw.private.len());
    for (i, text) in raw.private.iter().enumerate() {
        let net = parse_net(text).ok_or_else(|| {
            ConfigError::invalid(
                file,
                &format!("network.private[{i}]"),
                text,
                "is not an address or CIDR range; write it like \"10.20.0.0/16\", \"127.0.0.1\" or \"fd00::/8\"",
            )
        })?;
        private.push(net);
    }
    let timeout = |field: &str, value: &Option<String>, default: Duration| match value {
        Some(text) => {
            let field = format!("network.timeouts.{field}");
            let duration = units::parse_duration(text).map_err(|e| ConfigError::invalid(file, &field, text, e))?;
            if duration.is_zero() {
                return Err(ConfigError::invalid(file, &field, text, "must be longer than 0"));
            }
            Ok(duration)
        }
        None => Ok(default),
    };
    let timeouts = Timeouts {
        connect: timeout("connect", &raw.timeouts.connect, DEFAULT_CONNECT_TIMEOUT)?,
        first_byte: timeout("first_byte", &raw.timeouts.first_byte, DEFAULT_FIRST_BYTE_TIMEOUT)?,
        between_bytes: timeout("between_bytes", &raw.timeouts.between_bytes, DEFAULT_BETWEEN_BYTES_TIMEOUT)?,
    };
    let ca = match &raw.ca {
        Some(text) => {
            let path = base.join(text);
            check_ca(&path).map_err(|reason| ConfigError::invalid(file, "network.ca", text, reason))?;
            Some(path)
        }
        None => None,
    };
    Ok(Network { allow, private, timeouts, ca })
}

/// Reads the PEM certificates of a `ca` file.
pub fn read_ca(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read PEM certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()));
    }
    Ok(certs)
}

fn check_ca(path: &Path) -> Result<(), String> {
    read_ca(path).map(drop).map_err(|e| format!("{e}; the path is relative to the declaration"))
}

fn parse_net(text: &str) -> Option<IpNet> {
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    bare.parse::<IpNet>().ok().map(|net| net.trunc()).or_else(|| bare.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `scheme://host[:port]` → a grant, or why not, with the fix.
pub fn parse_grant(text: &str) -> Result<Grant, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("has no scheme; write it as \"https://api.example.com\" or \"tcp://db.internal:5432\"".into());
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        "tcp" => Scheme::Tcp,
        other => return Err(format!("has the scheme {other:?}; a grant's scheme is http, https or tcp")),
    };
    if rest.contains(['?', '#', '@']) {
        return Err(
            "names more than an origin; a grant is scheme://host[:port], without user, query or fragment".into()
        );
    }
    let (host, port) = split_port(rest)?;
    let port = match (port, scheme.default_port()) {
        (Some(port), _) | (None, Some(port)) => port,
        (None, None) => return Err("needs a port: tcp grants name one, like \"tcp://smtp.example.com:587\"".into()),
    };
    let host = parse_grant_host(host)?;
    Ok(Grant { scheme, host, port })
}

/// `host[:port]`, where host may be `[v6]`, `[v6/len]` or `v4/len`.
fn split_port(rest: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if rest.starts_with('[') {
        match rest.find(']') {
            Some(end) => match rest[end + 1..].strip_prefix(':') {
                Some(port) => (&rest[..=end], Some(port)),
                None if end + 1 == rest.len() => (rest, None),
                None => return Err(path_refused()),
            },
            None => return Err("has an unclosed '[' in its host".into()),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ if text.contains('/') => return Err(path_refused()),
            _ => return Err(format!("has the port {text:?}; a port is a number from 1 to 65535")),
        },
        None => None,
    };
    Ok((host, port))
}

fn path_refused() -> String {
    "has a path; a grant names an origin (scheme://host[:port]) and covers every path on it: drop the path".into()
}

fn parse_grant_host(host: &str) -> Result<GrantHost, String> {
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.contains('/') || host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
        return match parse_net(host) {
            Some(net) => Ok(GrantHost::Net(net)),
            None if host.contains('/') && !host.starts_with('[') && host.parse::<IpNet>().is_err() => {
                Err(path_refused())
            }
            None => Err(format!("has the host {host:?}, which is not an address or CIDR range")),
        };
    }
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    let (name, wildcard) = match lower.strip_prefix("*.") {
        Some(name) => (name, true),
        None => (lower.as_str(), false),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.contains('*') {
        return Err("uses '*' other than as the whole first label; write \"*.example.org\" for its subdomains".into());
    }
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("has the host {host:?}, which is not a valid DNS name"));
    }
    Ok(if wildcard { GrantHost::Subdomains(format!(".{name}")) } else { GrantHost::Name(name.to_owned()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(text: &str) -> Grant {
        parse_grant(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn grants_parse_with_default_ports() {
        assert_eq!(grant("https://api.example.com").to_string(), "https://api.example.com:443");
        assert_eq!(grant("http://API.Example.com.").to_string(), "http://api.example.com:80");
        assert_eq!(grant("https://*.example.org:8443").to_string(), "https://*.example.org:8443");
        assert_eq!(grant("tcp://smtp.example.com:587").to_string(), "tcp://smtp.example.com:587");
        assert_eq!(grant("tcp://10.20.0.0/16:5432").to_string(), "tcp://10.20.0.0/16:5432");
        assert_eq!(grant("tcp://10.20.1.2/16:5432").to_string(), "tcp://10.20.0.0/16:5432");
        assert_eq!(grant("http://127.0.0.1:8080").to_string(), "http://127.0.0.1:8080");
        assert_eq!(grant("http://[::1]:8080").to_string(), "http://[::1]:8080");
        assert_eq!(grant("tcp://[fd00::/8]:25").to_string(), "tcp://[fd00::/8]:25");
    }

    #[test]
    fn bad_grants_say_why() {
        for (text, says) in [
            ("api.example.com", "has no scheme"),
            ("ftp://example.com", "scheme \"ftp\""),
            ("https://example.com/hooks/1", "has a path"),
            ("https://example.com:443/x", "has a path"),
            ("https://example.com?x=1", "more than an origin"),
            ("https://user@example.com", "more than an origin"),
            ("tcp://smtp.example.com", "needs a port"),
            ("https://example.com:0", "the port \"0\""),
            ("https://example.com:http", "the port \"http\""),
            ("https://api.*.example.com", "'*'"),
            ("https://*example.com", "'*'"),
            ("https://exa mple.com", "not a valid DNS name"),
            ("https://", "has no host"),
            ("http://[::1", "unclosed"),
        ] {
            let error = parse_grant(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn names_match_names_and_subdomains_only_below() {
        let network = Network {
            allow: vec![
                grant("https://api.example.com"),
                grant("https://*.example.org"),
                grant("tcp://10.0.0.0/8:5432"),
            ],
            private: vec![],
            timeouts: Timeouts {
                connect: DEFAULT_CONNECT_TIMEOUT,
                first_byte: DEFAULT_FIRST_BYTE_TIMEOUT,
                between_bytes: DEFAULT_BETWEEN_BYTES_TIMEOUT,
            },
            ca: None,
        };
        assert!(network.grant_for(Scheme::Https, "API.example.com", 443).is_some());
        assert!(network.grant_for(Scheme::Http, "api.example.com", 443).is_none(), "scheme is part of the grant");
        assert!(network.grant_for(Scheme::Https, "api.example.com", 8443).is_none(), "port is part of the grant");
        assert!(network.grant_for(Scheme::Https, "evil-api.example.com", 443).is_none());
        assert!(network.grant_for(Scheme::Https, "a.b.example.org", 443).is_some());
        assert!(network.grant_for(Scheme::Https, "example.org", 443).is_none(), "*. covers subdomains only");
        assert!(network.grant_for(Scheme::Https, "badexample.org", 443).is_none());
        assert!(network.grant_for(Scheme::Tcp, "10.1.2.3", 5432).is_some());
        assert!(network.grant_for(Scheme::Tcp, "11.1.2.3", 5432).is_none());
    }

    #[test]
    fn public_and_not() {
        for ip in ["127.0.0.1", "10.1.1.1", "169.254.169.254", "192.168.1.1", "172.31.0.1", "100.64.0.1", "0.0.0.0"]
            .into_iter()
            .chain(["::1", "::", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "64:ff9b::a00:1", "ff02::1"])
        {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn private_ranges_open_only_themselves() {
        let raw = RawNetwork { private: vec!["127.0.0.0/8".into()], ..RawNetwork::default() };
        let network = validate(Path::new("a.toml"), Path::new("."), raw).unwrap();
        assert!(network.reachable("127.0.0.2".parse().unwrap()));
        assert!(network.reachable("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!network.reachable("169.254.169.254".parse().unwrap()));
        assert!(network.reachable("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_field() {
        let file = Path::new("jobs.d/a.toml");
        let bad = |raw: RawNetwork| validate(file, Path::new("jobs.d"), raw).unwrap_err().to_string();
        let error =
            bad(RawNetwork { allow: vec!["https://ok.example".into(), "https://x/y".into()], ..Default::default() });
        assert!(error.contains("network.allow[1]") && error.contains("\"https://x/y\""), "{error}");
        let error = bad(RawNetwork { private: vec!["10.0.0.0/33".into()], ..Default::default() });
        assert!(error.contains("network.private[0]"), "{error}");
        let error = bad(RawNetwork {
            timeouts: RawTimeouts { connect: Some("0s".into()), ..Default::default() },
            ..Default::default()
        });
        assert!(error.contains("network.timeouts.connect"), "{error}");
        let error = bad(RawNetwork { ca: Some("missing.pem".into()), ..Default::default() });
        assert!(error.contains("network.ca") && error.contains("missing.pem"), "{error}");
    }
}
