//! Second-factor pages: the second step of a sign-in (or a step-up), TOTP
//! enrollment with its QR code, recovery codes shown once, and the
//! security page where a user manages factors.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, PreEscaped, html};

use crate::identity::totp::TotpSecret;
use crate::server::pages::describe::exact;
use crate::server::pages::{Viewer, csp_with_form_target, layout, respond, respond_with_csp};
use crate::store::{FactorSet, Method};

/// What the second-step page shows.
pub struct StepView<'a> {
    pub user: &'a str,
    /// The methods the user can use, in the order offered.
    pub methods: &'a [Method],
    pub recovery_left: usize,
    /// Where to go afterwards, carried through the forms.
    pub rd: &'a str,
    pub error: Option<&'a str>,
    /// A signed-in session adding a factor, not a sign-in.
    pub step_up: bool,
    /// The origin `rd` leads to, when another site of ours (see the login
    /// page): allowed as a form target.
    pub continue_to: Option<&'a str>,
    /// Passkeys can be used on this origin.
    pub passkeys: bool,
}

/// The second step.
pub fn second_step(status: StatusCode, v: &StepView<'_>) -> Response {
    let totp = v.methods.contains(&Method::Totp);
    let recovery = v.methods.contains(&Method::Recovery);
    let passkey = v.passkeys && v.methods.contains(&Method::WebAuthn);
    let error_id = "code-error";
    let invalid = v.error.is_some().then_some("true");
    let described = v.error.is_some().then_some(error_id);
    let content = html! {
        div.card {
            h1 { "Confirm it's you" }
            @if v.step_up {
                p.lead { "This needs a second factor. Signed in as " strong { (v.user) } "." }
            } @else {
                p.lead { "Password accepted for " strong { (v.user) } ". One more step." }
            }
            @if let Some(e) = v.error {
                p.error id=(error_id) role="alert" { (e) }
            }
            @if passkey {
                div.actions {
                    button type="button" data-passkey="sign-in" data-start="/login/passkey/start"
                        data-finish="/login/passkey/finish" data-rd=(v.rd) {
                        "Use your passkey"
                    }
                }
                (crate::server::pages::passkey_script())
            }
            @if totp {
                form.stack method="post" action="/login/totp" {
                    label for="code" { "Code from your authenticator app" }
                    input #code name="code" type="text" inputmode="numeric" pattern="[0-9 ]{6,7}"
                        autocomplete="one-time-code" autocapitalize="none" spellcheck="false"
                        required autofocus aria-invalid=[invalid] aria-describedby=[described];
                    input type="hidden" name="rd" value=(v.rd);
                    button type="submit" { "Verify" }
                }
            }
            @if v.methods.is_empty() {
                p { "Your account has no second factor yet. "
                    a href="/account/security" { "Set one up" } " first." }
            }
            @if recovery {
                details open[!totp] {
                    summary { "Use a recovery code" }
                    form.stack method="post" action="/login/recovery" {
                        label for="recovery" { "Recovery code (" (v.recovery_left) " left)" }
                        input #recovery name="code" type="text" autocomplete="off"
                            autocapitalize="none" spellcheck="false" required;
                        input type="hidden" name="rd" value=(v.rd);
                        button.secondary type="submit" { "Use recovery code" }
                    }
                }
            }
        }
    };
    let page = layout("Second factor", None, false, content);
    let csp = csp_with_form_target(v.continue_to);
    let csp = if passkey {
        crate::server::pages::with_passkey_script(&csp)
    } else {
        csp
    };
    respond_with_csp(status, page, &csp)
}

/// What the enrollment page shows.
pub struct EnrollView<'a> {
    pub user: &'a str,
    pub secret: &'a TotpSecret,
    /// Where the confirmation form posts.
    pub action: &'a str,
    pub rd: &'a str,
    pub error: Option<&'a str>,
    /// Enrollment is required before signing in.
    pub required: bool,
    /// Offer a passkey instead (required enrollment on an origin that can
    /// use passkeys).
    pub passkeys: bool,
}

/// The QR code of `uri` as inline SVG (dark modules on a light quiet zone,
/// readable in either colour scheme).
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
    )
}

