//! What every page shares: the HTML frame, the style sheet, formatting of times and
//! sizes, and the "your account is ready" block (address, `dclogin:` link and QR code,
//! IMAP/SMTP settings) shown after signing up on `/new` and after the operator creates
//! an account with a generated password.
//!
//! ```text
//! dclogin:alice@example.org?p=s3cr%2Bt%20pw&v=1&ih=chat.example.org&ip=993&is=ssl&sh=chat.example.org&sp=465&ss=ssl
//! IMAP  chat.example.org  993  SSL/TLS      SMTP  chat.example.org  465  SSL/TLS
//! ```
//!
//! The servers are `[autoconfig]`'s, the same the autoconfig document names.

use crate::qr;
use std::time::{Duration, UNIX_EPOCH};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::form;
use super::session::CSRF_FIELD;
use crate::config::{Config, MailServers};

/// The style sheet, served at [`CSS_PATH`]: no external fonts, no scripts.
pub const CSS: &str = r#"
:root { color-scheme: light dark; --fg: #1b1b1b; --bg: #fbfbf8; --muted: #5c5c5c;
  --line: #d6d6d0; --accent: #2b5fab; --ok-bg: #e4f3e4; --err-bg: #fbe3e3; --card: #fff; }
@media (prefers-color-scheme: dark) { :root { --fg: #ececec; --bg: #18191b; --muted: #a8a8a8;
  --line: #3a3b3f; --accent: #8ab4f8; --ok-bg: #1f3a24; --err-bg: #4a2323; --card: #222327; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { border-bottom: 1px solid var(--line); padding: .6rem 1rem; display: flex; flex-wrap: wrap;
  gap: .4rem 1.2rem; align-items: center; }
header .site { font-weight: 600; margin-right: auto; }
header nav a { margin-right: 1rem; }
header form { display: inline; margin: 0; }
main { max-width: 64rem; margin: 0 auto; padding: 1rem; }
main.narrow { max-width: 34rem; }
a { color: var(--accent); }
h1 { font-size: 1.6rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.2rem; margin: 1.6rem 0 .6rem; }
section, .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 1rem; margin: 1rem 0; }
section > h2:first-child { margin-top: 0; }
fieldset { border: 1px solid var(--line); border-radius: 6px; }
label { display: block; font-weight: 600; margin: .8rem 0 .2rem; }
label.check { font-weight: normal; display: flex; gap: .5rem; align-items: center; }
input[type=text], input[type=password], input[type=number], input[type=search], select {
  display: block; font: inherit; width: 100%; max-width: 28rem; padding: .45rem .55rem; border: 1px solid var(--line);
  border-radius: 6px; background: var(--bg); color: var(--fg); }
.hint { color: var(--muted); font-size: .9rem; margin: .2rem 0; }
button { font: inherit; padding: .45rem .9rem; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: var(--bg); cursor: pointer; margin: .8rem .5rem 0 0; }
button.secondary { background: transparent; color: var(--accent); }
button.danger { background: #b3261e; border-color: #b3261e; color: #fff; }
button.small { padding: .15rem .5rem; margin: 0; font-size: .9rem; }
.inline { display: flex; gap: .6rem; align-items: center; flex-wrap: wrap; margin: 0; }
.inline input { width: auto; min-width: 16rem; }
.inline label, .inline button { margin: 0; }
.flash, .error, .notice { border-radius: 6px; padding: .6rem .8rem; margin: 1rem 0; }
.flash.ok { background: var(--ok-bg); }
.flash.err, .error { background: var(--err-bg); }
.notice { border: 1px solid var(--line); }
table { border-collapse: collapse; width: 100%; font-size: .95rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; }
code, .secret { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
.secret { font-size: 1.1rem; background: var(--bg); border: 1px dashed var(--line); padding: .2rem .4rem; }
.badge { display: inline-block; font-size: .8rem; padding: 0 .4rem; border-radius: 4px;
  border: 1px solid var(--line); margin-left: .3rem; }
.badge.blocked { background: var(--err-bg); }
.badge.admin { background: var(--ok-bg); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; }
dt { font-weight: 600; } dd { margin: 0; overflow-wrap: anywhere; }
svg.qr { display: block; width: 240px; height: 240px; max-width: 100%; margin: .6rem 0;
  border: 1px solid var(--line); }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
"#;

/// Where the style sheet is served.
pub const CSS_PATH: &str = "/assets/postern.css";

/// A whole page: `header` (site name, navigation) above `content`.
pub fn layout(title: &str, narrow: bool, header: Markup, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) }
                link rel="stylesheet" href=(CSS_PATH);
            }
            body {
                header { (header) }
                main .narrow[narrow] { (content) }
            }
        }
    }
}

/// A `dclogin:` link that sets up `address` in Delta Chat, with the servers to use so
/// that it works without autoconfiguration.
pub fn dclogin(address: &str, password: &str, servers: &MailServers) -> String {
    let (imap, smtp) = (&servers.imap, &servers.smtp);
    format!(
        "dclogin:{address}?p={}&v=1&ih={}&ip={}&is={}&sh={}&sp={}&ss={}",
        form::encode(password),
        form::encode(&imap.host),
        imap.port,
        imap.socket.dclogin(),
        form::encode(&smtp.host),
        smtp.port,
        smtp.socket.dclogin(),
    )
}

