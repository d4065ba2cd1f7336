//! The domain of gatehouse: tokens, sessions, audit events, bans, IP
//! blocks and the clock, as every part of the program speaks of them. Nothing here knows
//! how or where they are stored; the store and its backends build on these
//! types, and the server and the tools exchange them.

mod access_token;
mod ban;
mod clock;
mod event;
mod event_kind;
mod factors;
mod limits;
mod method;
mod net;
pub mod oidc;
mod regulation;
mod session;
mod token;
mod wire;

pub use access_token::{
    AccessToken, AccessTokenInfo, CreatedAccessToken, MAX_TOKEN_DOMAIN, MAX_TOKEN_DOMAINS,
    MAX_TOKEN_NAME, NewAccessToken, PREFIX as ACCESS_TOKEN_PREFIX, TOKEN_RECENT_IPS, TokenRefusal,
    normalize_scope_domain,
};
pub use ban::{Ban, BanSubject, NewBan, ban_lifted_event, client_network};
pub use clock::{Clock, SystemClock, now_ms, now_us};
pub use event::{
    CompactString, DEFAULT_LIMIT, Event, EventFilter, EventId, EventPage, MAX_LIMIT, NewEvent,
};
pub use event_kind::{EventKind, Outcome};
pub use factors::{
    Applied, EnrollerId, FactorChange, FactorRefusal, FactorSet, MAX_PASSKEY_NAME, MAX_PASSKEYS,
    Passkey, PendingSignIn, TotpEnrollment, TotpFactor,
};
pub use limits::{
    MAX_ANONYMOUS_CEREMONIES, MAX_DETAIL_KEY, MAX_DETAIL_VALUE, MAX_DETAILS, MAX_USER,
    MAX_USER_AGENT, truncate,
};
pub use method::{Method, Methods};
pub use net::{IpNet, canonical_ip};
pub use regulation::RegulationSettings;
pub use session::{CreatedSession, NewSession, Revocation, RevokeReason, Session};
pub use token::{PublicId, SessionToken, TokenHash};
pub use wire::rfc3339_utc;