/// Groups of four, as people read a base32 secret.
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// TOTP enrollment: the QR code, the secret as text, and the form that
/// confirms it with a first code. From the security page (a signed-in
/// session) it names who is signed in and cancels back to that page; in a
/// sign-in that must enroll first (not signed in yet), it cancels back to
/// the sign-in page.
pub fn enroll_totp(status: StatusCode, v: &EnrollView<'_>) -> Response {
    let cancel = if !v.required {
        "/account/security".to_string()
    } else if v.rd.is_empty() {
        "/login".to_string()
    } else {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", v.rd)
            .finish();
        format!("/login?{q}")
    };
    let uri = v.secret.otpauth_uri(v.user);
    let svg = qr_svg(&uri).unwrap_or_default();
    let error_id = "code-error";
    let invalid = v.error.is_some().then_some("true");
    let described = v.error.is_some().then_some(error_id);
    let content = html! {
        div.card {
            h1 { "Set up an authenticator app" }
            @if v.required {
                p.lead { "Your account needs a second factor before you can continue." }
            }
            p { "Scan this code with an authenticator app, or type the key below into it." }
            figure.qr {
                // Built by the QR encoder from our own URI: only its markup.
                (PreEscaped(svg))
                figcaption {
                    "Key for " strong { (v.user) } ": "
                    code.secret { (grouped(&v.secret.base32())) }
                }
            }
            form.stack method="post" action=(v.action) {
                @if let Some(e) = v.error {
                    p.error id=(error_id) role="alert" { (e) }
                }
                label for="code" { "Code the app shows now" }
                input #code name="code" type="text" inputmode="numeric" pattern="[0-9 ]{6,7}"
                    autocomplete="one-time-code" autocapitalize="none" spellcheck="false"
                    required autofocus aria-invalid=[invalid] aria-describedby=[described];
                input type="hidden" name="rd" value=(v.rd);
                button type="submit" { "Turn on" }
            }
            @if v.passkeys {
                h2.section { "Or use a passkey" }
                div.stack {
                    label for="passkey-name" { "Name for the passkey" }
                    input #passkey-name type="text" maxlength="64" placeholder="Laptop, phone, security key";
                    div.actions {
                        button.secondary type="button" data-passkey="register"
                            data-start="/api/v1/mfa/passkeys/register/start"
                            data-finish="/api/v1/mfa/passkeys/register/finish"
                            data-name-input="passkey-name" data-rd=(v.rd) { "Add a passkey" }
                    }
                    (passkey_codes())
                    (crate::server::pages::passkey_script())
                }
            }
            div.actions {
                a.button.secondary href=(cancel) { "Cancel" }
            }
        }
    };
    let csp = if v.passkeys {
        crate::server::pages::with_passkey_script(crate::server::pages::CSP)
    } else {
        crate::server::pages::CSP.to_string()
    };
    let viewer = (!v.required).then_some(Viewer { user: v.user });
    respond_with_csp(
        status,
        layout("Authenticator app", viewer, false, content),
        &csp,
    )
}

