//! `.cblockignore` (else `.dockerignore`) patterns.
