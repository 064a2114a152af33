//! Kernel module trees: finding modules by name and ordering their
//! dependencies.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::run_host;
use crate::{elf, io_err, require_tool, Error, Result};

/// A kernel's module directory (`/lib/modules/<version>` layout).
///
/// Dependencies come from `modules.dep` when the tree has one (the UML tree
/// does); otherwise (an unpacked `linux-image` .deb has none, and `depmod`
/// may not be installed) from the `depends=` field of each module's
/// `.modinfo` section. Modules listed in `modules.builtin` are built into the
/// kernel and are never returned for loading.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    root: PathBuf,
    /// Module name (with `_`, not `-`) → file.
    files: HashMap<String, PathBuf>,
    /// Module name → dependency names, from modules.dep if present.
    dep_file: Option<HashMap<String, Vec<String>>>,
    builtin: HashSet<String>,
}

/// The module name of a file like `.../virtio-rng.ko.xz` (`virtio_rng`).
pub(crate) fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

fn walk(dir: &Path, found: &mut HashMap<String, PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(io_err(format!("reading {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("reading {}", dir.display())))?;
        let path = entry.path();
        let ty = entry
            .file_type()
            .map_err(io_err(format!("stat {}", path.display())))?;
        if ty.is_dir() {
            walk(&path, found)?;
        } else if let Some(name) = module_name(&path) {
            found.entry(name).or_insert(path);
        }
    }
    Ok(())
}

impl ModuleTree {
    /// Indexes the module tree at `root` (the directory holding `kernel/`,
    /// `modules.builtin`, ...).
    pub fn open(root: impl AsRef<Path>) -> Result<ModuleTree> {
        let root = root.as_ref().to_path_buf();
        if !root.join("kernel").is_dir() {
            return Err(Error::Other(format!(
                "{} is not a kernel module tree (no kernel/ in it)",
                root.display()
            )));
        }
        let mut files = HashMap::new();
        walk(&root, &mut files)?;
        let read = |name: &str| std::fs::read_to_string(root.join(name)).ok();
        let builtin = read("modules.builtin")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| module_name(Path::new(line.trim())))
            .collect();
        let dep_file = read("modules.dep").map(|text| {
            text.lines()
                .filter_map(|line| {
                    let (module, deps) = line.split_once(':')?;
                    let deps = deps
                        .split_whitespace()
                        .filter_map(|d| module_name(Path::new(d)))
                        .collect();
                    Some((module_name(Path::new(module.trim()))?, deps))
                })
                .collect()
        });
        Ok(ModuleTree {
            root,
            files,
            dep_file,
            builtin,
        })
    }

    /// The tree's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `name` is built into the kernel (listed in `modules.builtin`).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// The file of loadable module `name` (`-` and `_` are equivalent).
    pub fn path(&self, name: &str) -> Option<&Path> {
        self.files
            .get(&name.replace('-', "_"))
            .map(PathBuf::as_path)
    }

    /// Direct dependencies of loadable module `name`.
    pub fn dependencies(&self, name: &str) -> Result<Vec<String>> {
        let name = name.replace('-', "_");
        if let Some(deps) = self.dep_file.as_ref().and_then(|d| d.get(&name)) {
            return Ok(deps.clone());
        }
        let path = self.path(&name).ok_or_else(|| self.not_found(&name))?;
        let data = read_module(path)?;
        let depends = elf::modinfo(&data, "depends").ok_or_else(|| {
            Error::Other(format!(
                "{}: no `depends=` in its .modinfo section (not a kernel module?)",
                path.display()
            ))
        })?;
        Ok(depends
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| d.replace('-', "_"))
            .collect())
    }

    /// The files to `insmod`, in load order (dependencies first), for the
    /// modules `names` and everything they depend on. Built-in modules are
    /// skipped; an unknown module is an error.
    pub fn resolve(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for name in names {
            self.visit(
                &name.replace('-', "_"),
                &mut done,
                &mut Vec::new(),
                &mut order,
            )?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut HashSet<String>,
        stack: &mut Vec<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if self.path(name).is_none() && self.is_builtin(name) {
            done.insert(name.to_string());
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(Error::Other(format!(
                "module dependency cycle: {} -> {name}",
                stack.join(" -> ")
            )));
        }
        let path = self
            .path(name)
            .ok_or_else(|| self.not_found(name))?
            .to_path_buf();
        stack.push(name.to_string());
        for dep in self.dependencies(name)? {
            self.visit(&dep, done, stack, order)?;
        }
        stack.pop();
        done.insert(name.to_string());
        order.push(path);
        Ok(())
    }

    fn not_found(&self, name: &str) -> Error {
        Error::Other(format!(
            "kernel module `{name}` is neither a loadable module in {} nor listed in its modules.builtin",
            self.root.display()
        ))
    }
}

/// The contents of a kernel module file, decompressed on the host if it is
/// `.ko.xz`, `.ko.zst` or `.ko.gz` (busybox `insmod` cannot load compressed
/// modules).
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else if name.ends_with(".ko.gz") {
        "gzip"
    } else {
        return std::fs::read(path).map_err(io_err(format!("reading {}", path.display())));
    };
    let tool = require_tool(tool)?;
    run_host(Command::new(tool).arg("-dc").arg(path))
}
