//! The Cblockfile language against outside corpora (Docker's parser test
//! files and word tables, the original system's Cblockfiles), bad input, and
//! the `cblock parse` and `cblock build --no-exec` commands run as a binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use cblocks::cblockfile::word::{Lexer, Vars};
use cblocks::cblockfile::{
    self, dump, Cblockfile, CommandLine, CopySource, Error, InstructionKind, Position, Stage,
};

// ---------------------------------------------------------------------------
// Helpers

/// Returns the shared test data directory: `$CBLOCKS_SHARED`, else `../shared`
/// or `../../shared` from the crate root, whichever exists first.
fn shared() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("CBLOCKS_SHARED").map(PathBuf::from),
        Some(root.join("../shared")),
        Some(root.join("../../shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_dir())
        .expect(
            "shared test data not found: set CBLOCKS_SHARED or place shared/ beside the repository",
        )
}

fn corpus() -> PathBuf {
    shared().join("testdata/dockerfile-parser")
}

fn original(name: &str) -> PathBuf {
    shared()
        .join("testdata/cblocks-original/cblockfiles")
        .join(name)
}

/// Lists the subdirectories of `dir`, sorted.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn parse_text(text: &str) -> Result<Cblockfile, Error> {
    cblockfile::parse("Cblockfile", text.as_bytes())
}

fn parse_ok(text: &str) -> Cblockfile {
    parse_text(text).unwrap_or_else(|err| panic!("parse failed:\n{err}\ninput:\n{text}"))
}

/// Parses `text`, expects a syntax error, and returns its position and message.
fn parse_err(text: &str) -> (Position, String) {
    match parse_text(text) {
        Ok(file) => panic!("expected an error for:\n{text}\ngot {file:#?}"),
        Err(err) => {
            let diagnostic = err
                .diagnostic()
                .unwrap_or_else(|| panic!("expected a syntax error, got {err}"));
            (diagnostic.position, err.to_string())
        }
    }
}

fn parse_original(name: &str) -> Cblockfile {
    let path = original(name);
    cblockfile::parse_file(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

/// ENV pairs of a stage as (key, raw value, preview).
fn env_pairs(stage: &Stage) -> Vec<(String, String, String)> {
    stage
        .instructions
        .iter()
        .filter_map(|instruction| match &instruction.kind {
            InstructionKind::Env(pairs) => Some(pairs),
            _ => None,
        })
        .flatten()
        .map(|pair| {
            (
                pair.key.clone(),
                pair.value.raw.clone(),
                pair.value.preview.clone(),
            )
        })
        .collect()
}

fn run_commands(stage: &Stage) -> Vec<Vec<String>> {
    stage
        .instructions
        .iter()
        .filter_map(|instruction| match &instruction.kind {
            InstructionKind::Run(run) => Some(run.command.argv.clone()),
            _ => None,
        })
        .collect()
}

fn sh(command: &str) -> Vec<String> {
    strings(&["/bin/sh", "-c", command])
}

fn entrypoint_argv(file: &Cblockfile) -> Option<Vec<String>> {
    let stage = file.final_stage()?;
    file.image_entrypoint(stage)
        .map(|command: &CommandLine| command.argv.clone())
}

/// A temporary directory removed on drop, even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "cblocks-test-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let path = std::env::temp_dir().join(unique);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cblock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cblock"))
        .args(args)
        .env_remove("CBLOCK_SOCKET")
        .output()
        .expect("cannot run the cblock binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// Docker's parser corpus

#[test]
fn corpus_cases_reproduce_result() {
    let cases = subdirs(&corpus().join("cases"));
    assert!(cases.len() >= 20, "only {} cases found", cases.len());

    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let input = fs::read(case.join("Dockerfile")).unwrap();
        let expected = fs::read_to_string(case.join("result")).unwrap();
        match cblockfile::parse_syntax(&name, &input) {
            Ok(tree) => {
                let got = dump::dump(&tree.nodes);
                if got.trim_end_matches('\n') == expected.trim_end_matches('\n') {
                    println!("case {name}: ok");
                } else {
                    failures.push(format!(
                        "case {name}: dump differs\n--- got\n{got}--- expected\n{expected}"
                    ));
                }
            }
            Err(err) => failures.push(format!("case {name}: rejected: {err}")),
        }
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed",
        failures.len(),
        cases.len()
    );
}

#[test]
fn corpus_negative_files_rejected() {
    let cases = subdirs(&corpus().join("negative"));
    assert!(!cases.is_empty(), "no negative cases found");

    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let input = fs::read(case.join("Dockerfile")).unwrap();
        match cblockfile::parse_syntax(&name, &input) {
            Err(err) => println!(
                "negative {name}: rejected: {}",
                err.to_string().lines().next().unwrap_or("")
            ),
            Ok(tree) => failures.push(format!(
                "negative {name}: accepted as {}",
                dump::dump(&tree.nodes)
            )),
        }
        if cblockfile::parse(&name, &input).is_ok() {
            failures.push(format!("negative {name}: the checked parse accepted it"));
        }
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    assert!(
        failures.is_empty(),
        "{} negative cases accepted",
        failures.len()
    );
}

#[test]
fn env_var_table_unix_rows() {
    let table = fs::read_to_string(corpus().join("envVarTest")).unwrap();
    let vars: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    let lexer = Lexer::new('\\');

    let mut checked = 0;
    let mut failures = Vec::new();
    for (index, line) in table.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(
            fields.len(),
            3,
            "line {} of envVarTest: {line:?}",
            index + 1
        );
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if platform != "A" && platform != "U" {
            continue;
        }
        checked += 1;
        let got = lexer.expand_word(input, &vars);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(value), expected) => expected != "error" && value == expected,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "envVarTest line {}: {input:?} gave {got:?}, expected {expected:?}",
                index + 1
            ));
        }
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    assert!(checked > 150, "only {checked} rows checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} rows failed",
        failures.len()
    );
}

