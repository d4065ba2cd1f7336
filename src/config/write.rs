//! Writing the config file: appending a `[[users]]` entry (the first admin
//! created at start-up) without touching what the file already says, and
//! the edits of `gatehouse users add|remove|passwd`, made with `toml_edit`
//! so that comments, order and layout stay as written, and written in one
//! rename so that a server reading the file never sees half of it.

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, Value};

use super::{ConfigError, UserEntry};

/// Appends a `[[users]]` entry to the config file (creating it, mode 0600),
/// keeping whatever the file already says.
pub fn append_user(path: &Path, user: &UserEntry) -> Result<(), ConfigError> {
    use std::io::Write;
    let werr = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(werr)?;
    let sep = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let entry = format!(
        "{sep}\n[[users]]\nname = {}\npassword_hash = {}\nadmin = {}\n",
        toml_str(&user.name),
        toml_str(&user.password_hash),
        user.admin
    );
    f.write_all(entry.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Why an edit of the users could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserEdit {
    #[error("the config file is not valid TOML: {0}")]
    Parse(String),
    #[error("a user named {0:?} already exists")]
    Exists(String),
    #[error("there is no user named {0:?}")]
    NoSuchUser(String),
    #[error("`users` is not a list of tables here; edit the file by hand")]
    Unsupported,
}

fn parse(text: &str) -> Result<DocumentMut, UserEdit> {
    text.parse::<DocumentMut>()
        .map_err(|e| UserEdit::Parse(e.to_string()))
}

/// The users of the document as tables: `[[users]]` entries, or the
/// inline tables of `users = [...]`; `None` when there are none.
enum Users<'d> {
    Tables(&'d mut toml_edit::ArrayOfTables),
    Inline(&'d mut toml_edit::Array),
}

fn users(doc: &mut DocumentMut) -> Result<Option<Users<'_>>, UserEdit> {
    match doc.get_mut("users") {
        None => Ok(None),
        Some(Item::ArrayOfTables(a)) => Ok(Some(Users::Tables(a))),
        Some(Item::Value(Value::Array(a))) => Ok(Some(Users::Inline(a))),
        Some(_) => Err(UserEdit::Unsupported),
    }
}

/// The index of the entry named `name`.
fn find(users: &Users<'_>, name: &str) -> Option<usize> {
    match users {
        Users::Tables(a) => a
            .iter()
            .position(|t| t.get("name").and_then(|v| v.as_str()) == Some(name)),
        Users::Inline(a) => a.iter().position(|v| {
            v.as_inline_table()
                .and_then(|t| t.get("name"))
                .and_then(|v| v.as_str())
                == Some(name)
        }),
    }
}

/// `text` with a `[[users]]` entry for `user` after the last one (or at
/// the end), every comment and setting kept. Only the fields that say
/// something are written: `admin` when true, `groups` when there are some,
/// `email` and `display_name` when set.
pub fn add_user(text: &str, user: &UserEntry) -> Result<String, UserEdit> {
    let mut doc = parse(text)?;
    let mut t = Table::new();
    t.insert("name", toml_edit::value(user.name.as_str()));
    t.insert(
        "password_hash",
        toml_edit::value(user.password_hash.as_str()),
    );
    if user.admin {
        t.insert("admin", toml_edit::value(true));
    }
    if !user.groups.is_empty() {
        let groups: toml_edit::Array = user.groups.iter().map(String::as_str).collect();
        t.insert("groups", toml_edit::value(groups));
    }
    if let Some(e) = &user.email {
        t.insert("email", toml_edit::value(e.as_str()));
    }
    if let Some(n) = &user.display_name {
        t.insert("display_name", toml_edit::value(n.as_str()));
    }
    if user.email_verified {
        t.insert("email_verified", toml_edit::value(true));
    }
    if let Some(r) = user.require_second_factor {
        t.insert("require_second_factor", toml_edit::value(r));
    }
    match users(&mut doc)? {
        Some(u) if find(&u, &user.name).is_some() => {
            return Err(UserEdit::Exists(user.name.clone()));
        }
        Some(Users::Tables(a)) => {
            t.decor_mut().set_prefix("\n");
            a.push(t);
        }
        Some(Users::Inline(a)) => a.push(t.into_inline_table()),
        None => {
            t.decor_mut()
                .set_prefix(if text.trim().is_empty() { "" } else { "\n" });
            let mut a = toml_edit::ArrayOfTables::new();
            a.push(t);
            doc.insert("users", Item::ArrayOfTables(a));
        }
    }
    Ok(doc.to_string())
}

/// `text` without the entry of the user `name`, everything else kept.
pub fn remove_user(text: &str, name: &str) -> Result<String, UserEdit> {
    let mut doc = parse(text)?;
    let Some(mut u) = users(&mut doc)? else {
        return Err(UserEdit::NoSuchUser(name.into()));
    };
    let i = find(&u, name).ok_or_else(|| UserEdit::NoSuchUser(name.into()))?;
    match &mut u {
        Users::Tables(a) => {
            a.remove(i);
        }
        Users::Inline(a) => {
            a.remove(i);
        }
    }
    Ok(doc.to_string())
}

/// `text` with the `password_hash` of the user `name` replaced by `hash`,
/// everything else (their other fields, comments) kept.
pub fn set_password(text: &str, name: &str, hash: &str) -> Result<String, UserEdit> {
    let mut doc = parse(text)?;
    let Some(mut u) = users(&mut doc)? else {
        return Err(UserEdit::NoSuchUser(name.into()));
    };
    let i = find(&u, name).ok_or_else(|| UserEdit::NoSuchUser(name.into()))?;
    match &mut u {
        Users::Tables(a) => {
            let t = a.get_mut(i).expect("found above");
            match t.get_mut("password_hash") {
                // The value alone: its decor (a comment after it) stays.
                Some(Item::Value(v)) => {
                    let decor = v.decor().clone();
                    *v = Value::from(hash);
                    *v.decor_mut() = decor;
                }
                _ => {
                    t.insert("password_hash", toml_edit::value(hash));
                }
            }
        }
        Users::Inline(a) => {
            let t = a
                .get_mut(i)
                .and_then(|v| v.as_inline_table_mut())
                .expect("found above");
            t.insert("password_hash", Value::from(hash));
        }
    }
    Ok(doc.to_string())
}

/// Replaces the config file with `text` in one rename: written beside it
/// to a temporary file with the same mode and owner (0600 for a new file),
/// synced, renamed over it, and the directory synced. A server reading the
/// file sees the old text or the new, never a mix.
pub fn write_config(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let werr = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(werr)?;
    let old = std::fs::metadata(path).ok();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some(m) = &old {
            // The server may run as another user than whoever edits: the
            // file keeps its owner, group and mode.
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
            f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# gatehouse config\nmetrics = true # keep metrics\n\n\
        [[users]]\n# the first admin\nname = \"admin\"\npassword_hash = \"old\" # rotated yearly\nadmin = true\n\n\
        [session]\nidle_secs = 600 # ten minutes\n\n\
        [[users]]\nname = \"bob\"\npassword_hash = \"b\"\n\n# end of file\n";

    fn user(name: &str) -> UserEntry {
        UserEntry {
            name: name.into(),
            password_hash: "h".into(),
            admin: true,
            groups: vec!["dev".into(), "ops".into()],
            email: Some("c@example.com".into()),
            display_name: None,
            require_second_factor: None,
            email_verified: false,
        }
    }

    #[test]
    fn add_keeps_comments_and_parses_back() {
        let text = add_user(FILE, &user("carol")).unwrap();
        for kept in [
            "# gatehouse config",
            "metrics = true # keep metrics",
            "# the first admin",
            "password_hash = \"old\" # rotated yearly",
            "idle_secs = 600 # ten minutes",
            "# end of file",
        ] {
            assert!(text.contains(kept), "{kept}: {text}");
        }
        assert!(
            text.starts_with(FILE.split("# end of file").next().unwrap()),
            "{text}"
        );
        let parsed = super::super::parse_file(Path::new("g.toml"), &text).unwrap();
        let names: Vec<&str> = parsed.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["admin", "bob", "carol"]);
        let carol = &parsed.users[2];
        assert!(carol.admin);
        assert_eq!(carol.groups, ["dev", "ops"]);
        assert_eq!(carol.email.as_deref(), Some("c@example.com"));
        assert_eq!(
            add_user(&text, &user("carol")),
            Err(UserEdit::Exists("carol".into()))
        );
        // Into an empty file, and beside inline users.
        let text = add_user("", &user("dave")).unwrap();
        assert!(text.starts_with("[[users]]\nname = \"dave\""), "{text}");
        let inline = "users = [{ name = \"a\", password_hash = \"x\" }]\n";
        let text = add_user(inline, &user("e")).unwrap();
        let parsed = super::super::parse_file(Path::new("g.toml"), &text).unwrap();
        assert_eq!(parsed.users.len(), 2, "{text}");
    }

    #[test]
    fn remove_and_passwd_touch_only_that_user() {
        let text = remove_user(FILE, "bob").unwrap();
        assert!(!text.contains("name = \"bob\""), "{text}");
        assert!(
            text.contains("# the first admin") && text.contains("idle_secs = 600 # ten minutes")
        );
        assert_eq!(
            remove_user(&text, "bob"),
            Err(UserEdit::NoSuchUser("bob".into()))
        );
        let text = set_password(FILE, "admin", "new$hash").unwrap();
        assert!(
            text.contains("password_hash = \"new$hash\" # rotated yearly"),
            "{text}"
        );
        assert!(text.contains("password_hash = \"b\""), "{text}");
        assert_eq!(
            set_password(FILE, "zed", "x"),
            Err(UserEdit::NoSuchUser("zed".into()))
        );
        assert!(matches!(remove_user("x = [", "a"), Err(UserEdit::Parse(_))));
        assert_eq!(remove_user("users = 3", "a"), Err(UserEdit::Unsupported));
    }

    #[test]
    fn write_config_replaces_in_one_rename_keeping_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        write_config(&p, "a = 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 1\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_config(&p, "a = 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 2\n");
        assert_eq!(mode(&p), 0o640);
        // Nothing left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
