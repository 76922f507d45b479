//! Media sources (paths, `file://`, `http(s)://`, `data:` URLs) and the policy that decides
//! which of them may be read.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::error::{MediaError, Result};

/// What a media source may be, and how much of it may be read.
///
/// [`MediaPolicy::default`] suits a local command-line tool: local files, remote URLs and
/// private networks are all allowed. [`MediaPolicy::strict`] suits a server that accepts
/// untrusted requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaPolicy {
    /// Whether plain paths and `file://` URLs may be read at all.
    pub allow_local_files: bool,
    /// If set, local files must resolve (after following symlinks and `..`) inside this
    /// directory.
    pub local_root: Option<PathBuf>,
    /// Whether `http://` and `https://` URLs may be fetched.
    pub allow_remote: bool,
    /// Whether remote hosts may resolve to loopback, private, link-local or other non-public
    /// addresses. Checked on every address the host resolves to, for every redirect hop.
    pub allow_private_network: bool,
    /// Largest accepted source in bytes (file size, HTTP body, decoded data URL).
    pub max_bytes: u64,
    /// Largest accepted decoded image in pixels; checked on the file header before decoding.
    pub max_image_pixels: u64,
    pub connect_timeout: Duration,
    /// Longest wait for any single read from the server.
    pub read_timeout: Duration,
    /// Longest time a request may take until its body is read (checked between body reads).
    pub total_timeout: Duration,
    pub max_redirects: u32,
    /// Largest accepted video download (remote or `data:` video; local video files are read
    /// by the decoder in place and have no size limit).
    pub max_video_bytes: u64,
    /// Longest a single run of `ffprobe` or `ffmpeg` may take.
    pub video_timeout: Duration,
    /// Largest number of visual tokens (patches / merge²) one video may turn into, a bound on
    /// the memory its `pixel_values` take (each token is 4 patches of 588 `f32`).
    pub max_video_tokens: u64,
}

/// Pillow's decompression-bomb error threshold (`2 × Image.MAX_IMAGE_PIXELS`): the default
/// accepts every image the reference accepts.
pub const PILLOW_MAX_IMAGE_PIXELS: u64 = 2 * 89_478_485;

impl Default for MediaPolicy {
    fn default() -> Self {
        Self {
            allow_local_files: true,
            local_root: None,
            allow_remote: true,
            allow_private_network: true,
            max_bytes: 256 << 20,
            max_image_pixels: PILLOW_MAX_IMAGE_PIXELS,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(120),
            max_redirects: 5,
            max_video_bytes: 4 << 30,
            video_timeout: Duration::from_secs(600),
            max_video_tokens: 1 << 18,
        }
    }
}

impl MediaPolicy {
    /// For untrusted input: no local files, public remote hosts only, 32 MiB and 50 megapixels
    /// at most (256 MiB and 131,072 tokens for a video), short timeouts.
    pub fn strict() -> Self {
        Self {
            allow_local_files: false,
            local_root: None,
            allow_remote: true,
            allow_private_network: false,
            max_bytes: 32 << 20,
            max_image_pixels: 50_000_000,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            max_redirects: 3,
            max_video_bytes: 256 << 20,
            video_timeout: Duration::from_secs(120),
            max_video_tokens: 1 << 17,
        }
    }
}

