//! A map operation the kernel refused, said with its errno and what to do:
//! aya's own message names the call only ("`bpf_map_update_elem` failed").

use aya::maps::MapError;
use floodgate_common::maps;

/// `source` of a failed operation on map `name`, with the errno and a hint.
pub fn describe(name: &str, source: &MapError) -> String {
    let MapError::SyscallError(e) = source else {
        return source.to_string();
    };
    let hint = e
        .io_error
        .raw_os_error()
        .and_then(|errno| hint(name, errno));
    match hint {
        Some(h) => format!("`{}` failed: {}; {h}", e.call, e.io_error),
        None => format!("`{}` failed: {}", e.call, e.io_error),
    }
}

/// What to do about `errno` from an operation on map `name`.
fn hint(name: &str, errno: i32) -> Option<String> {
    let capacity = match name {
        maps::RULES | maps::BLOCK | maps::ALLOW => Some("lists"),
        maps::SOURCES => Some("sources"),
        maps::PREFIXES => Some("prefixes"),
        maps::BANS => Some("bans"),
        _ => None,
    };
    match errno {
        // A full hash map (E2BIG) or LPM trie (ENOSPC).
        libc::E2BIG | libc::ENOSPC => Some(match capacity {
            Some(key) => format!(
                "the map is full: raise [capacity] {key} (it applies after `floodgate detach` and a restart)"
            ),
            None => "the map is full".to_owned(),
        }),
        libc::ENOMEM => Some(
            "the kernel has no memory for it: lower the [capacity] sizes or free memory".to_owned(),
        ),
        libc::EPERM | libc::EACCES => {
            Some("run as root (floodgate needs CAP_BPF and CAP_NET_ADMIN)".to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(errno: i32) -> MapError {
        MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn a_full_list_says_its_errno_and_which_capacity_to_raise() {
        let m = describe(maps::BLOCK, &failed(libc::ENOSPC));
        assert!(m.starts_with("`bpf_map_update_elem` failed: "), "{m}");
        assert!(m.contains("(os error 28)"), "{m}");
        assert!(m.contains("raise [capacity] lists"), "{m}");
        let m = describe(maps::SOURCES, &failed(libc::E2BIG));
        assert!(
            m.contains("(os error 7)") && m.contains("[capacity] sources"),
            "{m}"
        );
        let m = describe(maps::SETTINGS, &failed(libc::EPERM));
        assert!(m.contains("run as root"), "{m}");
        // Others keep the errno, with no guess.
        let m = describe(maps::SETTINGS, &failed(libc::EINVAL));
        assert!(m.ends_with("(os error 22)"), "{m}");
    }
}
