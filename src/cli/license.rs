//! `latchkey license verify`: check a license against a JWK set, as any
//! service holding only the public keys would.

use anyhow::{bail, Context};
use latchkey_core::{JwkSet, Verifier};

use crate::config::{Common, LicenseCommand};
use crate::http::rfc3339;
use crate::store::now;

pub async fn run(common: &Common, cmd: LicenseCommand) -> anyhow::Result<()> {
    match cmd {
        LicenseCommand::Verify {
            token,
            jwks,
            issuer,
            audience,
        } => {
            let bytes = if jwks.starts_with("http://") || jwks.starts_with("https://") {
                fetch(&jwks).await?
            } else {
                std::fs::read(&jwks).with_context(|| format!("cannot read {jwks}"))?
            };
            let jwks = JwkSet::from_json(&bytes)?;
            let verifier = Verifier {
                jwks,
                issuer: issuer.unwrap_or_else(|| common.origin_str()),
                audience: audience.unwrap_or_else(|| common.audience()),
            };
            let claims = verifier
                .verify(token.trim(), now())
                .map_err(|e| anyhow::anyhow!("license rejected: {e}"))?;
            println!("valid license {}", claims.jti);
            println!("  subject      {}", claims.sub);
            println!("  entitlements {}", claims.ent.join(", "));
            println!("  device key   {}", claims.jkt());
            println!("  issued       {}", rfc3339(claims.iat));
            println!("  expires      {}", rfc3339(claims.exp));
            if let Some(status) = claims.status_ref() {
                println!("  status       {} index {}", status.uri, status.idx);
            }
            Ok(())
        }
    }
}

/// A minimal HTTP/1.1 GET over plain TCP, enough for a JWK set on a local or
/// internal address (for https, download the file and pass its path).
async fn fetch(url: &str) -> anyhow::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let parsed = url::Url::parse(url)?;
    if parsed.scheme() != "http" {
        bail!("only http:// URLs are fetched directly; for https save the JWK set to a file and pass its path");
    }
    let host = parsed.host_str().context("URL without a host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        parsed.path()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response).await?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]);
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "fetching the JWK set failed: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("chunked responses are not supported; save the JWK set to a file");
    }
    Ok(response[split + 4..].to_vec())
}
