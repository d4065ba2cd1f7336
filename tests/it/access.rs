//! Access rules through the real server: the original request read from
//! the proxy's forwarding headers (only from a trusted proxy), each policy
//! and matcher, the identity headers on a 200, the 403 page, and rules
//! swapped by a reload (a bad file keeps the old ones).

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;

/// The rules of the access tests (also those of `original.rs`).
pub(crate) const RULES: &str = r#"
[[rules]]
domains = ["code.example.com"]
paths = ['^/api/health$']
policy = "bypass"

[[rules]]
domains = ["code.example.com"]
paths = ['^/admin(/|$|\?)']
subjects = ["group:admin"]
policy = "one_factor"

[[rules]]
domains = ["code.example.com"]
paths = ['^/admin(/|$|\?)']
policy = "deny"

[[rules]]
domains = ["*.intranet.example"]
networks = ["10.0.0.0/8"]
policy = "bypass"

[[rules]]
domains = ["wiki.example.com"]
methods = ["DELETE"]
policy = "deny"
"#;

/// A forward-auth check as the shipped nginx file sends it (the host
/// without its port, the port apart), or as Caddy and Traefik do (the host
/// as the client wrote it) when `nginx` is false.
async fn check(
    s: &TestServer,
    cookie: Option<&str>,
    url: &str,
    method: &str,
    client: &str,
    nginx: bool,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .get(s.at("/auth/verify"))
        .header("x-forwarded-for", client);
    let host = url
        .split_once("://")
        .unwrap()
        .1
        .split(['/', '?'])
        .next()
        .unwrap();
    r = match host.rsplit_once(':') {
        Some((name, port)) if nginx => {
            forwarded(r, method, &url.replacen(host, name, 1)).header("x-forwarded-port", port)
        }
        _ => forwarded(r, method, url),
    };
    if let Some(c) = cookie {
        r = r.header("cookie", format!("gatehouse_session={c}"));
    }
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

async fn token(s: &TestServer, user: &str, pw: &str) -> String {
    let r = login(&client(), s, user, pw, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    token_of(&r).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_decide_through_forwarding_headers() {
    let s = TestServer::start(&config_text("trusted_proxies = [\"127.0.0.1\"]", RULES)).await;
    let alice = token(&s, "alice", ALICE_PW).await;
    let bob = token(&s, "bob", BOB_PW).await;
    for nginx in [true, false] {
        let c = |cookie, url, method, ip| check(&s, cookie, url, method, ip, nginx, &[]);
        let status = |r: reqwest::Response| r.status();
        // bypass, anonymous, with no identity headers
        let r = c(
            None,
            "https://code.example.com/api/health",
            "GET",
            "1.2.3.4",
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        // Every identity header present and empty: a proxy copying them
        // copies nothing.
        for h in [
            "remote-user",
            "remote-groups",
            "remote-email",
            "remote-name",
        ] {
            assert_eq!(r.headers()[h], "", "{h}");
        }
        // one_factor by default
        assert_eq!(
            status(c(None, "https://code.example.com/src", "GET", "1.2.3.4").await),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(c(Some(&bob), "https://code.example.com/src", "GET", "1.2.3.4").await),
            StatusCode::OK
        );
        // first match wins: admins pass the admin area, others are refused
        let r = c(
            Some(&alice),
            "https://code.example.com/admin?x=1",
            "GET",
            "1.2.3.4",
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "nginx={nginx}");
        assert_eq!(r.headers()["remote-user"], "alice");
        assert_eq!(r.headers()["remote-groups"], "admin");
        assert_eq!(
            status(
                c(
                    Some(&bob),
                    "https://code.example.com/admin/users",
                    "GET",
                    "1.2.3.4"
                )
                .await
            ),
            StatusCode::FORBIDDEN
        );
        // anonymous at a rule with subjects: sign in first
        assert_eq!(
            status(c(None, "https://code.example.com/admin", "GET", "1.2.3.4").await),
            StatusCode::UNAUTHORIZED
        );
        // networks, by the address the trusted proxy forwarded
        assert_eq!(
            status(c(None, "https://docs.intranet.example/", "GET", "10.1.2.3").await),
            StatusCode::OK
        );
        assert_eq!(
            status(c(None, "https://docs.intranet.example/", "GET", "11.1.2.3").await),
            StatusCode::UNAUTHORIZED
        );
        // methods
        assert_eq!(
            status(
                c(
                    Some(&bob),
                    "https://wiki.example.com/p",
                    "DELETE",
                    "1.2.3.4"
                )
                .await
            ),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(c(Some(&bob), "https://wiki.example.com/p", "GET", "1.2.3.4").await),
            StatusCode::OK
        );
    }
    // A refusal is counted by rule and policy.
    let m = metrics_text(&s).await;
    assert!(
        m.contains("gatehouse_access_denied_total{rule=\"2\",policy=\"deny\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("gatehouse_access_denied_total{rule=\"4\",policy=\"deny\"} 2"),
        "{m}"
    );

    // Each refusal is an `access.denied` event, at most once per user, rule
    // and minute: bob's four refusals (two rules) are two events, and a
    // flood of fifty more adds none.
    let admin = client();
    login(&admin, &s, "alice", ALICE_PW, &[]).await;
    let denied = || async {
        let v: Value = admin
            .get(s.at("/api/v1/audit?kind=access.denied"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["events"].as_array().unwrap().clone()
    };
    let wait_for = |n: usize| async move {
        for _ in 0..400 {
            let e = denied().await;
            if e.len() >= n {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("fewer than {n} access.denied events");
    };
    let events = wait_for(2).await;
    assert!(events.iter().all(|e| e["user"] == "bob"), "{events:?}");
    let rules: Vec<&str> = events
        .iter()
        .map(|e| e["details"]["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"2") && rules.contains(&"4"), "{events:?}");
    assert_eq!(
        events[0]["details"]["host"]
            .as_str()
            .map(|h| h.ends_with("example.com")),
        Some(true),
        "{events:?}"
    );
    for _ in 0..50 {
        let r = check(
            &s,
            Some(&bob),
            "https://wiki.example.com/p",
            "DELETE",
            "1.2.3.4",
            true,
            &[],
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    // A new (user, rule) pair is recorded; the flood was not.
    let r = check(
        &s,
        Some(&alice),
        "https://wiki.example.com/p",
        "DELETE",
        "1.2.3.4",
        true,
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let events = wait_for(3).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0]["user"], "alice", "{events:?}");

    // A browser refused gets a page naming the user, with a way to sign out.
    let r = check(
        &s,
        Some(&bob),
        "https://code.example.com/admin",
        "GET",
        "1.2.3.4",
        true,
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<strong>bob</strong>") && page.contains("code.example.com"),
        "{page}"
    );
    // Only `/admin` was refused: the page says so, not "this site".
    assert!(
        page.contains("<strong>/admin</strong> on <strong>code.example.com</strong>"),
        "{page}"
    );
    assert!(page.contains("href=\"/logout\""), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // 127.0.0.1 is not a trusted proxy here: its forwarding headers are not
    // believed, so the bypass rule for the health path never applies.
    let s = TestServer::start(&config_text("", RULES)).await;
    for nginx in [true, false] {
        let r = check(
            &s,
            None,
            "https://code.example.com/api/health",
            "GET",
            "10.0.0.1",
            nginx,
            &[],
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "nginx={nginx}");
        let r = check(
            &s,
            None,
            "https://docs.intranet.example/",
            "GET",
            "10.0.0.1",
            nginx,
            &[],
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "nginx={nginx}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_carry_groups_email_and_name() {
    let (a, _) = hashes();
    let s = TestServer::start(&format!(
        "bind = \"127.0.0.1:0\"\n[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\n\
         [[users]]\nname = \"carol\"\npassword_hash = \"{a}\"\ngroups = [\"dev\", \"ops\"]\n\
         email = \"carol@example.com\"\ndisplay_name = \"Carol Q\"\nadmin = true\n"
    ))
    .await;
    let carol = token(&s, "carol", ALICE_PW).await;
    let r = check(
        &s,
        Some(&carol),
        "https://x.example/",
        "GET",
        "1.2.3.4",
        true,
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["remote-user"], "carol");
    assert_eq!(r.headers()["remote-groups"], "admin,dev,ops");
    assert_eq!(r.headers()["remote-email"], "carol@example.com");
    assert_eq!(r.headers()["remote-name"], "Carol Q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_rules_and_a_bad_file_keeps_the_old_ones() {
    let open = config_text("trusted_proxies = [\"127.0.0.1\"]", "");
    let s = TestServer::start(&open).await;
    let bob = token(&s, "bob", BOB_PW).await;
    let url = "https://grafana.example.com/d/1";
    let get = || check(&s, Some(&bob), url, "GET", "1.2.3.4", true, &[]);
    assert_eq!(get().await.status(), StatusCode::OK);

    let closed = config_text(
        "trusted_proxies = [\"127.0.0.1\"]",
        "[[rules]]\ndomains = [\"grafana.example.com\"]\nsubjects = [\"group:ops\"]\npolicy = \"one_factor\"\n\n\
         [[rules]]\ndomains = [\"grafana.example.com\"]\npolicy = \"deny\"\n",
    );
    let path = s.dir.join("gatehouse.toml");
    std::fs::write(&path, &closed).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(get().await.status(), StatusCode::FORBIDDEN);
    // bob's session survived: only the rules changed.
    let r = check(
        &s,
        Some(&bob),
        "https://other.example/",
        "GET",
        "1.2.3.4",
        true,
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    // A broken rule: the reload fails, naming the rule, and the rules stay.
    let broken = closed.replace("group:ops", "team:ops");
    std::fs::write(&path, &broken).unwrap();
    let e = s.reloader.reload().await.unwrap_err().to_string();
    assert!(e.contains("rules[0].subjects"), "{e}");
    assert_eq!(get().await.status(), StatusCode::FORBIDDEN);
}

/// Runs `gatehouse access check` on `config`; its exit code and output.
fn access_check(config: &str, args: &[&str]) -> (i32, String) {
    access_check_with(tempfile::tempdir().unwrap().path(), config, args, false)
}

/// [`access_check`] with the files in `dir`, and `--config` and
/// `--data-dir` after `check` when `after`.
fn access_check_with(
    dir: &std::path::Path,
    config: &str,
    args: &[&str],
    after: bool,
) -> (i32, String) {
    let path = dir.join("gatehouse.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.arg("access");
    if after {
        cmd.arg("check");
    }
    cmd.arg("--config").arg(&path).arg("--data-dir").arg(dir);
    if !after {
        cmd.arg("check");
    }
    let out = cmd.args(args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// `--config` and `--data-dir` are global: typed after `check`, they name
/// the same files and the answer is the same.
#[test]
fn the_rule_checker_takes_its_locations_after_the_subcommand() {
    let config = config_text("", RULES);
    let args = [
        "--url",
        "https://code.example.com/admin?x=1",
        "--user",
        "bob",
    ];
    let dir = tempfile::tempdir().unwrap();
    let before = access_check_with(dir.path(), &config, &args, false);
    let after = access_check_with(dir.path(), &config, &args, true);
    assert_eq!(after.0, 1, "{}", after.1);
    assert!(after.1.starts_with("DENY: deny by rule 2 ("), "{}", after.1);
    assert_eq!(before, after);
}

#[test]
fn the_rule_checker_explains_and_exits_by_decision() {
    let config = config_text("", RULES);
    let line_of = |n: usize| {
        config
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim() == "[[rules]]")
            .nth(n)
            .map(|(i, _)| i + 1)
            .unwrap()
    };
    // bob at the admin area: refused by rule 2, after rules 0 and 1.
    let (code, out) = access_check(
        &config,
        &[
            "--url",
            "https://code.example.com/admin?x=1",
            "--user",
            "bob",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("DENY: deny by rule 2 ("), "{out}");
    assert!(
        out.contains(&format!("gatehouse.toml:{})", line_of(2))),
        "{out}"
    );
    assert!(out.contains("rule 0 ("), "{out}");
    assert!(
        out.contains("the path and query match none of its patterns"),
        "{out}"
    );
    assert!(out.contains("the user is not one of its subjects"), "{out}");
    // alice (admin) passes.
    let (code, out) = access_check(
        &config,
        &["--url", "https://code.example.com/admin", "--user", "alice"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ALLOW: one_factor by rule 1"), "{out}");
    // A group alone, a method, a network.
    let (code, out) = access_check(
        &config,
        &[
            "--url",
            "https://wiki.example.com/p",
            "--method",
            "DELETE",
            "--group",
            "dev",
        ],
    );
    assert_eq!(code, 1, "{out}");
    let (code, out) = access_check(
        &config,
        &[
            "--url",
            "https://docs.intranet.example/",
            "--ip",
            "10.0.0.9",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("allowed without signing in"), "{out}");
    // Nothing matches: the default policy.
    let (code, out) = access_check(&config, &["--url", "https://other.example/"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("by the default policy"), "{out}");
    // Usage and config errors: 2.
    assert_eq!(access_check(&config, &["--url", "not a url"]).0, 2);
    assert_eq!(access_check(&config, &[]).0, 2);
    let (code, out) = access_check(
        &config.replace("group:admin", "team:admin"),
        &["--url", "https://a.example/"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("rules[1].subjects"), "{out}");
}
