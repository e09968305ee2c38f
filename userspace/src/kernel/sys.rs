//! The `bpf()` commands aya 0.14 does not wrap (a pinned link's detach, batched
//! map reads, the atomics probe), through one syscall wrapper.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

pub const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
pub const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
pub const BPF_PROG_LOAD: libc::c_long = 5;
pub const BPF_OBJ_GET: libc::c_long = 7;
pub const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
pub const BPF_LINK_DETACH: libc::c_long = 34;

/// Calls `bpf(cmd, attr, sizeof attr)`; the result (an fd for some commands).
///
/// # Safety
/// `attr` must be a valid head of `union bpf_attr` for `cmd`, and every
/// pointer in it must point to memory valid for what `cmd` reads or writes
/// there, for the duration of the call.
pub unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller's contract; the kernel reads and writes no more than
    // `size_of::<T>()` bytes of `attr` and keeps no pointer after it returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[repr(C)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

#[repr(C)]
struct LinkDetach {
    link_fd: u32,
}

/// Opens the object (map, link) pinned at `path`.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut get = ObjGet {
        pathname: name.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: a BPF_OBJ_GET head whose path outlives the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut get) }?;
    let fd = i32::try_from(fd).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    // SAFETY: BPF_OBJ_GET returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Detaches the link `link` from its interface (the program stops at once,
/// whoever else still holds the link).
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut detach = LinkDetach {
        link_fd: u32::try_from(link.as_raw_fd()).unwrap_or(u32::MAX),
    };
    // SAFETY: a BPF_LINK_DETACH head, no pointers.
    unsafe { bpf(BPF_LINK_DETACH, &mut detach) }.map(drop)
}
