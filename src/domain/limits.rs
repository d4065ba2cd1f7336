//! Bounds on stored text: every user name, user agent and event detail is
//! cut to these sizes before it is stored, whatever the backend.

/// Maximum stored length of a user agent, in bytes.
pub const MAX_USER_AGENT: usize = 256;
/// Maximum number of detail entries on one event.
pub const MAX_DETAILS: usize = 16;
/// Maximum length of a detail key, in bytes.
pub const MAX_DETAIL_KEY: usize = 64;
/// Maximum length of a detail value, in bytes.
pub const MAX_DETAIL_VALUE: usize = 512;
/// Maximum length of a user name, in bytes.
pub const MAX_USER: usize = 128;

/// Most sign-ins with a passkey alone open at once, from all clients
/// together; `second_factor.passkey_ceremonies_per_client` is at most this.
pub const MAX_ANONYMOUS_CEREMONIES: usize = 1024;

/// Truncates `s` to at most `max` bytes on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
