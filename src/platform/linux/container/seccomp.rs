//! seccomp filters: the configuration's filter compiled with seccompiler,
//! and the default profile of cblocks' own containers.
//!
//! seccompiler gives each filter one action on match and one on mismatch,
//! while a configuration may give every rule its own action. The filter is
//! therefore loaded as a stack: first a filter that returns the default
//! action for every call no rule matches, then one filter per other action.
//! The kernel runs every filter and keeps the most severe result. Between
//! equal actions, such as two errno values, the filter loaded last wins,
//! and that is the rule's own.

use std::collections::BTreeMap;
use std::convert::TryFrom;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::syscall_table;
use crate::oci::runtime_spec::{Seccomp, SeccompArg, SeccompSyscall};
use crate::runtime::Error;

fn config_error(message: String) -> Error {
    Error::Config(message)
}

/// System call names and numbers of one architecture.
type SyscallTable = &'static [(&'static str, i64)];

fn target_arch() -> Result<(TargetArch, SyscallTable), Error> {
    if cfg!(target_arch = "x86_64") {
        Ok((TargetArch::x86_64, syscall_table::X86_64))
    } else {
        // TODO: add the aarch64 system call table.
        Err(config_error(
            "seccomp filters are supported on x86_64 only so far; remove linux.seccomp".into(),
        ))
    }
}

fn action(name: &str, errno: Option<u32>, field: &str) -> Result<SeccompAction, Error> {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(errno),
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_NOTIFY" => {
            return Err(config_error(format!(
                "{field} SCMP_ACT_NOTIFY needs a seccomp listener, which this runtime does not \
                 support; use another action"
            )))
        }
        other => {
            return Err(config_error(format!(
                "unknown seccomp action {other:?} in {field}; use SCMP_ACT_ALLOW, \
                 SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, \
                 SCMP_ACT_TRACE or SCMP_ACT_LOG"
            )))
        }
    })
}

fn condition(arg: &SeccompArg) -> Result<SeccompCondition, Error> {
    let (op, value) = match arg.op.as_str() {
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, arg.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, arg.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, arg.value),
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, arg.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, arg.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, arg.value),
        // libseccomp's masked comparison is (arg & value) == valueTwo.
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(arg.value), arg.value_two),
        other => {
            return Err(config_error(format!(
                "unknown seccomp operator {other:?}; use SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT \
                 or _MASKED_EQ"
            )))
        }
    };
    SeccompCondition::new(arg.index, SeccompCmpArgLen::Qword, op, value).map_err(|e| {
        config_error(format!(
            "invalid seccomp argument condition on index {}: {e}",
            arg.index
        ))
    })
}

/// Rules of one action: system call number to alternatives. An empty list
/// matches the call unconditionally.
type RuleMap = BTreeMap<i64, Vec<SeccompRule>>;

fn add_rule(map: &mut RuleMap, number: i64, rule: &SeccompSyscall) -> Result<(), Error> {
    let conditions: Vec<SeccompCondition> =
        rule.args.iter().map(condition).collect::<Result<_, _>>()?;
    let rule = SeccompRule::new(conditions)
        .map_err(|e| config_error(format!("invalid seccomp rule: {e}")))?;
    map.entry(number).or_default().push(rule);
    Ok(())
}

/// Compiles the configuration's filter into the programs to load, in
/// order.
pub fn compile(seccomp: &Seccomp) -> Result<Vec<BpfProgram>, Error> {
    let (arch, table) = target_arch()?;
    check_architectures(&seccomp.architectures)?;
    for flag in &seccomp.flags {
        if flag != "SECCOMP_FILTER_FLAG_TSYNC" {
            return Err(config_error(format!(
                "seccomp flag {flag:?} is not supported; remove it from linux.seccomp.flags"
            )));
        }
    }

    let default = action(
        &seccomp.default_action,
        seccomp.default_errno_ret,
        "linux.seccomp.defaultAction",
    )?;
    let mut matched_any = RuleMap::new();
    let mut unconditional_any = Vec::new();
    let mut by_action: Vec<(SeccompAction, RuleMap, Vec<i64>)> = Vec::new();

    for rule in &seccomp.syscalls {
        let rule_action = action(
            &rule.action,
            rule.errno_ret,
            "linux.seccomp.syscalls action",
        )?;
        for name in &rule.names {
            // Names this architecture lacks are skipped, as libseccomp-based
            // runtimes do, so one profile serves several architectures.
            let Some(&(_, number)) = table.iter().find(|(n, _)| n == name) else {
                continue;
            };
            insert(&mut matched_any, &mut unconditional_any, number, rule)?;
            if rule_action == default || rule_action == SeccompAction::Allow {
                continue;
            }
            let index = match by_action.iter().position(|(a, _, _)| *a == rule_action) {
                Some(i) => i,
                None => {
                    by_action.push((rule_action.clone(), RuleMap::new(), Vec::new()));
                    by_action.len() - 1
                }
            };
            let (_, map, unconditional) = &mut by_action[index];
            insert(map, unconditional, number, rule)?;
        }
    }

    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        programs.push(build(matched_any, default, SeccompAction::Allow, arch)?);
    }
    for (rule_action, map, _) in by_action {
        programs.push(build(map, SeccompAction::Allow, rule_action, arch)?);
    }
    Ok(programs)
}

