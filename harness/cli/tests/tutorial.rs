//! The course in `docs/tutorial/`, kept from rotting: every block a chapter marks as runnable
//! (a fence whose info string is `sh runnable`) runs in CI.
//!
//! A chapter's runnable blocks run in order in one `bash -euo pipefail`, so variables and
//! background jobs carry over from block to block, as they would in a reader's terminal. The
//! current directory is a fresh scratch directory holding `scenarios` and `docs` as links into
//! the repository, so paths read as they do from the repository's root; `tracebench` (this
//! build) is first on `PATH`. Chapters run one after another: they may use the local demo's
//! fixed ports. Whatever a chapter leaves running is killed with its process group.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::scratch;

/// Longest a chapter may take, every block included (they take well under a minute each).
const CHAPTER_LIMIT: Duration = Duration::from_secs(180);

fn tutorial() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/tutorial")
}

/// The chapters, `NN-*.md`, in order.
fn chapters() -> Vec<PathBuf> {
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(tutorial())
        .expect("docs/tutorial")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".md") && name.as_bytes().first().is_some_and(u8::is_ascii_digit)
        })
        .collect();
    chapters.sort();
    chapters
}

/// One runnable block: the line its fence opens on (1-based) and its text.
#[derive(Debug, PartialEq)]
struct Block {
    line: usize,
    text: String,
}

/// The `sh runnable` blocks of a Markdown text. A fence is three or more backticks; it is closed
/// by a line of at least as many backticks and nothing else, as CommonMark has it.
fn runnable_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize, bool)> = None; // (fence length, line, runnable)
    let mut text = String::new();
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let ticks = trimmed.chars().take_while(|&c| c == '`').count();
        match open {
            None if ticks >= 3 => {
                let info: Vec<&str> = trimmed[ticks..].split_whitespace().collect();
                open = Some((ticks, i + 1, info == ["sh", "runnable"]));
                text.clear();
            }
            Some((fence, start, runnable))
                if ticks >= fence && trimmed[ticks..].trim().is_empty() =>
            {
                if runnable {
                    blocks.push(Block {
                        line: start,
                        text: std::mem::take(&mut text),
                    });
                }
                open = None;
            }
            Some(_) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "a code fence is never closed");
    blocks
}

#[test]
fn the_fence_reader_takes_sh_runnable_blocks_only() {
    let md = "text\n```sh runnable\necho one\n```\n```sh\necho no\n```\n````sh runnable\n```\nnested\n````\n~~~\n```text\nout\n```\n";
    let blocks = runnable_blocks(md);
    assert_eq!(
        blocks,
        [
            Block {
                line: 2,
                text: "echo one\n".to_owned()
            },
            Block {
                line: 8,
                text: "```\nnested\n".to_owned()
            },
        ]
    );
}

#[test]
fn the_course_has_six_chapters_or_more_each_with_runnable_blocks_and_answered_exercises() {
    let chapters = chapters();
    assert!(chapters.len() >= 6, "{chapters:?}");
    let index = std::fs::read_to_string(tutorial().join("README.md")).expect("the index");
    for chapter in &chapters {
        let name = chapter.file_name().and_then(|n| n.to_str()).expect("name");
        let text = std::fs::read_to_string(chapter).expect("chapter");
        assert!(
            !runnable_blocks(&text).is_empty(),
            "{name}: nothing runnable"
        );
        let exercises = text
            .split_once("## Exercises")
            .unwrap_or_else(|| panic!("{name}: no exercises"))
            .1;
        assert!(
            exercises.contains("<details>") && exercises.contains("Answer"),
            "{name}: exercises without answers"
        );
        assert!(index.contains(name), "the index does not list {name}");
    }
}

/// Runs one chapter's blocks; `Err` holds what went wrong and the chapter's output.
fn run_chapter(chapter: &Path) -> Result<Duration, String> {
    let name = chapter.file_name().and_then(|n| n.to_str()).expect("name");
    let text = std::fs::read_to_string(chapter).expect("chapter");
    let dir = scratch(&format!("tutorial-{}", &name[..2]));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for link in ["scenarios", "docs"] {
        std::os::unix::fs::symlink(repo.join(link), dir.join(link)).expect("link");
    }
    let mut script = String::new();
    for block in runnable_blocks(&text) {
        script.push_str(&format!("printf '\\n== {name}:{}\\n' >&2\n", block.line));
        script.push_str(&block.text);
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tracebench"));
    let path = format!(
        "{}:{}",
        exe.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log_path = dir.join("chapter.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let started = Instant::now();
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let status = loop {
        if let Some(status) = child.try_wait().expect("bash") {
            break Some(status);
        }
        if started.elapsed() > CHAPTER_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    // Background jobs a chapter left behind, and bash itself on a timeout.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(took),
        Some(s) => Err(format!("{name}: {s} after {took:.1?}\n{output}")),
        None => Err(format!(
            "{name}: still running after {CHAPTER_LIMIT:?}\n{output}"
        )),
    }
}

#[test]
fn every_runnable_block_of_the_course_runs() {
    let mut failures = Vec::new();
    for chapter in chapters() {
        match run_chapter(&chapter) {
            Ok(took) => eprintln!(
                "{}: ok in {took:.1?}",
                chapter.file_name().unwrap_or_default().display()
            ),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
