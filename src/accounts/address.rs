//! Address normalization and the local-part rules, applied once before any lookup.
//!
//! ```text
//! "  Alice@EXAMPLE.org " -> alice@example.org
//! "bob@bücher.example"   -> bob@xn--bcher-kva.example
//! ```
//!
//! Lookups only normalize (so accounts made under older rules keep working); creation
//! also applies the local-part rules. The mail home is built here too, and refused when
//! an address could make it leave the mail root.

use std::fmt;
use std::path::PathBuf;

use crate::config::UsernameRules;

/// Why an address was refused. The text is meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("an address has exactly one @")]
    NotOneAt,
    #[error("the domain is not valid")]
    BadDomain,
    #[error("this server does not serve addresses at {0}")]
    DomainNotServed(String),
    #[error("the username must be {min} to {max} characters long")]
    Length { min: usize, max: usize },
    #[error("the username may contain only a-z, 0-9, '.', '_' and '-'")]
    BadCharacter,
    #[error("the username must start with a letter or a digit")]
    BadStart,
    #[error("the username may not end with '.' or contain '..'")]
    Dots,
    #[error("this username is reserved")]
    Reserved,
    #[error("this address cannot have a mail home")]
    UnsafePath,
}

/// A normalized address: lowercase, one `@`, ASCII (IDNA) domain that postern serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    full: String,
    at: usize,
}

impl Address {
    /// Normalizes `raw` (trim, lowercase, IDNA) and checks that postern serves its domain.
    pub fn parse(raw: &str, domains: &[String]) -> Result<Address, AddressError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(AddressError::Empty);
        }
        let mut parts = raw.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(AddressError::NotOneAt);
        };
        if local.is_empty() || local.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(AddressError::BadCharacter);
        }
        // A served domain as written in the configuration, in any case: its normal form
        // is the configured one (the common case, without IDNA's work).
        if let Some(served) = domains.iter().find(|d| d.eq_ignore_ascii_case(domain)) {
            return Ok(Address::joined(local, served));
        }
        let domain = normalize_domain(domain)?;
        if !domains.contains(&domain) {
            return Err(AddressError::DomainNotServed(domain));
        }
        Ok(Address::joined(local, &domain))
    }

    /// `local` lowercased, `@`, and the normalized `domain`, in one allocation.
    fn joined(local: &str, domain: &str) -> Address {
        let mut full = if local.is_ascii() {
            let mut s = String::with_capacity(local.len() + 1 + domain.len());
            s.push_str(local);
            s.make_ascii_lowercase();
            s
        } else {
            local.to_lowercase()
        };
        let at = full.len();
        full.push('@');
        full.push_str(domain);
        Address { full, at }
    }

    /// Builds an address from a local part generated or typed without a domain.
    pub fn from_parts(
        local: &str,
        domain: &str,
        domains: &[String],
    ) -> Result<Address, AddressError> {
        Address::parse(&format!("{local}@{domain}"), domains)
    }

    /// An address the store holds: normalized when it was written, so taken as it is.
    pub(crate) fn from_canonical(full: String) -> Address {
        Address {
            at: full.rfind('@').unwrap_or(full.len()),
            full,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn local(&self) -> &str {
        &self.full[..self.at]
    }

    pub fn domain(&self) -> &str {
        self.full.get(self.at + 1..).unwrap_or("")
    }

    /// The rules a new account's local part must meet.
    pub fn check_rules(&self, rules: &UsernameRules) -> Result<(), AddressError> {
        check_local(self.local(), rules)
    }
}

/// An address reads as its text wherever a `&str` is wanted.
impl std::ops::Deref for Address {
    type Target = str;

    fn deref(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.full)
    }
}

/// Lowercases and IDNA-encodes a domain ([`crate::domain::normalize`]).
pub fn normalize_domain(domain: &str) -> Result<String, AddressError> {
    crate::domain::normalize(domain).map_err(|_| AddressError::BadDomain)
}

fn check_local(local: &str, rules: &UsernameRules) -> Result<(), AddressError> {
    let len = local.chars().count();
    if len < rules.min_length || len > rules.max_length {
        return Err(AddressError::Length {
            min: rules.min_length,
            max: rules.max_length,
        });
    }
    if !local
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(AddressError::BadCharacter);
    }
    if !local
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return Err(AddressError::BadStart);
    }
    if local.ends_with('.') || local.contains("..") {
        return Err(AddressError::Dots);
    }
    if rules.reserved.iter().any(|r| r.eq_ignore_ascii_case(local)) {
        return Err(AddressError::Reserved);
    }
    Ok(())
}

