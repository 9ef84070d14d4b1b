//! The configuration of a real Dovecot 2.3 wired to postern as docs/install.md wires it,
//! written for one instance under a directory of its own: Debian's stock `/etc/dovecot`
//! copied, the package's examples added with this instance's paths, and a `local.conf`
//! (read last by Debian's `dovecot.conf`) with what only a test needs. The integration
//! tests ([`super::dovecot`]) and the load tool (`benches/load/dovecot.rs`, which
//! includes this file) both start their Dovecots from it, so they measure and test the
//! same set-up. Uses nothing but the standard library for that reason.
//!
//! ```text
//! etc/dovecot.conf                   Debian's, unchanged
//! etc/conf.d/10-auth.conf            `!include auth-system.conf.ext` commented out
//! etc/conf.d/99-postern.conf         examples/dovecot-postern.conf + first_valid_uid
//! etc/conf.d/auth-postern.conf.ext   examples/auth-postern.conf.ext
//! etc/local.conf                     this instance's directories, port, no delays, no TLS
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's configuration tree, the one an operator starts from.
pub const STOCK: &str = "/etc/dovecot";

/// The uid mail homes belong to and Dovecot's mail processes run as, in the tests and
/// the load tool (Debian's `nobody`; Dovecot refuses uid 0).
pub const MAIL_UID: u32 = 65534;

/// The two shipped example files with this instance's paths: its dict socket, its copy
/// of `auth-postern.conf.ext` under `etc`, and an LMTP socket under `dir`. Returns
/// (`conf.d/auth-postern.conf.ext`, `conf.d/99-postern.conf`), the latter with
/// `first_valid_uid` for [`MAIL_UID`].
pub fn shipped(dir: &Path, etc: &Path, dict_socket: &Path) -> (String, String) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/examples");
    let auth_args = etc.join("conf.d/auth-postern.conf.ext");
    let read = |name: &str| {
        let text = std::fs::read_to_string(examples.join(name))
            .unwrap_or_else(|e| panic!("read packaging/examples/{name}: {e}"));
        text.replace("/run/postern/dict.sock", &dict_socket.display().to_string())
            .replace(
                "/etc/dovecot/conf.d/auth-postern.conf.ext",
                &auth_args.display().to_string(),
            )
            .replace(
                "/var/spool/postfix/private/dovecot-lmtp",
                &dir.join("postfix-lmtp").display().to_string(),
            )
    };
    (
        read("auth-postern.conf.ext"),
        format!(
            "{}first_valid_uid = {MAIL_UID}\n",
            read("dovecot-postern.conf")
        ),
    )
}

/// Copies Debian's stock configuration tree `stock` to `etc` and adds what
/// docs/install.md adds: the `files` (relative to `etc`), and `!include
/// auth-system.conf.ext` commented out in `conf.d/10-auth.conf`, so postern is the only
/// passdb and userdb. Returns `etc/dovecot.conf`.
pub fn layer_on_stock(stock: &Path, etc: &Path, files: &[(&str, String)]) -> PathBuf {
    let _ = std::fs::remove_dir_all(etc);
    let out = Command::new("cp")
        .arg("-a")
        .arg(stock)
        .arg(etc)
        .output()
        .expect("run cp");
    assert!(
        out.status.success(),
        "cp -a {} {}: {}",
        stock.display(),
        etc.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let auth = etc.join("conf.d/10-auth.conf");
    let text = std::fs::read_to_string(&auth).expect("Debian's conf.d/10-auth.conf");
    assert!(
        text.lines().any(|l| l == "!include auth-system.conf.ext"),
        "Debian's 10-auth.conf no longer includes auth-system.conf.ext: update \
         docs/install.md"
    );
    let text: String = text
        .lines()
        .map(|l| {
            if l == "!include auth-system.conf.ext" {
                format!("#{l}")
            } else {
                l.to_owned()
            }
        })
        .fold(String::new(), |acc, l| acc + &l + "\n");
    std::fs::write(&auth, text).expect("write 10-auth.conf");
    for (name, text) in files {
        std::fs::write(etc.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
    etc.join("dovecot.conf")
}

/// The settings of one instance only (`local.conf`, read after `conf.d`), then `extra`.
pub fn local_conf(dir: &Path, instance: &str, imap_port: u16, extra: &str) -> String {
    format!(
        r#"# postern test instance only: everything under {dir}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
instance_name = {instance}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
auth_verbose = yes
login_trusted_networks = 127.0.0.0/8
# The instance's sockets are not behind /run/postern's group (nor need the group
# postern to exist on this host).
mail_access_groups =

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
# No per-IP auth penalty: every client connects from 127.0.0.1 and some fail on purpose.
# (login_trusted_networks does not exempt from it in 2.3.19.) Without this socket
# the auth process runs with the penalty disabled.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{extra}"#,
        dir = dir.display(),
    )
}
