//! Domain names as postern compares them: trimmed, without a trailing dot, lowercased
//! and IDNA-encoded, and refused unless they are host names. The ground floor: it uses
//! nothing else in the crate, so the configuration (`domains`) and the address rules
//! (`accounts::address`) share it without depending on each other.
//!
//! ```text
//! " Example.ORG. "  -> example.org
//! "bücher.example"  -> xn--bcher-kva.example
//! "exa mple.org"    -> BadDomain
//! ```

/// The text is not a host name postern can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the domain is not valid")]
pub struct BadDomain;

/// Lowercases and IDNA-encodes a domain; refuses anything that is not a host name.
pub fn normalize(domain: &str) -> Result<String, BadDomain> {
    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() {
        return Err(BadDomain);
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|_| BadDomain)?;
    let ok = !ascii.is_empty()
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(ascii)
    } else {
        Err(BadDomain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_normalized_and_the_rest_refused() {
        assert_eq!(normalize(" Example.ORG. ").as_deref(), Ok("example.org"));
        assert_eq!(
            normalize("bücher.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        for bad in [
            "",
            ".",
            "exa mple.org",
            "a..b",
            "exa/mple.org",
            &"a".repeat(64),
        ] {
            assert_eq!(normalize(bad), Err(BadDomain), "{bad:?}");
        }
    }
}
