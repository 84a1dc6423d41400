//! A minimal ustar (POSIX.1-1988) writer for image layers: directories, regular files and
//! symbolic links, all owned by root, all with the same fixed modification time, so the same
//! entries always give the same bytes (and so the same layer digest).

use crate::OciError;

const BLOCK: usize = 512;
/// Every entry's mtime: the Unix epoch. A fixed value keeps layers reproducible; nothing in a
/// container cares about these times.
const MTIME: u64 = 0;

/// Builds a tar archive in memory.
#[derive(Default)]
pub struct TarBuilder {
    archive: Vec<u8>,
}

enum EntryKind<'a> {
    Directory,
    File(&'a [u8]),
    Symlink(&'a str),
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory; `path` is relative to the image root (`tmp`, `bin`).
    pub fn directory(&mut self, path: &str, mode: u32) -> Result<(), OciError> {
        self.entry(path, mode, EntryKind::Directory)
    }

    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) -> Result<(), OciError> {
        self.entry(path, mode, EntryKind::File(contents))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), OciError> {
        self.entry(path, 0o777, EntryKind::Symlink(target))
    }

    /// The archive, closed by the two zero blocks that mark its end.
    pub fn finish(mut self) -> Vec<u8> {
        self.archive.extend_from_slice(&[0; 2 * BLOCK]);
        self.archive
    }

    fn entry(&mut self, path: &str, mode: u32, kind: EntryKind<'_>) -> Result<(), OciError> {
        // Layer tars name entries relative to the root; directories end in '/' as GNU tar and
        // Docker write them.
        let mut name = path.trim_start_matches('/').to_owned();
        if matches!(kind, EntryKind::Directory) && !name.ends_with('/') {
            name.push('/');
        }
        let (type_flag, size, link_name, contents): (u8, usize, &str, &[u8]) = match kind {
            EntryKind::Directory => (b'5', 0, "", &[]),
            EntryKind::File(contents) => (b'0', contents.len(), "", contents),
            EntryKind::Symlink(target) => (b'2', 0, target, &[]),
        };
        let mut header = [0u8; BLOCK];
        put_text(&mut header[0..100], &name, path)?; // name
        put_octal(&mut header[100..108], u64::from(mode & 0o7777), path)?; // mode
        put_octal(&mut header[108..116], 0, path)?; // uid: root
        put_octal(&mut header[116..124], 0, path)?; // gid: root
        put_octal(&mut header[124..136], size as u64, path)?; // size
        put_octal(&mut header[136..148], MTIME, path)?; // mtime
        header[156] = type_flag; // typeflag
        put_text(&mut header[157..257], link_name, path)?; // linkname
        header[257..263].copy_from_slice(b"ustar\0"); // magic
        header[263..265].copy_from_slice(b"00"); // version
        put_text(&mut header[265..297], "root", path)?; // uname
        put_text(&mut header[297..329], "root", path)?; // gname
        // The checksum is the sum of all header bytes with its own field counted as spaces,
        // written as six octal digits, a NUL and a space.
        header[148..156].copy_from_slice(b"        ");
        let checksum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
        header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());

        self.archive.extend_from_slice(&header);
        self.archive.extend_from_slice(contents);
        let padding = (BLOCK - contents.len() % BLOCK) % BLOCK;
        self.archive.resize(self.archive.len() + padding, 0);
        Ok(())
    }
}

/// A NUL-padded text field. ustar allows a field to be filled completely (no NUL); we always
/// keep one for simplicity, which is ample for the short paths of our images.
fn put_text(field: &mut [u8], text: &str, path: &str) -> Result<(), OciError> {
    if text.len() >= field.len() {
        return Err(OciError::TarFieldTooLong { path: path.to_owned(), value: text.to_owned() });
    }
    field[..text.len()].copy_from_slice(text.as_bytes());
    Ok(())
}

/// A zero-padded octal number ending in NUL, the classic form every tar reader accepts.
fn put_octal(field: &mut [u8], value: u64, path: &str) -> Result<(), OciError> {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    if digits.len() >= field.len() {
        return Err(OciError::TarFieldTooLong { path: path.to_owned(), value: digits });
    }
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// GNU tar (always on Debian) reads back what we write, with the modes and link targets.
    #[test]
    fn gnu_tar_lists_the_archive() {
        let mut tar = TarBuilder::new();
        tar.directory("bin", 0o755).expect("dir");
        tar.file("bin/hello", 0o755, b"hello world\n").expect("file");
        tar.symlink("bin/hi", "hello").expect("link");
        tar.directory("/tmp", 0o1777).expect("tmp");
        let archive = tar.finish();
        assert_eq!(archive.len() % BLOCK, 0);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("layer.tar");
        std::fs::write(&path, &archive).expect("write");
        let output = Command::new("tar").arg("-tvf").arg(&path).output().expect("tar");
        assert!(output.status.success(), "tar: {}", String::from_utf8_lossy(&output.stderr));
        let listing = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 4, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x root/root") && lines[0].ends_with("bin/"), "{listing}");
        assert!(lines[1].starts_with("-rwxr-xr-x root/root") && lines[1].contains(" 12 ") && lines[1].ends_with("bin/hello"), "{listing}");
        assert!(lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with("bin/hi -> hello"), "{listing}");
        assert!(lines[3].starts_with("drwxrwxrwt") && lines[3].ends_with("tmp/"), "{listing}");
        let extract = Command::new("tar").arg("-xf").arg(&path).arg("-C").arg(dir.path()).status().expect("tar -x");
        assert!(extract.success());
        assert_eq!(std::fs::read(dir.path().join("bin/hi")).expect("read through link"), b"hello world\n");
    }

    #[test]
    fn too_long_names_are_refused() {
        let mut tar = TarBuilder::new();
        let long = "x".repeat(100);
        assert!(matches!(tar.file(&long, 0o644, b""), Err(OciError::TarFieldTooLong { .. })));
    }
}
