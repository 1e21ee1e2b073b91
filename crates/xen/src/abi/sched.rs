//! Scheduler operations (sched.h).

use super::{byte_valued, DomId};

/// `SCHEDOP_yield`.
pub const SCHEDOP_YIELD: u32 = 0;
/// `SCHEDOP_block`.
pub const SCHEDOP_BLOCK: u32 = 1;
/// `SCHEDOP_shutdown`.
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// `SCHEDOP_poll`.
pub const SCHEDOP_POLL: u32 = 3;
/// `SCHEDOP_remote_shutdown`.
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// `SCHEDOP_shutdown_code`.
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// `SCHEDOP_watchdog`.
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// `SCHEDOP_pin_override`.
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// Why a domain shut down (`SHUTDOWN_*`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`: exited normally.
    Poweroff = 0,
    /// `SHUTDOWN_reboot`: restart.
    Reboot = 1,
    /// `SHUTDOWN_suspend`: save and stop.
    Suspend = 2,
    /// `SHUTDOWN_crash`: the guest crashed.
    Crash = 3,
    /// `SHUTDOWN_watchdog`: the watchdog fired.
    Watchdog = 4,
    /// `SHUTDOWN_soft_reset`.
    SoftReset = 5,
}

/// `SHUTDOWN_MAX`.
pub const SHUTDOWN_MAX: u32 = 5;

impl ShutdownReason {
    /// Decodes a `SHUTDOWN_*` code; `None` above [`SHUTDOWN_MAX`].
    pub fn from_code(code: u32) -> Option<ShutdownReason> {
        Some(match code {
            0 => ShutdownReason::Poweroff,
            1 => ShutdownReason::Reboot,
            2 => ShutdownReason::Suspend,
            3 => ShutdownReason::Crash,
            4 => ShutdownReason::Watchdog,
            5 => ShutdownReason::SoftReset,
            _ => return None,
        })
    }
}

/// `struct sched_shutdown`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_poll`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedPoll {
    /// Guest handle of the port array.
    pub ports: u64,
    /// Number of ports.
    pub nr_ports: u32,
    /// Padding.
    pub _pad: u32,
    /// Absolute timeout (system time, ns); 0 waits forever.
    pub timeout: u64,
}

/// `struct sched_remote_shutdown`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedRemoteShutdown {
    /// The domain to shut down.
    pub domain_id: DomId,
    /// Padding.
    pub _pad: u16,
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_watchdog`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedWatchdog {
    /// Watchdog id (0 allocates a new one).
    pub id: u32,
    /// Timeout in seconds (0 destroys the watchdog).
    pub timeout: u32,
}

byte_valued!(SchedShutdown, SchedPoll, SchedRemoteShutdown, SchedWatchdog);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_sched_h() {
        crate::abi::assert_sizes!(
            SchedShutdown => 4,
            SchedPoll => 24,
            SchedRemoteShutdown => 8,
            SchedWatchdog => 8,
        );
    }

    #[test]
    fn shutdown_codes() {
        for code in 0..=SHUTDOWN_MAX {
            assert_eq!(
                ShutdownReason::from_code(code).map(|r| r as u32),
                Some(code)
            );
        }
        assert_eq!(ShutdownReason::from_code(SHUTDOWN_MAX + 1), None);
        assert_eq!(ShutdownReason::from_code(u32::MAX), None);
    }
}
