//! The container process's credentials and limits: rlimits, user and
//! groups, the five capability sets, no_new_privs, and finding the program.

use std::ffi::CString;
use std::io;
use std::path::Path;

use crate::oci::runtime_spec::{Capabilities, Process, Rlimit};
use crate::runtime::Error;

/// Capability names in the order of their numbers.
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

fn os_error(context: String) -> Error {
    Error::Io {
        context,
        source: io::Error::last_os_error(),
    }
}

/// Returns the highest capability number the kernel supports.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Converts capability names to a bit mask; unknown names are an error.
pub fn cap_mask(names: &[String], set: &str) -> Result<u64, Error> {
    let mut mask = 0u64;
    for name in names {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let Some(number) = CAPABILITIES.iter().position(|c| *c == full) else {
            return Err(Error::Config(format!(
                "unknown capability {name:?} in process.capabilities.{set}; use names such as \
                 CAP_CHOWN"
            )));
        };
        mask |= 1 << number;
    }
    Ok(mask)
}

const RLIMITS: &[(&str, libc::c_int)] = &[
    ("RLIMIT_CPU", libc::RLIMIT_CPU as libc::c_int),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE as libc::c_int),
    ("RLIMIT_DATA", libc::RLIMIT_DATA as libc::c_int),
    ("RLIMIT_STACK", libc::RLIMIT_STACK as libc::c_int),
    ("RLIMIT_CORE", libc::RLIMIT_CORE as libc::c_int),
    ("RLIMIT_RSS", libc::RLIMIT_RSS as libc::c_int),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC as libc::c_int),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as libc::c_int),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK as libc::c_int),
    ("RLIMIT_AS", libc::RLIMIT_AS as libc::c_int),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS as libc::c_int),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING as libc::c_int),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE as libc::c_int),
    ("RLIMIT_NICE", libc::RLIMIT_NICE as libc::c_int),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO as libc::c_int),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME as libc::c_int),
];

/// Checks rlimit names without applying them.
pub fn check_rlimits(rlimits: &[Rlimit]) -> Result<(), Error> {
    for rlimit in rlimits {
        if !RLIMITS.iter().any(|(name, _)| *name == rlimit.kind) {
            return Err(Error::Config(format!(
                "unknown rlimit type {:?} in process.rlimits; use names such as RLIMIT_NOFILE",
                rlimit.kind
            )));
        }
        if rlimit.soft > rlimit.hard {
            return Err(Error::Config(format!(
                "process.rlimits {}: soft limit {} is above hard limit {}; lower the soft limit",
                rlimit.kind, rlimit.soft, rlimit.hard
            )));
        }
    }
    Ok(())
}

/// Applies the rlimits of the process.
pub fn set_rlimits(rlimits: &[Rlimit]) -> Result<(), Error> {
    check_rlimits(rlimits)?;
    for rlimit in rlimits {
        let resource = RLIMITS
            .iter()
            .find(|(name, _)| *name == rlimit.kind)
            .map(|(_, r)| *r)
            .unwrap_or_default();
        let value = libc::rlimit {
            rlim_cur: rlimit.soft,
            rlim_max: rlimit.hard,
        };
        // SAFETY: setrlimit reads a valid struct.
        if unsafe { libc::setrlimit(resource as _, &value) } != 0 {
            let err = io::Error::last_os_error();
            let hint = if err.raw_os_error() == Some(libc::EPERM) {
                "; raising a hard limit needs CAP_SYS_RESOURCE, so keep it at or below the \
                 runtime's own hard limit"
            } else {
                ""
            };
            return Err(Error::Io {
                context: format!(
                    "setting {} to {}:{}{hint}",
                    rlimit.kind, rlimit.soft, rlimit.hard
                ),
                source: err,
            });
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Error> {
    let header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and data are valid for the version-3 layout.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(os_error("setting the capability sets (capset)".into()));
    }
    Ok(())
}

/// Sets groups, gid and uid, then the capability sets, keeping the
/// permitted capabilities across the uid change.
pub fn set_identity(process: &Process, setgroups_allowed: bool) -> Result<(), Error> {
    let capabilities = process.capabilities.clone().unwrap_or_default();
    let bounding = cap_mask(&capabilities.bounding, "bounding")?;
    let effective = cap_mask(&capabilities.effective, "effective")?;
    let permitted = cap_mask(&capabilities.permitted, "permitted")?;
    let inheritable = cap_mask(&capabilities.inheritable, "inheritable")?;
    let ambient = cap_mask(&capabilities.ambient, "ambient")?;

    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(os_error("setting PR_SET_KEEPCAPS".into()));
    }

    // The bounding set can only shrink, and only while CAP_SETPCAP is held.
    for cap in 0..=last_cap() {
        if bounding & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINVAL) {
                    return Err(Error::Io {
                        context: format!(
                            "dropping {} from the bounding set",
                            CAPABILITIES.get(cap as usize).unwrap_or(&"?")
                        ),
                        source: err,
                    });
                }
            }
        }
    }

    let user = &process.user;
    if setgroups_allowed {
        let groups: Vec<libc::gid_t> = user.additional_gids.clone();
        // SAFETY: the pointer and length describe `groups`.
        if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
            return Err(os_error(format!(
                "setting additional groups {:?}",
                user.additional_gids
            )));
        }
    } else if !user.additional_gids.is_empty() {
        return Err(Error::Config(
            "process.user.additionalGids needs setgroups, which this user namespace denies; \
             remove the additional groups"
                .into(),
        ));
    }
    // SAFETY: plain id-setting syscalls.
    if unsafe { libc::setresgid(user.gid, user.gid, user.gid) } != 0 {
        return Err(os_error(format!(
            "setting gid {}; map it in linux.gidMappings",
            user.gid
        )));
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(user.uid, user.uid, user.uid) } != 0 {
        return Err(os_error(format!(
            "setting uid {}; map it in linux.uidMappings",
            user.uid
        )));
    }

    capset(effective, permitted, inheritable)?;
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };

    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    // NOTE: an ambient capability that is not also inheritable cannot be
    // raised. runc's own `spec` writes such configurations, and runc and
    // crun skip those capabilities, so this runtime skips them as well.
    let raisable = ambient & inheritable & permitted;
    for cap in 0..64u32 {
        if raisable & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            if rc != 0 {
                return Err(os_error(format!(
                    "raising ambient capability {}; an ambient capability must also be \
                     permitted and inheritable",
                    CAPABILITIES.get(cap as usize).unwrap_or(&"?")
                )));
            }
        }
    }
    Ok(())
}

