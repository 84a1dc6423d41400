//! Mount points (from /proc/self/mountinfo) and the two syscalls this crate needs: mounting a
//! tmpfs and unmounting. Mount points are read from the kernel's table rather than guessed from
//! statfs, because a directory on a tmpfs (say /tmp) is not itself a mount point.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One line of mountinfo: where something is mounted and what filesystem it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// The mount table of this process's mount namespace.
pub(crate) fn mounts() -> io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Parses mountinfo: `id parent major:minor root mount-point options [optional...] - type source
/// super-options`; unparsable lines are skipped.
pub(crate) fn parse(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let mount_point = fields.nth(4)?;
            let fs_type = fields.skip_while(|f| *f != "-").nth(1)?;
            Some(MountEntry { mount_point: PathBuf::from(unescape(mount_point)), fs_type: unescape(fs_type) })
        })
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` (an existing directory) is itself a mount point.
pub(crate) fn is_mount_point(path: &Path) -> io::Result<bool> {
    let canonical = path.canonicalize()?;
    Ok(mounts()?.iter().any(|m| m.mount_point == canonical))
}

/// Every mount at or below `dir`, deepest first (so children are unmounted before parents; a path
/// mounted over several times appears as often).
pub(crate) fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let canonical = dir.canonicalize()?;
    let mut found: Vec<PathBuf> = mounts()?.into_iter().map(|m| m.mount_point).filter(|p| p.starts_with(&canonical)).collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// `mount -t tmpfs -o <options> tmpfs <target>`, as kubelet mounts a memory-backed emptyDir.
pub(crate) fn mount_tmpfs(target: &Path, options: &str) -> io::Result<()> {
    let source = c_path(Path::new("tmpfs"))?;
    let target_c = c_path(target)?;
    let fs_type = c_path(Path::new("tmpfs"))?;
    let data = CString::new(options).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mount options with a NUL byte"))?;
    let data_ptr = if options.is_empty() { std::ptr::null() } else { data.as_ptr().cast::<libc::c_void>() };
    // SAFETY: every pointer is a NUL-terminated string (or null for no data) alive for the call.
    let rc = unsafe { libc::mount(source.as_ptr(), target_c.as_ptr(), fs_type.as_ptr(), 0, data_ptr) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// umount2(2); `detach` is MNT_DETACH (lazy: gone from the tree now, freed when unused).
pub(crate) fn unmount(target: &Path, detach: bool) -> io::Result<()> {
    let target_c = c_path(target)?;
    let flags = if detach { libc::MNT_DETACH } else { 0 };
    // SAFETY: a NUL-terminated path alive for the call.
    let rc = unsafe { libc::umount2(target_c.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    40 22 0:35 / /var/lib/x\\040y/pods/u/volumes rw shared:5 master:2 - tmpfs tmpfs rw,size=1024k\n\
                    garbage\n";
        let entries = parse(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], MountEntry { mount_point: "/".into(), fs_type: "ext4".into() });
        assert_eq!(entries[1], MountEntry { mount_point: "/var/lib/x y/pods/u/volumes".into(), fs_type: "tmpfs".into() });
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("a\\0"), "a\\0");
        assert_eq!(unescape("a\\999"), "a\\999");
    }
}
