//! Guessing: unknown names cost what known ones cost, and an IPv6 client
//! cannot spread its guesses over its network.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_take_a_hashing_slot_like_known_ones() {
    // One hashing slot, no queue, and a slow hash for carol. While carol's
    // login holds the slot, a login for a user that does not exist is
    // refused as busy: it would have hashed too (against the dummy hash),
    // so its timing says nothing about whether the name exists.
    let slow = gatehouse::server::password::hash_password(
        "carol-pw",
        &gatehouse::config::Argon2Settings {
            memory_kib: 65_536,
            iterations: 24,
            parallelism: 1,
        },
    )
    .unwrap();
    let mut text = config_text("", "[limits]\nhash_workers = 1\nhash_queue = 0\n");
    text.push_str(&format!(
        "\n[[users]]\nname = \"carol\"\npassword_hash = \"{slow}\"\n"
    ));
    let s = TestServer::start(&text).await;
    let url = s.at("/login");
    let carol = tokio::spawn(async move {
        bare()
            .post(url)
            .form(&[("username", "carol"), ("password", "carol-pw")])
            .send()
            .await
            .unwrap()
            .status()
    });
    // Wait (bounded) until carol's check holds the slot.
    let mut busy = false;
    for _ in 0..400 {
        let m = metrics_text(&s).await;
        if m.contains("gatehouse_hashing_in_use 1") {
            busy = true;
            break;
        }
        if carol.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if busy {
        let r = login(&bare(), &s, "nobody-here", "whatever", &[]).await;
        // Either refused as busy, or (if carol finished meanwhile) an ordinary failure.
        assert!(
            r.status() == StatusCode::SERVICE_UNAVAILABLE || r.status() == StatusCode::UNAUTHORIZED,
            "{}",
            r.status()
        );
        if !carol.is_finished() {
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    assert_eq!(carol.await.unwrap(), StatusCode::SEE_OTHER);
    // Known and unknown names get the same failure text.
    let a = login(&bare(), &s, "bob", "wrong", &[])
        .await
        .text()
        .await
        .unwrap();
    let b = login(&bare(), &s, "nobody", "wrong", &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        a.replace("value=\"bob\"", ""),
        b.replace("value=\"nobody\"", "")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_client_cannot_spread_guesses_over_its_network() {
    let s = TestServer::start(&config_text(
        "trusted_proxies = [\"127.0.0.1\"]",
        "[regulation]\nmax_failures = 3\nwindow_secs = 600\nban_secs = 900\n",
    ))
    .await;
    let post = |from: &'static str, user: &'static str, pw: &'static str| {
        let url = s.at("/login");
        async move {
            bare()
                .post(url)
                .header("x-forwarded-for", from)
                .form(&[("username", user), ("password", pw)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Three guesses at three different names, each from another address of
    // one /64: no user reaches the limit, the network does.
    for (from, user) in [
        ("2001:db8:1:2::1", "u1"),
        ("2001:db8:1:2::2", "u2"),
        ("2001:db8:1:2:ffff::3", "u3"),
    ] {
        assert_eq!(post(from, user, "guess").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        post("2001:db8:1:2::99", "bob", BOB_PW).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another network is not affected.
    assert_eq!(
        post("2001:db8:1:3::1", "bob", BOB_PW).await,
        StatusCode::SEE_OTHER
    );
}
