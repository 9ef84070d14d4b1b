//! The blocklist: addresses that cannot log in, receive mail or be registered.
//!
//! ```text
//! GET  /admin/blocklist
//! POST /admin/blocklist         address=spam%40example.org&reason=abuse&csrf=..
//! POST /admin/blocklist/remove  address=spam%40example.org&csrf=..
//! ```

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;

use super::super::form::Fields;
use super::super::{pages, AppState};
use super::{csrf, done, error_text, render, unavailable, Admin, AdminForm};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/blocklist", get(blocklist_page).post(blocklist_add))
        .route("/admin/blocklist/remove", post(blocklist_remove))
}

async fn blocklist_page(State(state): State<AppState>, admin: Admin) -> Response {
    let config = state.accounts().config();
    let entries = match state.accounts().blocklist().await {
        Ok(e) => e,
        Err(e) => {
            error_text(&e);
            return unavailable(&config);
        }
    };
    let s = &admin.0;
    let content = html! {
        h1 { "Blocklist" }
        p { "Addresses on the blocklist cannot log in, receive mail, or be registered." }
        section aria-labelledby="add-h" {
            h2 #add-h { "Add an address" }
            form method="post" action="/admin/blocklist" {
                (csrf(s))
                label for="block-address" { "Address" }
                input #block-address type="text" name="address" required autocapitalize="none" spellcheck="false";
                label for="block-reason" { "Reason (optional)" }
                input #block-reason type="text" name="reason";
                button .danger type="submit" { "Add to the blocklist" }
            }
        }
        table #blocklist {
            thead { tr { th scope="col" { "Address" } th scope="col" { "Since" } th scope="col" { "Reason" }
                th scope="col" { span .sr-only { "Action" } } } }
            tbody {
                @for b in &entries {
                    tr data-address=(b.address) {
                        td { (b.address) }
                        td { (pages::when(Some(b.since))) }
                        td { (b.reason.as_deref().unwrap_or("")) }
                        td {
                            form method="post" action="/admin/blocklist/remove" {
                                (csrf(s))
                                input type="hidden" name="address" value=(b.address);
                                button .secondary .small type="submit" { "Remove" }
                            }
                        }
                    }
                }
            }
        }
    };
    render(&state, &admin, "blocklist", "Blocklist", content).into_response()
}

/// What a blocklist form asks: both need an address.
#[derive(Debug, PartialEq)]
enum BlocklistAction {
    Add {
        address: String,
        reason: Option<String>,
    },
    Remove {
        address: String,
    },
}

impl BlocklistAction {
    fn add(fields: &Fields) -> Result<BlocklistAction, String> {
        Ok(BlocklistAction::Add {
            address: address(fields)?,
            reason: fields.text("reason").map(str::to_owned),
        })
    }

    fn remove(fields: &Fields) -> Result<BlocklistAction, String> {
        Ok(BlocklistAction::Remove {
            address: address(fields)?,
        })
    }
}

fn address(fields: &Fields) -> Result<String, String> {
    fields
        .text("address")
        .map(str::to_owned)
        .ok_or_else(|| "Enter an address.".into())
}

async fn blocklist_add(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    apply(&state, &admin, BlocklistAction::add(&fields)).await
}

async fn blocklist_remove(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    apply(&state, &admin, BlocklistAction::remove(&fields)).await
}

async fn apply(
    state: &AppState,
    admin: &Admin,
    action: Result<BlocklistAction, String>,
) -> Response {
    let accounts = state.accounts();
    let result = match action {
        Err(text) => Err(text),
        Ok(BlocklistAction::Add { address, reason }) => accounts
            .blocklist_add(&admin.actor(), &address, reason)
            .await
            .map(|(address, new)| {
                if new {
                    format!("{address} is on the blocklist.")
                } else {
                    format!("{address} was already on the blocklist.")
                }
            })
            .map_err(|e| error_text(&e)),
        Ok(BlocklistAction::Remove { address }) => accounts
            .blocklist_remove(&admin.actor(), &address)
            .await
            .map(|(address, was)| {
                if was {
                    format!("{address} is off the blocklist.")
                } else {
                    format!("{address} was not on the blocklist.")
                }
            })
            .map_err(|e| error_text(&e)),
    };
    done(state, admin, "/admin/blocklist", result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocklist_form_needs_an_address() {
        let empty = Fields::parse(b"address=+&reason=x");
        assert_eq!(
            BlocklistAction::add(&empty),
            Err("Enter an address.".to_owned())
        );
        assert_eq!(
            BlocklistAction::remove(&Fields::parse(b"address=a%40example.org")),
            Ok(BlocklistAction::Remove {
                address: "a@example.org".into()
            })
        );
    }
}
