//! Who may use the control socket, and for what.
//!
//! The socket file's mode is the first gate; the daemon checks every
//! connection's peer credentials (SO_PEERCRED, SO_PEERGROUPS: taken by the
//! kernel when the peer connected, so they cannot be forged or raced) as the
//! second, and holds each caller to a role:
//!
//! - **admin**: root, the daemon's own user, and members of `--admin-group`:
//!   every verb.
//! - **reader**: members of `--socket-group`: the read-only verbs (status,
//!   stats, top, the lists and bans), nothing that changes filtering.
//! - anyone else is refused.

use std::os::fd::AsRawFd;

use nix::unistd::{Gid, Group, Uid};

use super::proto::Request;

/// What a connected peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader,
    Admin,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no group {name:?} for {flag}; create it (groupadd) or fix {flag}")]
    NoGroup { flag: &'static str, name: String },
}

/// The groups given on the command line, resolved once at start.
#[derive(Debug, Clone, Default)]
pub struct Access {
    readers: Option<(String, Gid)>,
    admins: Option<(String, Gid)>,
}

/// A peer's identity as the kernel recorded it at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Access {
    /// Resolves `--socket-group` and `--admin-group`; a missing group is an
    /// error before anything is loaded.
    pub fn resolve(readers: Option<&str>, admins: Option<&str>) -> Result<Access, AccessError> {
        let lookup = |flag, name: Option<&str>| -> Result<_, AccessError> {
            name.map(|name| {
                Group::from_name(name)
                    .ok()
                    .flatten()
                    .map(|g| (name.to_owned(), g.gid))
                    .ok_or_else(|| AccessError::NoGroup {
                        flag,
                        name: name.to_owned(),
                    })
            })
            .transpose()
        };
        Ok(Access {
            readers: lookup("--socket-group", readers)?,
            admins: lookup("--admin-group", admins)?,
        })
    }

    /// The groups the socket file must admit: its owner group, and whether a
    /// second group needs it world-connectable (the peer check then is the
    /// only gate, as on the D-Bus system bus).
    pub fn file_mode(&self) -> (Option<Gid>, u32) {
        match (&self.readers, &self.admins) {
            (None, None) => (None, 0o600),
            (Some((_, g)), None) | (None, Some((_, g))) => (Some(*g), 0o660),
            (Some((_, r)), Some((_, a))) if r == a => (Some(*r), 0o660),
            (Some(_), Some(_)) => (None, 0o666),
        }
    }

    /// The role of `peer`, or None: refused.
    pub fn role(&self, peer: &Peer) -> Option<Role> {
        let member = |g: &Option<(String, Gid)>| {
            g.as_ref().is_some_and(|(_, gid)| {
                peer.gid == gid.as_raw() || peer.groups.contains(&gid.as_raw())
            })
        };
        if peer.uid == 0 || peer.uid == Uid::effective().as_raw() || member(&self.admins) {
            Some(Role::Admin)
        } else if member(&self.readers) {
            Some(Role::Reader)
        } else {
            None
        }
    }

    /// Why `peer` was refused, for its error reply.
    pub fn refusal(&self, peer: &Peer) -> String {
        let mut who = vec!["root".to_owned()];
        if let Some((name, _)) = &self.admins {
            who.push(format!("members of --admin-group {name}"));
        }
        if let Some((name, _)) = &self.readers {
            who.push(format!("members of --socket-group {name} (read-only)"));
        }
        format!(
            "permission denied: uid {} may not use this socket; only {} may",
            peer.uid,
            who.join(", ")
        )
    }

    /// Whether `role` may make `request`; the error reply if not.
    pub fn permit(&self, role: Role, request: &Request) -> Result<(), String> {
        if role == Role::Admin || !request.changes_state() {
            return Ok(());
        }
        let admins = match &self.admins {
            Some((name, _)) => format!("root or a member of --admin-group {name}"),
            None => "root (or a member of a group the daemon is given with --admin-group)".into(),
        };
        Err(format!(
            "permission denied: `{}` changes filtering, and members of --socket-group {} may only read \
             (status, stats, top, allow/block/bans list); run it as {admins}",
            request.verb(),
            self.readers.as_ref().map_or("", |(n, _)| n.as_str()),
        ))
    }
}

/// The peer of a connected Unix stream socket.
pub fn peer_of(sock: &impl AsRawFd) -> std::io::Result<Peer> {
    let fd = sock.as_raw_fd();
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    getsockopt(fd, libc::SO_PEERCRED, &mut cred)?;
    Ok(Peer {
        uid: cred.uid,
        gid: cred.gid,
        groups: peer_groups(fd)?,
    })
}

/// SO_PEERGROUPS (Linux 4.13): the supplementary groups; ERANGE says how many.
fn peer_groups(fd: i32) -> std::io::Result<Vec<u32>> {
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * size_of::<u32>())
            .map_err(std::io::Error::other)?;
        // SAFETY: the buffer is `len` bytes of gid_t and outlives the call.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &raw mut len,
            )
        };
        let have = len as usize / size_of::<u32>();
        if r == 0 {
            groups.truncate(have);
            return Ok(groups);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || have <= groups.len() {
            return Err(e);
        }
        groups.resize(have, 0);
    }
}

fn getsockopt<T>(fd: i32, opt: i32, value: &mut T) -> std::io::Result<()> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a valid, writable T of `len` bytes for the call.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            std::ptr::from_mut(value).cast(),
            &raw mut len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access {
            readers: Some(("watch".into(), Gid::from_raw(1001))),
            admins: Some(("ops".into(), Gid::from_raw(1002))),
        }
    }

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn roles_follow_uid_and_groups() {
        let a = access();
        assert_eq!(a.role(&peer(0, 0, &[])), Some(Role::Admin));
        assert_eq!(a.role(&peer(5000, 100, &[1002])), Some(Role::Admin));
        assert_eq!(a.role(&peer(5000, 1002, &[])), Some(Role::Admin));
        assert_eq!(a.role(&peer(5000, 100, &[1001])), Some(Role::Reader));
        assert_eq!(a.role(&peer(5000, 100, &[7, 8])), None);
        assert_eq!(Access::default().role(&peer(5000, 1001, &[1001])), None);
    }

    #[test]
    fn readers_only_read() {
        let a = access();
        for read in [Request::Status, Request::Stats, Request::BansList] {
            assert!(a.permit(Role::Reader, &read).is_ok());
        }
        let detach = Request::Detach { iface: None };
        let err = a
            .permit(Role::Reader, &detach)
            .expect_err("a reader may not detach");
        assert!(
            err.contains("`detach`") && err.contains("--admin-group ops"),
            "{err}"
        );
        assert!(a.permit(Role::Admin, &detach).is_ok());
    }

    #[test]
    fn the_file_mode_admits_the_given_groups() {
        assert_eq!(Access::default().file_mode(), (None, 0o600));
        let one = Access {
            readers: Some(("watch".into(), Gid::from_raw(1001))),
            admins: None,
        };
        assert_eq!(one.file_mode(), (Some(Gid::from_raw(1001)), 0o660));
        assert_eq!(access().file_mode(), (None, 0o666));
    }
}
