//! The OCI runtime specification (`config.json`) and the runtime state, as
//! serde types.
