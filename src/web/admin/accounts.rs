//! The accounts: the list and search, adding one, one account's page and its actions.
//!
//! ```text
//! GET  /admin/accounts?q=alice&blocked=1     -> the list (at most 500 rows)
//! POST /admin/accounts  address=..&password=..&quota=..&admin=1
//! GET  /admin/accounts/alice%40example.org
//! POST /admin/accounts/alice%40example.org/quota  quota=2G&csrf=..
//! ```

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

use super::super::form::{self, Fields};
use super::super::{pages, AppState};
use super::{csrf, done, error_text, message, render, unavailable, Admin, AdminForm};
use crate::accounts::admin::parse_quota;
use crate::accounts::password::Password;
use crate::accounts::{Account, AdminError, NewUser, QuotaSetting, QuotaSource, Route, Status};

/// Most accounts listed on one page; a search narrows the list.
const LIST_LIMIT: usize = 500;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/accounts", get(accounts_page).post(add_account))
        .route("/admin/accounts/{address}", get(account_page))
        .route("/admin/accounts/{address}/{action}", post(account_action))
}

pub(super) fn account_href(address: &str) -> String {
    format!("/admin/accounts/{}", form::encode(address))
}

fn quota_shown(row: &Account) -> String {
    let source = match row.quota.source {
        QuotaSource::Default => " (default)",
        QuotaSource::Explicit | QuotaSource::Unlimited => "",
    };
    format!("{}{source}", row.usage_text())
}

fn created_shown(row: &Account) -> String {
    let mut s = format!(
        "{} via {}",
        pages::when(Some(row.created_at)),
        row.created_via
    );
    if let Some(t) = &row.invite {
        s.push_str(&format!(" (invite {})", t.id));
    }
    s
}

fn badges(row: &Account) -> Markup {
    html! {
        @if row.status.is_blocked() { span .badge .blocked { "blocked" } }
        @if row.admin { span .badge .admin { "admin" } }
    }
}

async fn accounts_page(
    State(state): State<AppState>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> Response {
    let config = state.accounts().config();
    let q = Fields::parse(query.as_deref().unwrap_or("").as_bytes());
    let search = q.text("q").map(str::to_owned);
    let blocked_only = q.flag("blocked");
    let rows = match state.accounts().users(blocked_only, search.clone()).await {
        Ok(r) => r,
        Err(e) => {
            error_text(&e);
            return unavailable(&config);
        }
    };
    // A count, not worth failing the page over.
    let queued_homes = state.accounts().queued_home_count().await.unwrap_or(0);
    let content = html! {
        h1 { "Accounts" }
        form .inline method="get" action="/admin/accounts" role="search" {
            label .sr-only for="q" { "Search by address" }
            input #q type="search" name="q" value=[search.as_deref()] placeholder="Search by address";
            label .check { input type="checkbox" name="blocked" value="1" checked[blocked_only]; "blocked only" }
            button .small type="submit" { "Search" }
        }
        p { (rows.len()) " account(s)"
            @if rows.len() > LIST_LIMIT { ", the first " (LIST_LIMIT) " shown: search to narrow the list" } }
        @if queued_homes > 0 {
            p #queued-homes { "Mail homes of deleted accounts waiting for removal: " (queued_homes)
                ". The next maintenance run (daily) removes them, or " code { "postern maintenance run" }
                " at once." }
        }
        table #accounts {
            thead { tr {
                th scope="col" { "Address" } th scope="col" { "Usage" } th scope="col" { "Created" }
                th scope="col" { "First login" } th scope="col" { "Last login" }
            } }
            tbody {
                @for row in rows.iter().take(LIST_LIMIT) {
                    tr data-address=(row.address) {
                        td { a href=(account_href(&row.address)) { (row.address) } (badges(row)) }
                        td { (quota_shown(row)) }
                        td { (created_shown(row)) }
                        td { (pages::when(row.first_login)) }
                        td { (pages::when(row.last_login)) }
                    }
                }
            }
        }
        section aria-labelledby="add-h" {
            h2 #add-h { "Add an account" }
            form method="post" action="/admin/accounts" {
                (csrf(&admin.0))
                label for="new-address" { "Address or username" }
                input #new-address type="text" name="address" required autocapitalize="none" spellcheck="false";
                label for="new-password" { "Password" }
                input #new-password type="password" name="password" autocomplete="new-password";
                p .hint { "Leave empty to generate one; it is shown once, with a QR code for Delta Chat." }
                label for="new-quota" { "Quota" }
                input #new-quota type="text" name="quota" placeholder="default";
                p .hint { "Such as 500M or 2G, \"unlimited\", or empty for the default (" (config.quota.default) ")." }
                label .check { input type="checkbox" name="admin" value="1"; "administrator" }
                button type="submit" { "Add account" }
            }
        }
    };
    render(&state, &admin, "accounts", "Accounts", content).into_response()
}

