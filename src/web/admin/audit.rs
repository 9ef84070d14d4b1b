//! The audit trail: every operator action recorded by the core, newest first, a page at
//! a time. Read only; every value is escaped by maud like the rest of the pages.
//!
//! ```text
//! GET /admin/audit                          the newest 50
//! GET /admin/audit?address=alice%40example.org&page=2
//! ```

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

use super::super::form::{self, Fields};
use super::super::{pages, AppState};
use super::{error_text, render, unavailable, Admin};
use crate::accounts::{AdminError, AuditQuery};

/// Actions on one page.
const PAGE_SIZE: u32 = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/admin/audit", get(audit_page))
}

/// The link to `page` of the trail, keeping the address filter.
fn page_href(address: Option<&str>, page: u64) -> String {
    match address {
        Some(a) => format!("/admin/audit?address={}&page={page}", form::encode(a)),
        None => format!("/admin/audit?page={page}"),
    }
}

async fn audit_page(
    State(state): State<AppState>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> Response {
    let config = state.accounts().config();
    let q = Fields::parse(query.as_deref().unwrap_or("").as_bytes());
    let address = q.text("address").map(str::to_owned);
    // Pages count from 1; anything else is the first page.
    let page = q
        .text("page")
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|&p| p >= 1)
        .unwrap_or(1);
    // One more than a page: whether there is a next one.
    let result = state
        .accounts()
        .audit_trail(AuditQuery {
            since: None,
            address: address.clone(),
            limit: PAGE_SIZE + 1,
            offset: (page - 1).saturating_mul(u64::from(PAGE_SIZE)),
        })
        .await;
    let (mut entries, problem) = match result {
        Ok(e) => (e, None),
        Err(e @ AdminError::Unavailable(_)) => {
            error_text(&e);
            return unavailable(&config);
        }
        Err(e) => (Vec::new(), Some(error_text(&e))),
    };
    let more = entries.len() > PAGE_SIZE as usize;
    entries.truncate(PAGE_SIZE as usize);
    let content = html! {
        h1 { "Audit trail" }
        p { "Every change made by an operator: on these pages, with the " code { "postern" }
            " command, or by the daily maintenance. Passwords and invite codes are never recorded." }
        form .inline method="get" action="/admin/audit" role="search" {
            label .sr-only for="audit-address" { "Only actions about this address" }
            input #audit-address type="search" name="address" value=[address.as_deref()]
                placeholder="Only about this address" autocapitalize="none" spellcheck="false";
            button .small type="submit" { "Filter" }
        }
        @if let Some(text) = &problem { p .error role="alert" #error { (text) } }
        table #audit {
            thead { tr {
                th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                th scope="col" { "About" } th scope="col" { "Before" } th scope="col" { "After" }
            } }
            tbody {
                @for e in &entries {
                    tr data-id=(e.id) data-action=(e.action) {
                        td { (pages::when(Some(e.at))) }
                        td .who { (e.actor) ": " (e.actor_name) }
                        td .action { (e.action) }
                        td .target { (e.target.as_deref().unwrap_or("")) }
                        td .old { (e.old.as_deref().unwrap_or("")) }
                        td .new { (e.new.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        @if entries.is_empty() && problem.is_none() { p #audit-empty { "Nothing recorded here." } }
        nav .pages aria-label="Audit trail pages" {
            @if page > 1 { a #audit-newer href=(page_href(address.as_deref(), page - 1)) { "Newer" } " " }
            span { "Page " (page) }
            @if more { " " a #audit-older href=(page_href(address.as_deref(), page + 1)) { "Older" } }
        }
    };
    render(&state, &admin, "audit", "Audit trail", content).into_response()
}