/// A parsed media reference, following keye-vl-utils' dispatch on the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaSource<'a> {
    /// A local path: plain, or a `file://` URL with the scheme stripped (no percent-decoding,
    /// like the reference; `file:///a/b` is `/a/b`).
    Path(&'a str),
    /// An `http://` or `https://` URL.
    Remote(&'a str),
    /// The base64 payload of a `data:` URL.
    Data(&'a str),
}

impl<'a> MediaSource<'a> {
    pub fn parse(source: &'a str) -> Result<Self> {
        let lower_prefix = |prefix: &str| {
            source
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        };
        if lower_prefix("http://") || lower_prefix("https://") {
            return Ok(Self::Remote(source));
        }
        if lower_prefix("file://") {
            return Ok(Self::Path(&source["file://".len()..]));
        }
        if lower_prefix("data:") {
            return match source.find("base64,") {
                Some(at) => Ok(Self::Data(&source[at + "base64,".len()..])),
                None => Err(MediaError::InvalidDataUrl {
                    source_desc: describe_source(source),
                    reason: "only base64 data URLs (`data:<type>;base64,<data>`) are supported"
                        .into(),
                }),
            };
        }
        if let Some(scheme) = url_scheme(source) {
            return Err(MediaError::UnsupportedScheme {
                scheme: scheme.to_owned(),
                source_desc: describe_source(source),
            });
        }
        Ok(Self::Path(source))
    }
}

/// `scheme` of `scheme://…` if `source` starts like a URL (RFC 3986 scheme characters).
fn url_scheme(source: &str) -> Option<&str> {
    let (scheme, _) = source.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// A short, printable description of a source for error messages (data URLs are cut).
pub fn describe_source(source: &str) -> String {
    const MAX_CHARS: usize = 80;
    match source.char_indices().nth(MAX_CHARS) {
        None => format!("`{source}`"),
        Some((cut, _)) => format!("`{}…` ({} bytes)", &source[..cut], source.len()),
    }
}

/// Reads the bytes of `source`. Relative paths resolve against `base_dir` when given (the
/// folder of the messages file), else against the working directory.
pub fn fetch_bytes(source: &str, base_dir: Option<&Path>, policy: &MediaPolicy) -> Result<Vec<u8>> {
    match MediaSource::parse(source)? {
        MediaSource::Path(path) => read_local(path, base_dir, policy, source),
        MediaSource::Remote(url) => fetch_remote(url, policy),
        MediaSource::Data(payload) => decode_data_url(payload, policy, source),
    }
}

/// Where a local source lives after resolution and the policy checks, for readers that need a
/// path rather than bytes.
pub fn resolve_local_path(
    path: &str,
    base_dir: Option<&Path>,
    policy: &MediaPolicy,
) -> Result<PathBuf> {
    let source_desc = describe_source(path);
    if !policy.allow_local_files {
        return Err(MediaError::PolicyRefused {
            source_desc,
            reason: "local files are not allowed".into(),
        });
    }
    let path = Path::new(path);
    let joined = match base_dir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_owned(),
    };
    let Some(root) = &policy.local_root else {
        return Ok(joined);
    };
    let root = root.canonicalize().map_err(|error| MediaError::Io {
        path: root.clone(),
        error,
    })?;
    // Canonicalising resolves `..` and every symlink, so the prefix test below sees where the
    // file really is.
    let resolved = joined.canonicalize().map_err(|error| MediaError::Io {
        path: joined.clone(),
        error,
    })?;
    if !resolved.starts_with(&root) {
        return Err(MediaError::PolicyRefused {
            source_desc,
            reason: format!(
                "{} is outside the allowed directory {}",
                resolved.display(),
                root.display()
            ),
        });
    }
    Ok(resolved)
}

fn read_local(
    path: &str,
    base_dir: Option<&Path>,
    policy: &MediaPolicy,
    source: &str,
) -> Result<Vec<u8>> {
    let path = resolve_local_path(path, base_dir, policy)?;
    let io_error = |error| MediaError::Io {
        path: path.clone(),
        error,
    };
    let file = std::fs::File::open(&path).map_err(io_error)?;
    let too_large = || MediaError::SourceTooLarge {
        source_desc: describe_source(source),
        limit_bytes: policy.max_bytes,
    };
    let size = file.metadata().map_err(io_error)?.len();
    if size > policy.max_bytes {
        return Err(too_large());
    }
    read_limited(file, policy.max_bytes, size, None)
        .map_err(io_error)?
        .ok_or_else(too_large)
}

/// Reads at most `limit` bytes; `Ok(None)` if the reader has more. Fails with `TimedOut` once
/// `deadline` has passed (each read itself is bounded by the socket's read timeout).
fn read_limited(
    reader: impl Read,
    limit: u64,
    size_hint: u64,
    deadline: Option<Instant>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::with_capacity(size_hint.min(limit) as usize);
    Ok(copy_limited(reader, &mut bytes, limit, deadline)?.map(|_| bytes))
}

/// Copies at most `limit` bytes from `reader` to `sink`; `Ok(None)` if the reader has more,
/// else the number of bytes copied. Fails with `TimedOut` once `deadline` has passed.
fn copy_limited(
    mut reader: impl Read,
    sink: &mut impl Write,
    limit: u64,
    deadline: Option<Instant>,
) -> std::io::Result<Option<u64>> {
    let mut copied = 0u64;
    let mut chunk = [0u8; 64 * 1024];
    loop {
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "total time limit exceeded",
            ));
        }
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(Some(copied)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if copied + n as u64 > limit {
            return Ok(None);
        }
        sink.write_all(&chunk[..n])?;
        copied += n as u64;
    }
}

