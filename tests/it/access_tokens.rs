//! Personal access tokens and Basic auth on `/auth/verify`: create, use,
//! list, revoke and scope a token; Basic with a token; Basic with a
//! password off and on; a flood of bad Basic passwords; bans that stop a
//! cached Basic password at once; the challenge that
//! makes `curl -u` and `git` prompt; tokens ended by a reload and by the
//! admin socket.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

/// A client with no cookie jar and no redirects: what a script is.
fn script() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn basic(user: &str, secret: &str) -> String {
    format!("Basic {}", B64.encode(format!("{user}:{secret}")))
}

/// A signed-in browser-like client.
async fn signed_in(s: &TestServer, user: &str, pw: &str) -> reqwest::Client {
    let c = client();
    assert_eq!(
        login(&c, s, user, pw, &[]).await.status(),
        StatusCode::SEE_OTHER
    );
    c
}

/// `POST /api/v1/tokens`; the status and the JSON answer.
async fn create(s: &TestServer, c: &reqwest::Client, body: Value) -> (StatusCode, Value) {
    let r = c
        .post(s.at("/api/v1/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `/auth/verify` with this `Authorization` and the host the proxy names.
async fn verify(s: &TestServer, auth: Option<&str>, host: &str) -> reqwest::Response {
    let mut rq = forwarded(
        script().get(s.at("/auth/verify")),
        "GET",
        &format!("https://{host}/"),
    );
    if let Some(a) = auth {
        rq = rq.header("authorization", a);
    }
    rq.send().await.unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Audit events of one kind, newest first, as the admin API shows them.
async fn events(s: &TestServer, admin: &reqwest::Client, kind: &str) -> Vec<Value> {
    let r: Value = admin
        .get(s.at(&format!("/api/v1/audit?kind={kind}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_created_used_scoped_listed_and_revoked() {
    let s = TestServer::start(&config_text(
        "trusted_proxies = [\"127.0.0.1\"]",
        "[tokens]\nmax_per_user = 2\n",
    ))
    .await;
    let bob = signed_in(&s, "bob", BOB_PW).await;
    let (st, scoped) = create(
        &s,
        &bob,
        json!({"name": "git push", "expires_in_days": 7, "domains": ["git.example.com"]}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{scoped}");
    let scoped_token = scoped["token"].as_str().unwrap().to_string();
    assert!(scoped_token.starts_with("gatehouse_pat_") && scoped_token.len() == 57);
    let week = 7 * 86_400_000;
    let expires = scoped["expires_ms"].as_u64().unwrap();
    let now = gatehouse::store::now_ms();
    assert!(expires > now + week - 60_000 && expires <= now + week);
    // Without a scope: every app bob may reach; 90 days unless asked.
    let (st, any) = create(&s, &bob, json!({"name": "ci"})).await;
    assert_eq!(st, StatusCode::CREATED);
    let any_token = any["token"].as_str().unwrap().to_string();
    assert!(any["expires_ms"].as_u64().unwrap() > now + 89 * 86_400_000);
    // The cap (2 here) refuses a third, naming the limit.
    let (st, e) = create(&s, &bob, json!({"name": "third"})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(e["error"].as_str().unwrap().contains("limit"), "{e}");

    // A token gets the answer and the identity headers a session gets.
    let by_cookie = forwarded(
        bob.get(s.at("/auth/verify")),
        "GET",
        "https://git.example.com/",
    )
    .send()
    .await
    .unwrap();
    let bearer = format!("Bearer {scoped_token}");
    let by_token = verify(&s, Some(&bearer), "git.example.com").await;
    assert_eq!(by_token.status(), StatusCode::OK);
    for h in [
        "remote-user",
        "remote-groups",
        "remote-email",
        "remote-name",
    ] {
        assert_eq!(header(&by_token, h), header(&by_cookie, h), "{h}");
    }
    assert_eq!(header(&by_token, "remote-user"), "bob");
    // Basic with the token as the password, for tools that only speak Basic.
    let r = verify(&s, Some(&basic("bob", &scoped_token)), "git.example.com").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "remote-user"), "bob");
    // ...but not under another user's name.
    let r = verify(&s, Some(&basic("alice", &scoped_token)), "git.example.com").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The scope: another site is refused; the unscoped token reaches it.
    let r = verify(&s, Some(&bearer), "wiki.example.com").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = verify(&s, Some(&format!("Bearer {any_token}")), "wiki.example.com").await;
    assert_eq!(r.status(), StatusCode::OK);
    // A forged token (one character changed) is nobody.
    let mut forged = scoped_token.clone().into_bytes();
    forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let r = verify(&s, Some(&format!("Bearer {forged}")), "git.example.com").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token cannot manage tokens: the API wants a session.
    let r = script()
        .get(s.at("/api/v1/tokens"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Listed newest first, with what tells them apart, never the secret.
    let list: Value = bob
        .get(s.at("/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["name"], "ci");
    assert_eq!(tokens[1]["name"], "git push");
    assert_eq!(tokens[1]["domains"], json!(["git.example.com"]));
    assert!(scoped_token.starts_with(tokens[1]["prefix"].as_str().unwrap()));
    assert!(tokens[1]["created_ms"].as_u64().unwrap() <= now + 60_000);
    let text = list.to_string();
    for t in [&scoped_token, &any_token] {
        assert!(!text.contains(&t[14..]), "a token in the list");
    }

    // Revoked by its owner: gone at once; then the answer is 401 with the
    // challenge a script can answer.
    let id = scoped["id"].as_str().unwrap();
    let r = bob
        .delete(s.at(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = verify(&s, Some(&bearer), "git.example.com").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&r, "www-authenticate"), "Basic realm=\"gatehouse\"");
    let r = bob
        .delete(s.at(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The last use is recorded (touches are coalesced and written behind;
    // the revocation above, a durable write, was queued after them).
    let list: Value = bob
        .get(s.at("/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["tokens"][0]["last_used_ms"].as_u64().is_some(),
        "{list}"
    );

    // Another user's token: bob cannot revoke it; an admin lists and
    // revokes bob's with ?user=.
    let alice = signed_in(&s, "alice", ALICE_PW).await;
    let (_, mine) = create(&s, &alice, json!({"name": "alice's"})).await;
    let r = bob
        .delete(s.at(&format!("/api/v1/tokens/{}", mine["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = bob
        .get(s.at("/api/v1/tokens?user=alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let theirs: Value = alice
        .get(s.at("/api/v1/tokens?user=bob"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let any_id = theirs["tokens"][0]["id"].as_str().unwrap();
    assert_eq!(theirs["tokens"][0]["name"], "ci");
    let r = alice
        .delete(s.at(&format!("/api/v1/tokens/{any_id}?user=bob")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = verify(&s, Some(&format!("Bearer {any_token}")), "wiki.example.com").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The audit trail: created, revoked (by whom), first use from an
    // address; never any part of a token.
    let created = events(&s, &alice, "token.created").await;
    assert_eq!(created.len(), 3);
    let revoked = events(&s, &alice, "token.revoked").await;
    assert_eq!(revoked.len(), 2);
    assert_eq!(revoked[0]["details"]["reason"], "admin");
    assert_eq!(revoked[0]["details"]["actor"], "alice");
    let used = events(&s, &alice, "token.used").await;
    assert!(!used.is_empty());
    assert!(
        used.iter()
            .all(|e| e["ip"] == "127.0.0.1" && e["user"] == "bob")
    );
    let all: Value = alice
        .get(s.at("/api/v1/audit?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all = all.to_string();
    for t in [&scoped_token, &any_token, mine["token"].as_str().unwrap()] {
        assert!(!all.contains(&t[14..]), "a token in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_checked_and_name_the_field() {
    let s = TestServer::start(&config_text("", "[tokens]\nmax_days = 30\n")).await;
    let bob = signed_in(&s, "bob", BOB_PW).await;
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(65)}), "name"),
        (
            json!({"name": "ok", "expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            json!({"name": "ok", "expires_in_days": 31}),
            "expires_in_days",
        ),
        (json!({"name": "ok", "domains": ["a b"]}), "domains[0]"),
        (
            json!({"name": "ok", "domains": ["ok.example", "*."]}),
            "domains[1]",
        ),
    ] {
        let (st, e) = create(&s, &bob, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            e["error"].as_str().unwrap().starts_with(field),
            "{body}: {e}"
        );
    }
    // The default is capped by max_days.
    let (st, t) = create(&s, &bob, json!({"name": "ok"})).await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(t["expires_ms"].as_u64().unwrap() <= gatehouse::store::now_ms() + 30 * 86_400_000);
    // Without a session: 401.
    let r = script()
        .post(s.at("/api/v1/tokens"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_basic_challenge_goes_to_scripts_not_to_browsers() {
    let s = TestServer::start(&config_text("", "")).await;
    let get = |accept: Option<&'static str>, cookie: Option<&'static str>| {
        let mut rq = script().get(s.at("/auth/verify"));
        if let Some(a) = accept {
            rq = rq.header("accept", a);
        }
        if let Some(c) = cookie {
            rq = rq.header("cookie", c);
        }
        rq.send()
    };
    let r = get(None, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&r, "www-authenticate"), "Basic realm=\"gatehouse\"");
    let r = get(Some("application/json"), None).await.unwrap();
    assert_eq!(header(&r, "www-authenticate"), "Basic realm=\"gatehouse\"");
    // A browser (it asks for HTML) or anyone with a session cookie, even a
    // stale one, is sent to the sign-in page instead: no password prompt.
    let r = get(Some("text/html,application/xhtml+xml"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("www-authenticate").is_none());
    let r = get(None, Some("gatehouse_session=stale")).await.unwrap();
    assert!(r.headers().get("www-authenticate").is_none());
    // With `?redirect=1` (Caddy, Traefik) a browser is redirected, and a
    // script still gets the challenge.
    let r = script()
        .get(s.at("/auth/verify?redirect=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = script()
        .get(s.at("/auth/verify?redirect=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&r, "www-authenticate"), "Basic realm=\"gatehouse\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_with_a_password_is_off_by_default() {
    let s = TestServer::start(&config_text("", "")).await;
    let r = verify(&s, Some(&basic("bob", BOB_PW)), "app.example.com").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.gate.passed(), 0, "nothing was hashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_with_a_password_when_on_is_hashed_once_a_minute_and_regulated() {
    let s = TestServer::start(&config_text("", "[tokens]\nbasic_auth_passwords = true\n")).await;
    let right = basic("bob", BOB_PW);
    let r = verify(&s, Some(&right), "app.example.com").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "remote-user"), "bob");
    assert_eq!(s.gate.passed(), 1);
    // Cached: the same credential is not hashed again within the minute.
    for _ in 0..5 {
        let r = verify(&s, Some(&right), "app.example.com").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(s.gate.passed(), 1);
    // A wrong password and an unknown user answer alike (and both hash).
    let wrong = verify(&s, Some(&basic("bob", "nope")), "app.example.com").await;
    let unknown = verify(&s, Some(&basic("nobody", "nope")), "app.example.com").await;
    assert_eq!(s.gate.passed(), 3);
    for r in [&wrong, &unknown] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(r, "www-authenticate"), "Basic realm=\"gatehouse\"");
    }
    assert_eq!(wrong.text().await.unwrap(), unknown.text().await.unwrap());
    // Failures are audited like the form's.
    let alice = signed_in(&s, "alice", ALICE_PW).await;
    let failures = events(&s, &alice, "login.failure").await;
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|e| e["details"]["via"] == "basic"));
    let text = serde_json::to_string(&failures).unwrap();
    assert!(!text.contains("nope"), "a password in the audit trail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_basic_passwords_is_banned_and_never_outruns_the_pool() {
    const LIMIT: usize = 5;
    const N: usize = 40;
    // The guesses come through a trusted proxy from one client address.
    let s = TestServer::start(&config_text(
        "trusted_proxies = [\"127.0.0.1\"]",
        "[tokens]\nbasic_auth_passwords = true\n\
         [regulation]\nmax_failures = 5\nwindow_secs = 600\nban_secs = 900\n\
         [limits]\nhash_workers = 1\nhash_queue = 8\n",
    ))
    .await;
    // Held before hashing, every guess is in flight at once: only LIMIT of
    // them get a place under the failure limit, the rest are refused
    // without hashing.
    s.gate.close();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..N {
        let url = s.at("/auth/verify");
        flood.spawn(async move {
            forwarded(script().get(url), "GET", "https://app.example.com/")
                .header("x-forwarded-for", "198.51.100.7")
                .header("authorization", basic("bob", &format!("guess-{i}")))
                .send()
                .await
                .unwrap()
        });
    }
    // Bounded, so that a request that never reaches the pool fails the
    // test instead of hanging it.
    tokio::time::timeout(std::time::Duration::from_secs(60), s.gate.wait_held(LIMIT))
        .await
        .expect("the guesses reach the hashing pool");
    let mut refused = 0;
    while refused < N - LIMIT {
        let r = flood.join_next().await.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers().contains_key("retry-after"),
            "refused before hashing"
        );
        refused += 1;
    }
    assert_eq!(s.gate.held(), LIMIT);
    // Let them hash: one slot, so never more than one hash at a time.
    s.gate.open();
    let mut most = 0u64;
    while !flood.is_empty() {
        let m = metrics_text(&s).await;
        let in_use: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("gatehouse_hashing_in_use "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        most = most.max(in_use);
        while let Some(r) = flood.try_join_next() {
            assert_eq!(r.unwrap().status(), StatusCode::UNAUTHORIZED);
        }
        tokio::task::yield_now().await;
    }
    assert!(most <= 1, "{most} hashes at once with one slot");
    assert_eq!(s.gate.passed(), LIMIT, "hashed beyond the limit");
    // The failures banned bob and this address: even the right password is
    // refused now, without hashing.
    let r = verify(&s, Some(&basic("bob", BOB_PW)), "app.example.com").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(s.gate.passed(), LIMIT, "a banned credential was hashed");
    let alice = signed_in(&s, "alice", ALICE_PW).await;
    let bans = events(&s, &alice, "ban.added").await;
    assert!(!bans.is_empty());
    // The form is banned too: one regulation for both.
    let r = login(&script(), &s, "bob", BOB_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// `/auth/verify` with Basic `user:pw`, sent from the loopback address
/// `127.0.0.N`, so that each address is a client of its own.
async fn basic_from(s: &TestServer, n: u8, user: &str, pw: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, n]))
        .build()
        .unwrap()
        .get(s.at("/auth/verify"))
        .header("authorization", basic(user, pw))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_stops_a_cached_basic_password_at_once() {
    let s = TestServer::start(&config_text(
        "",
        "[tokens]\nbasic_auth_passwords = true\n\
         [regulation]\nmax_failures = 3\nwindow_secs = 600\nban_secs = 900\n",
    ))
    .await;
    // bob's password, checked and cached, from 127.0.0.1.
    for _ in 0..2 {
        assert_eq!(
            basic_from(&s, 1, "bob", BOB_PW).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(s.gate.passed(), 1, "answered from the cache");
    // Guesses at bob from another address ban bob (and that address).
    for i in 0..3 {
        let r = basic_from(&s, 2, "bob", &format!("guess-{i}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let hashed = s.gate.passed();
    // The cached credential is refused at once, as the form refuses a
    // banned user, and without hashing.
    let r = basic_from(&s, 1, "bob", BOB_PW).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a banned user passed");
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.headers().get("remote-user").is_none());
    assert_eq!(s.gate.passed(), hashed);

    // A ban on the client's address stops it too: alice's password cached
    // from 127.0.0.3, then guesses at a name that does not exist from there.
    assert_eq!(
        basic_from(&s, 3, "alice", ALICE_PW).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        basic_from(&s, 3, "alice", ALICE_PW).await.status(),
        StatusCode::OK
    );
    for i in 0..3 {
        basic_from(&s, 3, "nobody", &format!("guess-{i}")).await;
    }
    let r = basic_from(&s, 3, "alice", ALICE_PW).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a banned address passed"
    );
    assert!(r.headers().contains_key("retry-after"));
    // From elsewhere, alice is not banned: her cached answer stands.
    assert_eq!(
        basic_from(&s, 4, "alice", ALICE_PW).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_user_or_changes_a_password_ends_their_tokens() {
    let s = TestServer::start(&config_text("", "")).await;
    let bob = signed_in(&s, "bob", BOB_PW).await;
    let (_, t) = create(&s, &bob, json!({"name": "ci"})).await;
    let bob_token = format!("Bearer {}", t["token"].as_str().unwrap());
    let alice = signed_in(&s, "alice", ALICE_PW).await;
    let (_, t) = create(&s, &alice, json!({"name": "ci"})).await;
    let alice_token = format!("Bearer {}", t["token"].as_str().unwrap());
    assert_eq!(
        verify(&s, Some(&bob_token), "a").await.status(),
        StatusCode::OK
    );

    // bob removed: his token stops at the reload, alice's stays.
    let (a, _) = hashes();
    let without_bob = format!(
        "bind = \"127.0.0.1:0\"\nmetrics = true\n[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\n\
         [[users]]\nname = \"alice\"\npassword_hash = \"{a}\"\nadmin = true\n"
    );
    std::fs::write(s.dir.join("gatehouse.toml"), &without_bob).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify(&s, Some(&bob_token), "a").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        verify(&s, Some(&alice_token), "a").await.status(),
        StatusCode::OK
    );
    // bob back with the same name: his old token does not come back.
    std::fs::write(s.dir.join("gatehouse.toml"), config_text("", "")).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify(&s, Some(&bob_token), "a").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // alice's password changes: her token ends.
    let other = gatehouse::server::password::hash_password(
        "a-new-password",
        &gatehouse::config::Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap();
    let changed = config_text("", "").replace(a.as_str(), &other);
    std::fs::write(s.dir.join("gatehouse.toml"), changed).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify(&s, Some(&alice_token), "a").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let admin = signed_in(&s, "alice", "a-new-password").await;
    let revoked = events(&s, &admin, "token.revoked").await;
    assert_eq!(revoked.len(), 2);
    assert!(
        revoked
            .iter()
            .all(|e| e["details"]["reason"] == "user_changed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_revokes_a_users_tokens() {
    let s = TestServer::start(&config_text("", "")).await;
    let bob = signed_in(&s, "bob", BOB_PW).await;
    let mut tokens = Vec::new();
    for name in ["one", "two"] {
        let (_, t) = create(&s, &bob, json!({"name": name})).await;
        tokens.push(format!("Bearer {}", t["token"].as_str().unwrap()));
    }
    let dir = s.dir.clone();
    let reply = tokio::task::spawn_blocking(move || {
        gatehouse::server::ops::admin::request(&dir, "POST", "/users/revoke-tokens?user=bob")
    })
    .await
    .unwrap()
    .unwrap()
    .expect("the server answers on its admin socket");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "revoked 2 access tokens of bob\n");
    for t in &tokens {
        assert_eq!(
            verify(&s, Some(t), "a").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // bob's session is untouched.
    let r = bob.get(s.at("/api/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// A token is one factor: a `two_factor` rule refuses it unless the rule
/// says `allow_tokens` and the session that made the token had done a
/// second factor, while a session signed in with a second factor passes
/// both.
#[tokio::test]
async fn two_factor_rules_refuse_tokens_unless_they_allow_them() {
    let rules = r#"
[[rules]]
domains = ["strict.example.com"]
policy = "two_factor"

[[rules]]
domains = ["ci.example.com"]
policy = "two_factor"
allow_tokens = true
"#;
    let s = TestServer::start(&config_text("trusted_proxies = [\"127.0.0.1\"]", rules)).await;
    // bob has an authenticator app, and a session that signed in with the
    // password alone.
    let c = crate::api::json_client();
    let (app, _) = crate::api::enroll(&c, &s, "bob", BOB_PW).await;
    let (st, made) = create(&s, &c, json!({"name": "from a password"})).await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    let one_factor = format!("Bearer {}", made["token"].as_str().unwrap());
    // The session steps up with its second factor and makes another.
    let (st, _) = crate::api::post(&c, &s, "/login/totp", json!({"code": app.code(1)})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, made) = create(&s, &c, json!({"name": "ci"})).await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    let bearer = format!("Bearer {}", made["token"].as_str().unwrap());
    for t in [&one_factor, &bearer] {
        assert_eq!(
            verify(&s, Some(t), "strict.example.com").await.status(),
            StatusCode::FORBIDDEN
        );
    }
    // allow_tokens lets only the token a two-factor session made through.
    let r = verify(&s, Some(&one_factor), "ci.example.com").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let ok = verify(&s, Some(&bearer), "ci.example.com").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["remote-user"], "bob");
    // The list says which is which.
    let listed = c.get(s.at("/api/v1/tokens")).send().await.unwrap();
    let listed: Value = listed.json().await.unwrap();
    let flags: Vec<(&str, bool)> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["two_factor"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [("ci", true), ("from a password", false)],
        "{listed}"
    );
    // A password-only session is asked to step up.
    let other = signed_in(&s, "bob", BOB_PW).await;
    let r = forwarded(
        other
            .get(s.at("/auth/verify"))
            .header("x-forwarded-for", "127.0.0.1"),
        "GET",
        "https://strict.example.com/",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}
