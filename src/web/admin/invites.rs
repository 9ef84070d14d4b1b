//! Invites: the list, creating one (its code shown once), one invite with the accounts
//! made with it, revoking one by id.
//!
//! ```text
//! GET  /admin/invites
//! POST /admin/invites  uses=5&expires=30d&lifetime=7d&comment=for+Alice&csrf=..
//! GET  /admin/invites/7
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
        .route("/admin/invites/{id}", get(invite_page))
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
                label for="lifetime" { "Account lifetime" }
                input #lifetime type="text" name="lifetime" placeholder="7d, or empty for permanent accounts";
                p .hint { "Accounts made with it are deleted this long after their creation." }
                label for="comment" { "Comment" }
                input #comment type="text" name="comment" placeholder="for Alice";
                button type="submit" { "Create invite" }
            }
        }
        h2 { "All invites" }
        table #invites {
            thead { tr {
                th scope="col" { "Id" } th scope="col" { "Status" } th scope="col" { "Uses" }
                th scope="col" { "Expires" } th scope="col" { "Account lifetime" }
                th scope="col" { "Created" } th scope="col" { "Comment" }
                th scope="col" { span .sr-only { "Action" } }
            } }
            tbody {
                @for t in &tokens {
                    @let status = t.status.as_str();
                    tr data-id=(t.id) {
                        td { a href=(format!("/admin/invites/{}", t.id)) { (t.id) } }
                        td .status { (status.replace('_', " ")) }
                        td { (t.uses) " of " (t.max_uses) }
                        td { (pages::when(t.expires_at)) }
                        td { (lifetime(t.account_lifetime)) }
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

/// Only ids come through the invites' paths: a code in a URL would end up in access
/// logs. Anything else goes back to the list with a message.
fn not_an_id(state: &AppState, admin: &Admin, id: &str) -> Option<Response> {
    id.parse::<i64>().is_err().then(|| {
        done(
            state,
            admin,
            "/admin/invites",
            Err(format!("there is no invite {id}")),
        )
    })
}

fn lifetime(l: Option<u64>) -> String {
    l.map_or_else(|| "permanent".to_owned(), |l| Seconds(l).to_string())
}

async fn invite_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    admin: Admin,
) -> Response {
    let config = state.accounts().config();
    if let Some(refused) = not_an_id(&state, &admin, &id) {
        return refused;
    }
    let d = match state.accounts().token_detail(&id).await {
        Ok(d) => d,
        Err(e) if e.is_unavailable() => {
            error_text(&e);
            return unavailable(&config);
        }
        Err(e) => return done(&state, &admin, "/admin/invites", Err(error_text(&e))),
    };
    let t = &d.invite;
    let s = &admin.0;
    let content = html! {
        p { a href="/admin/invites" { "All invites" } }
        h1 { "Invite " (t.id) }
        dl #invite {
            dt { "Status" } dd .status { (t.status.as_str().replace('_', " ")) }
            dt { "Uses" } dd #uses { (t.uses) " of " (t.max_uses) }
            dt { "Remaining uses" } dd #remaining { (t.remaining_uses()) }
            dt { "Expires" } dd { (pages::when(t.expires_at)) }
            dt { "Account lifetime" } dd #lifetime { (lifetime(t.account_lifetime)) }
            dt { "Created" } dd { (pages::when(Some(t.created_at))) }
            dt { "Comment" } dd { (t.comment.as_deref().unwrap_or("")) }
        }
        @if t.revoked_at.is_none() {
            form method="post" action=(format!("/admin/invites/{}/revoke", t.id)) {
                (csrf(s))
                button .secondary .small type="submit" { "Revoke" }
            }
        }
        h2 { "Accounts made with it" }
        @if d.accounts.is_empty() {
            p { "None yet (accounts deleted since are not listed)." }
        } @else {
            table #invite-accounts {
                thead { tr { th scope="col" { "Address" } th scope="col" { "Created" } } }
                tbody {
                    @for (address, at) in &d.accounts {
                        tr {
                            td { a href=(super::accounts::account_href(address.as_str())) { (address) } }
                            td { (pages::when(Some(*at))) }
                        }
                    }
                }
            }
        }
    };
    render(
        &state,
        &admin,
        "invites",
        &format!("Invite {}", t.id),
        content,
    )
    .into_response()
}

/// The form of `POST /admin/invites`.
#[derive(Debug, PartialEq)]
struct CreateInvite {
    uses: u32,
    expires: Option<Seconds>,
    lifetime: Option<Seconds>,
    comment: Option<String>,
}

impl CreateInvite {
    fn from_form(fields: &Fields) -> Result<CreateInvite, String> {
        let uses = match fields.text("uses").unwrap_or("1").parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => return Err("Uses must be a whole number, at least 1.".into()),
        };
        let expires = fields.text("expires").map(Seconds::parse).transpose()?;
        let lifetime = fields
            .text("lifetime")
            .map(Seconds::parse)
            .transpose()
            .map_err(|e| format!("Account lifetime: {e}"))?;
        Ok(CreateInvite {
            uses,
            expires,
            lifetime,
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
        .create_invite(
            &admin.actor(),
            form.uses,
            form.expires,
            form.lifetime,
            form.comment,
        )
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
    if let Some(refused) = not_an_id(&state, &admin, &id) {
        return refused;
    }
    let result = state
        .accounts()
        .revoke_token(&admin.actor(), &id)
        .await
        .map(|(row, revoked)| {
            if revoked {
                format!("Invite {} is revoked.", row.id)
            } else {
                format!("Invite {} was already revoked.", row.id)
            }
        })
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
        assert_eq!(form.lifetime, None);
        assert_eq!(form.comment.as_deref(), Some("for Alice"));
        let form = CreateInvite::from_form(&Fields::parse(b"uses=3&lifetime=7d")).unwrap();
        assert_eq!(form.lifetime, Some(Seconds(7 * 86400)));
        let e = CreateInvite::from_form(&Fields::parse(b"lifetime=soon")).unwrap_err();
        assert_eq!(
            e,
            "Account lifetime: `soon` is not a duration such as 90d, 72h, 30m or 10s"
        );
    }
}
