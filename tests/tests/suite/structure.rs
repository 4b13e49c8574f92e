//! The code's own structure: no module of a crate imports one that imports it
//! back (a file-level import circle makes a newcomer read both at once).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The `.rs` files under `dir`, as (module path, source without comments and
/// without its test module).
fn modules(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|x| x.to_str()) != Some("rs") {
                continue;
            }
            let rel = p
                .strip_prefix(dir)
                .map(|r| r.with_extension(""))
                .unwrap_or_default();
            let mut name = rel.to_string_lossy().replace('/', "::");
            if name.ends_with("::mod") {
                name.truncate(name.len() - "::mod".len());
            }
            if name == "lib" || name == "main" {
                name.clear();
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let text = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(name, code);
        }
    }
    out
}

/// `crate::a::b` and `super::x` references of each module, to the modules of
/// the crate they name.
fn imports(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (m, code) in mods {
        let mut deps = BTreeSet::new();
        let parent = m
            .rsplit_once("::")
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        for (marker, base) in [("crate::", String::new()), ("super::", parent.clone())] {
            for rest in code.split(marker).skip(1) {
                let path: Vec<&str> = rest
                    .split(|c: char| {
                        !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':')
                    })
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .collect();
                for k in (1..=path.len()).rev() {
                    let tail = path[..k].join("::");
                    let cand = if base.is_empty() {
                        tail
                    } else {
                        format!("{base}::{tail}")
                    };
                    if mods.contains_key(&cand) {
                        deps.insert(cand);
                        break;
                    }
                }
            }
        }
        deps.remove(m);
        // A module's own parent declares it: that is not an import.
        graph.insert(m.clone(), deps);
    }
    graph
}

/// Every circle of the import graph, as `a -> b -> a`.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    fn walk(
        n: &str,
        path: &mut Vec<String>,
        graph: &BTreeMap<String, BTreeSet<String>>,
        out: &mut BTreeSet<String>,
    ) {
        for d in graph.get(n).into_iter().flatten() {
            if let Some(i) = path.iter().position(|p| p == d) {
                let mut c = path[i..].to_vec();
                c.push(d.clone());
                out.insert(c.join(" -> "));
            } else {
                path.push(d.clone());
                walk(d, path, graph, out);
                path.pop();
            }
        }
    }
    let mut out = BTreeSet::new();
    for n in graph.keys() {
        walk(n, &mut vec![n.clone()], graph, &mut out);
    }
    out
}

fn workspace() -> PathBuf {
    let here = mbstack_core::source_dir(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = workspace();
    let mut found = Vec::new();
    for krate in [
        "functions/core",
        "functions/control",
        "functions/network",
        "functions/data",
        "functions/loadbalancer",
        "functions/app",
        "statemachine",
        "emulator",
        "local",
        "bootstrap",
    ] {
        let mods = modules(&root.join(krate).join("src"));
        assert!(!mods.is_empty(), "{krate}: no source read");
        for c in circles(&imports(&mods)) {
            found.push(format!("{krate}: {c}"));
        }
    }
    assert!(found.is_empty(), "import circles: {found:#?}");
}

#[test]
fn the_circle_check_finds_a_circle() {
    let mods: BTreeMap<String, String> = [
        ("a".to_string(), "use crate::b::X;".to_string()),
        ("b".to_string(), "fn f() { crate::a::y() }".to_string()),
        ("c".to_string(), "use super::a;".to_string()),
    ]
    .into();
    assert_eq!(
        circles(&imports(&mods)),
        ["a -> b -> a", "b -> a -> b"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

/// Every tier test runs its calls through `TierRunner`, which holds each plan
/// and check to no mutating call (the call log of that one call): the proof
/// that a plan is read-only is every test of the suite, at run time. The
/// assertion itself, shown to fail on a plan that writes and to let an apply
/// write and a plan read.
#[test]
fn a_plan_or_check_that_writes_fails_every_tier_test() {
    use mbstack_core::{Call, Tier, Verb};
    let call = |service: &str, operation: &str| Call {
        service: service.into(),
        operation: operation.into(),
    };
    let writes = vec![call("EC2", "DescribeVpcs"), call("EC2", "CreateVpc")];
    for verb in [Verb::Plan, Verb::Check] {
        let failed = std::panic::catch_unwind(|| {
            mbstack_tests::assert_read_only(Tier::Network, verb, &writes)
        });
        let message = failed
            .err()
            .and_then(|p| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(
            message.contains("made mutating calls") && message.contains("CreateVpc"),
            "{verb:?}: {message:?}"
        );
    }
    mbstack_tests::assert_read_only(Tier::Network, Verb::Apply, &writes);
    mbstack_tests::assert_read_only(Tier::Network, Verb::Destroy, &writes);
    mbstack_tests::assert_read_only(Tier::Network, Verb::Plan, &writes[..1]);
}
