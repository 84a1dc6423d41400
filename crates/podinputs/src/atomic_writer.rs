//! Kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go): a set of files replaced all at once,
//! so a container that reads a ConfigMap volume never sees half an update.
//!
//! Layout of a target directory:
//!
//! ```text
//! ..2026_11_23_01_02_03.123456789/   the files of one version (timestamped, never changed)
//! ..data -> ..2026_11_23_01_02_03.123456789
//! key -> ..data/key                   one symlink per top-level user-visible name
//! ```
//!
//! An update writes a new timestamped directory, points a temporary symlink `..data_tmp` at it and
//! renames that over `..data` (rename(2) is atomic), then drops names that are gone and the old
//! directory. Because containers bind-mount the target directory, they see the swap. Content that
//! did not change is not rewritten, so a periodic resync costs reads only.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const DATA_DIR: &str = "..data";
const NEW_DATA_DIR: &str = "..data_tmp";
const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;
/// Directories inside a version must be traversable by any user the container runs as.
const DIR_MODE: u32 = 0o755;

/// One file of a payload: its bytes and its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path (may contain `/`) → file.
pub type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    /// A payload path that would leave the target directory or clash with the writer's own names;
    /// the wording is kubelet's validatePath's.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AtomicWriteError + 'a {
    move |source| AtomicWriteError::Io { action, path: path.to_owned(), source }
}

/// Checks a payload path as kubelet's validatePath: relative, no `..` element, not starting with
/// `..` (that prefix belongs to the writer), bounded lengths.
pub fn validate_path(path: &str) -> Result<(), AtomicWriteError> {
    if path.is_empty() {
        return Err(AtomicWriteError::InvalidPath(format!("must not be empty: {path:?}")));
    }
    if path.starts_with('/') {
        return Err(AtomicWriteError::InvalidPath(format!("must be relative path: {path}")));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(AtomicWriteError::InvalidPath(format!("must be less than or equal to {MAX_PATH_LENGTH} characters")));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(AtomicWriteError::InvalidPath(format!("must not contain '..': {path}")));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(AtomicWriteError::InvalidPath(format!("filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters")));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(AtomicWriteError::InvalidPath(format!("must not start with '..': {path}")));
    }
    Ok(())
}

/// filepath.Clean for a validated relative path: drops empty and `.` elements.
fn clean(path: &str) -> String {
    path.split('/').filter(|p| !p.is_empty() && *p != ".").collect::<Vec<_>>().join("/")
}

/// Writes `payload` into `target` (which must exist). Answers whether a new version was written.
pub fn write(target: &Path, payload: &Payload) -> Result<bool, AtomicWriteError> {
    let mut clean_payload = Payload::new();
    for (path, file) in payload {
        validate_path(path)?;
        let cleaned = clean(path);
        if cleaned.is_empty() {
            return Err(AtomicWriteError::InvalidPath(format!("must not be empty: {path:?}")));
        }
        clean_payload.insert(cleaned, file.clone());
    }

    let data_dir = target.join(DATA_DIR);
    let old_version = match fs::read_link(&data_dir) {
        Ok(link) => Some(link),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("read the symlink", &data_dir)(e)),
    };
    let old_files = match &old_version {
        Some(version) => files_in(&target.join(version))?,
        None => BTreeMap::new(),
    };
    let unchanged = old_version.is_some()
        && old_files.len() == clean_payload.len()
        && clean_payload.iter().all(|(path, file)| old_files.get(path).is_some_and(|(mode, p)| *mode == file.mode && fs::read(p).is_ok_and(|data| data == file.data)));

    if !unchanged {
        let version = new_version_dir(target)?;
        let version_name = version.file_name().map(PathBuf::from).unwrap_or_default();
        let written = write_files(&version, &clean_payload).and_then(|()| swap_data_link(target, &version_name));
        if let Err(e) = written {
            // Never leave a half-written version behind; `..data` still names the old one.
            let _ = fs::remove_dir_all(&version);
            return Err(e);
        }
        // Top-level names that no longer exist lose their symlink (kubelet removes only those).
        let new_top: BTreeSet<&str> = clean_payload.keys().map(|p| top_level(p)).collect();
        for old in old_files.keys().map(|p| top_level(p)).collect::<BTreeSet<_>>() {
            if !new_top.contains(old) {
                let link = target.join(old);
                if fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
                    fs::remove_file(&link).map_err(io_error("remove", &link))?;
                }
            }
        }
    }

    // User-visible symlinks; created also when unchanged, which repairs a deleted one.
    for name in clean_payload.keys().map(|p| top_level(p)).collect::<BTreeSet<_>>() {
        let link = target.join(name);
        match fs::symlink_metadata(&link) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::os::unix::fs::symlink(Path::new(DATA_DIR).join(name), &link).map_err(io_error("create the symlink", &link))?;
            }
            Err(e) => return Err(io_error("inspect", &link)(e)),
        }
    }

    if !unchanged {
        remove_old_versions(target)?;
    }
    Ok(!unchanged)
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Regular files of a version directory: relative path → (mode, full path).
fn files_in(version: &Path) -> Result<BTreeMap<String, (u32, PathBuf)>, AtomicWriteError> {
    let mut files = BTreeMap::new();
    let mut pending = vec![version.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // `..data` pointing at nothing (a crash between steps): everything gets rewritten.
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir == version => return Ok(files),
            Err(e) => return Err(io_error("read the directory", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error("read the directory", &dir))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(io_error("inspect", &path))?;
            if meta.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(version) {
                let relative = relative.components().filter_map(|c| match c {
                    Component::Normal(part) => part.to_str(),
                    _ => None,
                });
                files.insert(relative.collect::<Vec<_>>().join("/"), (meta.permissions().mode() & 0o7777, path));
            }
        }
    }
    Ok(files)
}

