//! The registration mode, set at run time over the configuration file's.
//!
//! ```text
//! GET  /admin/registration
//! POST /admin/registration  mode=invite_only&csrf=..   (or mode=default)
//! ```

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

use super::super::form::Fields;
use super::super::AppState;
use super::{csrf, done, error_text, render, unavailable, Admin, AdminForm};
use crate::accounts::AdminError;
use crate::config::RegistrationMode;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/admin/registration",
        get(registration_page).post(set_registration),
    )
}

fn mode_text(mode: RegistrationMode) -> &'static str {
    match mode {
        RegistrationMode::Open => "open: anyone may create an account",
        RegistrationMode::InviteOnly => "invite only: an invite code is needed",
        RegistrationMode::Closed => "closed: nobody can create an account",
    }
}

async fn registration_page(State(state): State<AppState>, admin: Admin) -> Response {
    let config = state.accounts().config();
    let (mode, over) = match (
        state.accounts().registration_mode().await,
        state.accounts().registration_override().await,
    ) {
        (Ok(m), Ok(o)) => (m, o),
        (Err(e), _) => {
            error_text(&AdminError::Unavailable(e));
            return unavailable(&config);
        }
        (_, Err(e)) => {
            error_text(&e);
            return unavailable(&config);
        }
    };
    let file_mode = config.registration.mode;
    let s = &admin.0;
    let content = html! {
        h1 { "Registration" }
        p #mode { "Registration is " strong #mode-value { (mode.as_str()) } " (" (mode_text(mode)) ")"
            @if over.is_some() { ", set here at run time" } @else { ", as in the configuration file" } "." }
        p .hint { "Just-in-time creation at the first login (in open mode) is "
            @if config.registration.jit { "on" } @else { "off" } " in the configuration file." }
        form method="post" action="/admin/registration" {
            (csrf(s))
            fieldset {
                legend { "New mode" }
                @for m in [RegistrationMode::Open, RegistrationMode::InviteOnly, RegistrationMode::Closed] {
                    label .check {
                        input type="radio" name="mode" value=(m.as_str()) checked[over == Some(m)];
                        (mode_text(m))
                    }
                }
                label .check {
                    input type="radio" name="mode" value="default" checked[over.is_none()];
                    "as in the configuration file (" (file_mode.as_str()) ")"
                }
            }
            button type="submit" { "Apply" }
            p .hint { "Takes effect at once for every postern process sharing the database, and survives restarts." }
        }
    };
    render(&state, &admin, "registration", "Registration", content).into_response()
}

/// The form of `POST /admin/registration`: a mode, or `None` for the file's.
fn chosen_mode(fields: &Fields) -> Result<Option<RegistrationMode>, String> {
    match fields.text("mode") {
        Some("default") => Ok(None),
        Some(m) => RegistrationMode::parse(m)
            .map(Some)
            .ok_or_else(|| "Choose open, invite_only, closed or default.".into()),
        None => Err("Choose a mode.".into()),
    }
}

async fn set_registration(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let mode = match chosen_mode(&fields) {
        Ok(m) => m,
        Err(e) => return done(&state, &admin, "/admin/registration", Err(e)),
    };
    let result = state
        .accounts()
        .set_registration_mode(&admin.actor(), mode)
        .await
        .map(|now| format!("Registration is now {now}."))
        .map_err(|e| error_text(&e));
    done(&state, &admin, "/admin/registration", result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registration_form_names_a_mode_or_default() {
        let mode = |body: &[u8]| chosen_mode(&Fields::parse(body));
        assert_eq!(mode(b"mode=default"), Ok(None));
        assert_eq!(
            mode(b"mode=invite_only"),
            Ok(Some(RegistrationMode::InviteOnly))
        );
        assert_eq!(
            mode(b"mode=sometimes"),
            Err("Choose open, invite_only, closed or default.".into())
        );
        assert_eq!(mode(b""), Err("Choose a mode.".into()));
    }
}
