//! Headless Chromium driven over the DevTools protocol: [`Chrome`] owns one
//! browser process (killed on drop) and [`Tab`] one page, with everything a
//! test needs to act as a person and to check what they would see.
//!
//! A tab records every console error, uncaught exception, failed load and
//! Content-Security-Policy violation; [`Tab::assert_clean`] fails the test on
//! any of them, except the ones a test declares with [`Tab::expect_problem`].
//! A tab can also hold a virtual WebAuthn authenticator, for passkeys.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::audits::{
    EnableParams as AuditsEnable, EventIssueAdded, InspectorIssueCode,
};
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDeviceMetricsOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::log::{
    EnableParams as LogEnable, EventEntryAdded, LogEntryLevel,
};
use chromiumoxide::cdp::browser_protocol::network::{Cookie, EventResponseReceived, ResourceType};
use chromiumoxide::cdp::browser_protocol::web_authn;
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

/// Longest wait for anything the browser does. A guard against a hung
/// browser, not a measure of speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where Debian puts Chromium, then the usual other names on `PATH`.
fn chromium_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GATEHOUSE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let names = ["chromium", "chromium-browser", "google-chrome"];
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|f| f.is_file())
}

/// One headless Chromium, with its own empty profile.
pub struct Chrome {
    browser: Browser,
    handler: JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// Starts Chromium, or `None` (after saying why) when none is installed;
    /// `.ci/run` installs Debian's `chromium`, so only a machine where that
    /// failed skips.
    pub async fn launch(test: &str) -> Option<Chrome> {
        Chrome::launch_with(test, &[]).await
    }

    /// [`Chrome::launch`] with `extra` command-line switches, each a name
    /// (without its leading dashes) and a value: a host resolver rule, a
    /// pinned certificate key.
    pub async fn launch_with(test: &str, extra: &[(&str, &str)]) -> Option<Chrome> {
        let Some(bin) = chromium_binary() else {
            eprintln!(
                "SKIPPED {test}: no Chromium found (install Debian's `chromium`, or set GATEHOUSE_CHROMIUM)"
            );
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(bin)
            .user_data_dir(profile.path())
            // Root cannot use Chromium's sandbox; the pages are our own.
            .no_sandbox()
            .new_headless_mode()
            .viewport(None)
            .window_size(1000, 800)
            // Switch names without their dashes: chromiumoxide adds them
            // (and merges the values of a name given twice).
            .args([
                "disable-gpu",
                "disable-quic",
                "no-first-run",
                "disable-component-update",
                "disable-sync",
            ])
            .arg((
                "disable-features",
                "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
            ))
            .args(extra.iter().copied())
            .launch_timeout(PATIENCE)
            .request_timeout(PATIENCE)
            .build()
            .expect("browser config");
        let (browser, mut handler) = Browser::launch(config)
            .await
            .expect("Chromium is installed but did not start");
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Some(Chrome {
            browser,
            handler,
            _profile: profile,
        })
    }

    /// A new tab on `about:blank`, recording problems from the start.
    pub async fn tab(&self) -> Tab {
        let page = patient(self.browser.new_page("about:blank")).await;
        Tab::watch(page).await
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        self.handler.abort();
        // `Browser` kills its process on drop (kill_on_drop).
    }
}

/// Waits for a browser call, failing the test if it errs or hangs.
async fn patient<T, E: std::fmt::Debug>(f: impl std::future::Future<Output = Result<T, E>>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("the browser did not answer")
        .expect("browser call failed")
}

/// One page, with the problems it has recorded.
pub struct Tab {
    pub page: Page,
    problems: Arc<Mutex<Vec<String>>>,
    expected: Vec<String>,
    /// The status of the last document the tab loaded.
    status: Arc<Mutex<Option<i64>>>,
    watchers: Vec<JoinHandle<()>>,
}

impl Drop for Tab {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
    }
}

impl Tab {
    async fn watch(page: Page) -> Tab {
        patient(page.execute(LogEnable::default())).await;
        patient(page.execute(AuditsEnable::default())).await;
        let problems = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(None));
        let mut watchers = Vec::new();

