//! Linux containers: namespaces, mounts, cgroups, capabilities and seccomp.
