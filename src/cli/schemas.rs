//! `switchboard schemas`: writes the JSON Schemas and the AsyncAPI document under a folder
//! (`docs/` by default). A test fails when the committed files differ from what this writes.

use std::path::Path;

use crate::contract::{asyncapi, schema};

/// The files and their contents.
pub fn files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = schema::events()
        .iter()
        .map(|event| {
            (
                format!("schemas/{}", event.file_name()),
                pretty(&event.schema()),
            )
        })
        .collect();
    files.push(("asyncapi.json".into(), pretty(&asyncapi::document())));
    files
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON serializes") + "\n"
}

pub fn run(out: &Path) -> anyhow::Result<()> {
    for (name, text) in files() {
        let path = out.join(&name);
        std::fs::create_dir_all(path.parent().expect("files are in folders"))?;
        std::fs::write(&path, text)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
