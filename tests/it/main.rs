//! postern's behaviour tests: one integration binary, a module per area. Tests that say
//! Dovecot or Postfix start the real ones from Debian's packages.

// Test and measurement code: a failed step ends the run with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod account;
mod audit;
mod browser;
mod cli;
mod deltachat;
mod dict;
mod dovecot;
mod dovecot24;
mod fail2ban;
mod faults;
mod lifetime;
mod monitoring;
mod package;
mod policy;
mod postfix;
mod postgres;
mod sasl;
mod ship;
mod signup_guard;
mod systemd;
mod web;
