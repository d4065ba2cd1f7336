//! The figure numbers of the whole suite. Each number names one figure in
//! every bench, printed table, `--only` list and document, whichever bench
//! measures it.

/// Durable append: closed-loop writers, ack latency, bulk fill (`compare`).
pub const APPEND: u8 = 1;
/// Newest 100 events of one user, and its growth with the data (`compare`).
pub const NEWEST_100: u8 = 2;
/// Deep pagination: page 1,000 against page 1 (`compare`).
pub const DEEP_PAGES: u8 = 3;
/// Session create, validate and revoke (`compare`).
pub const SESSIONS: u8 = 4;
/// Expiry sweep, and validation beside it (`compare`).
pub const SWEEP: u8 = 5;
/// `GET /auth/verify` under load against a plain axum handler (`http`).
pub const VERIFY: u8 = 6;
/// Wrong-password login flood against the argon2 limit (`http`).
pub const LOGIN_FLOOD: u8 = 7;
/// Peak memory of a server process on a large database (`http`).
pub const MEMORY: u8 = 8;
/// Bytes on disk per event (`compare`).
pub const BYTES_ON_DISK: u8 = 9;
/// `GET /auth/verify` with `Authorization: Bearer` against the session
/// cookie, same server, same run (`http`).
pub const VERIFY_TOKEN: u8 = 10;
/// The audit trail in PostgreSQL: chaining batches against a plain batched
/// `INSERT` of the same rows, and newest-100 of one user against redb
/// (`compare`; needs `GATEHOUSE_BENCH_POSTGRES_URL`).
pub const POSTGRES_CHAIN: u8 = 11;
/// A request to an app through the built-in proxy against nginx
/// `auth_request` plus `proxy_pass`, and nginx unchecked (`http`).
pub const PROXY: u8 = 12;
/// Several nodes on Redis and PostgreSQL: `/auth/verify` on a distributed
/// node against a redb node, two nodes together, and sign-ins per second
/// (`http`; needs Redis and PostgreSQL).
pub const SEVERAL_NODES: u8 = 13;
/// The OpenID Connect provider: code exchanges and `userinfo` against
/// `/auth/verify` on the same server, and discovery and the JWKS against a
/// plain axum handler (`http`).
pub const OIDC: u8 = 14;

/// Every figure: (number, bench that measures it, title).
pub const ALL: [(u8, &str, &str); 14] = [
    (APPEND, "compare", "durable append"),
    (NEWEST_100, "compare", "newest 100 of one user"),
    (DEEP_PAGES, "compare", "deep pagination"),
    (SESSIONS, "compare", "session create, validate, revoke"),
    (SWEEP, "compare", "expiry sweep"),
    (VERIFY, "http", "GET /auth/verify under load"),
    (LOGIN_FLOOD, "http", "login flood"),
    (MEMORY, "http", "server memory"),
    (BYTES_ON_DISK, "compare", "bytes on disk per event"),
    (
        VERIFY_TOKEN,
        "http",
        "GET /auth/verify with an access token",
    ),
    (POSTGRES_CHAIN, "compare", "audit chain in PostgreSQL"),
    (PROXY, "http", "requests through the built-in proxy"),
    (
        SEVERAL_NODES,
        "http",
        "several nodes on Redis and PostgreSQL",
    ),
    (OIDC, "http", "the OpenID Connect provider"),
];

/// The figures chosen with `--only 1,2,...`; all of them without it.
#[derive(Debug, Clone, Default)]
pub struct Only(Option<Vec<u8>>);

impl Only {
    /// Reads `--only LIST` from the arguments of bench `bench`, and warns
    /// about figures that another bench measures (they are not run here).
    pub fn from_args(args: &[String], bench: &str) -> Only {
        let list: Option<Vec<u8>> = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect());
        for f in list.iter().flatten() {
            match ALL.iter().find(|(n, _, _)| n == f) {
                Some((_, b, title)) if *b != bench => eprintln!(
                    "--only: figure {f} ({title}) is in `cargo bench --bench {b}`, not run here"
                ),
                Some(_) => {}
                None => eprintln!("--only: there is no figure {f}"),
            }
        }
        Only(list)
    }

    /// Whether figure `f` is to be run.
    pub fn wants(&self, f: u8) -> bool {
        self.0.as_ref().is_none_or(|o| o.contains(&f))
    }

    /// Whether a subset was asked for.
    pub fn is_subset(&self) -> bool {
        self.0.is_some()
    }

    /// The `--only` argument that chose these figures ("" for all).
    pub fn arg(&self) -> String {
        match &self.0 {
            Some(o) => {
                let list: Vec<String> = o.iter().map(|f| f.to_string()).collect();
                format!(" --only {}", list.join(","))
            }
            None => String::new(),
        }
    }
}
