//! `cargo xtask test [SUITE...] [--tool TOOL]... [--surface v0.6] [--case
//! NAME[,NAME]] [--jobs N]`: which suites and which ways of running the C
//! ones a partial run takes.

use std::path::Path;

use anyhow::{bail, Context, Result};
use blazen_cabi_codegen::Surface;

use crate::cc::suites;

/// One way of building and running a C suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Gcc,
    Clang,
    /// The gcc build under valgrind memcheck.
    Valgrind,
    /// A clang build with AddressSanitizer and LeakSanitizer.
    Asan,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Gcc, Tool::Clang, Tool::Valgrind, Tool::Asan];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Gcc => "gcc",
            Tool::Clang => "clang",
            Tool::Valgrind => "valgrind",
            Tool::Asan => "asan",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Suites that are not C suites, by the name that selects them.
pub const OTHER_SUITES: [&str; 6] = ["rust", "header", "abi", "consumers", "ruby", "chaos"];

/// What a partial run runs.
#[derive(Debug)]
pub struct Selection {
    /// C suite names (`client` for tests/c/test_client.c) and names from
    /// [`OTHER_SUITES`].
    pub names: Vec<String>,
    pub tools: Vec<Tool>,
    pub surface: Surface,
    /// `--case`: the C suites' cases to run (BLAZEN_TEST_CASE, see
    /// tests/c/harness.h), comma-separated names or parts of names.
    pub case: Option<String>,
    /// `--jobs`: how many C suite binaries run at once (see
    /// [`Selection::jobs`] for the default).
    pub jobs: Option<usize>,
}

impl Selection {
    /// Reads the arguments after `test`; unknown names and tools are
    /// errors that list the known ones.
    pub fn parse(root: &Path, args: &[String]) -> Result<Self> {
        let c_names = c_suite_names(root)?;
        let mut sel = Selection {
            names: Vec::new(),
            tools: Vec::new(),
            surface: Surface::V0_5,
            case: None,
            jobs: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--tool" => {
                    let value = it.next().map(String::as_str).unwrap_or_default();
                    for name in value.split(',') {
                        let Some(tool) = Tool::parse(name) else {
                            let known: Vec<_> = Tool::ALL.iter().map(|t| t.name()).collect();
                            bail!("--tool {name:?}: expected one of {}", known.join(", "));
                        };
                        if !sel.tools.contains(&tool) {
                            sel.tools.push(tool);
                        }
                    }
                }
                "--surface" => {
                    let name = it.next().map(String::as_str).unwrap_or_default();
                    sel.surface = Surface::parse(name)
                        .with_context(|| format!("--surface {name:?}: expected v0.5 or v0.6"))?;
                }
                "--case" => {
                    let value = it.next().map(String::as_str).unwrap_or_default();
                    let names: Vec<&str> = value
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .collect();
                    if names.is_empty() || value.starts_with('-') {
                        bail!("--case needs a case name (or names, comma-separated), e.g. --case unreachable");
                    }
                    let mut all: Vec<&str> = sel.case.as_deref().into_iter().collect();
                    all.extend(names);
                    sel.case = Some(all.join(","));
                }
                "--jobs" | "-j" => {
                    let value = it.next().map(String::as_str).unwrap_or_default();
                    match value.parse::<usize>() {
                        Ok(n) if n >= 1 => sel.jobs = Some(n),
                        _ => bail!("--jobs {value:?}: expected a number of C suites to run at once (1 or more)"),
                    }
                }
                name if name.starts_with('-') => bail!("unknown option {name:?}"),
                name => {
                    let name = name.strip_prefix("test_").unwrap_or(name);
                    if !c_names.iter().any(|n| n == name) && !OTHER_SUITES.contains(&name) {
                        bail!(
                            "no suite {name:?}; the suites are {}, and {}",
                            c_names.join(", "),
                            OTHER_SUITES.join(", ")
                        );
                    }
                    sel.names.push(name.to_string());
                }
            }
        }
        if sel.tools.is_empty() {
            sel.tools = Tool::ALL.to_vec();
        }
        // In the order of ALL: valgrind reuses the gcc build.
        sel.tools
            .sort_by_key(|t| Tool::ALL.iter().position(|a| a == t));
        if sel.names.is_empty() {
            sel.names = c_names;
        }
        if let Some(case) = &sel.case {
            if !sel.any_c() {
                bail!(
                    "--case {case:?} selects cases of the C suites (tests/c/test_*.c), and none is selected \
                     (only {}): name a C suite too, e.g. `cargo xtask test client --case {case}`",
                    sel.names.join(", ")
                );
            }
        }
        Ok(sel)
    }

    /// How many C suite binaries built with `tool` may run at once: `--jobs`
    /// when given, otherwise 2 on a machine with 2 or more cores (1 on one
    /// core). The same for valgrind: memcheck runs a process's threads one
    /// at a time, on one core, so two runs fill two cores (measured on 2
    /// cores: six suites in 46 and 63 s at 2, 91 and 82 s at 1, though once,
    /// with the machine's load average at 8, 276 s at 2 and 103 s at 1; all
    /// 23 suites passed at 2, in 545 s, against 535 s at 1, where the suites
    /// that run alone take half the time). A cap per tool is possible here.
    pub fn jobs(&self, _tool: Tool) -> usize {
        if let Some(n) = self.jobs {
            return n;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.clamp(1, 2)
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Whether the C suite at `src` is selected.
    pub fn has_c(&self, src: &Path) -> bool {
        self.has(&c_name(src))
    }

    pub fn any_c(&self) -> bool {
        self.names
            .iter()
            .any(|n| !OTHER_SUITES.contains(&n.as_str()))
    }
}

/// `client` for tests/c/test_client.c.
pub fn c_name(src: &Path) -> String {
    let stem = src.file_stem().unwrap_or_default().to_string_lossy();
    stem.strip_prefix("test_").unwrap_or(&stem).to_string()
}

fn c_suite_names(root: &Path) -> Result<Vec<String>> {
    Ok(suites(root, "c", "c")?.iter().map(|p| c_name(p)).collect())
}
