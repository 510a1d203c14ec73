//! `hami sim SCENARIO.yaml`: a what-if placement run over a described fleet,
//! with no servers (the library is `hami_placement::sim`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use hami_placement::sim::{self, Scenario, SimError};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimOutput {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Scenario file (YAML or JSON), or `-` for stdin.
    pub scenario: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: SimOutput,
}

/// Why a scenario could not run; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum SimCliError {
    #[error("read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid scenario: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {source}")]
    Run { path: String, source: SimError },
}

/// Reads, parses and runs a scenario; returns the report in `output` format.
pub fn render(args: &SimArgs) -> Result<String, SimCliError> {
    let path = args.scenario.display().to_string();
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.scenario)
    }
    .map_err(|source| SimCliError::Read {
        path: path.clone(),
        source,
    })?;
    let scenario: Scenario = serde_saphyr::from_str(&text).map_err(|e| SimCliError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let report = sim::run(&scenario).map_err(|source| SimCliError::Run {
        path: path.clone(),
        source,
    })?;
    Ok(match args.output {
        SimOutput::Table => report.to_table(),
        SimOutput::Json => report.to_json(),
    })
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let text = render(&args)?;
    out!("{text}");
    if !text.ends_with('\n') {
        outln!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samples/sim/gpu-fleet.yaml")
    }

    #[test]
    fn sample_renders_as_table_and_json_deterministically() {
        let table = render(&SimArgs {
            scenario: sample(),
            output: SimOutput::Table,
        })
        .unwrap();
        assert!(table.contains("=="), "{table}");
        let json = render(&SimArgs {
            scenario: sample(),
            output: SimOutput::Json,
        })
        .unwrap();
        let again = render(&SimArgs {
            scenario: sample(),
            output: SimOutput::Json,
        })
        .unwrap();
        assert_eq!(json, again);
        assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let missing = render(&SimArgs {
            scenario: PathBuf::from("/nonexistent/x.yaml"),
            output: SimOutput::Table,
        })
        .unwrap_err();
        assert!(missing.to_string().starts_with("read /nonexistent/x.yaml"));
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "clusters: 3\n").unwrap();
        let e = render(&SimArgs {
            scenario: bad.clone(),
            output: SimOutput::Table,
        })
        .unwrap_err();
        assert!(matches!(e, SimCliError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("bad.yaml"));
    }
}