/// A new, empty version directory named after the current UTC time (kubelet's
/// `..2006_01_02_15_04_05.` prefix, here with the nanoseconds as the unique part).
fn new_version_dir(target: &Path) -> Result<PathBuf, AtomicWriteError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let base = format!("..{}.{:09}", utc_timestamp(now.as_secs()), now.subsec_nanos());
    for attempt in 0u32.. {
        let name = if attempt == 0 { base.clone() } else { format!("{base}{attempt}") };
        let path = target.join(name);
        match fs::DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => {
                // The umask may have narrowed the mode; containers running as any user must read.
                fs::set_permissions(&path, fs::Permissions::from_mode(DIR_MODE)).map_err(io_error("set the mode of", &path))?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => continue,
            Err(e) => return Err(io_error("create the directory", &path)(e)),
        }
    }
    unreachable!("the loop returns or fails")
}

fn write_files(version: &Path, payload: &Payload) -> Result<(), AtomicWriteError> {
    for (relative, file) in payload {
        let path = version.join(relative);
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(parent).map_err(io_error("create the directory", parent))?;
        }
        fs::write(&path, &file.data).map_err(io_error("write", &path))?;
        // Explicitly, because the umask applies to the creation mode.
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode & 0o7777)).map_err(io_error("set the mode of", &path))?;
    }
    Ok(())
}

/// Points `..data` at `version_name` atomically: a new symlink renamed over the old one.
fn swap_data_link(target: &Path, version_name: &Path) -> Result<(), AtomicWriteError> {
    let temporary = target.join(NEW_DATA_DIR);
    // A leftover from an interrupted write would make symlink(2) fail.
    match fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("remove", &temporary)(e)),
    }
    std::os::unix::fs::symlink(version_name, &temporary).map_err(io_error("create the symlink", &temporary))?;
    let data_dir = target.join(DATA_DIR);
    if let Err(e) = fs::rename(&temporary, &data_dir) {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("rename the symlink to", &data_dir)(e));
    }
    Ok(())
}

/// Removes every version directory but the one `..data` names (the previous one, and any an
/// interrupted write left behind).
fn remove_old_versions(target: &Path) -> Result<(), AtomicWriteError> {
    let data_dir = target.join(DATA_DIR);
    let current = fs::read_link(&data_dir).map_err(io_error("read the symlink", &data_dir))?;
    let entries = fs::read_dir(target).map_err(io_error("read the directory", target))?;
    for entry in entries {
        let entry = entry.map_err(io_error("read the directory", target))?;
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if is_version_name(text) && Path::new(text) != current {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io_error("remove", &path))?;
        }
    }
    Ok(())
}

