//! The OCI image specification: image configuration, manifest, index and
//! layout, as serde types.
