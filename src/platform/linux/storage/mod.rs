//! Linux storage drivers (overlay, btrfs) and the openat2-based path resolution.
