//! FreeBSD jails: the runtime's second platform.
