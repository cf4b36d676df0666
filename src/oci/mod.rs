//! OCI data formats: the runtime specification (`config.json`), the runtime
//! state, and the image specification's configuration, manifest and index.
