//! Mail client autoconfiguration: the Mozilla `clientConfig` document that Delta Chat,
//! Thunderbird and others fetch to find the IMAP and SMTP servers for an address.
//!
//! ```text
//! GET /.well-known/autoconfig/mail/config-v1.1.xml     (what Delta Chat asks the domain)
//! GET /mail/config-v1.1.xml?emailaddress=a@example.org (what autoconfig.<domain> serves)
//!   200 application/xml
//!   <clientConfig version="1.1"><emailProvider id="example.org">
//!     <domain>example.org</domain> ...
//!     <incomingServer type="imap"><hostname>chat.example.org</hostname><port>993</port>
//!       <socketType>SSL</socketType><username>%EMAILADDRESS%</username>
//!       <authentication>password-cleartext</authentication></incomingServer>
//!     <outgoingServer type="smtp"> ... 465 SSL ... </outgoingServer>
//!   </emailProvider></clientConfig>
//! ```
//!
//! The servers are the configuration's `[autoconfig]` ([`Config::mail_servers`]). An
//! `emailaddress` at a domain postern does not serve gets 404: the document would send
//! that person's password to the wrong server.

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::form::Fields;
use super::AppState;
use crate::accounts::address::Address;
use crate::config::{Config, MailServer};
use crate::qr::escape_markup as escape;

/// The two paths clients ask.
pub const WELL_KNOWN_PATH: &str = "/.well-known/autoconfig/mail/config-v1.1.xml";
pub const AUTOCONFIG_PATH: &str = "/mail/config-v1.1.xml";

/// `GET` on either path.
pub async fn document(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let config = state.accounts().config();
    let asked = query
        .as_deref()
        .map(|q| Fields::parse(q.as_bytes()))
        .and_then(|f| f.text("emailaddress").map(str::to_owned));
    if let Some(address) = asked {
        let served = Address::parse(&address, &config.domains).is_ok();
        if !served {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "this server has no mail accounts at that address's domain\n",
            )
                .into_response();
        }
    }
    (
        [
            (header::CONTENT_TYPE, "application/xml; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        render(&config),
    )
        .into_response()
}

/// The document for `config`.
pub fn render(config: &Config) -> String {
    let servers = config.mail_servers();
    let site = escape(config.site_name());
    let mut out = String::with_capacity(1024);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<clientConfig version=\"1.1\">\n");
    out.push_str(&format!("  <emailProvider id=\"{site}\">\n"));
    for domain in &config.domains {
        out.push_str(&format!("    <domain>{}</domain>\n", escape(domain)));
    }
    out.push_str(&format!("    <displayName>{site}</displayName>\n"));
    out.push_str(&format!(
        "    <displayShortName>{site}</displayShortName>\n"
    ));
    server(&mut out, "incomingServer", "imap", &servers.imap);
    server(&mut out, "outgoingServer", "smtp", &servers.smtp);
    out.push_str("  </emailProvider>\n</clientConfig>\n");
    out
}

fn server(out: &mut String, element: &str, kind: &str, s: &MailServer) {
    out.push_str(&format!(
        "    <{element} type=\"{kind}\">\n      <hostname>{}</hostname>\n      \
         <port>{}</port>\n      <socketType>{}</socketType>\n      \
         <username>%EMAILADDRESS%</username>\n      \
         <authentication>password-cleartext</authentication>\n    </{element}>\n",
        escape(&s.host),
        s.port,
        s.socket.autoconfig(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SocketType;

    #[test]
    fn defaults_name_the_public_host_with_implicit_tls() {
        let mut c = Config {
            domains: vec!["example.org".into(), "example.net".into()],
            ..Config::default()
        };
        c.http.public_url = Some("https://chat.example.org/".into());
        let xml = render(&c);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig"));
        assert!(xml.contains("<emailProvider id=\"example.org\">"));
        assert!(xml.contains("<domain>example.org</domain>\n    <domain>example.net</domain>"));
        assert!(xml.contains(
            "<incomingServer type=\"imap\">\n      <hostname>chat.example.org</hostname>\n      \
             <port>993</port>\n      <socketType>SSL</socketType>"
        ));
        assert!(xml.contains(
            "<outgoingServer type=\"smtp\">\n      <hostname>chat.example.org</hostname>\n      \
             <port>465</port>\n      <socketType>SSL</socketType>"
        ));
        assert_eq!(
            xml.matches("<username>%EMAILADDRESS%</username>").count(),
            2
        );

        c.autoconfig.imap_host = Some("imap.example.org".into());
        c.autoconfig.imap_port = 143;
        c.autoconfig.imap_socket = SocketType::Starttls;
        c.autoconfig.smtp_socket = SocketType::Plain;
        let xml = render(&c);
        assert!(xml.contains("<hostname>imap.example.org</hostname>\n      <port>143</port>\n      <socketType>STARTTLS</socketType>"));
        assert!(xml.contains("<port>465</port>\n      <socketType>plain</socketType>"));
    }

    #[test]
    fn hosts_are_escaped() {
        let mut c = Config {
            domains: vec!["example.org".into()],
            ..Config::default()
        };
        c.autoconfig.imap_host = Some("a<b>&\"".into());
        assert!(render(&c).contains("<hostname>a&lt;b&gt;&amp;&quot;</hostname>"));
    }
}