/// Fills the mail home template for `address`. Refuses a result that would not lie
/// strictly below the template's fixed root (the part before the first placeholder).
pub fn mail_home(template: &str, address: &Address) -> Result<PathBuf, AddressError> {
    for part in [address.local(), address.domain()] {
        if part.is_empty()
            || part.bytes().any(|b| b == b'/' || b == 0)
            || part == "."
            || part == ".."
        {
            return Err(AddressError::UnsafePath);
        }
    }
    let path = fill(template, address);
    if !strictly_below(&path, root_len(template)) {
        return Err(AddressError::UnsafePath);
    }
    Ok(PathBuf::from(path))
}

/// Whether `path`, which begins with the template's text up to its first placeholder,
/// is absolute, has no `..`, and names something strictly below the root that its
/// first `root_len` bytes spell: what the component-wise check (`components()` all
/// root or normal, `starts_with(root)`, `!= root`) decides, on the text, since it runs
/// for every userdb lookup. A `.` or empty segment is what `Path` skips; the root is a
/// textual prefix ending before a `/`, so only the segments after it can make the
/// path differ from it.
fn strictly_below(path: &str, root_len: usize) -> bool {
    let path = path.as_bytes();
    path.first() == Some(&b'/')
        && !path.split(|&b| b == b'/').any(|segment| segment == b"..")
        && path.get(root_len..).is_some_and(|below| {
            below
                .split(|&b| b == b'/')
                .any(|s| !s.is_empty() && s != b".")
        })
}

/// The length of [`home_root`]'s text in the template: up to the last `/` before its
/// first placeholder (0 for the root directory itself).
fn root_len(template: &str) -> usize {
    let fixed = template.split('{').next().unwrap_or(template);
    fixed.rfind('/').unwrap_or(0)
}

