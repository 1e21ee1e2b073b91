//! Xen error codes (errno.h). Hypercalls return them negated.

use std::fmt;

/// A Xen error code (positive, as errno.h defines it; hypercalls return `-code`).
#[derive(Copy, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub struct Errno(pub i32);

/// Defines the errno constants and a name lookup over them.
macro_rules! errnos {
    ($($name:ident = $val:expr),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "` (", stringify!($val), ").")]
                pub const $name: Errno = Errno($val);
            )*

            /// The symbolic name (`"EINVAL"`), or `None` for a code errno.h does not define.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $val => Some(stringify!($name)), )*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    ENXIO = 6,
    E2BIG = 7,
    ENOEXEC = 8,
    EBADF = 9,
    ECHILD = 10,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    EXDEV = 18,
    ENODEV = 19,
    ENOTDIR = 20,
    EISDIR = 21,
    EINVAL = 22,
    ENFILE = 23,
    EMFILE = 24,
    ENOSPC = 28,
    EROFS = 30,
    EMLINK = 31,
    EDOM = 33,
    ERANGE = 34,
    EDEADLK = 35,
    ENAMETOOLONG = 36,
    ENOLCK = 37,
    ENOSYS = 38,
    ENOTEMPTY = 39,
    ENODATA = 61,
    ETIME = 62,
    EBADMSG = 74,
    EOVERFLOW = 75,
    EILSEQ = 84,
    ERESTART = 85,
    ENOTSOCK = 88,
    EMSGSIZE = 90,
    EOPNOTSUPP = 95,
    EADDRINUSE = 98,
    EADDRNOTAVAIL = 99,
    ENOBUFS = 105,
    EISCONN = 106,
    ENOTCONN = 107,
    ETIMEDOUT = 110,
    ECONNREFUSED = 111,
}

impl Errno {
    /// `EWOULDBLOCK`, an alias of `EAGAIN`.
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// `EDEADLOCK`, an alias of `EDEADLK`.
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// The value a hypercall returns for this error (`-code`).
    pub fn to_hypercall_ret(self) -> i64 {
        -i64::from(self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "Xen errno {}", self.0),
        }
    }
}

/// Turns an operation result into a hypercall return value (0 or `-errno`).
pub fn hypercall_ret(r: Result<(), Errno>) -> i64 {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_hypercall_ret(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_match_errno_h() {
        assert_eq!(Errno::EINVAL.0, 22);
        assert_eq!(Errno::ENOSYS.0, 38);
        assert_eq!(Errno::ENOSPC.0, 28);
        assert_eq!(Errno::EOPNOTSUPP.0, 95);
        assert_eq!(Errno::ERESTART.0, 85);
        assert_eq!(Errno::EWOULDBLOCK, Errno::EAGAIN);
        assert_eq!(Errno::EBUSY.name(), Some("EBUSY"));
        assert_eq!(Errno(15).name(), None, "15 is not defined by Xen");
        assert_eq!(Errno::EINVAL.to_string(), "EINVAL (22)");
        assert_eq!(Errno(-3).to_string(), "Xen errno -3");
        assert_eq!(Errno::ESRCH.to_hypercall_ret(), -3);
        assert_eq!(hypercall_ret(Ok(())), 0);
        assert_eq!(hypercall_ret(Err(Errno::EFAULT)), -14);
    }
}
