//! SASL PLAIN and LOGIN: any client data ends in credentials or a clear error; PLAIN
//! decodes the same raw and through its base64 conversation, and what it accepts, sent
//! again, gives the same credentials; LOGIN hands back exactly the user and password it
//! was sent.

#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use postern::dovecot_auth::sasl::{
    parse_plain, Conversation, Mechanism, SaslError, Step, PASSWORD_CHALLENGE, USERNAME_CHALLENGE,
};

fn credentials(step: Result<Step, SaslError>) -> Result<(String, String), SaslError> {
    match step? {
        Step::Credentials { user, password } => Ok((user, password.expose().to_owned())),
        Step::Challenge(c) => panic!("a challenge {c:?} where credentials were due"),
    }
}

fn plain(bytes: &[u8]) {
    let raw = parse_plain(bytes).map(|(u, p)| (u, p.expose().to_owned()));
    let b64 = STANDARD.encode(bytes);
    let via = Conversation::start(Mechanism::Plain, Some(&b64)).map(|(_, step)| step);
    assert_eq!(credentials(via), raw.clone());
    let (mut c, first) = match Conversation::start(Mechanism::Plain, None) {
        Ok(started) => started,
        Err(e) => panic!("PLAIN without a response refused: {e}"),
    };
    assert_eq!(first, Step::Challenge(""));
    assert_eq!(credentials(c.answer(&b64)), raw.clone());
    if let Ok((user, password)) = raw {
        assert!(!user.is_empty() && !user.contains('\0') && !password.contains('\0'));
        for authzid in ["", user.as_str()] {
            let again = format!("{authzid}\0{user}\0{password}");
            let back = parse_plain(again.as_bytes()).map(|(u, p)| (u, p.expose().to_owned()));
            assert_eq!(back, Ok((user.clone(), password.clone())));
        }
    }
}

fn login(user: &[u8], password: &[u8]) {
    let (mut c, first) = match Conversation::start(Mechanism::Login, None) {
        Ok(started) => started,
        Err(e) => panic!("LOGIN refused: {e}"),
    };
    assert_eq!(first, Step::Challenge(USERNAME_CHALLENGE));
    let step = c.answer(&STANDARD.encode(user));
    let name = std::str::from_utf8(user)
        .ok()
        .filter(|u| !u.is_empty() && !u.contains('\0'));
    let Some(name) = name else {
        assert_eq!(step, Err(SaslError::Malformed));
        return;
    };
    assert_eq!(step, Ok(Step::Challenge(PASSWORD_CHALLENGE)));
    assert_eq!(c.user(), Some(name));
    let got = credentials(c.answer(&STANDARD.encode(password)));
    match std::str::from_utf8(password) {
        Ok(p) => assert_eq!(got, Ok((name.to_owned(), p.to_owned()))),
        Err(_) => assert_eq!(got, Err(SaslError::Malformed)),
    }
}

/// Text that is not base64 (or is, by chance): never a panic, and whatever is accepted
/// is what the base64 said.
fn any_text(text: &str) {
    for mechanism in [Mechanism::Plain, Mechanism::Login] {
        match Conversation::start(mechanism, Some(text)) {
            Err(SaslError::InvalidBase64) => assert!(STANDARD.decode(text.trim()).is_err()),
            Err(_) => {}
            Ok((mut c, _)) => {
                let _ = c.answer(text);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => plain(rest),
        1 => {
            let cut = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
            let (user, password) = rest.split_at(cut);
            login(user, password.get(1..).unwrap_or_default());
        }
        _ => any_text(&String::from_utf8_lossy(rest)),
    }
});