/// The template with `{address}`, `{local}` and `{domain}` filled in, in one pass: text
/// put in is never read for placeholders again.
fn fill(template: &str, address: &Address) -> String {
    let mut out = String::with_capacity(template.len() + 2 * address.len());
    let placeholders = [
        ("{address}", address.as_str()),
        ("{local}", address.local()),
        ("{domain}", address.domain()),
    ];
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        match placeholders
            .iter()
            .find_map(|(name, value)| rest.strip_prefix(name).map(|after| (value, after)))
        {
            Some((value, after)) => {
                out.push_str(value);
                rest = after;
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The fixed directory every mail home lies below: the template up to the last `/`
/// before its first placeholder.
pub fn home_root(template: &str) -> PathBuf {
    match root_len(template) {
        0 => PathBuf::from("/"),
        len => PathBuf::from(&template[..len]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["example.org".into(), "xn--bcher-kva.example".into()]
    }

    #[test]
    fn normalizes_case_space_and_idna() {
        let a = Address::parse("  Alice@EXAMPLE.org ", &domains()).expect("valid");
        assert_eq!(a.as_str(), "alice@example.org");
        assert_eq!(a.local(), "alice");
        assert_eq!(a.domain(), "example.org");
        let b = Address::parse("bob@Bücher.example", &domains()).expect("valid");
        assert_eq!(b.as_str(), "bob@xn--bcher-kva.example");
    }

    #[test]
    fn the_served_domain_in_any_case_reads_as_its_configured_form() {
        let d = domains();
        for (raw, want) in [
            ("Bob@Example.ORG", "bob@example.org"),
            ("bob@example.org.", "bob@example.org"),
            ("bob@XN--BCHER-KVA.example", "bob@xn--bcher-kva.example"),
            ("Ünïcode@example.org", "ünïcode@example.org"),
        ] {
            let a = Address::parse(raw, &d).expect(raw);
            assert_eq!(
                (a.as_str(), a.local()),
                (want, &want[..want.rfind('@').unwrap()])
            );
        }
        assert_eq!(
            Address::parse("bob@example.org.evil", &d),
            Err(AddressError::DomainNotServed("example.org.evil".into()))
        );
    }

    #[test]
    fn the_textual_home_check_decides_as_the_component_wise_one() {
        use std::path::Component;
        // The check `mail_home` made before, on `Path`'s components, with its own root.
        fn by_components(template: &str, address: &Address) -> bool {
            let path = PathBuf::from(fill(template, address));
            let fixed = template.split('{').next().unwrap_or(template);
            let root = match fixed.rfind('/') {
                Some(0) | None => PathBuf::from("/"),
                Some(i) => PathBuf::from(&fixed[..i]),
            };
            assert_eq!(home_root(template), root, "{template}");
            path.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
                && path.is_absolute()
                && path.starts_with(&root)
                && path != root
        }
        let d = domains();
        let templates = [
            "/var/vmail/{domain}/{local}",
            "/srv/mail/u-{address}",
            "/var/./vmail/{local}",
            "/var/../{local}",
            "/var/vmail/{local}/..",
            "/var/vmail/{local}/.",
            "/var/vmail/{local}/",
            "/var//vmail/{local}",
            "/var/vmail/.{local}",
            "/var/vmail/{local}.",
            "/var/vmail/{nope}/{local}",
            "/var/vmail/{{address}}",
            "/{local}",
            "/{",
            "/.",
            "/var/vmail/x",
            "/var/vmail/",
            "{local}",
            "vmail/{local}",
            "",
        ];
        for template in templates {
            for raw in [
                "alice@example.org",
                "a.b@example.org",
                "x{local}@example.org",
            ] {
                let a = Address::parse(raw, &d).expect(raw);
                assert_eq!(
                    mail_home(template, &a).is_ok(),
                    by_components(template, &a),
                    "{template} with {raw}"
                );
            }
        }
    }

    #[test]
    fn the_home_template_is_filled_once() {
        let d = domains();
        let home = |t: &str, a: &str| {
            mail_home(t, &Address::parse(a, &d).expect(a)).map(|p| p.display().to_string())
        };
        assert_eq!(
            home("/var/vmail/{domain}/{local}", "alice@example.org").as_deref(),
            Ok("/var/vmail/example.org/alice")
        );
        assert_eq!(
            home("/srv/{{address}}/x{", "alice@example.org").as_deref(),
            Ok("/srv/{alice@example.org}/x{")
        );
        // A placeholder's name inside the address stays as it is.
        assert_eq!(
            home("/var/vmail/{domain}/{local}", "a{domain}@example.org").as_deref(),
            Ok("/var/vmail/example.org/a{domain}")
        );
    }

    #[test]
    fn refuses_malformed_and_foreign() {
        let d = domains();
        assert_eq!(Address::parse("", &d), Err(AddressError::Empty));
        assert_eq!(
            Address::parse("a@b@example.org", &d),
            Err(AddressError::NotOneAt)
        );
        assert_eq!(Address::parse("alice", &d), Err(AddressError::NotOneAt));
        assert_eq!(
            Address::parse("alice@other.org", &d),
            Err(AddressError::DomainNotServed("other.org".into()))
        );
        assert_eq!(
            Address::parse("al ice@example.org", &d),
            Err(AddressError::BadCharacter)
        );
        assert_eq!(
            Address::parse("alice@exa/mple.org", &d),
            Err(AddressError::BadDomain)
        );
    }

    #[test]
    fn local_part_rules() {
        let rules = UsernameRules::default();
        let check = |s: &str| {
            Address::parse(&format!("{s}@example.org"), &domains())
                .and_then(|a| a.check_rules(&rules))
        };
        assert_eq!(check("alice"), Ok(()));
        assert_eq!(check("a.b_c-d9"), Ok(()));
        assert_eq!(check("ab"), Err(AddressError::Length { min: 3, max: 32 }));
        assert_eq!(
            check(&"a".repeat(33)),
            Err(AddressError::Length { min: 3, max: 32 })
        );
        assert_eq!(check(".alice"), Err(AddressError::BadStart));
        assert_eq!(check("_alice"), Err(AddressError::BadStart));
        assert_eq!(check("al..ice"), Err(AddressError::Dots));
        assert_eq!(check("alice."), Err(AddressError::Dots));
        assert_eq!(check("al+ice"), Err(AddressError::BadCharacter));
        assert_eq!(check("Postmaster"), Err(AddressError::Reserved));
        assert_eq!(check("al/ice"), Err(AddressError::BadCharacter));
    }

    #[test]
    fn mail_home_stays_below_root() {
        let a = Address::parse("alice@example.org", &domains()).expect("valid");
        assert_eq!(
            mail_home("/var/vmail/{domain}/{local}", &a),
            Ok(PathBuf::from("/var/vmail/example.org/alice"))
        );
        assert_eq!(
            home_root("/var/vmail/{domain}/{local}"),
            PathBuf::from("/var/vmail")
        );
        assert_eq!(
            home_root("/srv/mail/u-{address}"),
            PathBuf::from("/srv/mail")
        );
        // Lookups don't apply the creation rules, so the path check must hold on its own.
        let dots = Address::parse("..@example.org", &domains()).expect("parses");
        assert_eq!(
            mail_home("/var/vmail/{domain}/{local}", &dots),
            Err(AddressError::UnsafePath)
        );
        let slash = Address::parse("a/../../etc@example.org", &domains()).expect("parses");
        assert_eq!(
            mail_home("/var/vmail/{domain}/{local}", &slash),
            Err(AddressError::UnsafePath)
        );
    }
}
