//! Whole-tree operations the copying drivers use: a copy that keeps owners,
//! modes, times, symlinks, hard links and device nodes, and a size walk.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Copies the contents of directory `from` into the existing directory `to`,
/// keeping metadata and hard links, and gives `to` the metadata of `from`.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let mut links = HashMap::new();
    copy_dir_contents(from, to, &mut links)?;
    copy_metadata(&fs::symlink_metadata(from)?, to)
}

fn copy_dir_contents(
    from: &Path,
    to: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&src)?;
        let ft = meta.file_type();

        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                fs::hard_link(first, &dst)?;
                continue;
            }
            links.insert(key, dst.clone());
        }

        if ft.is_dir() {
            fs::create_dir(&dst)?;
            copy_dir_contents(&src, &dst, links)?;
        } else if ft.is_file() {
            fs::copy(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            mknod(&dst, meta.mode(), meta.rdev())?;
        } else {
            // Sockets belong to a running process and mean nothing in a copy.
            continue;
        }
        copy_metadata(&meta, &dst)?;
    }
    Ok(())
}

fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: valid C string; mknod only creates the node.
    let ret = unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives `path` the owner, mode and times of `meta`, without following a
/// symlink at `path`.
pub fn copy_metadata(meta: &fs::Metadata, path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: valid C string; lchown does not follow the link.
    if unsafe { libc::lchown(c.as_ptr(), meta.uid(), meta.gid()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if !meta.file_type().is_symlink() {
        // SAFETY: valid C string; the path is not a symlink.
        if unsafe { libc::chmod(c.as_ptr(), (meta.mode() & 0o7777) as libc::mode_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let times = [
        libc::timespec {
            tv_sec: meta.atime() as _,
            tv_nsec: meta.atime_nsec() as _,
        },
        libc::timespec {
            tv_sec: meta.mtime() as _,
            tv_nsec: meta.mtime_nsec() as _,
        },
    ];
    // SAFETY: valid C string and two timespecs.
    let ret = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Returns the apparent size in bytes of everything below `path`, counting
/// each hard-linked file once.
pub fn tree_size(path: &Path) -> io::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.nlink() <= 1 || seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// Removes `path` and everything below it; a missing path is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}
