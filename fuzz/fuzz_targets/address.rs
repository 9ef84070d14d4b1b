//! Address normalization and the mail home: a normalized address is lowercase and
//! normalizes to itself; its mail home lies strictly below the template's root and has
//! no `..` component, whatever the address and the template.
//!
//! Input: `<template>\n<address>`, or just an address with the shipped template.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use postern::accounts::address::{home_root, mail_home, normalize_domain, Address};
use postern::config::{Mailbox, UsernameRules};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let shipped = Mailbox::default().home;
    let (template, raw) = match text.split_once('\n') {
        Some((template, raw)) => (template, raw),
        None => (shipped.as_str(), &*text),
    };

    let domains: Vec<String> = raw
        .rsplit_once('@')
        .and_then(|(_, d)| normalize_domain(d).ok())
        .into_iter()
        .collect();
    for d in &domains {
        assert_eq!(normalize_domain(d).as_ref(), Ok(d), "domain not idempotent");
    }
    let Ok(address) = Address::parse(raw, &domains) else {
        return;
    };
    let full = address.as_str();
    assert_eq!(full, full.to_lowercase(), "not lowercase");
    assert_eq!(full, format!("{}@{}", address.local(), address.domain()));
    assert_eq!(
        Address::parse(full, &domains).as_ref(),
        Ok(&address),
        "not idempotent"
    );
    let _ = address.check_rules(&UsernameRules::default());

    if let Ok(home) = mail_home(template, &address) {
        let root = home_root(template);
        let shown = home.to_string_lossy();
        assert!(
            home.starts_with(&root) && home != root,
            "{shown} not below {root:?}"
        );
        assert!(shown.starts_with('/'), "{shown} is relative");
        assert!(!shown.split('/').any(|part| part == ".."), "{shown} climbs");
        // A NUL comes only from the operator's template, never from an address.
        assert!(template.contains('\0') || !shown.contains('\0'));
        assert!(Path::new(&*shown).is_absolute());
    }
});
