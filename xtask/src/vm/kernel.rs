//! Debian's cloud kernels: pick the newest build of a series, download and
//! unpack it once (cached under `target/vm/kernels/`), and extract modules.
//!
//! Debian replaces kernel ABIs regularly and drops old ones from the mirror,
//! so nothing is pinned: the newest package the archive offers wins.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::deps;

/// A kernel series the suite boots, and how Debian names its packages.
pub struct Series {
    /// What `--kernel` accepts and the table shows: `6.1`, `6.12`.
    pub name: &'static str,
    /// `apt-cache search --names-only` pattern for its cloud image packages.
    pattern: &'static str,
    /// What every package name of the series starts with.
    prefix: &'static str,
}

impl Series {
    fn matches(&self, package: &str) -> bool {
        package.starts_with(self.prefix)
            && package[self.prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
            && (package.ends_with("-cloud-amd64") || package.ends_with("-cloud-amd64-unsigned"))
    }
}

pub const SERIES: &[Series] = &[
    Series {
        name: "6.1",
        pattern: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64(-unsigned)?$",
        prefix: "linux-image-6.1.0-",
    },
    Series {
        name: "6.12",
        pattern: r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64(-unsigned)?$",
        prefix: "linux-image-6.12.",
    },
];

/// An unpacked kernel package.
pub struct Kernel {
    pub series: &'static str,
    /// Debian package name, e.g. `linux-image-6.12.117+deb12-cloud-amd64-unsigned`.
    pub package: String,
    /// `uname -r` of the kernel, e.g. `6.12.117+deb12-cloud-amd64`.
    pub release: String,
    /// Where the package is unpacked (holds `boot/` and `lib/modules/`).
    pub root: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }

    fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    /// The `CONFIG_*` lines of the kernel's build configuration.
    pub fn config(&self) -> Result<String> {
        let path = self.root.join(format!("boot/config-{}", self.release));
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Refreshes the package lists so the newest kernels are visible. A failure
/// (offline) is not fatal: the cache may still hold a kernel.
pub fn update_package_lists() {
    if let Err(e) = deps::apt_update() {
        eprintln!("xtask: {e:#}; using the package lists and kernels already here");
    }
}

/// The newest kernel of `series`, downloaded and unpacked under `cache`.
pub fn fetch(series: &Series, cache: &Path) -> Result<Kernel> {
    let candidates = candidates(series)?;
    let mut errors = Vec::new();
    // Newest first; an older build is only a fallback when a download fails.
    for package in candidates.iter().take(3) {
        match fetch_package(series, package, cache) {
            Ok(kernel) => return Ok(kernel),
            Err(e) => errors.push(format!("{package}: {e:#}")),
        }
    }
    if let Some(kernel) = cached(series, cache)? {
        eprintln!(
            "xtask: could not download a {} kernel; using cached {}",
            series.name, kernel.package
        );
        return Ok(kernel);
    }
    bail!(
        "no {} kernel could be fetched ({}); check network access to Debian's package archive and that `apt-get update` succeeds",
        series.name,
        if errors.is_empty() { "apt-cache found no package".into() } else { errors.join("; ") }
    )
}

/// Package names of the series, newest first.
fn candidates(series: &Series) -> Result<Vec<String>> {
    let out =
        deps::output(Command::new("apt-cache").args(["search", "--names-only", series.pattern]))?;
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(" - ").next())
        .map(|s| s.trim().to_string())
        .filter(|s| series.matches(s))
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(version_key(n)));
    Ok(names)
}

/// Numbers in a package name, for ordering builds of one series
/// (`6.1.0-56` → [6, 1, 0, 56]).
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn fetch_package(series: &Series, package: &str, cache: &Path) -> Result<Kernel> {
    let root = cache.join(package);
    let done = root.join(".unpacked");
    if !done.exists() {
        download(package, cache, &root)?;
        fs::write(&done, "")?;
        remove_older(series, package, cache);
    }
    kernel_at(series, package, root)
}

fn download(package: &str, cache: &Path, root: &Path) -> Result<()> {
    eprintln!("xtask: downloading {package}");
    let dl = cache.join("download");
    let _ = fs::remove_dir_all(&dl);
    fs::create_dir_all(&dl)?;
    deps::run(
        Command::new("apt-get")
            .current_dir(&dl)
            // apt's sandbox user cannot write into target/; we are root.
            .args(["-qq", "-o", "APT::Sandbox::User=root", "download", package])
            .stdout(Stdio::null()),
    )?;
    let deb = fs::read_dir(&dl)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download produced no .deb")?;
    let _ = fs::remove_dir_all(root);
    deps::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root))?;
    fs::remove_dir_all(&dl)?;
    Ok(())
}

