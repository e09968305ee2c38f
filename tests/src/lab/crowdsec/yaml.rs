//! Line editing of a block-style YAML document, just enough for crowdsec's
//! config.yaml: set a dotted key to a scalar, remove a dotted key's subtree.

/// The key of a `key: value` or `key:` line (without its indentation).
fn yaml_key(body: &str) -> Option<&str> {
    let (key, rest) = body.split_once(':')?;
    let key = key.trim();
    let plain = !key.is_empty() && !key.contains(char::is_whitespace);
    (plain && (rest.is_empty() || rest.starts_with([' ', '\t']))).then_some(key)
}

/// For each line of a block-style YAML document: its dotted key path and
/// indentation, if it is a mapping key line. Enough for crowdsec's
/// config.yaml: nested mappings, scalars, lists of scalars, comments.
fn yaml_keys(lines: &[String]) -> Vec<Option<(String, usize)>> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    lines
        .iter()
        .map(|line| {
            let body = line.trim_start();
            let indent = line.len() - body.len();
            if body.is_empty() || body.starts_with(['#', '-']) {
                return None;
            }
            let key = yaml_key(body)?;
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, key.to_owned()));
            let path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            Some((path.join("."), indent))
        })
        .collect()
}

fn yaml_lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

fn yaml_join(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn yaml_find(keys: &[Option<(String, usize)>], path: &str) -> Option<(usize, usize)> {
    keys.iter().enumerate().find_map(|(i, k)| match k {
        Some((p, indent)) if p == path => Some((i, *indent)),
        _ => None,
    })
}

/// Sets `path` (dotted) to the scalar `value`, replacing its line or adding
/// it (and missing parents) under its deepest existing parent.
pub(super) fn yaml_set(text: &str, path: &str, value: &str) -> String {
    let mut lines = yaml_lines(text);
    let keys = yaml_keys(&lines);
    let parts: Vec<&str> = path.split('.').collect();
    let leaf = parts.last().copied().unwrap_or(path);
    if let Some((i, indent)) = yaml_find(&keys, path) {
        lines[i] = format!("{}{leaf}: {value}", " ".repeat(indent));
        return yaml_join(&lines);
    }
    // The deepest parent that exists: insert right below its line.
    let (mut at, mut indent, mut depth) = (lines.len(), 0, 0);
    for d in (1..parts.len()).rev() {
        if let Some((i, parent_indent)) = yaml_find(&keys, &parts[..d].join(".")) {
            // The indentation of its first child, if it has one.
            let child_indent = lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(|l| l.len() - l.trim_start().len())
                .filter(|c| *c > parent_indent)
                .unwrap_or(parent_indent + 2);
            (at, indent, depth) = (i + 1, child_indent, d);
            break;
        }
    }
    let new: Vec<String> = parts[depth..]
        .iter()
        .enumerate()
        .map(|(n, part)| {
            let pad = " ".repeat(indent + 2 * n);
            if depth + n + 1 == parts.len() {
                format!("{pad}{part}: {value}")
            } else {
                format!("{pad}{part}:")
            }
        })
        .collect();
    lines.splice(at..at, new);
    yaml_join(&lines)
}

/// Removes `path` (dotted) and everything nested under it.
pub(super) fn yaml_remove(text: &str, path: &str) -> String {
    let mut lines = yaml_lines(text);
    let keys = yaml_keys(&lines);
    let Some((i, indent)) = yaml_find(&keys, path) else {
        return yaml_join(&lines);
    };
    let mut end = i + 1;
    while let Some(line) = lines.get(end) {
        let body = line.trim_start();
        let inner = line.len() - body.len();
        let nested = body.is_empty()
            || body.starts_with('#')
            || inner > indent
            || (inner == indent && body.starts_with('-'));
        if !nested {
            break;
        }
        end += 1;
    }
    lines.drain(i..end);
    yaml_join(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
common:
  daemonize: true
  log_dir: /var/log/
db_config:
  type: sqlite
  flush:
    max_age: 7d
api:
  client:
    credentials_path: /etc/crowdsec/local_api_credentials.yaml
  server:
    listen_uri: 127.0.0.1:8080
    online_client: # Central API credentials
      credentials_path: /etc/crowdsec/online_api_credentials.yaml
    trusted_ips: # IP ranges
      - 127.0.0.1
      - ::1
prometheus:
  enabled: true
";

    #[test]
    fn sets_replaces_and_adds_keys() {
        let t = yaml_set(SAMPLE, "api.server.listen_uri", "\"[fd00::1]:8080\"");
        assert!(t.contains("    listen_uri: \"[fd00::1]:8080\"\n"), "{t}");
        assert!(!t.contains("127.0.0.1:8080"));
        let t = yaml_set(&t, "db_config.use_wal", "true");
        assert!(
            t.contains("db_config:\n  use_wal: true\n  type: sqlite\n"),
            "{t}"
        );
        let t = yaml_set(&t, "new.deep.key", "1");
        assert!(t.ends_with("new:\n  deep:\n    key: 1\n"), "{t}");
        // Same leaf names elsewhere are not touched.
        let t = yaml_set(
            &t,
            "api.client.credentials_path",
            "\"/tmp/x/local_api_credentials.yaml\"",
        );
        assert!(t.contains("      credentials_path: /etc/crowdsec/online_api_credentials.yaml"));
        assert!(t.contains("    credentials_path: \"/tmp/x/local_api_credentials.yaml\""));
    }

    #[test]
    fn removes_a_subtree_only() {
        let t = yaml_remove(SAMPLE, "api.server.online_client");
        assert!(!t.contains("online"), "{t}");
        assert!(t.contains("    trusted_ips: # IP ranges\n      - 127.0.0.1\n      - ::1\n"));
        let t = yaml_remove(&t, "api.server.trusted_ips");
        assert!(
            t.contains("    listen_uri: 127.0.0.1:8080\nprometheus:\n"),
            "{t}"
        );
    }
}