/// Decodes a data URL payload leniently, like Python's `base64.b64decode`: characters outside
/// the alphabet (whitespace, line breaks) are skipped; URL-safe characters and missing padding
/// are accepted too.
fn decode_data_url(payload: &str, policy: &MediaPolicy, source: &str) -> Result<Vec<u8>> {
    let invalid = |reason: String| MediaError::InvalidDataUrl {
        source_desc: describe_source(source),
        reason,
    };
    if (payload.len() as u64 / 4).saturating_mul(3) > policy.max_bytes.saturating_add(3) {
        return Err(MediaError::SourceTooLarge {
            source_desc: describe_source(source),
            limit_bytes: policy.max_bytes,
        });
    }
    let cleaned: Vec<u8> = payload
        .bytes()
        .filter_map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => Some(b),
            b'-' => Some(b'+'),
            b'_' => Some(b'/'),
            _ => None,
        })
        .collect();
    if cleaned.iter().all(|&b| b == b'=') {
        return Err(invalid("no data after `base64,`".into()));
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let bytes = engine
        .decode(&cleaned)
        .map_err(|e| invalid(format!("bad base64: {e}")))?;
    if bytes.len() as u64 > policy.max_bytes {
        return Err(MediaError::SourceTooLarge {
            source_desc: describe_source(source),
            limit_bytes: policy.max_bytes,
        });
    }
    Ok(bytes)
}

fn fetch_remote(url: &str, policy: &MediaPolicy) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fetch_remote_into(url, policy, policy.max_bytes, &mut bytes)?;
    Ok(bytes)
}

/// Downloads `url` under `policy` into `sink`, refusing bodies over `limit` bytes; returns the
/// number of bytes written.
pub(crate) fn fetch_remote_into(
    url: &str,
    policy: &MediaPolicy,
    limit: u64,
    sink: &mut impl Write,
) -> Result<u64> {
    if !policy.allow_remote {
        return Err(MediaError::PolicyRefused {
            source_desc: describe_source(url),
            reason: "remote URLs are not allowed".into(),
        });
    }
    let deadline = Instant::now() + policy.total_timeout;
    let refused_address: Arc<Mutex<Option<IpAddr>>> = Arc::default();
    // ureq's own overall timeout would replace the per-read timeout, so the total limit is
    // enforced while reading the body instead.
    let mut agent = ureq::AgentBuilder::new()
        .timeout_connect(policy.connect_timeout)
        .timeout_read(policy.read_timeout)
        .redirects(policy.max_redirects);
    if !policy.allow_private_network {
        // Checking inside the resolver covers redirects, and the connection goes to the very
        // addresses checked (no second lookup that a rebinding DNS server could answer
        // differently).
        let refused = Arc::clone(&refused_address);
        agent = agent.resolver(move |netloc: &str| -> std::io::Result<Vec<SocketAddr>> {
            let addresses: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
            if let Some(bad) = addresses.iter().find(|a| !is_public(a.ip())) {
                *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(bad.ip());
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{} resolves to non-public address {}", netloc, bad.ip()),
                ));
            }
            Ok(addresses)
        });
    }
    let agent = agent.build();
    let response = agent.get(url).call().map_err(|error| {
        if let Some(ip) = *refused_address.lock().unwrap_or_else(|p| p.into_inner()) {
            return MediaError::PolicyRefused {
                source_desc: describe_source(url),
                reason: format!("the host resolves to non-public address {ip}"),
            };
        }
        match error {
            ureq::Error::Status(code, response) => MediaError::Http {
                url: url.to_owned(),
                reason: format!("HTTP status {code} {}", response.status_text()),
            },
            ureq::Error::Transport(transport) => transport_error(url, &transport),
        }
    })?;
    let too_large = || MediaError::SourceTooLarge {
        source_desc: describe_source(url),
        limit_bytes: limit,
    };
    let declared_len = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    copy_limited(response.into_reader(), sink, limit, Some(deadline))
        .map_err(|error| {
            if is_timeout(&error) {
                MediaError::Timeout {
                    url: url.to_owned(),
                }
            } else {
                MediaError::Http {
                    url: url.to_owned(),
                    reason: format!("reading the body: {error}"),
                }
            }
        })?
        .ok_or_else(too_large)
}

fn transport_error(url: &str, transport: &ureq::Transport) -> MediaError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(transport);
    while let Some(error) = cause {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(is_timeout)
        {
            return MediaError::Timeout {
                url: url.to_owned(),
            };
        }
        cause = error.source();
    }
    MediaError::Http {
        url: url.to_owned(),
        reason: transport.to_string(),
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// Whether `ip` is a globally routable unicast address (what a strict server may contact).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
                || v6.segments()[..6] == [0; 6] // IPv4-compatible ::a.b.c.d
                || is_nat64_of_private(v6))
        }
    }
}

/// `64:ff9b::/96` addresses embed an IPv4 address; judge that one.
fn is_nat64_of_private(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    if s[..6] != [0x64, 0xff9b, 0, 0, 0, 0] {
        return false;
    }
    let [a, b] = s[6].to_be_bytes();
    let [c, d] = s[7].to_be_bytes();
    !is_public_v4(Ipv4Addr::new(a, b, c, d))
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}
