//! Reading extended attributes without following symlinks (llistxattr, lgetxattr).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Returns every extended attribute of `path` (the link itself for a symlink), with raw
/// values. Filesystems without xattr support yield an empty map.
pub fn read_xattrs(path: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let names = match list(&c_path) {
        Ok(names) => names,
        Err(err) if err.raw_os_error() == Some(libc::ENOTSUP) => return Ok(BTreeMap::new()),
        Err(err) => return Err(err),
    };
    let mut xattrs = BTreeMap::new();
    for name in names
        .split(|&byte| byte == 0)
        .filter(|name| !name.is_empty())
    {
        let c_name =
            CString::new(name).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        match get(&c_path, &c_name) {
            Ok(value) => {
                xattrs.insert(String::from_utf8_lossy(name).into_owned(), value);
            }
            // The attribute went away between list and get.
            Err(err) if err.raw_os_error() == Some(libc::ENODATA) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(xattrs)
}

fn list(path: &CString) -> io::Result<Vec<u8>> {
    loop {
        // SAFETY: a null buffer with size 0 makes the call return only the required size.
        let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        let size = usize::try_from(size).map_err(|_| io::Error::last_os_error())?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buffer = vec![0u8; size];
        // SAFETY: `buffer` is valid for writes of `buffer.len()` bytes.
        let written =
            unsafe { libc::llistxattr(path.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
        match usize::try_from(written) {
            Ok(written) => {
                buffer.truncate(written);
                return Ok(buffer);
            }
            // The list grew between the two calls: ask again.
            Err(_) if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) => continue,
            Err(_) => return Err(io::Error::last_os_error()),
        }
    }
}

fn get(path: &CString, name: &CString) -> io::Result<Vec<u8>> {
    loop {
        // SAFETY: a null buffer with size 0 makes the call return only the required size.
        let size =
            unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        let size = usize::try_from(size).map_err(|_| io::Error::last_os_error())?;
        let mut buffer = vec![0u8; size];
        if size == 0 {
            return Ok(buffer);
        }
        // SAFETY: `buffer` is valid for writes of `buffer.len()` bytes.
        let read = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        };
        match usize::try_from(read) {
            Ok(read) => {
                buffer.truncate(read);
                return Ok(buffer);
            }
            Err(_) if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) => continue,
            Err(_) => return Err(io::Error::last_os_error()),
        }
    }
}
