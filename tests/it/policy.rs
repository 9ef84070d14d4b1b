//! The Postfix policy service over its real socket, with the attribute blocks Postfix
//! 3.7 sends.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::support::TestDaemon;

pub(crate) struct PolicyClient {
    reader: BufReader<UnixStream>,
}

impl PolicyClient {
    pub(crate) fn connect(d: &TestDaemon) -> PolicyClient {
        let s = UnixStream::connect(&d.policy_socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        PolicyClient {
            reader: BufReader::new(s),
        }
    }

    /// Sends one block and returns the action (None if the server closed).
    pub(crate) fn ask(&mut self, block: &str) -> Option<String> {
        self.reader
            .get_mut()
            .write_all(block.as_bytes())
            .expect("write");
        let mut action = String::new();
        if self.reader.read_line(&mut action).ok()? == 0 {
            return None;
        }
        let mut empty = String::new();
        self.reader.read_line(&mut empty).expect("read");
        assert_eq!(empty, "\n", "a reply ends with an empty line");
        Some(
            action
                .trim_end()
                .strip_prefix("action=")
                .expect("action=")
                .to_owned(),
        )
    }
}

/// The block captured from Postfix 3.7 after SMTP AUTH, with our values.
pub(crate) fn block(recipient: &str, sasl: &str, instance: &str, size: u64) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=127.0.0.1\n\
         client_name=localhost\nclient_port=57920\nreverse_client_name=localhost\nserver_address=127.0.0.1\n\
         server_port=2626\nhelo_name=client.test\nsender={sasl}\nrecipient={recipient}\nrecipient_count=0\n\
         queue_id=C2E5498C0F4\ninstance={instance}\nsize={size}\netrn_domain=\nstress=\nsasl_method=PLAIN\n\
         sasl_username={sasl}\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n\
         ccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0\n\
         policy_context=\ncompatibility_level=3.6\nmail_version=3.8.0\n\n"
    )
}

#[test]
fn decisions_on_one_persistent_connection() {
    let d = TestDaemon::start_with("open", &[("POSTERN_POLICY__SEND_BURST", "2")]);
    for u in ["alice", "full", "gone"] {
        assert!(crate::support::passdb_once(
            &d.dict_socket,
            &format!("{u}@example.org"),
            "policy pw 1"
        )
        .starts_with('O'));
    }
    d.cli_ok(&["user", "quota", "full@example.org", "1K"]);
    d.cli_ok(&["user", "block", "gone@example.org"]);
    let mut c = PolicyClient::connect(&d);
    assert_eq!(
        c.ask(&block("alice@example.org", "", "i1", 0)).as_deref(),
        Some("DUNNO")
    );
    assert_eq!(
        c.ask(&block("ghost@example.org", "", "i2", 0)).as_deref(),
        Some("550 5.1.1 User unknown")
    );
    assert_eq!(
        c.ask(&block("gone@example.org", "", "i3", 0)).as_deref(),
        Some("REJECT 5.7.1 Recipient address is blocked")
    );
    assert_eq!(
        c.ask(&block("full@example.org", "", "i4", 5000)).as_deref(),
        Some("452 4.2.2 Mailbox full")
    );
    assert_eq!(
        c.ask(&block("friend@elsewhere.net", "", "i5", 0))
            .as_deref(),
        Some("DUNNO")
    );
    // Authenticated sender: a burst of 2 messages, the third is deferred.
    assert_eq!(
        c.ask(&block("friend@elsewhere.net", "alice@example.org", "m1", 0))
            .as_deref(),
        Some("DUNNO")
    );
    assert_eq!(
        c.ask(&block("other@elsewhere.net", "alice@example.org", "m1", 0))
            .as_deref(),
        Some("DUNNO")
    );
    assert_eq!(
        c.ask(&block("friend@elsewhere.net", "alice@example.org", "m2", 0))
            .as_deref(),
        Some("DUNNO")
    );
    assert_eq!(
        c.ask(&block("friend@elsewhere.net", "alice@example.org", "m3", 0))
            .as_deref(),
        Some("450 4.7.1 Sending too fast, try again later")
    );
    d.cli_ok(&["user", "block", "alice@example.org"]);
    assert_eq!(
        c.ask(&block("friend@elsewhere.net", "alice@example.org", "m4", 0))
            .as_deref(),
        Some("REJECT 5.7.1 Sender account is blocked")
    );
}

#[test]
fn malformed_block_is_deferred_and_the_connection_goes_on() {
    let d = TestDaemon::start("open");
    let mut c = PolicyClient::connect(&d);
    assert_eq!(
        c.ask("request=smtpd_access_policy\nthis line has no equals sign\n\n")
            .as_deref(),
        Some("DEFER_IF_PERMIT Service temporarily unavailable")
    );
    assert_eq!(
        c.ask(&block("someone@elsewhere.net", "", "i1", 0))
            .as_deref(),
        Some("DUNNO")
    );
}

#[test]
fn over_the_attribute_limit_is_deferred_and_closed() {
    let d = TestDaemon::start("open");
    let mut c = PolicyClient::connect(&d);
    let mut huge = String::from("request=smtpd_access_policy\n");
    for i in 0..200 {
        huge.push_str(&format!("x{i}=y\n"));
    }
    huge.push('\n');
    assert_eq!(
        c.ask(&huge).as_deref(),
        Some("DEFER_IF_PERMIT Service temporarily unavailable")
    );
    let mut rest = String::new();
    assert_eq!(c.reader.read_line(&mut rest).unwrap_or(0), 0, "closed");
}
