//! The flow of ARCHITECTURE.md, checked against the code: each module of
//! `ipft/src` may name (`crate::x`) only the modules listed for it below.
//! The stages run in [`ORDER`], and a stage uses only stages before it;
//! support modules (`sys`, `par`, `timing`, ...) are listed where used.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// The stages, in the order data flows through them; `session` runs one
/// trace through all of them, and `main` wires them.
const ORDER: &[&str] = &[
    "cli", "discover", "select", "attach", "trace", "report", "session", "main",
];

/// The modules each module may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("cli", &[]),
    ("discover", &["cli", "par", "timing", "random"]),
    ("select", &["cli", "discover"]),
    (
        "attach",
        &["cli", "discover", "sys", "par", "timing", "testhook"],
    ),
    ("trace", &["discover", "attach", "sys", "random"]),
    (
        "report",
        &["cli", "discover", "attach", "trace", "sys", "par", "timing"],
    ),
    (
        "session",
        &[
            "cli", "discover", "select", "attach", "trace", "report", "sys", "par", "timing",
            "testhook",
        ],
    ),
    (
        "main",
        &[
            "cli", "discover", "select", "attach", "report", "session", "timing",
        ],
    ),
    ("sys", &["random"]),
    ("par", &[]),
    ("timing", &[]),
    ("testhook", &[]),
    ("random", &[]),
];

/// A file's code with its `//` comments (docs included) left out.
fn without_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::x` a file's code names, comments left out: `x` alone, and
/// each first name of a `crate::{x::.., y}` group.
fn uses(source: &str) -> BTreeSet<String> {
    let code = without_comments(source);
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => found.extend(group_heads(group)),
            None => found.extend(ident(rest)),
        }
    }
    found
}

/// The crate root names its modules without `crate::` (`select::config`):
/// every path that starts with a module's name counts as a use there.
fn root_uses(source: &str) -> BTreeSet<String> {
    let code = without_comments(source);
    let mut found = BTreeSet::new();
    for (module, _) in ALLOWED {
        let path = format!("{module}::");
        for (at, _) in code.match_indices(&path) {
            let before = code[..at].chars().next_back();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                found.insert(module.to_string());
            }
        }
    }
    found
}

/// The first names of the top-level items of a `{...}` use group (`group`
/// starts after its brace).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && depth == 0 && !c.is_whitespace() => {
                item_start = false;
                heads.extend(ident(&group[i..]));
            }
            _ => {}
        }
    }
    heads
}

fn ident(text: &str) -> Option<String> {
    let name: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The top-level module a file of `src` belongs to: `report` for
/// `report/table.rs`, `cli` for `cli.rs`.
fn module_of(relative: &Path) -> String {
    let first = relative.components().next().unwrap().as_os_str();
    let first = first.to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// Every `.rs` file under `dir`, with the module it belongs to; but this
/// one, whose tests quote uses.
fn files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap();
            if relative == Path::new("layering.rs") {
                continue;
            }
            out.push((module_of(relative), fs::read_to_string(&path).unwrap()));
        }
    }
}

/// What a file of `module` uses: `crate::` paths, and in the crate root
/// (`main`) its modules' own paths too.
fn uses_of(module: &str, source: &str) -> BTreeSet<String> {
    let mut found = uses(source);
    if module == "main" {
        found.extend(root_uses(source));
    }
    found
}

/// Each offending use, as `module → used`, for the sources given.
fn violations(sources: &[(String, String)]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = BTreeSet::new();
    for (module, source) in sources {
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.insert(format!("{module}: a module missing from ALLOWED"));
            continue;
        };
        for used in uses_of(module, source) {
            if used != *module && !may.contains(&used.as_str()) {
                wrong.insert(format!("{module} → {used}"));
            }
        }
    }
    wrong.into_iter().collect()
}

#[test]
fn stages_use_only_the_stages_before_them() {
    let position = |m: &str| ORDER.iter().position(|s| *s == m);
    for (module, may) in ALLOWED {
        let Some(at) = position(module) else { continue };
        for used in *may {
            if let Some(used_at) = position(used) {
                assert!(
                    used_at < at,
                    "ALLOWED lets {module} use {used}, a later stage"
                );
            }
        }
    }
}

#[test]
fn the_code_imports_only_what_the_flow_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    files(&src, &src, &mut sources);
    assert!(sources.len() > 50, "ipft/src read");
    let wrong = violations(&sources);
    assert!(wrong.is_empty(), "uses against the flow: {wrong:?}");
}

/// Each allowance no file uses, as `module → used`: the list must be the
/// import graph itself, not a looser one.
fn unused_allowances(sources: &[(String, String)]) -> Vec<String> {
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (module, source) in sources {
        used.entry(module)
            .or_default()
            .extend(uses_of(module, source));
    }
    let mut unused = Vec::new();
    for (module, may) in ALLOWED {
        for allowed in *may {
            if !used.get(module).is_some_and(|u| u.contains(*allowed)) {
                unused.push(format!("{module} → {allowed}"));
            }
        }
    }
    unused
}

#[test]
fn every_allowed_use_is_made() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    files(&src, &src, &mut sources);
    let unused = unused_allowances(&sources);
    assert!(
        unused.is_empty(),
        "ALLOWED lists uses no file makes: {unused:?}"
    );
}

#[test]
fn uses_are_found_in_paths_and_groups() {
    let source = "use crate::{\n    cli::{Options, Output},\n    discover::Target,\n};\n\
                  // crate::report in a comment\nlet x = crate::trace::stream::open();\n";
    let found: Vec<String> = uses(source).into_iter().collect();
    assert_eq!(found, ["cli", "discover", "trace"]);
    let select = [(
        "select".to_string(),
        "use crate::report::table;".to_string(),
    )];
    assert_eq!(violations(&select), ["select → report"]);
    let main = [(
        "main".to_string(),
        "mod trace;\nfn f() { trace::stream::open(); x::trace::y(); }".to_string(),
    )];
    assert_eq!(violations(&main), ["main → trace"]);
}