async fn add_account(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let Some(address) = fields.text("address") else {
        return done(
            &state,
            &admin,
            "/admin/accounts",
            Err("Enter an address.".into()),
        );
    };
    let quota = match parse_quota(fields.get("quota").unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return done(&state, &admin, "/admin/accounts", Err(e)),
    };
    let user = NewUser {
        address: address.to_owned(),
        password: fields
            .get("password")
            .filter(|p| !p.is_empty())
            .map(Password::new),
        quota,
        admin: fields.flag("admin"),
        route: Route::Admin,
    };
    match state.accounts().add_user(&admin.actor(), user).await {
        Ok((row, Some(password))) => {
            let config = state.accounts().config();
            let content = html! {
                h1 { "Account " (row.address) " created" }
                p { "Hand these to its owner; the password is not shown again." }
                (pages::account_ready(&config, &row.address, password.expose()))
                p { a href=(account_href(&row.address)) { "Manage this account" } }
            };
            render(&state, &admin, "accounts", "Account created", content).into_response()
        }
        Ok((row, None)) => done(
            &state,
            &admin,
            &account_href(&row.address),
            Ok(format!("Account {} created.", row.address)),
        ),
        Err(e) => done(&state, &admin, "/admin/accounts", Err(error_text(&e))),
    }
}

async fn account_page(
    State(state): State<AppState>,
    admin: Admin,
    Path(address): Path<String>,
) -> Response {
    let config = state.accounts().config();
    let row = match state.accounts().user(&address).await {
        Ok(r) => r,
        Err(AdminError::Unavailable(e)) => {
            error_text(&AdminError::Unavailable(e));
            return unavailable(&config);
        }
        Err(e) => {
            let content = html! {
                h1 { "No such account" }
                p .error role="alert" { (error_text(&e)) }
                p { a href="/admin/accounts" { "All accounts" } }
            };
            return (
                StatusCode::NOT_FOUND,
                render(&state, &admin, "accounts", "No such account", content),
            )
                .into_response();
        }
    };
    let action = |name: &str| format!("{}/{name}", account_href(&row.address));
    let s = &admin.0;
    let content = html! {
        h1 { (row.address) (badges(&row)) }
        section #details {
            dl {
                dt { "Status" }
                dd #status {
                    @match &row.status {
                        Status::Blocked { reason, since } => {
                            "blocked since " (pages::when(Some(*since)))
                            @if let Some(r) = reason { " (" (r) ")" }
                        }
                        Status::Active => "active",
                    }
                }
                dt { "Administrator" } dd { @if row.admin { "yes" } @else { "no" } }
                dt { "Created" } dd { (created_shown(&row)) }
                dt { "First login" } dd { (pages::when(row.first_login)) }
                dt { "Last login" } dd { (pages::when(row.last_login)) }
                @if let Some(at) = row.expires_at {
                    dt { "Expires" } dd #expires { (pages::when(Some(at))) " (deleted by the maintenance run)" }
                }
                dt { "Usage" } dd { (quota_shown(&row)) ", " (row.usage.messages) " messages (reported " (pages::when(row.usage.updated_at)) ")" }
            }
        }
        section aria-labelledby="block-h" {
            @if row.status.is_blocked() {
                h2 #block-h { "Unblock" }
                p { "The account can log in and receive mail again." }
                form method="post" action=(action("unblock")) {
                    (csrf(s))
                    button type="submit" { "Unblock" }
                }
            } @else {
                h2 #block-h { "Block" }
                p { "A blocked account cannot log in or receive mail; its mail is kept." }
                form method="post" action=(action("block")) {
                    (csrf(s))
                    label for="reason" { "Reason (optional)" }
                    input #reason type="text" name="reason";
                    button .danger type="submit" { "Block" }
                }
            }
        }
        section aria-labelledby="quota-h" {
            h2 #quota-h { "Quota" }
            form method="post" action=(action("quota")) {
                (csrf(s))
                label for="quota" { "New quota" }
                input #quota type="text" name="quota" required placeholder="500M, 2G, unlimited or default";
                button type="submit" { "Set quota" }
            }
        }
        section aria-labelledby="password-h" {
            h2 #password-h { "Password" }
            form method="post" action=(action("password")) {
                (csrf(s))
                label for="new-password" { "New password" }
                input #new-password type="password" name="password" autocomplete="new-password";
                p .hint { "Leave empty to generate one; it is shown once. Devices using the old password are logged out." }
                button type="submit" { "Reset password" }
            }
        }
        section aria-labelledby="admin-h" {
            h2 #admin-h { "Administrator" }
            form method="post" action=(action("admin")) {
                (csrf(s))
                @if row.admin {
                    input type="hidden" name="admin" value="0";
                    button .secondary type="submit" { "Revoke administrator rights" }
                } @else {
                    input type="hidden" name="admin" value="1";
                    button .secondary type="submit" { "Make administrator" }
                }
            }
        }
        section aria-labelledby="delete-h" {
            h2 #delete-h { "Delete" }
            form method="post" action=(action("delete")) {
                (csrf(s))
                label .check { input type="checkbox" name="keep_mail" value="1"; "keep the mail on disk" }
                label .check { input type="checkbox" name="allow_reuse" value="1";
                    "let the address be registered again (otherwise it stays on the blocklist)" }
                label .check { input type="checkbox" name="confirm" value="1" required; "yes, delete " (row.address) }
                button .danger type="submit" { "Delete account" }
            }
        }
    };
    render(&state, &admin, "accounts", &row.address, content).into_response()
}