        let mut console = patient(page.event_listener::<EventConsoleApiCalled>()).await;
        let p = problems.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(e) = console.next().await {
                let kind = format!("{:?}", e.r#type).to_lowercase();
                if kind.contains("error") || kind.contains("assert") || kind.contains("warn") {
                    let args: Vec<String> = e
                        .args
                        .iter()
                        .map(|a| {
                            a.value
                                .as_ref()
                                .map(|v| v.to_string())
                                .or_else(|| a.description.clone())
                                .unwrap_or_default()
                        })
                        .collect();
                    p.lock()
                        .unwrap()
                        .push(format!("console {kind}: {}", args.join(" ")));
                }
            }
        }));
        let mut exceptions = patient(page.event_listener::<EventExceptionThrown>()).await;
        let p = problems.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(e) = exceptions.next().await {
                p.lock()
                    .unwrap()
                    .push(format!("exception: {}", e.exception_details.text));
            }
        }));
        let mut log = patient(page.event_listener::<EventEntryAdded>()).await;
        let p = problems.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(e) = log.next().await {
                if matches!(e.entry.level, LogEntryLevel::Error | LogEntryLevel::Warning) {
                    let url = e.entry.url.clone().unwrap_or_default();
                    p.lock()
                        .unwrap()
                        .push(format!("log {:?}: {} {url}", e.entry.source, e.entry.text));
                }
            }
        }));
        let mut issues = patient(page.event_listener::<EventIssueAdded>()).await;
        let p = problems.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(e) = issues.next().await {
                let relevant = matches!(
                    e.issue.code,
                    InspectorIssueCode::ContentSecurityPolicyIssue
                        | InspectorIssueCode::LowTextContrastIssue
                        | InspectorIssueCode::MixedContentIssue
                        | InspectorIssueCode::CookieIssue
                        | InspectorIssueCode::GenericIssue
                );
                if relevant {
                    p.lock()
                        .unwrap()
                        .push(format!("issue {:?}: {:?}", e.issue.code, e.issue.details));
                }
            }
        }));
        let mut responses = patient(page.event_listener::<EventResponseReceived>()).await;
        let s = status.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(e) = responses.next().await {
                if e.r#type == ResourceType::Document {
                    *s.lock().unwrap() = Some(e.response.status);
                }
            }
        }));
        Tab {
            page,
            problems,
            expected: Vec::new(),
            status,
            watchers,
        }
    }

    /// Declares a problem the test provokes on purpose (a refused form, a
    /// 401 page): recorded problems containing `text` are not failures.
    pub fn expect_problem(&mut self, text: &str) {
        self.expected.push(text.to_string());
    }

    /// The problems recorded so far that no [`Tab::expect_problem`] covers.
    pub fn unexpected_problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap()
            .iter()
            .filter(|p| !self.expected.iter().any(|e| p.contains(e.as_str())))
            .cloned()
            .collect()
    }

    /// Fails the test on any unexpected console error, exception, failed
    /// load, policy violation or contrast issue seen so far.
    pub fn assert_clean(&self, when: &str) {
        let problems = self.unexpected_problems();
        assert!(
            problems.is_empty(),
            "{when}: the browser reported {problems:#?}"
        );
    }

    /// Goes to `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        *self.status.lock().unwrap() = None;
        patient(self.page.goto(url)).await;
        self.settle().await;
    }

    /// The HTTP status of the document on show.
    pub fn status(&self) -> Option<i64> {
        *self.status.lock().unwrap()
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        patient(self.page.url()).await.unwrap_or_default()
    }

    /// Types `text` into the field `selector`, after clearing it.
    pub async fn fill(&self, selector: &str, text: &str) {
        let el = patient(self.page.find_element(selector)).await;
        patient(el.call_js_fn("function() { this.value = ''; }", false)).await;
        patient(el.click()).await;
        patient(el.type_str(text)).await;
    }

    /// Ticks (or unticks) a checkbox by clicking it as a person would.
    pub async fn set_checked(&self, selector: &str, on: bool) {
        let el = patient(self.page.find_element(selector)).await;
        let now = self
            .eval(&format!("document.querySelector({selector:?}).checked"))
            .await;
        if now.as_bool() != Some(on) {
            patient(el.click()).await;
        }
    }

    /// Clicks `selector` and waits until a new document has loaded: a form
    /// submission or a link, however many redirects it takes.
    pub async fn click_and_wait(&self, selector: &str) {
        *self.status.lock().unwrap() = None;
        self.eval("window.__gatehouse_old_document = true").await;
        let el = patient(self.page.find_element(selector)).await;
        patient(el.click()).await;
        let wait = async {
            loop {
                tokio::time::sleep(Duration::from_millis(25)).await;
                let gone = self
                    .page
                    .evaluate(
                        "window.__gatehouse_old_document === undefined && document.readyState === 'complete'",
                    )
                    .await
                    .ok()
                    .and_then(|v| v.value().and_then(|v| v.as_bool()));
                if gone == Some(true) {
                    return;
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("clicking {selector} loaded no new page"));
        self.settle().await;
    }

    /// Waits for the document to finish loading and for late events
    /// (console messages, issues) to arrive.
    async fn settle(&self) {
        let wait = async {
            loop {
                let done = self
                    .page
                    .evaluate("document.readyState === 'complete'")
                    .await
                    .ok()
                    .and_then(|v| v.value().and_then(|v| v.as_bool()));
                if done == Some(true) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("the page never finished loading");
        // Round trips through the browser, so that events it queued before
        // answering have been delivered to the watchers.
        for _ in 0..3 {
            let _ = self.page.evaluate("0").await;
        }
    }

    /// Evaluates `js` in the page (DevTools evaluation, outside the page's
    /// script policy) and returns its value.
    pub async fn eval(&self, js: &str) -> serde_json::Value {
        let r = patient(self.page.evaluate(js)).await;
        r.value().cloned().unwrap_or(serde_json::Value::Null)
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.eval("document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The visible text of the first element matching `selector`, or `None`.
    pub async fn text_of(&self, selector: &str) -> Option<String> {
        self.eval(&format!(
            "(e => e ? e.innerText : null)(document.querySelector({selector:?}))"
        ))
        .await
        .as_str()
        .map(String::from)
    }

    /// How many elements match `selector`.
    pub async fn count(&self, selector: &str) -> usize {
        self.eval(&format!("document.querySelectorAll({selector:?}).length"))
            .await
            .as_u64()
            .unwrap_or(0) as usize
    }

    /// Every cookie the browser holds for the current page, with the
    /// attributes it keeps (`HttpOnly`, `SameSite`, expiry).
    pub async fn cookies(&self) -> Vec<Cookie> {
        patient(self.page.get_cookies()).await
    }

    /// Saves a full-page screenshot as `target/screenshots/<name>.png` and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        patient(
            self.page
                .save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path),
        )
        .await;
        path
    }

    /// Checks what every page must get right, in both colour schemes and at
    /// 360 px wide: no horizontal scrolling, every visible input labelled,
    /// text contrast at WCAG AA (Chromium's own checker), the product's
    /// name shown. Saves a screenshot of each scheme. Leaves the tab at its
    /// normal size in the light scheme.
    pub async fn check_page(&self, name: &str) {
        let text = self.text().await;
        assert!(
            text.contains("gatehouse"),
            "{name}: no product name in {text:?}"
        );
        let unlabelled = self
            .eval(
                "[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]\
                 .filter(i => i.labels.length === 0).map(i => i.name || i.id)",
            )
            .await;
        assert_eq!(
            unlabelled,
            serde_json::json!([]),
            "{name}: inputs without a label"
        );
        for scheme in ["light", "dark"] {
            patient(self.page.emulate_media_features(vec![MediaFeature {
                name: "prefers-color-scheme".into(),
                value: scheme.into(),
            }]))
            .await;
            self.settle().await;
            let low = self.eval(CONTRAST_JS).await;
            assert_eq!(
                low,
                serde_json::json!([]),
                "{name} ({scheme}): text below WCAG AA contrast"
            );
            self.screenshot(&format!("{name}-{scheme}")).await;
        }
        patient(
            self.page
                .execute(SetDeviceMetricsOverrideParams::new(360, 740, 2.0, true)),
        )
        .await;
        self.settle().await;
        let overflow = self
            .eval("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            .await;
        assert_eq!(
            overflow.as_i64(),
            Some(0),
            "{name}: scrolls sideways at 360 px"
        );
        self.screenshot(&format!("{name}-360px")).await;
        patient(self.page.execute(
            chromiumoxide::cdp::browser_protocol::emulation::ClearDeviceMetricsOverrideParams::default(),
        ))
        .await;
        patient(self.page.emulate_media_features(vec![MediaFeature {
            name: "prefers-color-scheme".into(),
            value: "light".into(),
        }]))
        .await;
        self.settle().await;
        self.assert_clean(name);
    }
}

impl Tab {
    /// Turns on the DevTools WebAuthn domain for this tab and plugs in a
    /// virtual platform authenticator (CTAP 2.1, internal transport) that
    /// holds resident keys, verifies the user and says yes by itself, as a
    /// phone or laptop unlocked by its owner would. Returns its id. The
    /// browser then uses it instead of any real authenticator.
    pub async fn add_virtual_authenticator(&self) -> web_authn::AuthenticatorId {
        patient(
            self.page
                .execute(web_authn::EnableParams::builder().enable_ui(false).build()),
        )
        .await;
        let options = web_authn::VirtualAuthenticatorOptions::builder()
            .protocol(web_authn::AuthenticatorProtocol::Ctap2)
            .ctap2_version(web_authn::Ctap2Version::Ctap21)
            .transport(web_authn::AuthenticatorTransport::Internal)
            .has_resident_key(true)
            .has_user_verification(true)
            .is_user_verified(true)
            .automatic_presence_simulation(true)
            .build()
            .expect("complete authenticator options");
        patient(
            self.page
                .execute(web_authn::AddVirtualAuthenticatorParams::new(options)),
        )
        .await
        .result
        .authenticator_id
    }

    /// Every credential the virtual authenticator `id` holds.
    pub async fn authenticator_credentials(
        &self,
        id: &web_authn::AuthenticatorId,
    ) -> Vec<web_authn::Credential> {
        patient(
            self.page
                .execute(web_authn::GetCredentialsParams::new(id.clone())),
        )
        .await
        .result
        .credentials
    }
}

/// Lists the visible text whose contrast with its background is below WCAG
/// AA: 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold). The
/// background is the nearest opaque one among the element and its
/// ancestors; the page's own colours are opaque.
const CONTRAST_JS: &str = r#"(() => {
  const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * c(r) + 0.7152 * c(g) + 0.0722 * c(b);
  };
  const background = e => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c;
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const e of document.body.querySelectorAll('*')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !e.getClientRects().length || e.closest('.sr')) continue;
    const s = getComputedStyle(e);
    const fg = lum(rgb(s.color)), bg = lum(background(e));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) low.push(`${e.tagName} "${e.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return low;
})()"#;

/// `target/screenshots`, next to the test binary's scratch directory.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("screenshots")
}
