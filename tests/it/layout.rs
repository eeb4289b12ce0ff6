//! The crate's import graph has no circle (the rules are in the Layout section of
//! `src/lib.rs`).
//!
//! Every file under `src/` is a node (an inline module counts as its file); an edge goes
//! from a file to each module it names: its `use` trees (`crate::`, `super::`, `self::`
//! and a child module's name), and every `crate::…`, `super::…` or child-module path in
//! its code, macros included. A path ends at the longest prefix that is a module, so
//! `crate::juicefs::JuicefsRound` points at `juicefs/mod.rs` and `crate::juicefs::state::X`
//! at `juicefs/state.rs`. `mod x;` declarations are not edges (a parent lists its children;
//! what it re-exports with `pub use` is). Comments, strings and `#[cfg(test)]` items are
//! left out: tests may reach anywhere, the product's modules may not go round in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from the crate root, e.g. `["juicefs", "state"]`; the root is `[]`.
type ModPath = Vec<String>;

/// Where an edge comes from, for the failure message.
#[derive(Debug, Clone)]
struct Use {
    file: PathBuf,
    line: usize,
    path: String,
}

/// The crate's modules and the edges between their files.
#[derive(Debug, Default)]
struct Graph {
    /// File modules and the file each is in.
    files: BTreeMap<ModPath, PathBuf>,
    /// Edges between file modules, with one use that makes each.
    edges: BTreeMap<ModPath, BTreeMap<ModPath, Use>>,
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// The module a file under `src` defines: `a/b.rs` and `a/b/mod.rs` are `a::b`, `lib.rs` the
/// root. `None` for the binary's `main.rs`.
fn module_of(rel: &Path) -> Option<ModPath> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    match (parts.is_empty(), stem) {
        (true, "main") => None,
        (true, "lib") => Some(Vec::new()),
        (_, "mod") => Some(parts),
        _ => {
            parts.push(stem.to_string());
            Some(parts)
        }
    }
}

/// The text with comments, string and char literals blanked out (newlines kept, so line
/// numbers hold).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |s: &[u8], out: &mut String| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = 0;
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&rest[..j], &mut out);
            i += j;
        } else if let Some(len) = raw_string_len(rest) {
            blank(&rest[..len], &mut out);
            i += len;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let j = (j + 1).min(rest.len());
            blank(&rest[..j], &mut out);
            i += j;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}', '"'); a lifetime ('a) has no closing quote.
            let len = if rest.len() > 2 && rest[1] == b'\\' {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else if rest.len() > 2 && rest[2] == b'\'' {
                Some(3)
            } else {
                None
            };
            match len {
                Some(len) => {
                    blank(&rest[..len], &mut out);
                    i += len;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            // Copy one UTF-8 character.
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Length of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starting here, if one does.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = start + hashes + 1;
    let end = s[body..].windows(close.len()).position(|w| w == close)?;
    Some(body + end + close.len())
}

/// A token: an identifier, `::`, or one punctuation character; with its line.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(text: &str) -> Vec<(Tok, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_whitespace() {
        } else if c.is_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push((Tok::Ident(text[i..end].to_string()), line));
        } else if c == ':' && chars.peek().map(|&(_, d)| d) == Some(':') {
            chars.next();
            out.push((Tok::PathSep, line));
        } else {
            out.push((Tok::Punct(c), line));
        }
    }
    out
}