/// Recovery codes, shown once, with the way on.
pub fn recovery_codes(codes: &[String], next: &str, user: Option<&str>) -> Response {
    let content = html! {
        div.card {
            @if codes.is_empty() {
                h1 { "Second factor on" }
                p.notice role="status" { "Your authenticator app is set up." }
            } @else {
                h1 { "Save your recovery codes" }
                p.lead { "Each code signs you in once if you lose your authenticator. "
                    "They are shown only now: print them or keep them in a password manager." }
                ol.codes {
                    @for c in codes { li { code { (c) } } }
                }
            }
            div.actions {
                a.button href=(next) { "Continue" }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout(
            "Recovery codes",
            user.map(|user| Viewer { user }),
            false,
            content,
        ),
    )
}

/// After signing in with a recovery code: how many are left, and the way
/// on (or to make new ones).
pub fn recovery_used(user: &str, left: usize, next: &str) -> Response {
    let content = html! {
        div.card {
            h1 { "Signed in with a recovery code" }
            @if left == 0 {
                p.error role="alert" { "That was your last recovery code. Make new ones now, in case you lose your second factor again." }
            } @else {
                p.notice role="status" {
                    (left) " recovery " (if left == 1 { "code" } else { "codes" }) " left. Each works once."
                }
            }
            p { "If you lost your authenticator, set up a new one and make new codes on the security page." }
            div.actions {
                a.button href=(next) { "Continue" }
                a.button.secondary href="/account/security" { "Sign-in security" }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout("Recovery code used", Some(Viewer { user }), false, content),
    )
}

/// A message after an action on the security page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    TotpEnrolled,
    TotpRemoved,
    PasskeyRenamed,
    PasskeyRemoved,
}

impl Notice {
    pub fn code(self) -> &'static str {
        match self {
            Notice::TotpEnrolled => "totp-enrolled",
            Notice::TotpRemoved => "totp-removed",
            Notice::PasskeyRenamed => "passkey-renamed",
            Notice::PasskeyRemoved => "passkey-removed",
        }
    }

    pub fn from_code(code: &str) -> Option<Notice> {
        [
            Notice::TotpEnrolled,
            Notice::TotpRemoved,
            Notice::PasskeyRenamed,
            Notice::PasskeyRemoved,
        ]
        .into_iter()
        .find(|n| n.code() == code)
    }

    fn text(self) -> &'static str {
        match self {
            Notice::TotpEnrolled => "Your authenticator app is set up.",
            Notice::TotpRemoved => "Your authenticator app is removed.",
            Notice::PasskeyRenamed => "The passkey is renamed.",
            Notice::PasskeyRemoved => "The passkey is removed.",
        }
    }
}

/// What the security page shows.
pub struct SecurityView<'a> {
    pub user: &'a str,
    pub set: &'a FactorSet,
    /// The user must keep a second factor.
    pub required: bool,
    /// The session did a second factor recently (changes need one).
    pub recent: bool,
    /// Adding a factor asks for the current password: the user has none
    /// yet, and the sign-in is not recent.
    pub password_to_add: bool,
    pub notice: Option<Notice>,
    /// Why the last attempt to add a factor was refused.
    pub error: Option<&'a str>,
    /// Passkeys can be registered on this origin.
    pub passkeys: bool,
    /// The "Connected apps" section, when the provider has clients.
    pub apps: Option<Markup>,
}

/// Where a session goes to do a second factor, and comes back here.
const STEP_UP_HERE: &str = "/login/second-factor?rd=%2Faccount%2Fsecurity";

