//! Stored text as an operator's terminal shows it: [`escape`] is the one
//! escaping every table printer uses (`auditctl` tables, `gatehouse bans
//! list`), so that a crafted user name, user agent or reason can neither
//! drive the terminal nor pass for something it is not.
//!
//! What is escaped, as `\u{hex}` (`\n`, `\r`, `\t` and `\\` for those):
//!
//! - control characters (Cc), so no escape sequence reaches the terminal;
//! - format characters (Cf): zero-width spaces and joiners (`a\u{200b}dmin`
//!   shows as `admin`), bidirectional overrides and isolates (U+202E makes
//!   the rest of the line, the following columns included, run right to
//!   left), the soft hyphen, tags;
//! - line and paragraph separators (Zl, Zp), which some terminals break
//!   lines at;
//! - space separators (Zs) other than the plain space: U+00A0, U+2000 to
//!   U+200A, U+3000 and the others look like a space but are not one;
//! - the plain space when it starts or ends a cell or follows another
//!   space: in a padded column, leading, trailing and doubled spaces are
//!   invisible or pass for the column gap, so `"admin "` and `"admin"`
//!   would look the same. A single space between two visible characters
//!   (user agents are full of them) stays;
//! - unassigned code points (Cn), private-use characters (Co) and
//!   surrogates (Cs): fonts show them as anything or nothing;
//! - the default-ignorable characters outside those categories: combining
//!   grapheme joiner, variation selectors, Hangul fillers, Khmer and
//!   Mongolian invisible marks ([`INVISIBLE`]), and the Braille blank,
//!   which draws as a space;
//! - a combining mark (Mn, Me) with no visible character before it (at the
//!   start, or after something escaped), which would otherwise draw onto the
//!   column gap or the escape before it;
//! - the backslash, so that an escape cannot be forged by typing it.
//!
//! That covers what the text log escapes (it prints names with Rust's
//! `Debug`, which escapes Cc, Cf, Zl, Zp, Zs but the space, Cn, Co and Cs)
//! and adds what a column layout needs. Left as they are: letters of
//! right-to-left scripts (a terminal that implements the bidirectional
//! algorithm may show a run of them, and neutral characters beside them,
//! in another order, but it cannot be made to move other columns the way
//! an override does), and look-alike letters of other scripts (`аdmin`
//! with a Cyrillic `а`), which are visible characters; `--json` output
//! shows exact code points for such cases.
//!
//! Categories come from the `unicode-general-category` crate (Unicode 16).

use std::borrow::Cow;
use std::fmt::Write;

use unicode_general_category::{GeneralCategory as Gc, get_general_category};

/// Default-ignorable code points (Unicode's `Default_Ignorable_Code_Point`)
/// that are not format characters or unassigned, so that their general
/// category alone does not mark them: they draw nothing.
pub const INVISIBLE: &[(char, char)] = &[
    ('\u{034F}', '\u{034F}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180D}'),
    ('\u{180F}', '\u{180F}'),
    ('\u{2800}', '\u{2800}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{E0100}', '\u{E01EF}'),
];

/// Whether `c` must be escaped wherever it stands.
fn always_escaped(c: char) -> bool {
    if c == '\\' {
        return true;
    }
    if INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) {
        return true;
    }
    match get_general_category(c) {
        Gc::Control
        | Gc::Format
        | Gc::LineSeparator
        | Gc::ParagraphSeparator
        | Gc::Unassigned
        | Gc::PrivateUse
        | Gc::Surrogate => true,
        Gc::SpaceSeparator => c != ' ',
        _ => false,
    }
}

fn is_mark(c: char) -> bool {
    matches!(
        get_general_category(c),
        Gc::NonspacingMark | Gc::EnclosingMark
    )
}

