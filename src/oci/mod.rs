//! OCI data formats: the runtime specification (`config.json`) and runtime
//! state, and the image specification's configuration, manifest and index.

pub mod image_spec;
pub mod runtime_spec;