#[test]
fn words_table_all_rows() {
    let table = fs::read_to_string(corpus().join("wordsTest")).unwrap();
    let lexer = Lexer::new('\\');
    let mut vars: Vec<(String, String)> = Vec::new();

    let mut checked = 0;
    let mut failures = Vec::new();
    for (index, line) in table.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            let (name, value) = assignment.trim_start_matches(' ').split_once('=').unwrap();
            vars.push((name.to_string(), value.to_string()));
            continue;
        }
        let (input, expected) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("line {} of wordsTest has no '|': {line:?}", index + 1));
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        checked += 1;
        let got = lexer
            .expand_words(input, &vars)
            .unwrap_or_else(|_| vec!["error".to_string()]);
        if got != expected {
            failures.push(format!(
                "wordsTest line {}: {input:?} gave {got:?}, expected {expected:?}",
                index + 1
            ));
        }
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    assert!(checked >= 20, "only {checked} rows checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} rows failed",
        failures.len()
    );
}

// ---------------------------------------------------------------------------
// The original system's Cblockfiles

#[test]
fn original_cblockfiles_all_parse() {
    let dir = shared().join("testdata/cblocks-original/cblockfiles");
    let mut files: Vec<PathBuf> = subdirs(&dir)
        .iter()
        .map(|sub| sub.join("Cblockfile"))
        .collect();
    files.push(dir.join("Prisonfile"));
    let mut failures = Vec::new();
    for file in &files {
        match cblockfile::parse_file(file) {
            Ok(parsed) => println!("{}: {} stages", file.display(), parsed.stages.len()),
            Err(err) => failures.push(format!("{}: {err}", file.display())),
        }
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    assert_eq!(
        files.len(),
        5,
        "expected base, builder, h2o, root and Prisonfile"
    );
    assert!(failures.is_empty(), "{} files failed", failures.len());
}

#[test]
fn original_base_meaning() {
    let file = parse_original("base/Cblockfile");
    assert_eq!(file.stages.len(), 1);
    let stage = &file.stages[0];
    assert_eq!(stage.index, 0);
    assert_eq!(stage.name, None);
    assert_eq!(stage.from.image.preview, "forge:latest");

    assert_eq!(
        run_commands(stage),
        [
            sh("mkdir -p imgbuild/root"),
            sh("cp /etc/ca-root-nss.crt imgbuild/root/etc/"),
            sh("cp /etc/resolv.conf imgbuild/root/etc/"),
        ]
    );
    let env = env_pairs(stage);
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].0, "SSL_CA_CERT_FILE");
    assert_eq!(env[0].2, "/etc/ca-root-nss.crt");

    let add = stage
        .instructions
        .iter()
        .find_map(|instruction| match &instruction.kind {
            InstructionKind::Add(copy) => Some(copy),
            _ => None,
        });
    let add = add.expect("ADD instruction");
    assert_eq!(
        add.sources[0].preview,
        "https://download.freebsd.org/ftp/releases/amd64/14.3-RELEASE/base.txz"
    );
    assert_eq!(add.dest.preview, "imgbuild/root");

    let pivots: Vec<&str> = stage
        .instructions
        .iter()
        .filter_map(|instruction| match &instruction.kind {
            InstructionKind::RootPivot(dir) => Some(dir.preview.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(pivots, ["imgbuild"]);
    let osrelease = file.osrelease.as_ref().expect("OSRELEASE");
    assert_eq!(osrelease.value.preview, "14.3-RELEASE");
    assert_eq!(osrelease.position, Position::new(10, 1));
    assert!(file.auditcfg.is_none());
    assert_eq!(entrypoint_argv(&file), Some(strings(&["/bin/tcsh"])));
    assert!(file.image_cmd(stage).is_none());
}

#[test]
fn original_builder_meaning() {
    let file = parse_original("builder/Cblockfile");
    assert_eq!(file.stages.len(), 1);
    let stage = &file.stages[0];
    assert_eq!(stage.from.image.preview, "base");
    assert_eq!(stage.from.stage, None);
    assert_eq!(
        env_pairs(stage),
        [(
            "IGNORE_OSVERSION".to_string(),
            "yes".to_string(),
            "yes".to_string()
        )]
    );
    assert_eq!(
        run_commands(stage),
        [
            sh("pkg --yes update"),
            sh("pkg install --yes git"),
            sh("pkg install --yes gcc llvm flex bison cmake"),
        ]
    );
    assert_eq!(entrypoint_argv(&file), Some(strings(&["/bin/tcsh"])));
    assert!(file.osrelease.is_none());
    assert!(file.auditcfg.is_none());
}

#[test]
fn original_h2o_meaning() {
    let file = parse_original("h2o/Cblockfile");
    assert_eq!(file.stages.len(), 2);
    let (builder, last) = (&file.stages[0], &file.stages[1]);
    assert_eq!(
        (builder.index, builder.name.as_deref()),
        (0, Some("go_builder"))
    );
    assert_eq!((last.index, last.name.as_deref()), (1, None));
    assert_eq!(builder.from.image.preview, "freebsd:14.3");
    assert_eq!(last.from.image.preview, "freebsd:14.3");
    assert_eq!(last.position, Position::new(13, 1));

    let env = env_pairs(builder);
    assert_eq!(
        env[0],
        ("ASSUME_ALWAYS_YES".into(), "\"YES\"".into(), "YES".into())
    );
    assert_eq!(env[1].0, "PATH");
    assert_eq!(env[1].1, "\"$PATH:/usr/local/go125/bin\"");
    // PATH comes from the base image, so it expands only at build time.
    let build_env = vec![("PATH".to_string(), "/bin:/usr/bin".to_string())];
    let path = match &builder.instructions[5].kind {
        InstructionKind::Env(pairs) => pairs[0].value.expand(&build_env).unwrap(),
        other => panic!("expected ENV PATH, got {other:?}"),
    };
    assert_eq!(path, "/bin:/usr/bin:/usr/local/go125/bin");
    assert_eq!(
        run_commands(builder),
        [
            sh("pkg update"),
            sh("pkg install go125"),
            sh("go mod init local/fcgi"),
            sh("go mod tidy"),
            sh("go build"),
            sh("size fcgi"),
        ]
    );
    let workdir = builder
        .instructions
        .iter()
        .find_map(|instruction| match &instruction.kind {
            InstructionKind::Workdir(dir) => Some(dir.preview.clone()),
            _ => None,
        });
    assert_eq!(workdir.as_deref(), Some("/fcgi"));

    let copy = last
        .instructions
        .iter()
        .find_map(|instruction| match &instruction.kind {
            InstructionKind::Copy(copy) => Some(copy),
            _ => None,
        });
    let copy = copy.expect("COPY --FROM");
    assert_eq!(
        copy.from,
        Some(CopySource::Stage {
            index: 0,
            name: Some("go_builder".into())
        })
    );
    assert_eq!(copy.sources[0].preview, "/fcgi/fcgi");
    assert_eq!(copy.dest.preview, "/usr/local/bin");
    assert_eq!(
        env_pairs(last),
        [("ASSUME_ALWAYS_YES".into(), "\"YES\"".into(), "YES".into())]
    );
    assert_eq!(
        run_commands(last),
        [sh("pkg install h2o"), sh("mkdir /tls")]
    );

    let audit = file.auditcfg.as_ref().expect("AUDITCFG");
    assert_eq!(audit.value.classes, ["ex", "pc"]);
    assert_eq!(audit.position, Position::new(22, 1));
    assert!(file.osrelease.is_none());
    assert_eq!(
        entrypoint_argv(&file),
        Some(strings(&["/usr/local/bin/h2o", "-c", "/h2o.conf"]))
    );
}

#[test]
fn original_root_meaning() {
    let file = parse_original("root/Cblockfile");
    assert_eq!(file.stages.len(), 1);
    let stage = &file.stages[0];
    let env: Vec<(String, String)> = env_pairs(stage)
        .into_iter()
        .map(|(key, _, preview)| (key, preview))
        .collect();
    assert_eq!(
        env,
        [
            ("ASSUME_ALWAYS_YES".into(), "YES".into()),
            ("LC_ALL".into(), "C".into()),
            ("PATH".into(), "/usr/local/go125/bin:$PATH".into()),
        ]
    );

    assert_eq!(
        run_commands(stage),
        [
            sh("pkg install go125"),
            sh("go install github.com/golangci/golangci-lint/cmd/golangci-lint@latest"),
            sh("mkdir /build"),
            sh("mkdir -p /usr/local/etc/rc.d"),
            sh("./ci/build.sh"),
        ]
    );

    let workdir = stage
        .instructions
        .iter()
        .find_map(|instruction| match &instruction.kind {
            InstructionKind::Workdir(dir) => Some((dir.raw.clone(), dir.preview.clone())),
            _ => None,
        });
    assert_eq!(
        workdir,
        Some(("\"/build\"".to_string(), "/build".to_string()))
    );

    assert_eq!(entrypoint_argv(&file), None);
    assert!(file.osrelease.is_none());
    assert!(file.auditcfg.is_none());
}

#[test]
fn original_prisonfile_meaning() {
    let file = parse_original("Prisonfile");
    assert_eq!(file.stages.len(), 2);
    assert_eq!(file.stages[0].name.as_deref(), Some("pkg-updated"));
    assert_eq!(file.stages[0].from.image.preview, "base");
    // The second stage builds on the first by name.
    assert_eq!(file.stages[1].from.image.preview, "pkg-updated");
    assert_eq!(file.stages[1].from.stage, Some(0));
    assert_eq!(
        run_commands(&file.stages[0]),
        [sh("echo test123 > /test.txt"), sh("ps > /ps.output.txt")]
    );
    assert_eq!(run_commands(&file.stages[1]), [sh("echo doo stuff")]);
    assert_eq!(entrypoint_argv(&file), Some(strings(&["/bin/bash"])));
}

// ---------------------------------------------------------------------------
// Original forms and Docker forms side by side

#[test]
fn env_forms_agree() {
    let file = parse_ok(
        "FROM a\nENV A = 1\nENV \"B\" = \"two words\"\nENV C=3 D=\"x y\"\nENV E five six\nENV F = a b\n",
    );
    let env: Vec<(String, String)> = env_pairs(&file.stages[0])
        .into_iter()
        .map(|(key, _, preview)| (key, preview))
        .collect();
    let expected = [
        ("A", "1"),
        ("B", "two words"),
        ("C", "3"),
        ("D", "x y"),
        ("E", "five six"),
        ("F", "a b"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(env, expected);
}

#[test]
fn quoted_run_spans_lines() {
    let file = parse_ok("FROM a\nRUN \"pkg install\n  h2o\"\nRUN echo ok\n");
    assert_eq!(
        run_commands(&file.stages[0]),
        [sh("pkg install   h2o"), sh("echo ok")]
    );
    assert_eq!(file.stages[0].instructions[1].position, Position::new(4, 1));
}

#[test]
fn keywords_case_insensitive() {
    let file = parse_ok(
        "from a As First\nrun echo 1\nFrom b\ncopy --FROM=FIRST /x /y\nEntryPoint [\"/x\"]\n",
    );
    assert_eq!(file.stages[0].name.as_deref(), Some("first"));
    let copy = match &file.stages[1].instructions[0].kind {
        InstructionKind::Copy(copy) => copy.clone(),
        other => panic!("expected COPY, got {other:?}"),
    };
    assert_eq!(
        copy.from,
        Some(CopySource::Stage {
            index: 0,
            name: Some("first".into())
        })
    );
    assert_eq!(entrypoint_argv(&file), Some(strings(&["/x"])));
}

#[test]
fn copy_from_index_and_image() {
    let file =
        parse_ok("FROM a\nFROM b\nCOPY --from 0 /x /y\nCOPY --from=alpine:3 /etc/os-release /\n");
    let sources: Vec<Option<CopySource>> = file.stages[1]
        .instructions
        .iter()
        .map(|instruction| match &instruction.kind {
            InstructionKind::Copy(copy) => copy.from.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        sources,
        [
            Some(CopySource::Stage {
                index: 0,
                name: None
            }),
            Some(CopySource::Image("alpine:3".into()))
        ]
    );
}

#[test]
fn stage_graph_for_target() {
    let text = "FROM a AS base\nFROM b AS tools\nFROM base AS app\nCOPY --from=tools /t /t\nFROM c AS docs\nFROM app\n";
    let file = parse_ok(text);
    assert_eq!(file.stages[2].depends_on(), [0, 1]);
    assert_eq!(file.stages_for(4), [0, 1, 2, 4]);
    assert_eq!(file.stages_for(3), [3]);
    assert_eq!(file.stages_for(1), [1]);
    assert!(file.stages_for(9).is_empty());
}

#[test]
fn globals_before_first_from() {
    let file = parse_ok("ENTRYPOINT [\"/bin/tcsh\"]\nCMD [\"-l\"]\nOSRELEASE 14.3-RELEASE\nARG BASE=freebsd\nFROM ${BASE}:14.3\nRUN true\n");
    assert_eq!(file.stages[0].from.image.preview, "freebsd:14.3");
    assert_eq!(entrypoint_argv(&file), Some(strings(&["/bin/tcsh"])));
    let stage = file.final_stage().unwrap();
    assert_eq!(
        file.image_cmd(stage).map(|cmd| cmd.argv.clone()),
        Some(strings(&["-l"]))
    );
    assert_eq!(file.osrelease.unwrap().value.preview, "14.3-RELEASE");
}

#[test]
fn shell_and_exec_forms() {
    let file = parse_ok("FROM a\nCMD echo hi\nSHELL [\"/bin/bash\", \"-lc\"]\nENTRYPOINT exec app\nRUN [\"ls\", \"-l\"]\n");
    let stage = &file.stages[0];
    assert_eq!(file.image_cmd(stage).unwrap().argv, sh("echo hi"));
    assert_eq!(
        file.image_entrypoint(stage).unwrap().argv,
        strings(&["/bin/bash", "-lc", "exec app"])
    );
    assert_eq!(run_commands(stage), [strings(&["ls", "-l"])]);
}

#[test]
fn original_trailing_comments() {
    let text = "FROM a\nRUN \"pkg install h2o\"  # the web server\nENV A = \"b # c\" # note\nENTRYPOINT [ \"/bin/sh\" ] # shell\n";
    let file = parse_ok(text);
    let stage = &file.stages[0];
    assert_eq!(run_commands(stage), [sh("pkg install h2o")]);
    assert_eq!(env_pairs(stage)[0].2, "b # c");
    assert_eq!(entrypoint_argv(&file), Some(strings(&["/bin/sh"])));
    // A shell-form command keeps its comment for the shell.
    let file = parse_ok("FROM a\nRUN make # all\n");
    assert_eq!(run_commands(&file.stages[0]), [sh("make # all")]);
}

#[test]
fn original_unquoted_list_items() {
    let file = parse_ok("FROM a\nCMD [ -l , , \"x y\" ]\nENTRYPOINT [ /bin/sh , -c ]\n");
    let stage = file.final_stage().unwrap();
    assert_eq!(
        file.image_entrypoint(stage).unwrap().argv,
        strings(&["/bin/sh", "-c"])
    );
    assert_eq!(file.image_cmd(stage).unwrap().argv, strings(&["-l", "x y"]));
    // Without a comma the text stays a shell command, as in Docker.
    let file = parse_ok("FROM a\nCMD [ -d /x ]\n");
    let stage = file.final_stage().unwrap();
    assert_eq!(file.image_cmd(stage).unwrap().argv, sh("[ -d /x ]"));
}

#[test]
fn heredoc_bodies_attached() {
    let text = "FROM a\nRUN <<EOF\necho one\necho two\nEOF\nCOPY <<-EOT /etc/motd\n\thello\n\tEOT\nRUN echo after\n";
    let file = parse_ok(text);
    let stage = &file.stages[0];
    match &stage.instructions[0].kind {
        InstructionKind::Run(run) => {
            assert_eq!(run.heredocs.len(), 1);
            assert_eq!(run.heredocs[0].name, "EOF");
            assert_eq!(run.heredocs[0].content, "echo one\necho two\n");
        }
        other => panic!("expected RUN, got {other:?}"),
    }
    assert_eq!(stage.instructions[0].end_line, 5);
    match &stage.instructions[1].kind {
        InstructionKind::Copy(copy) => {
            assert_eq!(copy.contents.len(), 1);
            assert_eq!(copy.contents[0].name, "EOT");
            assert_eq!(copy.contents[0].content, "hello\n");
            assert!(copy.sources.is_empty());
            assert_eq!(copy.dest.preview, "/etc/motd");
        }
        other => panic!("expected COPY, got {other:?}"),
    }
    assert_eq!(stage.instructions[2].position, Position::new(9, 1));
}

// ---------------------------------------------------------------------------
// Bad input

#[test]
fn crlf_file_same_meaning() {
    let path = original("h2o/Cblockfile");
    let lf = fs::read_to_string(&path).unwrap();
    let crlf = lf.replace('\n', "\r\n");
    let from_lf = parse_ok(&lf);
    let from_crlf = parse_ok(&crlf);
    assert_eq!(from_crlf.stages.len(), from_lf.stages.len());
    for (a, b) in from_lf.stages.iter().zip(&from_crlf.stages) {
        assert_eq!(a.name, b.name);
        assert_eq!(run_commands(a), run_commands(b));
        assert_eq!(env_pairs(a), env_pairs(b));
    }
    assert_eq!(entrypoint_argv(&from_crlf), entrypoint_argv(&from_lf));

    let docker = fs::read_to_string(corpus().join("cases/docker/Dockerfile")).unwrap();
    let expected = fs::read_to_string(corpus().join("cases/docker/result")).unwrap();
    let tree =
        cblockfile::parse_syntax("Dockerfile", docker.replace('\n', "\r\n").as_bytes()).unwrap();
    assert_eq!(dump::dump(&tree.nodes).trim_end(), expected.trim_end());
}

#[test]
fn tab_between_words() {
    let file = parse_ok("FROM\tbase\tAS\tone\nENV\tA\t=\t1\nRUN\t\"echo\thi\"\nFROM\tscratch\nCOPY\t--from=one\t/a\t/b\n");
    assert_eq!(file.stages[0].name.as_deref(), Some("one"));
    assert_eq!(env_pairs(&file.stages[0])[0].2, "1");
    assert_eq!(run_commands(&file.stages[0]), [sh("echo\thi")]);
    match &file.stages[1].instructions[0].kind {
        InstructionKind::Copy(copy) => {
            assert_eq!(
                copy.from,
                Some(CopySource::Stage {
                    index: 0,
                    name: Some("one".into())
                })
            );
            assert_eq!(copy.dest.preview, "/b");
        }
        other => panic!("expected COPY, got {other:?}"),
    }
}

#[test]
fn unterminated_quote_has_position() {
    let (position, message) = parse_err("FROM a\nRUN \"pkg install h2o\n");
    assert_eq!(position, Position::new(2, 5), "{message}");
    assert!(message.contains("unterminated double-quoted"), "{message}");
    assert!(message.contains("add the closing \""), "{message}");

    let (position, message) = parse_err("FROM a\nENV A=\"b c\nRUN x\n");
    assert_eq!(position, Position::new(2, 7), "{message}");
    assert!(
        message.contains("unterminated double-quoted string"),
        "{message}"
    );

    let (position, message) = parse_err("FROM a\nLABEL x='open\n");
    assert_eq!(position, Position::new(2, 9), "{message}");
    assert!(message.contains("unterminated single-quoted"), "{message}");
}

#[test]
fn unterminated_bracket_has_position() {
    let (position, message) = parse_err("FROM a\nCMD [\"echo\", \"hi\"\n");
    assert_eq!(position, Position::new(2, 18), "{message}");
    assert!(message.contains("missing ']'"), "{message}");

    let (position, message) = parse_err("FROM a\nENTRYPOINT [\"/bin/sh\", \"-c\n");
    assert_eq!(position, Position::new(2, 24), "{message}");
    assert!(
        message.contains("unterminated string in the JSON array"),
        "{message}"
    );
}

#[test]
fn unterminated_heredoc_has_position() {
    let (position, message) = parse_err("FROM a\nRUN echo hi\nRUN cat <<EOF\nline\n");
    assert_eq!(position, Position::new(3, 9), "{message}");
    assert!(message.contains("unterminated heredoc"), "{message}");
    assert!(message.contains("EOF"), "{message}");
}

#[test]
fn megabyte_run_line_kept_whole() {
    let command = format!("echo {}", "x".repeat(1 << 20));
    let file = parse_ok(&format!("FROM a\nRUN {command}\nRUN \"{command}\"\n"));
    let runs = run_commands(&file.stages[0]);
    assert_eq!(runs[0], sh(&command));
    assert_eq!(runs[1], sh(&command));

    // The same through continuation lines.
    let chunk = "y".repeat(1 << 10);
    let lines: Vec<String> = (0..1024).map(|_| chunk.clone()).collect();
    let file = parse_ok(&format!("FROM a\nRUN {} \n", lines.join("\\\n")));
    assert_eq!(run_commands(&file.stages[0])[0][2].len(), 1 << 20);
}

#[test]
fn line_of_many_words_kept() {
    let sources: Vec<String> = (0..50_000).map(|i| format!("f{i}")).collect();
    let pairs: Vec<String> = (0..20_000).map(|i| format!("K{i}=v{i}")).collect();
    let text = format!(
        "FROM a\nCOPY {} /dest/\nENV {}\n",
        sources.join(" "),
        pairs.join(" ")
    );
    let file = parse_ok(&text);
    match &file.stages[0].instructions[0].kind {
        InstructionKind::Copy(copy) => {
            assert_eq!(copy.sources.len(), 50_000);
            assert_eq!(copy.sources[49_999].preview, "f49999");
            assert_eq!(copy.dest.position.line, 2);
        }
        other => panic!("expected COPY, got {other:?}"),
    }
    let env = env_pairs(&file.stages[0]);
    assert_eq!(env.len(), 20_000);
    assert_eq!(env[19_999].2, "v19999");
}

#[test]
fn nul_byte_rejected_with_position() {
    let err = cblockfile::parse("Cblockfile", b"FROM a\nRUN ec\0ho\n").unwrap_err();
    let diagnostic = err.diagnostic().expect("syntax error");
    assert_eq!(diagnostic.position, Position::new(2, 7));
    assert!(
        err.to_string().starts_with("Cblockfile:2:7: NUL byte"),
        "{err}"
    );
}

#[test]
fn invalid_utf8_rejected_with_position() {
    let err = cblockfile::parse("Cblockfile", b"FROM a\nRUN \xc3\xa9\xff\n").unwrap_err();
    let diagnostic = err.diagnostic().expect("syntax error");
    assert_eq!(diagnostic.position, Position::new(2, 6));
    assert!(err.to_string().contains("invalid UTF-8 byte 0xff"), "{err}");
}

#[test]
fn unknown_instruction_suggests_keyword() {
    let (position, message) = parse_err("FROM a\n  RUM echo hi\n");
    assert_eq!(position, Position::new(2, 3));
    assert!(
        message.starts_with("Cblockfile:2:3: unknown instruction \"RUM\""),
        "{message}"
    );
    assert!(message.contains("RUM echo hi"), "{message}");
    assert!(message.contains("did you mean RUN?"), "{message}");

    let (_, message) = parse_err("FROM a\nENTRYPIONT [\"x\"]\n");
    assert!(message.contains("did you mean ENTRYPOINT?"), "{message}");
}

#[test]
fn copy_from_other_name_is_image() {
    // As in Docker, a name that is no stage names an image; the build
    // reports a missing one with the stages (tests/build.rs).
    let file = cblocks::cblockfile::parse(
        "Cblockfile",
        b"FROM a AS one\nFROM b\nCOPY --from=tow /x /y\n",
    )
    .unwrap();
    let copy = &file.stages[1].instructions[0];
    assert!(
        format!("{:?}", copy.kind).contains("Image(\"tow\")"),
        "{:?}",
        copy.kind
    );
}

#[test]
fn copy_from_forward_reference() {
    let (position, message) = parse_err("FROM a\nCOPY --from=1 /x /y\nFROM b\n");
    assert_eq!(position, Position::new(2, 6), "{message}");
    assert!(message.contains("refers to a later stage"), "{message}");

    let (position, message) = parse_err("FROM a\nCOPY --from=Later /x /y\nFROM b AS later\n");
    assert_eq!(position, Position::new(2, 6), "{message}");
    assert!(
        message.contains("refers to a later stage (1, line 3)"),
        "{message}"
    );

    let (_, message) = parse_err("FROM a AS me\nCOPY --FROM me /x /y\n");
    assert!(message.contains("refers to this stage itself"), "{message}");
}

#[test]
fn other_checks_rejected() {
    let cases = [
        (
            "FROM a\nCOPY --user=me a b\n",
            "unknown flag \"--user=me\" for COPY",
        ),
        ("RUN echo\n", "RUN before the first FROM"),
        (
            "FROM a AS x\nFROM b AS X\n",
            "stage name \"X\" is already used",
        ),
        ("FROM a b\n", "FROM takes IMAGE [AS NAME]"),
        (
            "FROM a\nOSRELEASE 1\nOSRELEASE 2\n",
            "OSRELEASE is given twice",
        ),
        ("FROM a\nEXPOSE http\n", "invalid port \"http\""),
        ("FROM a\nSHELL /bin/sh -c\n", "SHELL needs a JSON array"),
        (
            "FROM a\nONBUILD ONBUILD RUN x\n",
            "ONBUILD cannot be an ONBUILD trigger",
        ),
        (
            "FROM a\nRUN --network=bridge x\n",
            "invalid RUN --network value",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=5 CMD x\n",
            "invalid duration \"5\"",
        ),
        ("FROM a\nENV X=${}\n", "bad substitution"),
        (
            "FROM a\nCOPY onlyone\n",
            "COPY needs a source and a destination",
        ),
        ("FROM a\nENV A =\n", "has no value after the '='"),
        ("# escape=x\nFROM a\n", "invalid escape character"),
        ("FROM a\nCOPY x <<EOF\nbody\nEOF\n", "cannot be a heredoc"),
        (
            "ENTRYPOINT [\"/bin/sh\"]\n",
            "the file has no FROM instruction",
        ),
    ];
    for (text, expected) in cases {
        let (_, message) = parse_err(text);
        assert!(message.contains(expected), "input {text:?}: {message}");
    }
}

#[test]
fn ignore_file_falls_back_to_dockerignore() {
    let dir = TempDir::new("ignore");
    dir.write(".dockerignore", b"*.log\n!keep.log\n");
    let patterns = cblockfile::ignore::Patterns::load(&dir.0).unwrap();
    assert!(patterns.is_excluded("a.log"));
    assert!(!patterns.is_excluded("keep.log"));

    dir.write(".cblockignore", b"target\n");
    let patterns = cblockfile::ignore::Patterns::load(&dir.0).unwrap();
    assert!(patterns.is_excluded("target/debug/x"));
    assert!(!patterns.is_excluded("a.log"));
}

// ---------------------------------------------------------------------------
// The command line

#[test]
fn cli_parse_dump_matches_corpus() {
    let case = corpus().join("cases/lk4d4-the-edge-case-generator");
    let output = cblock(&[
        "parse",
        "--format",
        "dump",
        case.join("Dockerfile").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let expected = fs::read_to_string(case.join("result")).unwrap();
    assert_eq!(stdout(&output).trim_end(), expected.trim_end());
}

#[test]
fn cli_parse_json_resolves_meaning() {
    let path = original("h2o/Cblockfile");
    let output = cblock(&["parse", "--format", "json", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(value["stages"][0]["name"], "go_builder");
    assert_eq!(value["stages"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        value["image"]["entrypoint"],
        serde_json::json!(["/usr/local/bin/h2o", "-c", "/h2o.conf"])
    );
    assert_eq!(
        value["auditcfg"]["value"]["classes"],
        serde_json::json!(["ex", "pc"])
    );
    let copy = &value["stages"][1]["instructions"][3]["kind"];
    assert_eq!(copy["instruction"], "copy");
    assert_eq!(copy["meaning"]["from"]["stage"]["index"], 0);
}

#[test]
fn cli_parse_errors_and_usage() {
    let dir = TempDir::new("cli-parse");
    let bad = dir.write("Cblockfile", b"FROM a\nRUM x\n");
    let output = cblock(&["parse", "--format", "json", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("Cblockfile:2:1: unknown instruction \"RUM\""),
        "{message}"
    );
    assert!(message.contains("did you mean RUN?"), "{message}");

    let output = cblock(&["parse", dir.0.join("missing").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot read"),
        "{}",
        stderr(&output)
    );

    let output = cblock(&["parse"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let output = cblock(&["parse", "--format", "yaml", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("use dump or json"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn cli_build_no_exec_checks_file() {
    let dir = TempDir::new("cli-build");
    let context = dir.0.to_str().unwrap();
    dir.write(
        "Dockerfile",
        b"FROM alpine AS base\nRUN true\nFROM base\nCOPY --from=base /x /y\n",
    );

    let output = cblock(&["build", "-N", "-n", "demo:1", context]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("2 stages"), "{}", stdout(&output));

    let output = cblock(&["build", "--no-exec", "--target", "base", context]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = cblock(&["build", "-N", "--target", "missing", context]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("build target \"missing\" is not a stage"),
        "{}",
        stderr(&output)
    );

    // A Cblockfile wins over the Dockerfile.
    dir.write("Cblockfile", b"FROM a\nRUN \"unterminated\n");
    let output = cblock(&["build", "-N", context]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("Cblockfile:2:5: unterminated double-quoted command"),
        "{}",
        stderr(&output)
    );

    let output = cblock(&["build", "-N", "-f", "Dockerfile", context]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    dir.write(".cblockignore", b"bad[\n");
    let output = cblock(&["build", "-N", "-f", "Dockerfile", context]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(".cblockignore:1:1: invalid pattern"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn cli_build_usage_errors() {
    let dir = TempDir::new("cli-build-usage");
    let context = dir.0.to_str().unwrap();
    dir.write("Cblockfile", b"FROM a\n");
    let cases: [&[&str]; 5] = [
        &["build", "-N"],
        &["build", "-N", "--bogus", context],
        &["build", "-N", "--build-arg", "NOVALUE", context],
        &["build", "-N", "--network", "bridge", context],
        &["build", "-N", "-n", "Bad Name", context],
    ];
    for args in cases {
        let output = cblock(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }

    let output = cblock(&["build", "-N", dir.0.join("Cblockfile").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("must be a directory"),
        "{}",
        stderr(&output)
    );

    // Past the checks the build starts, and fails on the missing base image
    // without leaving a build behind in its own data directory.
    let data_dir = TempDir::new("cli-build-data");
    let data = data_dir.0.join("data");
    let output = cblock(&["build", "-d", data.to_str().unwrap(), "-n", "demo", context]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("base image \"a\""),
        "{}",
        stderr(&output)
    );
    let builds: Vec<_> = std::fs::read_dir(data.join("builds"))
        .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(builds.is_empty(), "left behind: {builds:?}");
}

#[test]
fn word_expansion_against_build_vars() {
    struct Fixed;
    impl Vars for Fixed {
        fn var(&self, name: &str) -> Option<String> {
            (name == "HOME").then(|| "/root".to_string())
        }
    }
    let file = parse_ok("FROM a\nARG VERSION=1.2\nWORKDIR $HOME/src-${VERSION}\n");
    let workdir = match &file.stages[0].instructions[1].kind {
        InstructionKind::Workdir(word) => word.clone(),
        other => panic!("expected WORKDIR, got {other:?}"),
    };
    assert_eq!(workdir.preview, "$HOME/src-1.2");
    assert_eq!(workdir.expand(&Fixed).unwrap(), "/root/src-");
}