/// `s` with every character that could hide, reorder or fake what a
/// terminal shows escaped (see the module doc). Text with none of them is
/// returned as it is, without a copy.
pub fn escape(s: &str) -> Cow<'_, str> {
    let chars: Vec<char> = s.chars().collect();
    let mut escaped = vec![false; chars.len()];
    // Whether the previous character is shown as itself and can carry a mark.
    let mut carrier = false;
    for (i, &c) in chars.iter().enumerate() {
        let e = if c == ' ' {
            // A plain space: escaped at either end of the text and in runs.
            i == 0 || i + 1 == chars.len() || chars[i - 1] == ' ' || chars[i + 1] == ' '
        } else if always_escaped(c) {
            true
        } else {
            is_mark(c) && !carrier
        };
        escaped[i] = e;
        carrier = !e && c != ' ';
    }
    if !escaped.contains(&true) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for (&c, &e) in chars.iter().zip(&escaped) {
        if !e {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_is_kept() {
        for s in [
            "admin",
            "alice@example.com",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
            "Zoë",
            "Ελένη",
            "黄",
            "e\u{301}",
            "",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s:?}");
        }
    }

    #[test]
    fn crafted_names_are_shown_escaped() {
        for (raw, shown) in [
            ("a\u{200b}\u{200b}dmin", "a\\u{200b}\\u{200b}dmin"),
            ("admin\u{202e}nimda", "admin\\u{202e}nimda"),
            ("ad\u{2028}min", "ad\\u{2028}min"),
            ("ad\u{2029}min", "ad\\u{2029}min"),
            ("\u{2066}admin\u{2069}", "\\u{2066}admin\\u{2069}"),
            ("ad\u{ad}min", "ad\\u{ad}min"),
            ("\u{feff}admin", "\\u{feff}admin"),
            ("admin\u{e0041}", "admin\\u{e0041}"),
            // Spaces that are not the plain one.
            ("ad\u{a0}min", "ad\\u{a0}min"),
            ("ad\u{2007}min", "ad\\u{2007}min"),
            ("ad\u{3000}min", "ad\\u{3000}min"),
            // Plain spaces: at the ends and in runs; single ones stay.
            ("admin ", "admin\\u{20}"),
            (" admin", "\\u{20}admin"),
            ("ad  min", "ad\\u{20}\\u{20}min"),
            ("a b", "a b"),
            (" ", "\\u{20}"),
            // Invisible letters and selectors.
            ("ad\u{3164}min", "ad\\u{3164}min"),
            ("admin\u{fe0f}", "admin\\u{fe0f}"),
            ("ad\u{34f}min", "ad\\u{34f}min"),
            ("\u{2800}", "\\u{2800}"),
            // Unassigned and private use.
            ("ad\u{378}min", "ad\\u{378}min"),
            ("ad\u{e000}min", "ad\\u{e000}min"),
            // Marks with nothing visible to sit on.
            ("\u{301}admin", "\\u{301}admin"),
            ("a\u{200b}\u{301}", "a\\u{200b}\\u{301}"),
            ("a \u{301}b", "a \\u{301}b"),
            // Terminal control and the escape character itself.
            ("a\u{1b}[31mb\n", "a\\u{1b}[31mb\\n"),
            ("a\tb\r", "a\\tb\\r"),
            ("a\\u{200b}dmin", "a\\\\u{200b}dmin"),
        ] {
            assert_eq!(escape(raw), shown, "{raw:?}");
        }
    }

    proptest! {
        /// Whatever the input: the output is free of every character class
        /// escaped above, has no leading, trailing or doubled space, and
        /// different inputs never look the same.
        #[test]
        fn escaped_text_shows_nothing_hidden(a in "\\PC{0,12}|(?s).{0,12}", b in "(?s).{0,12}") {
            let ea = escape(&a);
            for c in ea.chars() {
                prop_assert!(c == '\\' || !always_escaped(c), "{c:?} in {ea:?}");
            }
            prop_assert!(!ea.starts_with(' ') && !ea.ends_with(' ') && !ea.contains("  "));
            prop_assert!(!ea.chars().next().is_some_and(is_mark), "{ea:?}");
            if a != b {
                prop_assert_ne!(ea, escape(&b));
            }
        }
    }
}
