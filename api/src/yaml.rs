//! Files people write by hand (fleets, fake device lists), read strictly:
//! an unknown key, a wrong type or a missing field is an error that starts
//! with the field's path (`nodes[0].gpus[1].memoryMiB`) and gives the line
//! and column, instead of a silent default or serde's "did not match any
//! variant". Types read this way carry `#[serde(deny_unknown_fields)]`.

use serde::de::DeserializeOwned;

/// `T` from YAML (JSON is YAML too); the error names the field's path.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let mut path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    parsed.map_err(|e| {
        // serde-saphyr's message: "error: line L column C: what\n --> snippet".
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        let what = first.strip_prefix("error: ").unwrap_or(first);
        if path.is_empty() || path == "." {
            what.to_owned()
        } else {
            format!("{path}: {what}")
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Gpu {
        id: String,
        #[serde(rename = "memoryMiB")]
        memory_mib: u64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Node {
        name: String,
        #[serde(default)]
        gpus: Vec<Gpu>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct File {
        nodes: Vec<Node>,
    }

    #[test]
    fn errors_start_with_the_field_path() {
        let err = |t: &str| super::from_str::<File>(t).unwrap_err();
        let e = err("nodes:\n  - name: a\n    gpus:\n      - {id: x, memoryMiB: big}\n");
        assert!(e.starts_with("nodes[0].gpus[0].memoryMiB: line 4"), "{e}");
        let e = err("nodes:\n  - name: a\n    gpus:\n      - {id: x, memoryMiB: 1, slot: 2}\n");
        assert!(e.starts_with("nodes[0].gpus[0].slot: "), "{e}");
        assert!(e.contains("unknown field `slot`"), "{e}");
        let e = err("nodes:\n  - gpus: []\n");
        assert!(e.starts_with("nodes[0]: "), "{e}");
        assert!(e.contains("missing field `name`"), "{e}");
        let e = err("clusters: []\n");
        assert!(e.contains("unknown field `clusters`"), "{e}");
        let ok: File = super::from_str("nodes:\n  - name: a\n").unwrap();
        assert_eq!(ok.nodes[0].name, "a");
    }
}
