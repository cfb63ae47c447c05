//! The suites a command can use: the built-in ones compiled from `suites/`,
//! plus suite files and folders the user adds, each spec kept with the exact
//! text it was parsed from (for run snapshots and hashes).

use super::spec::{Domain, SuiteSpec};
use super::{parse, SuiteError};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/builtin_suites.rs"));

/// Where a suite's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Compiled into the binary from the repository's `suites/<file>`.
    BuiltIn(&'static str),
    /// A file added with `--suite-file`, `--suites-dir` or `$EDGEBENCH_SUITES_PATH`.
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::BuiltIn(name) => write!(f, "built-in suites/{name}"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One usable suite: its spec, source and text.
#[derive(Debug, Clone)]
pub struct Entry {
    pub spec: SuiteSpec,
    pub source: Source,
    /// The text the spec was parsed from.
    pub text: String,
}

/// The suites a command can use, sorted by id, with the files that failed to
/// load and the overrides of one suite by another of the same id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    entries: Vec<Entry>,
    specs: Vec<SuiteSpec>,
    broken: Vec<SuiteError>,
    overrides: Vec<String>,
}

/// Why a selection cannot be made (bad input).
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A selected suite's file does not load.
    #[error(transparent)]
    Broken(#[from] SuiteError),
    /// A selector part matches nothing.
    #[error("{0}")]
    Unknown(String),
}

impl Registry {
    /// The built-in suites only.
    pub fn builtin() -> Registry {
        Registry::load(&[], &[]).expect("no user sources to read")
    }

    /// The built-in suites, then every `*.toml` of `dirs` in order, then
    /// `files` in order; a later suite with the id of an earlier one replaces
    /// it. A file that does not load is kept in [`Registry::broken`]; only a
    /// folder or file that cannot be read at all is an error.
    pub fn load(dirs: &[PathBuf], files: &[PathBuf]) -> Result<Registry, SuiteError> {
        let mut r = Registry::default();
        for (name, text) in BUILTIN {
            let path = Path::new("suites").join(name);
            match parse(text, &path) {
                Ok(spec) => r.add(spec, Source::BuiltIn(name), text.to_string()),
                Err(e) => r.broken.push(e),
            }
        }
        let mut added: Vec<PathBuf> = Vec::new();
        for d in dirs {
            let listing = std::fs::read_dir(d).map_err(|e| SuiteError {
                path: d.clone(),
                message: format!("cannot read the suites directory: {e}"),
            })?;
            let mut paths: Vec<PathBuf> = listing
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            added.extend(paths);
        }
        for f in files {
            if !f.is_file() {
                return Err(SuiteError {
                    path: f.clone(),
                    message: "suite file does not exist".into(),
                });
            }
            added.push(f.clone());
        }
        for p in added {
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) => {
                    r.broken.push(SuiteError {
                        path: p.clone(),
                        message: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            match parse(&text, &p) {
                Ok(spec) => r.add(spec, Source::File(p), text),
                Err(e) => r.broken.push(e),
            }
        }
        r.entries.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        r.specs = r.entries.iter().map(|e| e.spec.clone()).collect();
        Ok(r)
    }

    fn add(&mut self, spec: SuiteSpec, source: Source, text: String) {
        match self.entries.iter_mut().find(|e| e.spec.id == spec.id) {
            Some(old) => {
                if old.text != text {
                    self.overrides.push(format!(
                        "suite `{}` from {source} overrides the one from {}",
                        spec.id, old.source
                    ));
                }
                *old = Entry { spec, source, text };
            }
            None => self.entries.push(Entry { spec, source, text }),
        }
    }

    /// Every usable suite, sorted by id.
    pub fn specs(&self) -> &[SuiteSpec] {
        &self.specs
    }

    /// The suite `id`, with its source and text.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.spec.id == id)
    }

    /// Suite files that did not load.
    pub fn broken(&self) -> &[SuiteError] {
        &self.broken
    }

    /// The error of a suite file named `<id>.toml` that did not load.
    pub fn broken_file_of(&self, id: &str) -> Option<&SuiteError> {
        self.broken
            .iter()
            .find(|e| e.path.file_stem().is_some_and(|s| s == id))
    }

    /// What a command prints on stderr before it works: each override of a
    /// suite by another of the same id, and each suite file that did not load
    /// (a command that selects such a file refuses instead).
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .overrides
            .iter()
            .map(|o| format!("warning: {o}"))
            .collect();
        w.extend(
            self.broken
                .iter()
                .map(|e| format!("warning: skipped suite file {e}")),
        );
        w
    }

    /// Selects suites by a comma-separated list of ids, domain names or
    /// `all`. A suite file that did not load and that the selector would take
    /// (its file name is a selected id, the selector is `all`, or a selected
    /// domain that the file names or cannot be read from it) is an error.
    pub fn select(&self, selector: &str) -> Result<Vec<&SuiteSpec>, SelectError> {
        let parts: Vec<&str> = selector
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        for e in &self.broken {
            let domain = declared_domain(&e.path);
            let taken = parts.iter().any(|p| {
                *p == "all"
                    || e.path.file_stem().is_some_and(|s| s == *p)
                    || domain.as_deref() == Some(*p)
                    || Domain::parse(p).is_some_and(|_| domain.is_none())
            });
            if taken {
                return Err(SelectError::Broken(SuiteError {
                    path: e.path.clone(),
                    message: e.message.clone(),
                }));
            }
        }
        super::select(&self.specs, selector).map_err(SelectError::Unknown)
    }
}

/// The `domain` a suite file names, where its TOML parses that far.
fn declared_domain(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: toml::Table = toml::from_str(&text).ok()?;
    v.get("domain")?.as_str().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_is_the_suites_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites");
        let on_disk = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
            .count();
        let r = Registry::builtin();
        assert!(r.broken().is_empty(), "{:?}", r.broken());
        assert_eq!(r.specs().len(), on_disk);
        let e = r.get("commonsenseqa").unwrap();
        assert_eq!(
            e.text,
            std::fs::read_to_string(dir.join("commonsenseqa.toml")).unwrap()
        );
        assert_eq!(e.source, Source::BuiltIn("commonsenseqa.toml"));
    }
}
