//! The SASL mechanisms postern offers, as pure state machines: PLAIN (RFC 4616) and
//! LOGIN. They turn client data into credentials; checking them is the core's job.
//!
//! ```text
//! PLAIN  resp = base64(authzid NUL authcid NUL password)   (empty authzid, or = authcid)
//! LOGIN  S: "Username:"  C: base64(user)  S: "Password:"  C: base64(password)
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::accounts::password::Password;

/// `base64("Username:")`, LOGIN's first challenge.
pub const USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// `base64("Password:")`, LOGIN's second challenge.
pub const PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// A mechanism postern speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }
}

/// Why a conversation ended without credentials. The text goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("Invalid base64 data in initial response")]
    InvalidBase64,
    #[error("Invalid input")]
    Malformed,
    #[error("Authorization as another user is not allowed")]
    Authzid,
}

/// What to do next in a conversation.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this base64 challenge and wait for the client's answer.
    Challenge(&'static str),
    /// The client has said who it is and its password.
    Credentials { user: String, password: Password },
}

/// One authentication in progress.
#[derive(Debug)]
pub struct Conversation {
    mechanism: Mechanism,
    user: Option<String>,
}

impl Conversation {
    /// Starts a conversation, with the initial response if the client sent one
    /// (`resp=`; an empty one is `Some("")`).
    pub fn start(
        mechanism: Mechanism,
        initial: Option<&str>,
    ) -> Result<(Conversation, Step), SaslError> {
        let mut c = Conversation {
            mechanism,
            user: None,
        };
        let step = match (mechanism, initial) {
            (Mechanism::Plain, None) => Step::Challenge(""),
            (Mechanism::Login, None) => Step::Challenge(USERNAME_CHALLENGE),
            (_, Some(data)) => c.answer(data)?,
        };
        Ok((c, step))
    }

    /// Takes the client's base64 answer to the last challenge.
    pub fn answer(&mut self, data: &str) -> Result<Step, SaslError> {
        let bytes = STANDARD
            .decode(data.trim())
            .map_err(|_| SaslError::InvalidBase64)?;
        match self.mechanism {
            Mechanism::Plain => {
                let (user, password) = parse_plain(&bytes)?;
                Ok(Step::Credentials { user, password })
            }
            Mechanism::Login => match self.user.take() {
                None => {
                    let user = String::from_utf8(bytes).map_err(|_| SaslError::Malformed)?;
                    if user.is_empty() || user.contains('\0') {
                        return Err(SaslError::Malformed);
                    }
                    self.user = Some(user);
                    Ok(Step::Challenge(PASSWORD_CHALLENGE))
                }
                Some(user) => {
                    let password = String::from_utf8(bytes).map_err(|_| SaslError::Malformed)?;
                    Ok(Step::Credentials {
                        user,
                        password: Password::new(password),
                    })
                }
            },
        }
    }

    /// The user named so far (for `user=` in a FAIL).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// Splits PLAIN's `authzid NUL authcid NUL password`. An authzid naming someone else
/// is refused: postern has no master users.
pub fn parse_plain(bytes: &[u8]) -> Result<(String, Password), SaslError> {
    let mut parts = bytes.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed);
    let (authzid, authcid, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if authcid.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::Authzid);
    }
    Ok((authcid, Password::new(password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(step: Step) -> (String, String) {
        match step {
            Step::Credentials { user, password } => (user, password.expose().to_owned()),
            other => panic!("expected credentials, got {other:?}"),
        }
    }

    #[test]
    fn plain_with_initial_response() {
        // The captured Postfix request: alice@example.org / secret.
        let (_, step) = Conversation::start(
            Mechanism::Plain,
            Some("AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA=="),
        )
        .expect("ok");
        assert_eq!(creds(step), ("alice@example.org".into(), "secret".into()));
        let same = STANDARD.encode("bob\0bob\0pw");
        let (_, step) = Conversation::start(Mechanism::Plain, Some(&same)).expect("ok");
        assert_eq!(creds(step), ("bob".into(), "pw".into()));
    }

    #[test]
    fn plain_without_initial_response_asks_with_an_empty_challenge() {
        let (mut c, step) = Conversation::start(Mechanism::Plain, None).expect("ok");
        assert_eq!(step, Step::Challenge(""));
        let step = c.answer(&STANDARD.encode("\0carol\0pw 2")).expect("ok");
        assert_eq!(creds(step), ("carol".into(), "pw 2".into()));
    }

    #[test]
    fn plain_refuses_bad_input() {
        let start = |s: &str| Conversation::start(Mechanism::Plain, Some(s)).map(|_| ());
        assert_eq!(start("!!!not base64"), Err(SaslError::InvalidBase64));
        assert_eq!(
            start(&STANDARD.encode("no-nuls")),
            Err(SaslError::Malformed)
        );
        assert_eq!(start(&STANDARD.encode("\0\0pw")), Err(SaslError::Malformed));
        assert_eq!(
            start(&STANDARD.encode("a\0b\0c\0d")),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            start(&STANDARD.encode("admin\0bob\0pw")),
            Err(SaslError::Authzid)
        );
        assert_eq!(
            start(&STANDARD.encode(b"\0\xff\0pw")),
            Err(SaslError::Malformed)
        );
    }

    #[test]
    fn login_two_steps_as_captured() {
        let (mut c, step) = Conversation::start(Mechanism::Login, None).expect("ok");
        assert_eq!(step, Step::Challenge(USERNAME_CHALLENGE));
        assert_eq!(
            c.answer("YWxpY2VAZXhhbXBsZS5vcmc=").expect("ok"),
            Step::Challenge(PASSWORD_CHALLENGE)
        );
        assert_eq!(c.user(), Some("alice@example.org"));
        assert_eq!(
            creds(c.answer("d3Jvbmc=").expect("ok")),
            ("alice@example.org".into(), "wrong".into())
        );
        // An initial response is the user name.
        let (_, step) =
            Conversation::start(Mechanism::Login, Some("YWxpY2VAZXhhbXBsZS5vcmc=")).expect("ok");
        assert_eq!(step, Step::Challenge(PASSWORD_CHALLENGE));
        assert_eq!(Mechanism::parse("login"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
    }
}