/// The security page.
pub fn security(status: StatusCode, v: &SecurityView<'_>) -> Response {
    let set = v.set;
    // A user with a factor adds another after a second factor only: the
    // passkey button is then a way to the second step.
    let step_up = set.any() && !v.recent;
    let passkey_button = v.passkeys && !step_up;
    let error_id = "add-error";
    let invalid = v.error.is_some().then_some("true");
    let described = v.error.is_some().then_some(error_id);
    let content = html! {
        div.card {
            h1 { "Sign-in security" }
            p.lead { "Second factors for " strong { (v.user) } "." }
            @if let Some(n) = v.notice {
                p.notice role="status" { (n.text()) }
            }
            @if v.required && !set.any() {
                p.error role="alert" { "Your account needs a second factor." }
            }
            h2.section { "Authenticator app" }
            @if let Some(t) = &set.totp {
                p.meta { "On since " (exact(t.enrolled_ms)) "." }
                (change_form("/account/security/totp/remove", "Remove authenticator app", v.recent, true))
            } @else {
                p.meta { "Not set up." }
                @if v.password_to_add {
                    p.meta { "You signed in a while ago: adding a second factor asks for your password again." }
                }
                form.stack[v.password_to_add] method="post" action="/account/security/totp" {
                    @if let Some(e) = v.error {
                        p.error id=(error_id) role="alert" { (e) }
                    }
                    @if v.password_to_add {
                        label for="totp-password" { "Current password" }
                        input #totp-password name="password" type="password"
                            autocomplete="current-password" required
                            aria-invalid=[invalid] aria-describedby=[described];
                    }
                    button type="submit" { "Set up authenticator app" }
                }
            }
            h2.section { "Passkeys and security keys" }
            @if set.passkeys.is_empty() {
                p.meta { "None registered." }
            } @else {
                ul.sessions {
                    @for p in &set.passkeys {
                        @let id = crate::store::PublicId(p.id).to_string();
                        li {
                            div {
                                span.device { (p.name) }
                                p.meta { "Added " (exact(p.created_ms))
                                    @if let Some(u) = p.last_used_ms { " · last used " (exact(u)) } }
                            }
                            form.inline method="post" action={ "/account/security/passkeys/" (id) "/rename" } {
                                label.sr for={ "name-" (id) } { "New name for " (p.name) }
                                input id={ "name-" (id) } name="name" type="text" autocomplete="off" maxlength="64" required value=(p.name);
                                button.secondary type="submit" { "Rename" span.sr { " " (p.name) } }
                            }
                            form method="post" action={ "/account/security/passkeys/" (id) "/remove" } {
                                button.danger type="submit" { "Remove" span.sr { " " (p.name) } }
                            }
                        }
                    }
                }
            }
            @if passkey_button {
                div.stack {
                    label for="passkey-name" { "Name for a new passkey" }
                    input #passkey-name type="text" maxlength="64" placeholder="Laptop, phone, security key";
                    @if v.password_to_add {
                        label for="passkey-password" { "Current password" }
                        input #passkey-password type="password" autocomplete="current-password";
                    }
                    div.actions {
                        button type="button" data-passkey="register"
                            data-start="/api/v1/mfa/passkeys/register/start"
                            data-finish="/api/v1/mfa/passkeys/register/finish"
                            data-name-input="passkey-name"
                            data-password-input=[v.password_to_add.then_some("passkey-password")] { "Add a passkey" }
                    }
                    (passkey_codes())
                    (crate::server::pages::passkey_script())
                }
            } @else if v.passkeys {
                div.actions {
                    a.button.secondary href=(STEP_UP_HERE) { "Add a passkey" }
                }
            }
            h2.section { "Recovery codes" }
            @if set.any() {
                p.meta { (set.recovery.len()) " unused." }
                (change_form("/account/security/recovery", "Make new recovery codes", v.recent, false))
            } @else {
                p.meta { "Made when you set up your first second factor." }
            }
            @if !v.recent && set.any() {
                p.meta { "Changes ask for a second factor first." }
            }
            div.actions {
                a.button.secondary href="/sessions" { "Your sessions" }
            }
        }
        @if let Some(apps) = &v.apps {
            (apps)
        }
    };
    let csp = if passkey_button {
        crate::server::pages::with_passkey_script(crate::server::pages::CSP)
    } else {
        crate::server::pages::CSP.to_string()
    };
    respond_with_csp(
        status,
        layout(
            "Sign-in security",
            Some(Viewer { user: v.user }),
            true,
            content,
        ),
        &csp,
    )
}

/// Where the passkey script shows recovery codes made with a first
/// passkey, once, with the way on.
fn passkey_codes() -> Markup {
    html! {
        div data-passkey-codes hidden {
            h2.section { "Save your recovery codes" }
            p.lead { "Each code signs you in once if you lose your passkeys. They are shown only now." }
            ol.codes {}
            div.actions { a.button data-passkey-continue href="/account/security" { "Continue" } }
        }
    }
}

fn change_form(action: &str, label: &str, _recent: bool, danger: bool) -> Markup {
    html! {
        form method="post" action=(action) {
            @if danger {
                button.danger type="submit" { (label) }
            } @else {
                button.secondary type="submit" { (label) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn enroll_html(required: bool) -> String {
        let secret = TotpSecret::generate();
        let r = enroll_totp(
            StatusCode::OK,
            &EnrollView {
                user: "bob",
                secret: &secret,
                action: "/x",
                rd: "https://app.example.com/a?b=1",
                error: None,
                required,
                passkeys: false,
            },
        );
        String::from_utf8(to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    /// Set up from the security page: the bar says who is signed in, and a
    /// cancel link goes back there. In a sign-in that must enroll first
    /// nobody is signed in yet: no bar, and cancel goes back to sign-in.
    #[tokio::test]
    async fn enrollment_names_the_user_and_can_be_cancelled() {
        let html = enroll_html(false).await;
        assert!(html.contains("Signed in as <strong>bob</strong>"), "{html}");
        assert!(
            html.contains("<a class=\"button secondary\" href=\"/account/security\">Cancel</a>"),
            "{html}"
        );
        let html = enroll_html(true).await;
        assert!(!html.contains("Signed in as"), "{html}");
        assert!(
            html.contains(
                "href=\"/login?rd=https%3A%2F%2Fapp.example.com%2Fa%3Fb%3D1\">Cancel</a>"
            ),
            "{html}"
        );
    }
}