/// `..YYYY_MM_DD_HH_MM_SS.<digits>`: the only names this writer creates and so may delete.
fn is_version_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("..") else { return false };
    let bytes = rest.as_bytes();
    if bytes.len() < 21 {
        return false;
    }
    let stamp_ok = bytes[..19].iter().enumerate().all(|(i, b)| if matches!(i, 4 | 7 | 10 | 13 | 16) { *b == b'_' } else { b.is_ascii_digit() });
    stamp_ok && bytes[19] == b'.' && bytes[20..].iter().all(u8::is_ascii_digit)
}

/// `YYYY_MM_DD_HH_MM_SS` in UTC for seconds since the epoch (civil-from-days, H. Hinnant).
fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection { data: data.as_bytes().to_vec(), mode }
    }

    fn payload(items: &[(&str, &str)]) -> Payload {
        items.iter().map(|(k, v)| (k.to_string(), file(v, 0o644))).collect()
    }

    fn versions(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| is_version_name(n)).collect();
        names.sort();
        names
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970_01_01_00_00_00");
        assert_eq!(utc_timestamp(951_782_400), "2000_02_29_00_00_00");
        assert_eq!(utc_timestamp(1_795_395_723), "2026_11_23_01_02_03");
        assert!(is_version_name("..2026_11_23_01_02_03.123456789"));
        assert!(!is_version_name("..data"));
        assert!(!is_version_name("..2026_11_23_01_02_03."));
        assert!(!is_version_name("2026_11_23_01_02_03.1"));
    }

    #[test]
    fn paths_are_validated_like_kubelet() {
        for ok in ["a", "a/b", "a/./b", ".a", "a..b", "a/..b"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "a/../b", "..", "..a", "..data", "..data/x", &"x".repeat(256)] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_links_and_skips_unchanged_content() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        assert!(write(target, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(fs::read_link(target.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(fs::read_link(target.join("sub")).unwrap(), Path::new("..data/sub"));
        assert_eq!(fs::read_to_string(target.join("sub/b")).unwrap(), "2");
        let first = versions(target);
        assert_eq!(first.len(), 1);
        assert_eq!(fs::read_link(target.join(DATA_DIR)).unwrap(), Path::new(&first[0]));

        assert!(!write(target, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap(), "same content is not rewritten");
        assert_eq!(versions(target), first);

        let mut changed_mode = payload(&[("a", "1"), ("sub/b", "2")]);
        changed_mode.get_mut("a").unwrap().mode = 0o400;
        assert!(write(target, &changed_mode).unwrap(), "a mode change is a change");
        assert_eq!(fs::metadata(target.join("a")).unwrap().permissions().mode() & 0o777, 0o400);
        assert_ne!(versions(target), first);
        assert_eq!(versions(target).len(), 1);
    }

    #[test]
    fn removed_keys_disappear_and_paths_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        write(target, &payload(&[("a", "1"), ("b", "2"), ("./c//d", "3")])).unwrap();
        assert_eq!(fs::read_to_string(target.join("c/d")).unwrap(), "3");
        assert!(write(target, &payload(&[("a", "1")])).unwrap(), "a removal alone is a change");
        assert!(fs::symlink_metadata(target.join("b")).is_err());
        assert!(fs::symlink_metadata(target.join("c")).is_err());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "1");
        write(target, &Payload::new()).unwrap();
        let names: Vec<_> = fs::read_dir(target).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 2, "only ..data and its version remain: {names:?}");
    }

    #[test]
    fn leftovers_of_an_interrupted_write_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        write(target, &payload(&[("a", "1")])).unwrap();
        fs::create_dir(target.join("..2001_01_01_00_00_00.1")).unwrap();
        std::os::unix::fs::symlink("nowhere", target.join(NEW_DATA_DIR)).unwrap();
        write(target, &payload(&[("a", "2")])).unwrap();
        assert_eq!(versions(target).len(), 1);
        assert!(fs::symlink_metadata(target.join(NEW_DATA_DIR)).is_err());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "2");
    }

    #[test]
    fn invalid_paths_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(dir.path(), &payload(&[("ok", "1"), ("../escape", "2")])).unwrap_err();
        assert_eq!(err.to_string(), "invalid path: must not contain '..': ../escape");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