/// Keeps one build per series in the cache: kernels are ~100 MB unpacked.
fn remove_older(series: &Series, keep: &str, cache: &Path) {
    for other in cached_packages(series, cache) {
        if other != keep {
            let _ = fs::remove_dir_all(cache.join(other));
        }
    }
}

fn cached_packages(series: &Series, cache: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(cache) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(".unpacked").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| series.matches(n))
        .collect()
}

fn cached(series: &Series, cache: &Path) -> Result<Option<Kernel>> {
    let mut names = cached_packages(series, cache);
    names.sort_by_key(|n| std::cmp::Reverse(version_key(n)));
    match names.first() {
        Some(n) => Ok(Some(kernel_at(series, n, cache.join(n))?)),
        None => Ok(None),
    }
}

fn kernel_at(series: &Series, package: &str, root: PathBuf) -> Result<Kernel> {
    let modules = root.join("lib/modules");
    let release = fs::read_dir(&modules)
        .with_context(|| {
            format!(
                "{} has no lib/modules: delete it to download again",
                root.display()
            )
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .next()
        .with_context(|| format!("{} is empty", modules.display()))?;
    let kernel = Kernel {
        series: series.name,
        package: package.to_string(),
        release,
        root,
    };
    if !kernel.vmlinuz().exists() {
        bail!(
            "{} is missing: delete {} to download again",
            kernel.vmlinuz().display(),
            kernel.root.display()
        );
    }
    Ok(kernel)
}

/// Decompressed `.ko` files of `wanted` and everything they depend on, in
/// load order (dependencies first). busybox insmod cannot read `.ko.xz` and
/// resolves no dependencies, and the package ships no modules.dep.
pub fn modules(kernel: &Kernel, wanted: &[&str], out: &Path) -> Result<Vec<PathBuf>> {
    // A folder per release: when Debian publishes a newer kernel of the
    // series, the last one's modules must not be loaded into it (it takes
    // them, but drops their BTF, split against the other vmlinux: their
    // functions vanish from ipft's targets).
    let out = &out.join(&kernel.release);
    let index = module_index(&kernel.modules_dir())?;
    fs::create_dir_all(out)?;
    let mut loaded = Vec::new();
    for name in wanted {
        add_module(&index, name, out, &mut loaded)
            .with_context(|| format!("preparing module {name} of {}", kernel.package))?;
    }
    Ok(loaded
        .into_iter()
        .map(|name| out.join(format!("{name}.ko")))
        .collect())
}

/// Module name (with `_`, as `depends=` spells it) → its `.ko.xz` path.
fn module_index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if let Some(stem) = name.strip_suffix(".ko.xz").or(name.strip_suffix(".ko")) {
                    index.insert(stem.replace('-', "_"), path.clone());
                }
            }
        }
    }
    Ok(index)
}

fn add_module(
    index: &BTreeMap<String, PathBuf>,
    name: &str,
    out: &Path,
    loaded: &mut Vec<String>,
) -> Result<()> {
    let name = name.replace('-', "_");
    if loaded.contains(&name) {
        return Ok(());
    }
    let Some(src) = index.get(&name) else {
        // Built into the kernel (or absent): nothing to load.
        return Ok(());
    };
    let ko = out.join(format!("{name}.ko"));
    if !ko.exists() {
        decompress(src, &ko)?;
    }
    for dep in depends(&fs::read(&ko)?) {
        add_module(index, &dep, out, loaded)?;
    }
    loaded.push(name);
    Ok(())
}

fn decompress(src: &Path, dst: &Path) -> Result<()> {
    if src.extension().is_some_and(|e| e != "xz") {
        fs::copy(src, dst)?;
        return Ok(());
    }
    let out = Command::new("xz")
        .arg("-dc")
        .arg(src)
        .output()
        .context("could not start xz (apt-get install xz-utils)")?;
    if !out.status.success() {
        bail!(
            "xz -dc {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::write(dst, out.stdout).with_context(|| format!("writing {}", dst.display()))
}

/// The `depends=` list of a module's `.modinfo` section.
fn depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let Some(start) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[start + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_builds_by_number() {
        let mut v = [
            "linux-image-6.1.0-9-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64",
        ];
        v.sort_by_key(|n| std::cmp::Reverse(version_key(n)));
        assert_eq!(v[0], "linux-image-6.1.0-56-cloud-amd64");
    }

    #[test]
    fn reads_depends() {
        let ko = b"\0license=GPL\0depends=nfnetlink,libcrc32c\0name=nf_tables\0";
        assert_eq!(depends(ko), ["nfnetlink", "libcrc32c"]);
        assert!(depends(b"\0depends=\0").is_empty());
    }
}
