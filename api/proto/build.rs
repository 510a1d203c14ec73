//! Compiles every `.proto` file under `proto/` with tonic. The generated modules
//! are stitched together by tonic's include file, so adding a .proto file needs
//! no change here.
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("proto");
    let mut protos = Vec::new();
    collect(&root, &mut protos)?;
    protos.sort();
    println!("cargo:rerun-if-changed=proto");
    if protos.is_empty() {
        let out = PathBuf::from(std::env::var("OUT_DIR")?).join("_includes.rs");
        std::fs::write(out, "")?;
        return Ok(());
    }
    tonic_prost_build::configure()
        .include_file("_includes.rs")
        .compile_protos(&protos, &[root])?;
    Ok(())
}