/// What `POST /admin/accounts/{address}/{action}` asks, read from the action's name and
/// its form. Reading it checks the form (a quota that parses, the confirmation box).
#[derive(Debug)]
enum AccountAction {
    Block {
        reason: Option<String>,
    },
    Unblock,
    Quota(QuotaSetting),
    Admin(bool),
    /// A new password, or `None` to generate one (shown once).
    Password(Option<Password>),
    Delete {
        keep_mail: bool,
        allow_reuse: bool,
    },
}

impl AccountAction {
    /// `None` for an action that does not exist; `Some(Err(text))` for a form the
    /// operator must correct.
    fn from_form(name: &str, fields: &Fields) -> Option<Result<AccountAction, String>> {
        Some(Ok(match name {
            "block" => AccountAction::Block {
                reason: fields.text("reason").map(str::to_owned),
            },
            "unblock" => AccountAction::Unblock,
            "quota" => match parse_quota(fields.get("quota").unwrap_or("")) {
                Ok(q) => AccountAction::Quota(q),
                Err(e) => return Some(Err(e)),
            },
            "admin" => AccountAction::Admin(fields.get("admin") == Some("1")),
            "password" => AccountAction::Password(
                fields
                    .get("password")
                    .filter(|p| !p.is_empty())
                    .map(Password::new),
            ),
            "delete" => {
                if !fields.flag("confirm") {
                    return Some(Err(
                        "Tick the confirmation box to delete the account.".into()
                    ));
                }
                AccountAction::Delete {
                    keep_mail: fields.flag("keep_mail"),
                    allow_reuse: fields.flag("allow_reuse"),
                }
            }
            _ => return None,
        }))
    }
}

async fn account_action(
    State(state): State<AppState>,
    Path((address, action)): Path<(String, String)>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let accounts = state.accounts();
    let here = account_href(&address);
    let action = match AccountAction::from_form(&action, &fields) {
        Some(Ok(a)) => a,
        Some(Err(text)) => return done(&state, &admin, &here, Err(text)),
        None => {
            let config = accounts.config();
            return message(
                &config,
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such action.",
            );
        }
    };
    let result = match action {
        AccountAction::Block { reason } => accounts
            .block_user(&admin.actor(), &address, reason)
            .await
            .map(|a| format!("{a} is blocked.")),
        AccountAction::Unblock => {
            accounts
                .unblock_user(&admin.actor(), &address)
                .await
                .map(|(a, was)| {
                    if was {
                        format!("{a} is unblocked.")
                    } else {
                        format!("{a} was not blocked.")
                    }
                })
        }
        AccountAction::Quota(q) => accounts
            .set_user_quota(&admin.actor(), &address, q)
            .await
            .map(|a| format!("The quota of {} is set.", a.address)),
        AccountAction::Admin(make) => accounts
            .set_user_admin(&admin.actor(), &address, make)
            .await
            .map(|a| {
                if make {
                    format!("{a} is now an administrator.")
                } else {
                    format!("{a} is no longer an administrator.")
                }
            }),
        AccountAction::Password(typed) => {
            match accounts.set_password(&admin.actor(), &address, typed).await {
                Ok((_, Some(password))) => {
                    let config = accounts.config();
                    let content = html! {
                        h1 { "New password for " (address) }
                        p { "Hand these to the account's owner; the password is not shown again." }
                        (pages::account_ready(&config, &address, password.expose()))
                        p { a href=(here) { "Back to the account" } }
                    };
                    return render(&state, &admin, "accounts", "New password", content)
                        .into_response();
                }
                Ok((a, None)) => Ok(format!("The password of {a} is changed.")),
                Err(e) => Err(e),
            }
        }
        AccountAction::Delete {
            keep_mail,
            allow_reuse,
        } => {
            // The daemon never removes mail homes itself: the deletion queues the home
            // for `postern maintenance run` (see `Accounts::delete_user`).
            match accounts
                .delete_user(&admin.actor(), &address, keep_mail, allow_reuse)
                .await
            {
                Ok(d) => {
                    let mut text = format!("{} is deleted", d.account.address);
                    if d.still_blocked {
                        text.push_str("; the address stays on the blocklist");
                    }
                    text.push('.');
                    match &d.mail_queued {
                        Some(home) => text.push_str(&format!(
                            " Its mail home {} will be removed by the next maintenance run \
                             (daily), or at once by `postern maintenance run` on the server.",
                            home.display()
                        )),
                        None => text.push_str(" Its mail stays on disk."),
                    }
                    return done(&state, &admin, "/admin/accounts", Ok(text));
                }
                Err(e) => Err(e),
            }
        }
    };
    done(&state, &admin, &here, result.map_err(|e| error_text(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_as_the_cli_reads_them() {
        assert_eq!(
            account_href("a+b@example.org"),
            "/admin/accounts/a%2Bb%40example.org"
        );
    }
}
