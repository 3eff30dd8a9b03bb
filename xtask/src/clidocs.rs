//! `completions` and `man`: shell completions and roff man pages for the three tools, generated from the same clap
//! definitions the binaries parse with (each tool's library exposes `command()`), so they cannot drift from the
//! flags. Output is deterministic: no dates, no paths, the same bytes on every run.

use anyhow::{Context, Result};
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// The shells written by `completions`.
pub const SHELLS: [Shell; 5] = [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Elvish, Shell::PowerShell];

/// Each tool's command-line definition, named as its binary.
pub fn tools() -> Vec<clap::Command> {
    vec![
        caffe_inspect::command(),
        caffe_convert::command(),
        caffe_prune::command(),
    ]
}

/// The default output folder under the repository's `target/`.
pub fn default_out(name: &str) -> PathBuf {
    crate::repo_root().join("target").join(name)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    outfile::write_atomic(&path, |w| w.write_all(bytes)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes the completions of every tool for every shell into `dir` (created if missing), under each shell's usual
/// file name (`caffe-prune.bash`, `_caffe-prune`, `caffe-prune.fish`, `caffe-prune.elv`, `_caffe-prune.ps1`).
/// Returns the files written.
pub fn completions(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for mut cmd in tools() {
        let name = cmd.get_name().to_owned();
        for shell in SHELLS {
            let mut bytes = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut bytes);
            if shell == Shell::Bash {
                bytes = fix_bash(String::from_utf8(bytes)?, &name).into_bytes();
            }
            written.push(write(dir, &clap_complete::Generator::file_name(&shell, &name), &bytes)?);
        }
    }
    Ok(written)
}

/// clap_complete 4.6 spells the subcommand states of a hyphenated binary two ways in bash (clap-rs/clap#6421, open):
/// the loop over the words sets `caffe__prune__subcmd__eval`, the case arm waits for
/// `caffe__subcmd__prune__subcmd__eval`, so nothing after a subcommand completed. The arms are respelled as the loop
/// spells them; once clap_complete is fixed this finds nothing to replace.
fn fix_bash(script: String, bin: &str) -> String {
    let wrong = format!("{}__subcmd__", bin.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", bin.replace('-', "__"));
    script.replace(&wrong, &right)
}

/// Writes a section-1 man page for every tool and every subcommand (`caffe-prune.1`, `caffe-prune-eval.1`, ...)
/// into `dir` (created if missing), as `clap_mangen::generate_to` would but through `outfile`. Returns the files
/// written.
pub fn man(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for cmd in tools() {
        // Built once at the top, so global flags (--threads, --quiet, --deterministic) reach the subcommands and
        // each subcommand gets its display name (caffe-prune-eval); no page for the generated `help` subcommand.
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        write_pages(&cmd, dir, &mut written)?;
    }
    Ok(written)
}

fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let page = clap_mangen::Man::new(cmd.clone());
    let mut bytes = Vec::new();
    page.render(&mut bytes)?;
    written.push(write(dir, &page.get_filename(), &bytes)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

/// `cargo xtask completions` and `cargo xtask man`: writes, then says where.
pub fn run(man_pages: bool, out: Option<PathBuf>) -> Result<bool> {
    let dir = out.unwrap_or_else(|| default_out(if man_pages { "man" } else { "completions" }));
    let written = if man_pages { man(&dir)? } else { completions(&dir)? };
    let what = if man_pages { "man pages" } else { "completion files" };
    println!("wrote {} {what} to {}", written.len(), dir.display());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Every file in `dir` with its bytes.
    fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
            })
            .collect()
    }

    /// Roff source with its escaped hyphens (`\-`) plain, for looking for names and flags.
    fn plain(roff: &[u8]) -> String {
        String::from_utf8(roff.to_vec()).unwrap().replace("\\-", "-")
    }

    /// What bash's programmable completion offers for the last of `words` (the word being typed), with `script`
    /// sourced; None where bash cannot be run.
    fn bash_complete(script: &Path, words: &[&str]) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(script).unwrap();
        let function = text
            .split("complete -F ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("a `complete -F FUNCTION` line");
        let program = format!(
            r#"source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
            {function} "$1" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"; printf '%s\n' "${{COMPREPLY[@]}}""#
        );
        let out = match std::process::Command::new("bash")
            .arg("-c")
            .arg(program)
            .arg("bash")
            .arg(script)
            .args(words)
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("bash not run ({e}): completion not exercised");
                return None;
            }
        };
        assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
        let mut offered: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        offered.sort();
        Some(offered)
    }

    #[test]
    fn man_pages_and_completions_cover_every_tool_and_subcommand_and_are_deterministic() {
        let tmp = tempfile::tempdir().unwrap();
        let (man_dir, compl_dir) = (tmp.path().join("man"), tmp.path().join("completions"));
        man(&man_dir).unwrap();
        completions(&compl_dir).unwrap();
        let (pages, scripts) = (contents(&man_dir), contents(&compl_dir));

        // A page per tool and per caffe-prune subcommand, each naming itself and the shared --threads flag.
        let subcommands = ["eval", "forward", "sweep", "train", "retrain", "quantize", "compress"];
        let prune_subs: Vec<String> = caffe_prune::command()
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        assert_eq!(
            prune_subs, subcommands,
            "caffe-prune's subcommands changed: update this test"
        );
        let mut expected: Vec<String> = ["caffe-inspect", "caffe-convert", "caffe-prune"]
            .map(String::from)
            .to_vec();
        expected.extend(subcommands.iter().map(|s| format!("caffe-prune-{s}")));
        for name in &expected {
            let file = format!("{name}.1");
            let page = plain(
                pages
                    .get(&file)
                    .unwrap_or_else(|| panic!("no {file} in {:?}", pages.keys())),
            );
            assert!(page.contains(name.as_str()), "{file} does not name {name}");
            assert!(page.contains("--threads"), "{file} does not show --threads");
        }
        assert_eq!(pages.len(), expected.len(), "unexpected pages: {:?}", pages.keys());
        assert!(plain(&pages["caffe-prune-compress.1"]).contains("--keep"));

        // Five shells for each of three tools; caffe-prune's bash completion knows its subcommands and flags.
        assert_eq!(scripts.len(), 15, "{:?}", scripts.keys());
        for tool in ["caffe-inspect", "caffe-convert", "caffe-prune"] {
            for file in [
                format!("{tool}.bash"),
                format!("_{tool}"),
                format!("{tool}.fish"),
                format!("{tool}.elv"),
                format!("_{tool}.ps1"),
            ] {
                assert!(scripts.contains_key(&file), "no {file} in {:?}", scripts.keys());
            }
        }
        let bash = String::from_utf8(scripts["caffe-prune.bash"].clone()).unwrap();
        assert!(bash.contains("compress") && bash.contains("--keep") && bash.contains("--threads"));

        // And bash really completes them: a subcommand after `caffe-prune`, its flags after the subcommand.
        let script = compl_dir.join("caffe-prune.bash");
        if let Some(words) = bash_complete(&script, &["caffe-prune", "comp"]) {
            assert_eq!(words, ["compress"]);
            let flags = bash_complete(&script, &["caffe-prune", "compress", "--ke"]).unwrap();
            assert_eq!(flags, ["--keep"]);
            let flags = bash_complete(&script, &["caffe-prune", "eval", "--thr"]).unwrap();
            assert_eq!(flags, ["--threads"]);
        }

        // The same bytes on a second run, into a fresh folder and over the first one.
        let again = tmp.path().join("again");
        man(&again.join("man")).unwrap();
        completions(&again.join("completions")).unwrap();
        assert_eq!(contents(&again.join("man")), pages);
        assert_eq!(contents(&again.join("completions")), scripts);
        man(&man_dir).unwrap();
        completions(&compl_dir).unwrap();
        assert_eq!(contents(&man_dir), pages);
        assert_eq!(contents(&compl_dir), scripts);

        // man(1) renders a page without complaint, where it is installed (C locale: plain ASCII hyphens).
        let page = man_dir.join("caffe-prune-compress.1");
        match std::process::Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("LC_ALL", "C")
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
        {
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "man -l {}: {stderr}", page.display());
                assert!(
                    !stderr.contains("warning") && !stderr.contains("error"),
                    "man -l {}: {stderr}",
                    page.display()
                );
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    text.contains("caffe-prune-compress") && text.contains("--threads"),
                    "{text}"
                );
            }
            Err(e) => eprintln!("man not run ({e}): rendering not checked"),
        }
    }
}