/// A Unix time as `2024-05-01 13:45 UTC`, or `never`.
pub fn when(t: Option<i64>) -> String {
    match t.and_then(|t| u64::try_from(t).ok()) {
        Some(secs) => {
            let s = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
                .to_string();
            // 2024-05-01T13:45:10Z
            match (s.get(..10), s.get(11..16)) {
                (Some(day), Some(time)) => format!("{day} {time} UTC"),
                _ => s,
            }
        }
        None => "never".into(),
    }
}

/// An inline QR code, or a note when the text is too long to encode.
pub fn qr_code(text: &str, label: &str) -> Markup {
    match qr::svg(text, 240, label) {
        Some(svg) => PreEscaped(svg),
        None => html! { p .hint { "(too long for a QR code)" } },
    }
}

/// A sign-in form posting address, password and the double-submit `token` to `action`,
/// with the refusal `error` above it (the admin pages and `/account`).
pub fn signin_form(
    action: &str,
    token: &str,
    address: Option<&str>,
    error: Option<&str>,
) -> Markup {
    html! {
        @if let Some(e) = error { p .error role="alert" #error { (e) } }
        form method="post" action=(action) {
            input type="hidden" name=(CSRF_FIELD) value=(token);
            label for="address" { "Address" }
            input #address type="text" name="address" value=[address] autocomplete="username"
                autocapitalize="none" spellcheck="false" required;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    }
}

/// A one-time message box.
pub fn flash(ok: bool, text: &str) -> Markup {
    html! {
        div .flash .ok[ok] .err[!ok] role=(if ok { "status" } else { "alert" }) { (text) }
    }
}

/// The address, password and everything needed to start using a new account.
pub fn account_ready(config: &Config, address: &str, password: &str) -> Markup {
    let servers = config.mail_servers();
    let link = dclogin(address, password, &servers);
    let (imap, smtp) = (&servers.imap, &servers.smtp);
    html! {
        section aria-labelledby="account-h" {
            h2 #account-h { "Address and password" }
            dl {
                dt { "Address" } dd { code #address { (address) } }
                dt { "Password" } dd { span .secret #password { (password) } }
            }
            p .hint { "Write the password down now: it is shown only on this page, and it cannot be recovered." }
        }
        section aria-labelledby="dc-h" {
            h2 #dc-h { "Set up Delta Chat" }
            p { "Scan this code with Delta Chat (" em { "Add account → Scan QR code" } "), or on this device "
                a href=(link) #dclogin { "open the account in Delta Chat" } "." }
            (qr_code(&link, "QR code that sets up this account in Delta Chat"))
        }
        section aria-labelledby="other-h" {
            h2 #other-h { "Other mail programs" }
            table {
                thead { tr { th scope="col" { "" } th scope="col" { "Server" } th scope="col" { "Port" } th scope="col" { "Security" } } }
                tbody {
                    tr { th scope="row" { "IMAP (incoming)" } td { code #imap-host { (imap.host) } } td { (imap.port) } td { (imap.socket.describe()) } }
                    tr { th scope="row" { "SMTP (outgoing)" } td { code #smtp-host { (smtp.host) } } td { (smtp.port) } td { (smtp.socket.describe()) } }
                }
            }
            p .hint { "User name: the full address. Password: as above." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_links_and_numbers() {
        let mut c = Config {
            domains: vec!["example.org".into()],
            ..Config::default()
        };
        assert_eq!(c.public_host(), "example.org");
        assert_eq!(c.public_base_url(), "https://example.org");
        c.http.public_url = Some("https://Chat.example.org:8443/".into());
        assert_eq!(c.public_host(), "chat.example.org");
        assert_eq!(c.public_base_url(), "https://Chat.example.org:8443");
        assert_eq!(
            dclogin("a@example.org", "p+w &d", &c.mail_servers()),
            "dclogin:a@example.org?p=p%2Bw%20%26d&v=1&ih=chat.example.org&ip=993&is=ssl\
             &sh=chat.example.org&sp=465&ss=ssl"
        );
        c.http.public_url = Some("http://[2001:db8::1]:80/x".into());
        assert_eq!(c.public_host(), "2001:db8::1");
        c.autoconfig.smtp_host = Some("smtp.example.org".into());
        c.autoconfig.smtp_port = 587;
        c.autoconfig.smtp_socket = crate::config::SocketType::Starttls;
        let servers = c.mail_servers();
        assert_eq!(servers.imap.host, "2001:db8::1");
        assert_eq!(
            (
                servers.smtp.host.as_str(),
                servers.smtp.port,
                servers.smtp.socket.dclogin()
            ),
            ("smtp.example.org", 587, "starttls")
        );
        assert_eq!(when(Some(0)), "1970-01-01 00:00 UTC");
        assert_eq!(when(None), "never");
    }
}