/// Sets no_new_privs, which also lets an unprivileged process load seccomp
/// filters.
pub fn set_no_new_privileges() -> Result<(), Error> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(os_error("setting no_new_privs".into()));
    }
    Ok(())
}

/// Returns the value of `name` in an environment list.
pub fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter().find_map(|entry| {
        entry
            .split_once('=')
            .filter(|(key, _)| *key == name)
            .map(|(_, value)| value)
    })
}

/// Finds the program of `args[0]` in the container, as execvp would, using
/// the process's PATH.
pub fn find_program(process: &Process) -> Result<CString, Error> {
    let Some(program) = process.args.first() else {
        return Err(Error::Config(
            "process.args is empty; give the program to run".into(),
        ));
    };
    let executable = |path: &Path| {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: c is a valid C string.
        let ok = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && path.is_file();
        ok.then_some(c)
    };
    if program.contains('/') {
        let path = Path::new(program);
        return executable(path).ok_or_else(|| {
            Error::Config(format!(
                "program {program:?} is not an executable file in the container"
            ))
        });
    }
    let search = env_value(&process.env, "PATH")
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in search.split(':').filter(|d| !d.is_empty()) {
        if let Some(found) = executable(&Path::new(dir).join(program)) {
            return Ok(found);
        }
    }
    Err(Error::Config(format!(
        "program {program:?} was not found in the container's PATH {search:?}"
    )))
}

/// Replaces the process with the container's program.
pub fn exec(program: &CString, process: &Process) -> Error {
    let to_c = |items: &[String]| -> Vec<CString> {
        items
            .iter()
            .map(|s| CString::new(s.as_bytes()).unwrap_or_default())
            .collect()
    };
    let args = to_c(&process.args);
    let env = to_c(&process.env);
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // The Rust runtime of this process ignores SIGPIPE, and an ignored
    // signal stays ignored across exec. The container's program must start
    // with the default action, as under a shell.
    // SAFETY: signal(2) with a constant handler; execve gets null-terminated
    // arrays that outlive the call.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::execve(program.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr())
    };
    os_error(format!("executing {}", program.to_string_lossy()))
}

/// Returns the home directory of `uid` in `/etc/passwd` of the current
/// root, or `None` when the file or the user is missing.
pub fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse() == Ok(uid) && !fields[5].is_empty())
            .then(|| fields[5].to_string())
    })
}

/// Removes capability `name` (`CAP_...`, or without the prefix) from every
/// set of `capabilities`.
pub fn remove_capability(capabilities: &mut Capabilities, name: &str) {
    let short = name.trim_start_matches("CAP_");
    let sets = [
        &mut capabilities.bounding,
        &mut capabilities.effective,
        &mut capabilities.inheritable,
        &mut capabilities.permitted,
        &mut capabilities.ambient,
    ];
    for set in sets {
        set.retain(|entry| entry.trim_start_matches("CAP_") != short);
    }
}

/// Default capabilities of cblocks' own containers: the set Docker grants.
pub fn default_capabilities() -> Capabilities {
    let names: Vec<String> = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Capabilities {
        bounding: names.clone(),
        effective: names.clone(),
        inheritable: Vec::new(),
        permitted: names,
        ambient: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_capability_from_every_set() {
        let mut capabilities = default_capabilities();
        assert!(capabilities.bounding.iter().any(|c| c == "CAP_MKNOD"));
        remove_capability(&mut capabilities, "CAP_MKNOD");
        for set in [
            &capabilities.bounding,
            &capabilities.effective,
            &capabilities.inheritable,
            &capabilities.permitted,
            &capabilities.ambient,
        ] {
            assert!(!set.iter().any(|c| c.ends_with("MKNOD")), "{set:?}");
        }
        assert!(capabilities.bounding.iter().any(|c| c == "CAP_CHOWN"));
    }

    #[test]
    fn cap_mask_accepts_short_names() {
        let names = vec!["CAP_CHOWN".to_string(), "kill".to_string()];
        assert_eq!(cap_mask(&names, "bounding").unwrap(), 1 | (1 << 5));
    }

    #[test]
    fn cap_mask_rejects_unknown() {
        let err = cap_mask(&["CAP_FLY".to_string()], "effective").unwrap_err();
        assert!(err.to_string().contains("CAP_FLY"), "{err}");
    }

    #[test]
    fn rlimit_soft_above_hard_rejected() {
        let limits = [Rlimit {
            kind: "RLIMIT_NOFILE".into(),
            soft: 10,
            hard: 5,
        }];
        assert!(check_rlimits(&limits).is_err());
    }
}
