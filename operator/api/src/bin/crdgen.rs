//! Writes the generated CRDs to a directory (`crds/` by default): `make crds`.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "crds".into()));
    for crd in mysimbdp_api::crds::all() {
        let path = dir.join(mysimbdp_api::crds::file_name(&crd));
        let written = mysimbdp_api::crds::to_yaml(&crd)
            .map_err(|e| e.to_string())
            .and_then(|yaml| std::fs::write(&path, yaml).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
