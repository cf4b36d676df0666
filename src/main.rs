//! The one cblocks binary. Which program it acts as is decided by the name it
//! was started under, or by its first word (see `cblocks::role`).

use std::process::ExitCode;

fn main() -> ExitCode {
    cblocks::role::main(std::env::args_os().collect())
}
