//! FreeBSD storage drivers (unionfs, ZFS).
