//! `cblock forge`: create the `forge:latest` image from this host's own
//! tools (see `crate::forge`), the layer 0 that `FROM forge` builds on.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;
use crate::image::{Reference, Store};
use crate::oci::image_spec::{ContainerConfig, History, ImageConfig};

#[derive(FromArgs)]
#[argh(subcommand, name = "forge")]
/// create the forge image that FROM forge starts from
pub struct Args {
    /// name of the image (default forge:latest)
    #[argh(option, short = 'n', default = "String::from(\"forge:latest\")")]
    name: String,

    /// data directory of the store (default: the platform's cblockd data directory)
    #[argh(
        option,
        short = 'd',
        long = "data-directory",
        default = "PathBuf::from(crate::platform::DEFAULT_DATA_DIR)"
    )]
    data_directory: PathBuf,
}

pub fn run(_globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let reference = Reference::parse(&args.name)?;
    // NOTE: runs against the data directory in-process until cblockd serves
    // image commands over its socket.
    let store = Store::open_or_create(&args.data_directory)?;
    let work = args
        .data_directory
        .join("builds")
        .join(format!("forge-{}", std::process::id()));
    let root = work.join("root");
    fs::create_dir_all(&root).map_err(|source| crate::Error::Io {
        path: root.clone(),
        source,
    })?;

    let result = create(&store, &reference, &root);
    let _ = fs::remove_dir_all(&work);
    let image = result?;
    println!("{} {}", reference, image.short_id());
    Ok(ExitCode::SUCCESS)
}

fn create(
    store: &Store,
    reference: &Reference,
    root: &std::path::Path,
) -> crate::Result<crate::image::Image> {
    let exe = std::env::current_exe().map_err(|source| crate::Error::Io {
        path: "/proc/self/exe".into(),
        source,
    })?;
    let contents = crate::forge::assemble(root, &exe)?;
    eprintln!(
        "-- forge: {} programs, {} libraries, {} other files",
        contents.programs.len(),
        contents.libraries.len(),
        contents.files.len()
    );

    let holder = format!("forge-{}", std::process::id());
    let layer = crate::build::commit_tree(store, root, &holder)?;

    let config = ImageConfig {
        created: Some(crate::image::rfc3339(std::time::SystemTime::now())),
        architecture: crate::build::host_architecture().into(),
        os: std::env::consts::OS.into(),
        config: Some(ContainerConfig {
            env: Some(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ]),
            cmd: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        }),
        history: vec![History {
            created_by: Some("cblock forge".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let image = store.add_image(
        config,
        Some(&layer.chain_id),
        Default::default(),
        std::slice::from_ref(reference),
    );
    store.release(&holder)?;
    Ok(image?)
}
