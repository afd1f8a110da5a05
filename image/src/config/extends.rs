//! Layered configs: `extends = "base.toml"` loads the base first and merges this file
//! over it, so a variant (the production image) states only how it differs.
//!
//! The merge is deliberately small and predictable: tables merge key by key, scalars
//! and plain arrays are replaced, and arrays of tables whose entries all have a `name`
//! (`[[component]]`, `[[container_image]]`) merge entry by entry on that name, new names
//! being appended. Nothing can be removed; a variant that needs less is a new base.
//! Which `[[component]]` names a variant appended is kept, so an error about such an
//! entry can say it is new (a misspelt name would otherwise read as a broken component).

use std::fs;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::ConfigError;

/// Chains longer than this are a mistake (or a loop).
const MAX_DEPTH: usize = 4;

/// A config with everything it extends merged in.
#[derive(Debug)]
pub(super) struct Layered {
    pub table: Table,
    /// `[[component]]` names a variant added rather than merged: (name, variant, base).
    pub added_components: Vec<(String, PathBuf, PathBuf)>,
}

/// Reads `path` and everything it extends into one table, without `extends`.
pub(super) fn load_layered(path: &Path) -> Result<Layered, ConfigError> {
    let mut added_components = Vec::new();
    let table = load_at_depth(path, 0, &mut added_components)?;
    Ok(Layered {
        table,
        added_components,
    })
}

fn load_at_depth(
    path: &Path,
    depth: usize,
    added: &mut Vec<(String, PathBuf, PathBuf)>,
) -> Result<Table, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut table: Table = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let Some(base) = table.remove("extends") else {
        return Ok(table);
    };
    let problem = |problem: &str| ConfigError::Extends {
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    let Value::String(base) = base else {
        return Err(problem("must be a file name"));
    };
    if depth >= MAX_DEPTH {
        return Err(problem(&format!("chain is longer than {MAX_DEPTH} files")));
    }
    let base_path: PathBuf = path.parent().unwrap_or(Path::new(".")).join(base);
    let mut merged = load_at_depth(&base_path, depth + 1, added)?;
    let base_names = names(merged.get("component"));
    let new_names = names(table.get("component"))
        .into_iter()
        .filter(|name| !base_names.contains(name));
    added.extend(new_names.map(|name| (name, path.to_owned(), base_path.clone())));
    merge_tables(&mut merged, table);
    Ok(merged)
}

/// Merges `over` into `base` by the rules in the module doc.
fn merge_tables(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_tables(b, o),
            (Some(Value::Array(b)), Value::Array(o)) if named(b) && named(&o) => merge_named(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The `name`s of an array of tables.
fn names(array: Option<&Value>) -> Vec<String> {
    let entries = array.and_then(Value::as_array).map(Vec::as_slice);
    entries
        .unwrap_or_default()
        .iter()
        .filter_map(name_of)
        .map(str::to_owned)
        .collect()
}

fn name_of(value: &Value) -> Option<&str> {
    value.as_table()?.get("name")?.as_str()
}

fn named(array: &[Value]) -> bool {
    array.iter().all(|v| name_of(v).is_some())
}

fn merge_named(base: &mut Vec<Value>, over: Vec<Value>) {
    for entry in over {
        let name = name_of(&entry).map(str::to_owned);
        let existing = base.iter_mut().find(|b| name_of(b) == name.as_deref());
        match (existing, entry) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_tables(b, o),
            (_, entry) => base.push(entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn tables_merge_and_scalars_replace() {
        let mut base = table("[a]\nx = 1\ny = [1, 2]\n[b]\nz = 'k'");
        merge_tables(&mut base, table("[a]\ny = [3]\nw = true"));
        assert_eq!(base, table("[a]\nx = 1\ny = [3]\nw = true\n[b]\nz = 'k'"));
    }

    #[test]
    fn named_entries_merge_by_name_and_new_ones_append() {
        let mut base = table(
            "[[component]]\nname = 'agent'\ncargo = { package = 'p', features = ['debug'] }\n\
             [[component]]\nname = 'runc'\ninstall = '/usr/bin/runc'",
        );
        let over = table(
            "[[component]]\nname = 'agent'\ncargo = { features = [] }\n\
             [[component]]\nname = 'extra'\nfile = 'x'",
        );
        merge_tables(&mut base, over);
        let components = base["component"].as_array().unwrap();
        assert_eq!(components.len(), 3);
        assert_eq!(components[0]["cargo"]["package"].as_str(), Some("p"));
        assert_eq!(
            components[0]["cargo"]["features"].as_array().unwrap().len(),
            0
        );
        assert_eq!(components[2]["name"].as_str(), Some("extra"));
    }

    #[test]
    fn chains_load_relative_to_each_file_and_loops_stop() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), "a = 1\nb = 2\n").unwrap();
        std::fs::write(dir.path().join("v.toml"), "extends = 'base.toml'\nb = 3\n").unwrap();
        let merged = load_layered(&dir.path().join("v.toml")).unwrap();
        assert_eq!(merged.table, table("a = 1\nb = 3"));

        std::fs::write(dir.path().join("loop.toml"), "extends = 'loop.toml'\n").unwrap();
        let err = load_layered(&dir.path().join("loop.toml")).unwrap_err();
        assert!(err.to_string().contains("chain is longer"), "{err}");
    }

    #[test]
    fn a_missing_base_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v.toml"), "extends = 'gone.toml'\n").unwrap();
        let err = load_layered(&dir.path().join("v.toml")).unwrap_err();
        assert!(err.to_string().contains("gone.toml"), "{err}");
    }
}
