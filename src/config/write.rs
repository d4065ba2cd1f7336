//! Writing the config file: appending a `[[users]]` entry (the first admin
//! created at start-up) without touching what the file already says.

use std::path::Path;

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