/// Adds `rule` for `number`, keeping a call that any rule matches without
/// conditions unconditional.
fn insert(
    map: &mut RuleMap,
    unconditional: &mut Vec<i64>,
    number: i64,
    rule: &SeccompSyscall,
) -> Result<(), Error> {
    if unconditional.contains(&number) {
        return Ok(());
    }
    if rule.args.is_empty() {
        unconditional.push(number);
        map.insert(number, Vec::new());
        return Ok(());
    }
    add_rule(map, number, rule)
}

fn build(
    rules: RuleMap,
    mismatch: SeccompAction,
    on_match: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, Error> {
    let filter = SeccompFilter::new(rules, mismatch, on_match, arch)
        .map_err(|e| config_error(format!("building the seccomp filter: {e}")))?;
    BpfProgram::try_from(filter)
        .map_err(|e| config_error(format!("compiling the seccomp filter: {e}")))
}

fn check_architectures(architectures: &[String]) -> Result<(), Error> {
    if architectures.is_empty() || architectures.iter().any(|a| a == "SCMP_ARCH_X86_64") {
        return Ok(());
    }
    Err(config_error(format!(
        "linux.seccomp.architectures {architectures:?} does not include SCMP_ARCH_X86_64, the \
         architecture of this host; add it"
    )))
}

/// Loads compiled filters into the calling thread, in order.
pub fn load(programs: &[BpfProgram]) -> Result<(), Error> {
    for program in programs {
        seccompiler::apply_filter(program).map_err(|e| Error::Io {
            context: format!("loading the seccomp filter: {e}"),
            source: std::io::Error::last_os_error(),
        })?;
    }
    Ok(())
}

/// System calls the default profile rejects unless the container has the
/// capability given. `None` means always rejected.
const DENIED: &[(&str, Option<&str>)] = &[
    ("acct", Some("CAP_SYS_PACCT")),
    ("add_key", None),
    ("bpf", Some("CAP_SYS_ADMIN")),
    ("clock_adjtime", Some("CAP_SYS_TIME")),
    ("clock_settime", Some("CAP_SYS_TIME")),
    ("settimeofday", Some("CAP_SYS_TIME")),
    ("create_module", None),
    ("delete_module", Some("CAP_SYS_MODULE")),
    ("init_module", Some("CAP_SYS_MODULE")),
    ("finit_module", Some("CAP_SYS_MODULE")),
    ("fanotify_init", Some("CAP_SYS_ADMIN")),
    ("fsconfig", Some("CAP_SYS_ADMIN")),
    ("fsmount", Some("CAP_SYS_ADMIN")),
    ("fsopen", Some("CAP_SYS_ADMIN")),
    ("fspick", Some("CAP_SYS_ADMIN")),
    ("get_kernel_syms", None),
    ("get_mempolicy", Some("CAP_SYS_NICE")),
    ("set_mempolicy", Some("CAP_SYS_NICE")),
    ("mbind", Some("CAP_SYS_NICE")),
    ("move_pages", Some("CAP_SYS_NICE")),
    ("io_uring_enter", None),
    ("io_uring_register", None),
    ("io_uring_setup", None),
    ("ioperm", Some("CAP_SYS_RAWIO")),
    ("iopl", Some("CAP_SYS_RAWIO")),
    ("kcmp", Some("CAP_SYS_PTRACE")),
    ("kexec_file_load", Some("CAP_SYS_BOOT")),
    ("kexec_load", Some("CAP_SYS_BOOT")),
    ("keyctl", None),
    ("lookup_dcookie", Some("CAP_SYS_ADMIN")),
    ("mount", Some("CAP_SYS_ADMIN")),
    ("mount_setattr", Some("CAP_SYS_ADMIN")),
    ("move_mount", Some("CAP_SYS_ADMIN")),
    ("open_tree", Some("CAP_SYS_ADMIN")),
    ("name_to_handle_at", Some("CAP_SYS_ADMIN")),
    ("open_by_handle_at", Some("CAP_DAC_READ_SEARCH")),
    ("nfsservctl", None),
    ("perf_event_open", Some("CAP_PERFMON")),
    ("pivot_root", Some("CAP_SYS_ADMIN")),
    ("query_module", None),
    ("quotactl", Some("CAP_SYS_ADMIN")),
    ("quotactl_fd", Some("CAP_SYS_ADMIN")),
    ("reboot", Some("CAP_SYS_BOOT")),
    ("request_key", None),
    ("setns", Some("CAP_SYS_ADMIN")),
    ("swapoff", Some("CAP_SYS_ADMIN")),
    ("swapon", Some("CAP_SYS_ADMIN")),
    ("sysfs", None),
    ("_sysctl", None),
    ("syslog", Some("CAP_SYSLOG")),
    ("umount2", Some("CAP_SYS_ADMIN")),
    ("unshare", Some("CAP_SYS_ADMIN")),
    ("uselib", None),
    ("userfaultfd", None),
    ("ustat", None),
    ("vhangup", Some("CAP_SYS_TTY_CONFIG")),
    ("afs_syscall", None),
    ("tuxcall", None),
    ("security", None),
    ("vserver", None),
    ("getpmsg", None),
    ("putpmsg", None),
    ("personality", None),
    ("clone", None),
    ("clone3", None),
    ("socket", None),
];

/// Namespace flags of clone(2) that an unprivileged container may not use.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// Returns the default seccomp profile of cblocks' own containers, modelled
/// on Docker's. Every system call is allowed except those that reach
/// outside the container or into the kernel's configuration. Those are
/// allowed only with the capability that governs them, and unknown or new
/// calls fail with EPERM.
pub fn default_profile(capabilities: &[String]) -> Seccomp {
    let has = |cap: &str| capabilities.iter().any(|c| c == cap);
    let allow = |names: Vec<String>, args: Vec<SeccompArg>| SeccompSyscall {
        names,
        action: "SCMP_ACT_ALLOW".into(),
        errno_ret: None,
        args,
    };

    let mut allowed: Vec<String> = Vec::new();
    for (name, _) in syscall_table::X86_64 {
        match DENIED.iter().find(|(denied, _)| denied == name) {
            None => allowed.push(name.to_string()),
            Some((_, Some(cap))) if has(cap) => allowed.push(name.to_string()),
            Some(_) => {}
        }
    }
    if has("CAP_SYS_ADMIN") {
        allowed.extend(["clone", "clone3"].map(String::from));
    }
    if has("CAP_BPF") && !allowed.iter().any(|n| n == "bpf") {
        allowed.push("bpf".into());
    }
    if has("CAP_SYS_ADMIN") && !allowed.iter().any(|n| n == "perf_event_open") {
        allowed.push("perf_event_open".into());
    }

    let mut syscalls = vec![allow(allowed, Vec::new())];
    for persona in [0x0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(allow(
            vec!["personality".into()],
            vec![SeccompArg {
                index: 0,
                value: persona,
                value_two: 0,
                op: "SCMP_CMP_EQ".into(),
            }],
        ));
    }
    if !has("CAP_SYS_ADMIN") {
        syscalls.push(allow(
            vec!["clone".into()],
            vec![SeccompArg {
                index: 0,
                value: CLONE_NAMESPACE_FLAGS,
                value_two: 0,
                op: "SCMP_CMP_MASKED_EQ".into(),
            }],
        ));
        // clone3 passes its flags in memory, out of a filter's reach; ENOSYS
        // makes the C library fall back to clone.
        syscalls.push(SeccompSyscall {
            names: vec!["clone3".into()],
            action: "SCMP_ACT_ERRNO".into(),
            errno_ret: Some(libc::ENOSYS as u32),
            args: Vec::new(),
        });
    }
    // AF_VSOCK reaches the host past the network namespace.
    syscalls.push(allow(
        vec!["socket".into()],
        vec![SeccompArg {
            index: 0,
            value: libc::AF_VSOCK as u64,
            value_two: 0,
            op: "SCMP_CMP_NE".into(),
        }],
    ));

    Seccomp {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(libc::EPERM as u32),
        architectures: vec!["SCMP_ARCH_X86_64".into()],
        flags: Vec::new(),
        listener_path: None,
        listener_metadata: None,
        syscalls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_compiles() {
        let profile = default_profile(&["CAP_CHOWN".to_string()]);
        let programs = compile(&profile).unwrap();
        assert_eq!(
            programs.len(),
            2,
            "default filter plus the clone3 errno filter"
        );
        let names = &profile.syscalls[0].names;
        assert!(names.iter().any(|n| n == "read"));
        assert!(!names.iter().any(|n| n == "mount"));
        assert!(!names.iter().any(|n| n == "keyctl"));
    }

    #[test]
    fn default_profile_follows_capabilities() {
        let profile = default_profile(&["CAP_SYS_ADMIN".to_string()]);
        let names = &profile.syscalls[0].names;
        assert!(names.iter().any(|n| n == "mount"));
        assert!(names.iter().any(|n| n == "clone"));
    }

    #[test]
    fn notify_action_rejected() {
        let seccomp = Seccomp {
            default_action: "SCMP_ACT_NOTIFY".into(),
            ..Default::default()
        };
        let err = compile(&seccomp).unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_NOTIFY"), "{err}");
    }

    #[test]
    fn unknown_operator_rejected() {
        let seccomp = Seccomp {
            default_action: "SCMP_ACT_ALLOW".into(),
            syscalls: vec![SeccompSyscall {
                names: vec!["read".into()],
                action: "SCMP_ACT_ERRNO".into(),
                errno_ret: None,
                args: vec![SeccompArg {
                    index: 0,
                    value: 1,
                    value_two: 0,
                    op: "SCMP_CMP_SOMETIMES".into(),
                }],
            }],
            ..Default::default()
        };
        let err = compile(&seccomp).unwrap_err();
        assert!(err.to_string().contains("SCMP_CMP_SOMETIMES"), "{err}");
    }
}
