//! Installed plugins: one directory per plugin under the plugins directory, each with
//! a `plugin.yaml` manifest beside (or naming) its executable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use skiff_clock::Clock;
use skiff_plugin::{MANIFEST_FILE, Manifest};
use skiff_sagaapi::{Step, StepCode};

use crate::{Host, PluginError, PluginStep};

/// A plugin whose manifest parsed.
#[derive(Clone, Debug)]
pub struct Installed {
    /// Its manifest.
    pub manifest: Manifest,
    /// Where the manifest is.
    pub manifest_path: PathBuf,
    /// The executable it names, resolved against the manifest's directory.
    pub executable: PathBuf,
}

impl Installed {
    /// Reads the manifest at `path`.
    pub fn load(path: &Path) -> Result<Installed, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::NotFound { StepCode::NotFound } else { StepCode::Internal };
            PluginError::new(code, format!("cannot read the plugin manifest {}: {e}", path.display()))
        })?;
        let manifest = Manifest::parse(&path.display().to_string(), &bytes)
            .map_err(|e| PluginError::new(StepCode::SpecInvalid, e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let executable = dir.join(&manifest.executable);
        Ok(Installed { manifest, manifest_path: path.to_owned(), executable })
    }

    /// Checks the executable against the manifest's sha256.
    pub fn verify(&self) -> Result<(), PluginError> {
        let actual = sha256_file(&self.executable).map_err(|e| self.unreadable(&e))?;
        self.matches(&actual)
    }

    /// Reads the executable once, checks those bytes against the manifest's sha256 and
    /// writes them into `dir` (mode 0700): the path returned is what is started, so a
    /// file swapped after the check is never run.
    pub fn verified_copy(&self, dir: &Path) -> Result<PathBuf, PluginError> {
        use std::os::unix::fs::OpenOptionsExt;
        let bytes = std::fs::read(&self.executable).map_err(|e| self.unreadable(&e))?;
        self.matches(&hex::encode(Sha256::digest(&bytes)))?;
        let copy = dir.join(&self.manifest.plugin);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&copy)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes).and_then(|()| f.sync_all()));
        written.map_err(|e| {
            PluginError::new(StepCode::PluginFailed, format!("plugin {} cannot be staged: {e}", self.manifest.plugin))
        })?;
        Ok(copy)
    }

    fn unreadable(&self, e: &std::io::Error) -> PluginError {
        PluginError::new(
            StepCode::NotFound,
            format!(
                "plugin {}'s executable {} cannot be read: {e}; build or reinstall it",
                self.manifest.plugin,
                self.executable.display()
            ),
        )
    }

    fn matches(&self, actual: &str) -> Result<(), PluginError> {
        if actual != self.manifest.sha256.as_str() {
            return Err(PluginError::new(
                StepCode::DigestMismatch,
                format!(
                    "plugin {} was refused: its executable {} does not match the sha256 in {}; treat it as \
                     tampered and reinstall it (if you rebuilt it yourself, put the new digest in the manifest)",
                    self.manifest.plugin,
                    self.executable.display(),
                    self.manifest_path.display()
                ),
            )
            .facts([format!("manifest sha256: {}", self.manifest.sha256), format!("file sha256: {actual}")]));
        }
        Ok(())
    }
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// A plugin directory whose manifest cannot be used.
#[derive(Clone, Debug)]
pub struct Broken {
    /// The directory.
    pub dir: PathBuf,
    /// Why.
    pub error: PluginError,
}

/// Every plugin under a directory.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// The plugins directory.
    pub dir: PathBuf,
    /// Plugins whose manifests parsed, by name.
    pub plugins: Vec<Installed>,
    /// Directories whose manifests did not (they are skipped, and said).
    pub broken: Vec<Broken>,
    /// Variables every plugin of the catalog starts with ([`Host::with_env`]).
    pub env: Vec<(String, String)>,
}

impl Catalog {
    /// The same catalog, its plugins started with `env` added.
    #[must_use]
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// Reads `dir/*/plugin.yaml`. A missing directory is an empty catalog; a broken
    /// manifest is set aside in [`Catalog::broken`] rather than failing every command.
    pub fn discover(dir: &Path) -> Catalog {
        let mut catalog = Catalog { dir: dir.to_owned(), ..Catalog::default() };
        let Ok(entries) = std::fs::read_dir(dir) else { return catalog };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        for d in dirs {
            match Installed::load(&d.join(MANIFEST_FILE)) {
                Ok(p) if catalog.plugins.iter().any(|q| q.manifest.plugin == p.manifest.plugin) => {
                    let error = PluginError::new(
                        StepCode::SpecInvalid,
                        format!("a second plugin is called {}; remove one of them", p.manifest.plugin),
                    );
                    catalog.broken.push(Broken { dir: d, error });
                }
                Ok(p) => catalog.plugins.push(p),
                Err(error) => catalog.broken.push(Broken { dir: d, error }),
            }
        }
        catalog
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&Installed> {
        self.plugins.iter().find(|p| p.manifest.plugin == name)
    }

    /// The plugin whose manifest declares step kind `kind`.
    pub fn step_owner(&self, kind: &str) -> Option<&Installed> {
        self.plugins.iter().find(|p| p.manifest.steps.iter().any(|k| k == kind))
    }

    /// The plugin whose manifest declares runtime addon `addon`.
    pub fn addon_owner(&self, addon: &str) -> Option<&Installed> {
        self.plugins.iter().find(|p| p.manifest.addons.iter().any(|a| a == addon))
    }

    /// The plugin whose manifest declares recipe `recipe`.
    pub fn recipe_owner(&self, recipe: &str) -> Option<&Installed> {
        self.plugins.iter().find(|p| p.manifest.recipes.iter().any(|r| r == recipe))
    }

    /// Every declared step kind as an engine step, one host (one process, started on
    /// first use) per plugin.
    pub fn steps(&self, clock: &Arc<dyn Clock>) -> Vec<Arc<dyn Step>> {
        let mut out: Vec<Arc<dyn Step>> = Vec::new();
        for p in &self.plugins {
            let host = Arc::new(Host::new(p.clone(), clock.clone()).with_env(self.env.clone()));
            for kind in &p.manifest.steps {
                out.push(Arc::new(PluginStep::new(kind.clone(), host.clone())));
            }
        }
        out
    }
}
