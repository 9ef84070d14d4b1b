//! Invites: the list, creating one (its code shown once), revoking one by id.
//!
//! ```text
//! GET  /admin/invites
//! POST /admin/invites  uses=5&expires=30d&comment=for+Alice&csrf=..
//! POST /admin/invites/7/revoke  csrf=..
//! ```

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;

use super::super::form::Fields;
use super::super::{pages, AppState};
use super::{csrf, done, error_text, render, unavailable, Admin, AdminForm};
use crate::config::Seconds;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/invites", get(invites_page).post(create_invite))
        .route("/admin/invites/{id}/revoke", post(revoke_invite))
}

async fn invites_page(State(state): State<AppState>, admin: Admin) -> Response {
    invites(&state, &admin, None).await
}

/// A new invite, shown once.
struct NewInvite {
    id: i64,
    code: String,
    link: String,
}

async fn invites(state: &AppState, admin: &Admin, created: Option<NewInvite>) -> Response {
    let config = state.accounts().config();
    let tokens = match state.accounts().tokens().await {
        Ok(t) => t,
        Err(e) => {
            error_text(&e);
            return unavailable(&config);
        }
    };
    let s = &admin.0;
    let content = html! {
        h1 { "Invites" }
        @if let Some(n) = &created {
            section #new-invite aria-labelledby="new-invite-h" {
                h2 #new-invite-h { "Invite " (n.id) " created" }
                p { "Send the link, or let the person scan the QR code with Delta Chat. "
                    strong { "This is the only time the code is shown" } ": postern keeps only its hash." }
                dl {
                    dt { "Code" } dd { span .secret #invite-code { (n.code) } }
                    dt { "Sign-up link" } dd { a #invite-link href=(n.link) { (n.link) } }
                    dt { "Delta Chat" } dd { code #invite-dcaccount { "DCACCOUNT:" (n.link) } }
                }
                @let dc = format!("DCACCOUNT:{}", n.link);
                (pages::qr_code(&dc, "QR code of the invite for Delta Chat"))
            }
        }
        section aria-labelledby="create-h" {
            h2 #create-h { "Create an invite" }
            form method="post" action="/admin/invites" {
                (csrf(s))
                label for="uses" { "Uses" }
                input #uses type="number" name="uses" min="1" value="1" required;
                p .hint { "How many accounts it may create." }
                label for="expires" { "Expires after" }
                input #expires type="text" name="expires" placeholder="72h, 30d, or empty for never";
                label for="comment" { "Comment" }
                input #comment type="text" name="comment" placeholder="for Alice";
                button type="submit" { "Create invite" }
            }
        }
        h2 { "All invites" }
        table #invites {
            thead { tr {
                th scope="col" { "Id" } th scope="col" { "Status" } th scope="col" { "Uses" }
                th scope="col" { "Expires" } th scope="col" { "Created" } th scope="col" { "Comment" }
                th scope="col" { span .sr-only { "Action" } }
            } }
            tbody {
                @for t in &tokens {
                    @let status = t.status.as_str();
                    tr data-id=(t.id) {
                        td { (t.id) }
                        td .status { (status.replace('_', " ")) }
                        td { (t.uses) " of " (t.max_uses) }
                        td { (pages::when(t.expires_at)) }
                        td { (pages::when(Some(t.created_at))) }
                        td { (t.comment.as_deref().unwrap_or("")) }
                        td {
                            @if t.revoked_at.is_none() {
                                form method="post" action=(format!("/admin/invites/{}/revoke", t.id)) {
                                    (csrf(s))
                                    button .secondary .small type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    render(state, admin, "invites", "Invites", content).into_response()
}

/// The form of `POST /admin/invites`.
#[derive(Debug, PartialEq)]
struct CreateInvite {
    uses: u32,
    expires: Option<Seconds>,
    comment: Option<String>,
}

impl CreateInvite {
    fn from_form(fields: &Fields) -> Result<CreateInvite, String> {
        let uses = match fields.text("uses").unwrap_or("1").parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => return Err("Uses must be a whole number, at least 1.".into()),
        };
        let expires = fields.text("expires").map(Seconds::parse).transpose()?;
        Ok(CreateInvite {
            uses,
            expires,
            comment: fields.text("comment").map(str::to_owned),
        })
    }
}

async fn create_invite(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let form = match CreateInvite::from_form(&fields) {
        Ok(f) => f,
        Err(e) => return done(&state, &admin, "/admin/invites", Err(e)),
    };
    match state
        .accounts()
        .create_token(&admin.actor(), form.uses, form.expires, form.comment)
        .await
    {
        Ok((row, code)) => {
            let link = state.accounts().signup_link(&code);
            let created = NewInvite {
                id: row.id,
                code,
                link,
            };
            invites(&state, &admin, Some(created)).await
        }
        Err(e) => done(&state, &admin, "/admin/invites", Err(error_text(&e))),
    }
}

async fn revoke_invite(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminForm { admin, .. }: AdminForm,
) -> Response {
    // Only ids come through here: a code in a URL would end up in access logs.
    if id.parse::<i64>().is_err() {
        return done(
            &state,
            &admin,
            "/admin/invites",
            Err(format!("there is no invite {id}")),
        );
    }
    let result = state
        .accounts()
        .revoke_token(&admin.actor(), &id)
        .await
        .map(|row| format!("Invite {} is revoked.", row.id))
        .map_err(|e| error_text(&e));
    done(&state, &admin, "/admin/invites", result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_form_needs_at_least_one_use() {
        let form = CreateInvite::from_form(&Fields::parse(b"uses=0")).unwrap_err();
        assert_eq!(form, "Uses must be a whole number, at least 1.");
        let form = CreateInvite::from_form(&Fields::parse(b"comment=for+Alice")).unwrap();
        assert_eq!(form.uses, 1);
        assert_eq!(form.expires, None);
        assert_eq!(form.comment.as_deref(), Some("for Alice"));
    }
}