/// Index just past the item starting at `i`: up to its `;`, or its `{…}` block.
fn skip_item(toks: &[(Tok, usize)], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < toks.len() {
        match toks[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            Tok::Punct(';') if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The paths of a use tree starting at `i` (after `use`), each as its segments; returns the
/// index after the closing `;`.
fn use_tree(
    toks: &[(Tok, usize)],
    i: usize,
    prefix: &[String],
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix.to_vec();
    let mut i = i;
    loop {
        match toks.get(i).map(|t| &t.0) {
            Some(Tok::Ident(s)) if s == "as" => {
                out.push(path.clone());
                return i + 2;
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
            }
            Some(Tok::PathSep) => i += 1,
            Some(Tok::Punct('*')) => {
                out.push(path.clone());
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.0) {
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        None => return i,
                        _ => i = use_tree(toks, i, &path, out),
                    }
                }
            }
            _ => {
                if path.len() > prefix.len() {
                    out.push(path);
                }
                return i;
            }
        }
    }
}

impl Graph {
    /// Reads every `.rs` file under `src`.
    fn read(src: &Path) -> Self {
        let mut g = Graph::default();
        let mut texts = Vec::new();
        for entry in walkdir::WalkDir::new(src).sort_by_file_name() {
            let entry = entry.expect("walk src");
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            if let Some(m) = module_of(rel) {
                let text = std::fs::read_to_string(path).expect("read a source file");
                g.files.insert(m.clone(), path.to_path_buf());
                texts.push((m, path.to_path_buf(), text));
            }
        }
        // Inline modules, found while scanning, map to their file's module.
        let mut inline: BTreeMap<ModPath, ModPath> = BTreeMap::new();
        let mut scanned = Vec::new();
        for (m, file, text) in &texts {
            let toks = tokens(&strip(text));
            collect_inline(&toks, m, &mut inline);
            scanned.push((m.clone(), file.clone(), toks));
        }
        for (m, file, toks) in scanned {
            g.scan(&m, &file, &toks, &inline);
        }
        g
    }

    /// The file module a module path points into: the longest prefix that is a module.
    fn target(&self, inline: &BTreeMap<ModPath, ModPath>, path: &[String]) -> Option<ModPath> {
        (0..=path.len()).rev().find_map(|n| {
            let p = path[..n].to_vec();
            if self.files.contains_key(&p) {
                Some(p)
            } else {
                inline.get(&p).cloned()
            }
        })
    }

    fn is_module(&self, inline: &BTreeMap<ModPath, ModPath>, m: &[String]) -> bool {
        self.files.contains_key(m) || inline.contains_key(m)
    }

    /// Adds the edges of one file.
    fn scan(
        &mut self,
        file_mod: &ModPath,
        file: &Path,
        toks: &[(Tok, usize)],
        inline: &BTreeMap<ModPath, ModPath>,
    ) {
        // The module each token is in (inline modules nest).
        let mut stack: Vec<(ModPath, usize)> = vec![(file_mod.clone(), 0)];
        let mut depth = 0usize;
        let mut i = 0;
        while i < toks.len() {
            let here = stack.last().unwrap().0.clone();
            match &toks[i].0 {
                Tok::Punct('#')
                    if matches!(toks.get(i + 1), Some((Tok::Punct('['), _)))
                        && matches!(toks.get(i + 2), Some((Tok::Ident(s), _)) if s == "cfg")
                        && matches!(toks.get(i + 4), Some((Tok::Ident(s), _)) if s == "test") =>
                {
                    // `#[cfg(test)] item`: skip the attribute and the item.
                    let close = (i..toks.len())
                        .find(|&j| toks[j].0 == Tok::Punct(']'))
                        .unwrap_or(toks.len());
                    i = skip_item(toks, close + 1);
                    continue;
                }
                Tok::Ident(s)
                    if s == "mod" && matches!(toks.get(i + 2), Some((Tok::Punct('{'), _))) =>
                {
                    if let Some((Tok::Ident(name), _)) = toks.get(i + 1) {
                        let mut inner = here.clone();
                        inner.push(name.clone());
                        depth += 1;
                        stack.push((inner, depth));
                        i += 3;
                        continue;
                    }
                }
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    if stack.len() > 1 && stack.last().unwrap().1 == depth {
                        stack.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                Tok::Ident(s) if s == "use" => {
                    let line = toks[i].1;
                    let mut paths = Vec::new();
                    let end = use_tree(toks, i + 1, &[], &mut paths);
                    for p in paths {
                        self.edge(file_mod, &here, file, line, &p, inline);
                    }
                    i = end.max(i + 1);
                    continue;
                }
                Tok::Ident(first) if matches!(toks.get(i + 1), Some((Tok::PathSep, _))) => {
                    // A path in code: `crate::a::b`, `super::x`, or `child::y`.
                    let line = toks[i].1;
                    let mut p = vec![first.clone()];
                    let mut j = i + 1;
                    while let (Some((Tok::PathSep, _)), Some((Tok::Ident(s), _))) =
                        (toks.get(j), toks.get(j + 1))
                    {
                        p.push(s.clone());
                        j += 2;
                    }
                    let preceded_by_sep = i > 0 && toks[i - 1].0 == Tok::PathSep;
                    if !preceded_by_sep {
                        self.edge(file_mod, &here, file, line, &p, inline);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// Resolves `path` as seen from module `here` (inside file module `file_mod`) and adds
    /// an edge when it names a module of the crate.
    #[allow(clippy::too_many_arguments)]
    fn edge(
        &mut self,
        file_mod: &ModPath,
        here: &ModPath,
        file: &Path,
        line: usize,
        path: &[String],
        inline: &BTreeMap<ModPath, ModPath>,
    ) {
        let mut abs: ModPath = match path.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("self") => here.clone(),
            Some("super") => here.clone(),
            Some(first) => {
                // A child module named without a prefix (2018 paths), in `use` or code.
                let mut child = here.clone();
                child.push(first.to_string());
                if !self.is_module(inline, &child) {
                    return;
                }
                here.clone()
            }
            None => return,
        };
        let mut rest = path;
        match path.first().map(String::as_str) {
            Some("crate") | Some("self") => rest = &path[1..],
            Some("super") => {
                let mut k = 0;
                while path.get(k).map(String::as_str) == Some("super") {
                    abs.pop();
                    k += 1;
                }
                rest = &path[k..];
            }
            _ => {}
        }
        abs.extend(rest.iter().cloned());
        let Some(to) = self.target(inline, &abs) else {
            return;
        };
        if &to == file_mod {
            return;
        }
        self.edges
            .entry(file_mod.clone())
            .or_default()
            .entry(to)
            .or_insert_with(|| Use {
                file: file.to_path_buf(),
                line,
                path: path.join("::"),
            });
    }

    /// One circle per knot (a set of modules that all reach each other), as the modules
    /// along it, the first repeated at the end. Breaking it may leave another circle in the
    /// same knot; the check then names that one.
    fn circles(&self) -> Vec<Vec<ModPath>> {
        // Tarjan's strongly connected components; a component of more than one module
        // holds a circle, and a shortest one through its first module is reported.
        let nodes: Vec<&ModPath> = self.files.keys().collect();
        let index_of: BTreeMap<&ModPath, usize> =
            nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        let succ: Vec<Vec<usize>> = nodes
            .iter()
            .map(|m| {
                self.edges
                    .get(*m)
                    .map(|e| e.keys().filter_map(|t| index_of.get(t).copied()).collect())
                    .unwrap_or_default()
            })
            .collect();
        let mut tarjan = Tarjan::new(&succ);
        for v in 0..nodes.len() {
            if tarjan.index[v] == usize::MAX {
                tarjan.visit(v);
            }
        }
        let components = tarjan.components;
        let mut out = Vec::new();
        for comp in components.into_iter().filter(|c| c.len() > 1) {
            let members: BTreeSet<usize> = comp.iter().copied().collect();
            let start = *members.iter().next().unwrap();
            // Breadth-first from `start` back to itself, inside the component.
            let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut found = None;
            'bfs: while let Some(v) = queue.pop_front() {
                for &w in &succ[v] {
                    if !members.contains(&w) {
                        continue;
                    }
                    if w == start {
                        found = Some(v);
                        break 'bfs;
                    }
                    if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(w) {
                        e.insert(v);
                        queue.push_back(w);
                    }
                }
            }
            let mut path = vec![start];
            let mut v = found.expect("a component of two or more has a circle");
            while v != start {
                path.push(v);
                v = prev[&v];
            }
            path.push(start);
            let last = path.len() - 1;
            path[1..last].reverse();
            out.push(path.into_iter().map(|i| nodes[i].clone()).collect());
        }
        out
    }

    /// A report of the circles: each module step with the use that makes it.
    fn report(&self, circles: &[Vec<ModPath>], root: &Path) -> String {
        let mut s = String::new();
        for c in circles {
            s.push_str(&format!(
                "circle: {}\n",
                c.iter().map(|m| show(m)).collect::<Vec<_>>().join(" -> ")
            ));
            for pair in c.windows(2) {
                let u = &self.edges[&pair[0]][&pair[1]];
                s.push_str(&format!(
                    "  {}:{}: {} uses {}\n",
                    u.file.strip_prefix(root).unwrap_or(&u.file).display(),
                    u.line,
                    show(&pair[0]),
                    u.path
                ));
            }
        }
        s
    }
}

/// Tarjan's strongly connected components over successor lists.
struct Tarjan<'a> {
    succ: &'a [Vec<usize>],
    index: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl<'a> Tarjan<'a> {
    fn new(succ: &'a [Vec<usize>]) -> Self {
        let n = succ.len();
        Self {
            succ,
            index: vec![usize::MAX; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            components: Vec::new(),
        }
    }

    fn visit(&mut self, v: usize) {
        self.index[v] = self.next;
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.succ[v] {
            if self.index[w] == usize::MAX {
                self.visit(w);
                self.low[v] = self.low[v].min(self.low[w]);
            } else if self.on_stack[w] {
                self.low[v] = self.low[v].min(self.index[w]);
            }
        }
        if self.low[v] == self.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(comp);
        }
    }
}

fn collect_inline(
    toks: &[(Tok, usize)],
    file_mod: &ModPath,
    inline: &mut BTreeMap<ModPath, ModPath>,
) {
    // Inline `mod name {` at any depth; nesting is tracked by braces.
    let mut stack: Vec<(ModPath, usize)> = vec![(file_mod.clone(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Ident(s)
                if s == "mod" && matches!(toks.get(i + 2), Some((Tok::Punct('{'), _))) =>
            {
                if let Some((Tok::Ident(name), _)) = toks.get(i + 1) {
                    let mut inner = stack.last().unwrap().0.clone();
                    inner.push(name.clone());
                    inline.insert(inner.clone(), file_mod.clone());
                    depth += 1;
                    stack.push((inner, depth));
                    i += 3;
                    continue;
                }
            }
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if stack.len() > 1 && stack.last().unwrap().1 == depth {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += 1;
    }
}

#[test]
fn the_crate_has_no_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let g = Graph::read(&root.join("src"));
    assert!(
        g.files.len() > 40,
        "the check sees too few modules ({}); is it reading src/?",
        g.files.len()
    );
    assert!(
        g.edges.values().map(BTreeMap::len).sum::<usize>() > 100,
        "the check sees too few imports; is it reading use lines?"
    );
    let circles = g.circles();
    assert!(
        circles.is_empty(),
        "the crate's modules import each other in a circle; break it as the Layout section \
         of src/lib.rs says (a state never imports the model, an expose imports \
         exposition::family, a settings imports config::error, siblings import each other \
         directly, never through mod.rs):\n{}",
        g.report(&circles, root)
    );
}

#[test]
fn the_hub_imports_only_states_and_no_state_imports_the_hub() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let g = Graph::read(&root.join("src"));
    let model = vec!["model".to_string()];
    let mut wrong = Vec::new();
    for (to, u) in g.edges.get(&model).into_iter().flatten() {
        let allowed = to.as_slice() == ["common"] || to.last().is_some_and(|m| m == "state");
        if !allowed {
            wrong.push(format!(
                "{}:{}: the hub uses {} ({}); it may use only a source's state and common",
                u.file.strip_prefix(root).unwrap_or(&u.file).display(),
                u.line,
                u.path,
                show(to)
            ));
        }
    }
    for (from, edges) in &g.edges {
        for (to, u) in edges {
            let state_to_hub = from.last().is_some_and(|m| m == "state") && *to == model;
            let to_cli = to.as_slice() == ["cli"];
            if state_to_hub || to_cli {
                wrong.push(format!(
                    "{}:{}: {} uses {} ({}); {}",
                    u.file.strip_prefix(root).unwrap_or(&u.file).display(),
                    u.line,
                    show(from),
                    u.path,
                    show(to),
                    if to_cli {
                        "no module imports the command line"
                    } else {
                        "a state never imports the hub"
                    }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Writes a small crate under a temporary `src/`.
fn fake_crate(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join("src").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn the_check_finds_circles_through_use_trees_code_paths_and_mod_rs() {
    type Files<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Files, &[&str])] = &[
        // Two files through `use` lines.
        (
            &[
                ("lib.rs", "pub mod a;\npub mod b;\n"),
                ("a.rs", "use crate::b::B;\npub struct A;\n"),
                ("b.rs", "use crate::{a::A, c};\npub struct B;\n"),
            ],
            &["a -> b -> a"],
        ),
        // A path in code (inside a macro), and a child through its folder's mod.rs.
        (
            &[
                ("lib.rs", "pub mod model;\npub mod src1;\n"),
                (
                    "model.rs",
                    "fn f() { let _ = crate::src1::Round::new(); }\n",
                ),
                ("src1/mod.rs", "pub mod source;\npub use source::Round;\n"),
                (
                    "src1/source.rs",
                    "pub struct Round;\nfn g() { println!(\"{:?}\", super::super::model::X); }\n",
                ),
            ],
            &["model -> src1 -> src1::source -> model"],
        ),
    ];
    for (files, want) in cases {
        let dir = fake_crate(files);
        let g = Graph::read(&dir.path().join("src"));
        let got: Vec<String> = g
            .circles()
            .iter()
            .map(|c| c.iter().map(|m| show(m)).collect::<Vec<_>>().join(" -> "))
            .collect();
        assert_eq!(&got, want, "{files:?}");
        assert!(
            g.report(&g.circles(), dir.path()).contains("uses"),
            "the report names the use lines"
        );
    }
}

#[test]
fn the_check_ignores_comments_strings_tests_and_mod_declarations() {
    let dir = fake_crate(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        (
            "b.rs",
            "//! See [`crate::a::A`].\npub mod c;\n\
             pub struct B;\n\
             fn s() -> &'static str { \"crate::a::A\" }\n\
             fn r() -> &'static str { r#\"crate::a::A\"# }\n\
             fn ch() -> char { '\"' }\n\
             /* crate::a::A */\n\
             #[cfg(test)]\nmod tests { use crate::a::A; }\n",
        ),
        ("b/c.rs", "pub struct C;\n"),
    ]);
    let g = Graph::read(&dir.path().join("src"));
    assert!(g.circles().is_empty(), "{:?}", g.edges);
    assert!(g.edges[&vec!["a".to_string()]].contains_key(&vec!["b".to_string()]));
}
