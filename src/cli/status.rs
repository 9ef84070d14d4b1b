//! `postern status`: asks the running daemon, through its metrics listener
//! (`listen.metrics`, `GET /status`), for its version, uptime, listeners, configuration
//! generation and database state. Exit 0 healthy, 1 unhealthy, 3 the daemon cannot be
//! reached (2: `listen.metrics` is not set).
//!
//! ```text
//! $ postern status
//! postern 0.1.0: healthy
//! uptime       3h 12m 5s
//! generation   2
//! database     ready
//! listeners    dict=/run/postern/dict.sock metrics=127.0.0.1:8027
//! ```

use std::io::{Read, Write};
use std::time::Duration;

use crate::config::MetricsAddress;

use super::{load_config, Cli, Failure};

/// How long the daemon may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn run(cli: &Cli, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let Some(address) = config.listen.metrics_address() else {
        return Err(Failure::usage(
            "listen.metrics is not set: postern status asks the daemon through it",
        ));
    };
    let unreachable = |e: String| Failure::new(3, format!("the daemon cannot be reached: {e}"));
    let (code, body) = get_status(address).map_err(unreachable)?;
    let status: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| unreachable(format!("HTTP {code}, not a status answer: {e}")))?;
    if json {
        writeln!(out, "{status}")?;
    } else {
        write_text(&status, out)?;
    }
    if status["healthy"] == true {
        Ok(())
    } else {
        let reason = status["reason"].as_str().unwrap_or("unhealthy");
        Err(Failure::refused(format!("unhealthy: {reason}")))
    }
}

fn write_text(s: &serde_json::Value, out: &mut dyn Write) -> Result<(), Failure> {
    let health = if s["healthy"] == true {
        "healthy"
    } else {
        "unhealthy"
    };
    writeln!(
        out,
        "postern {}: {health}",
        s["version"].as_str().unwrap_or("?")
    )?;
    let uptime = Duration::from_secs(s["uptime_seconds"].as_u64().unwrap_or(0));
    writeln!(out, "uptime       {}", humantime::format_duration(uptime))?;
    writeln!(out, "generation   {}", s["config_generation"])?;
    let database = match (&s["database"]["ready"], s["database"]["error"].as_str()) {
        (serde_json::Value::Bool(true), _) => "ready".to_owned(),
        (_, Some(e)) => format!("not ready: {e}"),
        _ => "not ready".to_owned(),
    };
    writeln!(out, "database     {database}")?;
    let listeners: Vec<String> = s["listeners"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|l| {
                    format!(
                        "{}={}",
                        l["key"].as_str().unwrap_or("?"),
                        l["address"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    writeln!(out, "listeners    {}", listeners.join(" "))?;
    Ok(())
}

/// `GET /status` over the metrics listener: the status code and the body.
fn get_status(address: MetricsAddress<'_>) -> Result<(u16, String), String> {
    const REQUEST: &[u8] = b"GET /status HTTP/1.1\r\nHost: postern\r\nConnection: close\r\n\r\n";
    let mut answer = Vec::new();
    match address {
        MetricsAddress::Tcp(addr) => {
            use std::net::ToSocketAddrs;
            let to = addr
                .to_socket_addrs()
                .map_err(|e| format!("{addr}: {e}"))?
                .next()
                .ok_or_else(|| format!("{addr}: no address"))?;
            let mut s = std::net::TcpStream::connect_timeout(&to, TIMEOUT)
                .map_err(|e| format!("{addr}: {e}"))?;
            exchange(&mut s, REQUEST, &mut answer, |s| {
                s.set_read_timeout(Some(TIMEOUT))?;
                s.set_write_timeout(Some(TIMEOUT))
            })
            .map_err(|e| format!("{addr}: {e}"))?;
        }
        MetricsAddress::Unix(path) => {
            let shown = path.display();
            let mut s = std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| format!("{shown}: {e}"))?;
            exchange(&mut s, REQUEST, &mut answer, |s| {
                s.set_read_timeout(Some(TIMEOUT))?;
                s.set_write_timeout(Some(TIMEOUT))
            })
            .map_err(|e| format!("{shown}: {e}"))?;
        }
    }
    parse_response(&answer)
}

fn exchange<S: Read + Write>(
    s: &mut S,
    request: &[u8],
    answer: &mut Vec<u8>,
    timeouts: impl FnOnce(&S) -> std::io::Result<()>,
) -> std::io::Result<()> {
    timeouts(s)?;
    s.write_all(request)?;
    s.take(1 << 20).read_to_end(answer)?;
    Ok(())
}

/// The status code and body of an HTTP/1.1 answer with a `Content-Length` body (what
/// the daemon sends; the connection is closed after it).
fn parse_response(answer: &[u8]) -> Result<(u16, String), String> {
    let text = std::str::from_utf8(answer).map_err(|_| "the answer is not UTF-8".to_owned())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no complete HTTP answer".to_owned())?;
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| "no HTTP status line".to_owned())?;
    Ok((code, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_gives_its_code_and_body() {
        let a = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(a), Ok((503, "{}".to_owned())));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
