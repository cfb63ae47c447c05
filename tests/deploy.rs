//! The scale-out examples (Dockerfile, deploy/ for Kubernetes, Slurm and GitHub Actions,
//! docs/scale-out.md): each parses, has the structure its scheduler needs, and every
//! `edgebench` command line in them uses only subcommands and flags the binary has.
//!
//! Schema checks beyond these (not run by `cargo test`; both tools ship their schemas):
//!   python3 -m kubernetes_validate --strict deploy/kubernetes/*.yaml
//!   check-jsonschema --builtin-schema vendor.github-workflows deploy/github-actions/*.yml

mod common;

use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn read(rel: &str) -> String {
    std::fs::read_to_string(common::repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `v` as a string; `path` names it on failure.
fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {v:?}"))
}

/// The value at a `.`-separated path (`spec.template.spec`; an index for a sequence).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for key in path.split('.') {
        cur = match key.parse::<usize>() {
            Ok(i) if cur.is_sequence() => &cur[i],
            _ => &cur[key],
        };
        assert!(!cur.is_null(), "{path}: `{key}` is missing");
    }
    cur
}

/// One Dockerfile instruction: its keyword (upper case) and arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    op: String,
    args: String,
    line: usize,
}

/// Parses a Dockerfile: comments and blank lines dropped (also inside a continued
/// instruction, as Docker does), `\`-continued lines joined; an unknown keyword panics.
fn dockerfile(text: &str) -> Vec<Instruction> {
    const OPS: [&str; 18] = [
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
        "MAINTAINER",
    ];
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        let continued = t.ends_with('\\');
        acc.push_str(t.trim_end_matches('\\').trim_end());
        acc.push(' ');
        if continued {
            pending = Some((start, acc));
            continue;
        }
        let acc = acc.trim();
        let (op, args) = acc.split_once(char::is_whitespace).unwrap_or((acc, ""));
        let op = op.to_ascii_uppercase();
        assert!(
            OPS.contains(&op.as_str()),
            "Dockerfile:{start}: unknown instruction {op}"
        );
        out.push(Instruction {
            op,
            args: args.trim().to_string(),
            line: start,
        });
    }
    assert!(pending.is_none(), "Dockerfile ends inside a continued line");
    out
}

/// `major.minor` of a version string.
fn minor_version(v: &str) -> (u32, u32) {
    let mut parts = v
        .split('.')
        .map(|p| p.parse::<u32>().expect("a version number"));
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

/// Whether a `.dockerignore` pattern excludes `path` (relative to the context, `/`-separated).
fn ignored(pattern: &str, path: &str) -> bool {
    let p = pattern.trim().trim_start_matches('/').trim_end_matches('/');
    if let Some(rest) = p.strip_prefix("**/") {
        return path == rest
            || path.starts_with(&format!("{rest}/"))
            || path.ends_with(&format!("/{rest}"))
            || path.contains(&format!("/{rest}/"));
    }
    assert!(
        !p.contains(['*', '?', '[']),
        "pattern `{p}`: this test reads no other globs"
    );
    path == p || path.starts_with(&format!("{p}/"))
}

/// Paths (relative to the repository) that `include_str!`/`include_bytes!` read in `dir`'s sources.
fn included_files(dir: &Path, out: &mut BTreeSet<String>) {
    let root = common::repo();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            included_files(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for macro_ in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in text.match_indices(macro_) {
                let rest = &text[at + macro_.len()..];
                let rel = &rest[..rest.find('"').unwrap()];
                let file = path.parent().unwrap().join(rel);
                let mut parts: Vec<String> = Vec::new();
                for c in file.strip_prefix(&root).unwrap().components() {
                    match c {
                        std::path::Component::ParentDir => {
                            parts.pop();
                        }
                        std::path::Component::Normal(n) => {
                            parts.push(n.to_string_lossy().into_owned())
                        }
                        _ => {}
                    }
                }
                out.insert(parts.join("/"));
            }
        }
    }
}

#[test]
fn dockerfile_builds_as_the_readme_says_and_carries_what_the_binary_reads() {
    let text = read("Dockerfile");
    let all = dockerfile(&text);
    let stages: Vec<&[Instruction]> = {
        let starts: Vec<usize> = (0..all.len()).filter(|&i| all[i].op == "FROM").collect();
        assert_eq!(starts.len(), 2, "a build stage and a runtime stage");
        assert_eq!(starts[0], 0, "Dockerfile:{}: FROM comes first", all[0].line);
        vec![&all[..starts[1]], &all[starts[1]..]]
    };
    let (build, runtime) = (stages[0], stages[1]);

    // the build stage: a Rust image at least as new as the workspace's rust-version
    let from: Vec<&str> = build[0].args.split_whitespace().collect();
    assert_eq!(from.len(), 3, "FROM rust:<version>-<os> AS build: {from:?}");
    assert!(from[1].eq_ignore_ascii_case("AS"));
    let stage = from[2];
    let tag = from[0]
        .strip_prefix("rust:")
        .expect("the build stage is a rust image");
    let image = minor_version(tag.split('-').next().unwrap());
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let msrv = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    assert!(
        image >= minor_version(msrv),
        "rust:{tag} is older than rust-version {msrv}"
    );

    // the README's build command, with the lock file as committed
    let readme = read("README.md");
    assert!(
        readme.contains("cargo build --release"),
        "README's build command moved"
    );
    let runs: Vec<&Instruction> = build.iter().filter(|i| i.op == "RUN").collect();
    assert!(
        runs.iter()
            .any(|r| r.args.contains("cargo build --release --locked")),
        "no RUN with `cargo build --release --locked`: {runs:?}"
    );
    let workdir = build
        .iter()
        .rfind(|i| i.op == "WORKDIR")
        .map(|i| i.args.as_str())
        .expect("the build stage sets WORKDIR");

    // the runtime stage: the binary from the build stage, as the entry point
    let copies: Vec<Vec<&str>> = runtime
        .iter()
        .filter(|i| i.op == "COPY")
        .map(|i| i.args.split_whitespace().collect())
        .collect();
    assert!(
        copies.iter().any(|c| c[0] == format!("--from={stage}")
            && c[1].ends_with("/edgebench")
            && c[2] == "/usr/local/bin/edgebench"),
        "the binary is copied from stage {stage}: {copies:?}"
    );
    let entry = runtime
        .iter()
        .find(|i| i.op == "ENTRYPOINT")
        .expect("an ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(&entry.args).expect("ENTRYPOINT in JSON form");
    assert_eq!(entry, ["edgebench"]);
    // suites are compiled in; the bundled fixtures (the default data root) and the device
    // profiles are read at run time from the build's source folder (the binary's
    // CARGO_MANIFEST_DIR), so they go to the same path in the runtime image
    for folder in ["fixtures", "devices"] {
        assert!(
            copies
                .iter()
                .any(|c| c.len() == 2 && c[0] == folder && c[1] == format!("{workdir}/{folder}")),
            "COPY {folder} {workdir}/{folder} is missing: {copies:?}"
        );
    }
    let user = runtime.iter().rfind(|i| i.op == "USER").expect("a USER");
    assert_ne!(user.args, "root");
    assert_ne!(user.args, "0");

    // .dockerignore keeps build outputs out, and nothing the build reads
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in [
        "target",
        "target-aarch64",
        "reports/runs",
        "reports/models",
        "models",
    ] {
        assert!(
            patterns.iter().any(|p| ignored(p, must)),
            ".dockerignore does not exclude {must}"
        );
    }
    let mut needed: BTreeSet<String> = BTreeSet::new();
    for dir in ["src", "crates"] {
        included_files(&common::repo().join(dir), &mut needed);
    }
    assert!(needed.len() >= 5, "include_str! paths: {needed:?}");
    needed.extend(
        [
            "Cargo.toml",
            "Cargo.lock",
            "build.rs",
            "suites",
            "fixtures",
            "devices",
            ".git",
        ]
        .map(String::from),
    );
    for path in &needed {
        assert!(
            common::repo().join(path).exists() || path == ".git",
            "{path} does not exist"
        );
        if let Some(p) = patterns.iter().find(|p| ignored(p, path)) {
            panic!(".dockerignore pattern `{p}` excludes {path}, which the build reads");
        }
    }
}

/// The environment of a container, by name.
fn env_of(container: &Value) -> BTreeMap<String, String> {
    at(container, "env")
        .as_sequence()
        .expect("env is a list")
        .iter()
        .map(|e| {
            (
                s(&e["name"], "env.name").into(),
                s(&e["value"], "env.value").into(),
            )
        })
        .collect()
}

/// The shell script a container runs (`command: [/bin/sh, -c, script]`).
fn script_of(container: &Value) -> String {
    let cmd: Vec<&str> = at(container, "command")
        .as_sequence()
        .expect("command is a list")
        .iter()
        .map(|v| s(v, "command"))
        .collect();
    assert_eq!(cmd[..2], ["/bin/sh", "-c"], "{cmd:?}");
    cmd[2].to_string()
}

#[test]
fn kubernetes_indexed_job_runs_each_shard_once_and_the_merge_job_reads_them() {
    let job = yaml("deploy/kubernetes/indexed-job.yaml");
    assert_eq!(s(at(&job, "apiVersion"), "apiVersion"), "batch/v1");
    assert_eq!(s(at(&job, "kind"), "kind"), "Job");
    assert_eq!(
        s(at(&job, "spec.completionMode"), "completionMode"),
        "Indexed"
    );
    let completions = at(&job, "spec.completions").as_u64().unwrap();
    assert!(completions > 1);
    assert_eq!(at(&job, "spec.parallelism").as_u64(), Some(completions));
    // backoffLimitPerIndex needs it
    assert_eq!(
        s(
            at(&job, "spec.template.spec.restartPolicy"),
            "restartPolicy"
        ),
        "Never"
    );
    let pod = at(&job, "spec.template.spec");
    let containers = at(pod, "containers").as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let env = env_of(c);
    assert_eq!(env["EDGEBENCH_SHARDS"], completions.to_string());
    let script = script_of(c);
    assert!(
        script.contains("edgebench run --shard auto --run-id \"$RUN_ID\""),
        "{script}"
    );
    assert!(script.contains("--resume \"$shard\""), "{script}");
    // JOB_COMPLETION_INDEX counts from 0, shard folders from 1
    assert!(
        script.contains("$RUN_ID-shard-$((JOB_COMPLETION_INDEX + 1))-of-$EDGEBENCH_SHARDS"),
        "{script}"
    );

    let mounts: BTreeMap<&str, (&str, bool)> = at(c, "volumeMounts")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            (
                s(&m["name"], "volumeMounts.name"),
                (
                    s(&m["mountPath"], "mountPath"),
                    m["readOnly"].as_bool().unwrap_or(false),
                ),
            )
        })
        .collect();
    let claims: BTreeMap<&str, (&str, bool)> = at(pod, "volumes")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            let pvc = &v["persistentVolumeClaim"];
            (
                s(&v["name"], "volumes.name"),
                (
                    s(&pvc["claimName"], "claimName"),
                    pvc["readOnly"].as_bool().unwrap_or(false),
                ),
            )
        })
        .collect();
    assert_eq!(
        mounts.keys().collect::<Vec<_>>(),
        claims.keys().collect::<Vec<_>>()
    );
    // model and data read-only, at the paths the command reads; results writable
    for (volume, var) in [("model", "MODEL"), ("data", "EDGEBENCH_DATA")] {
        assert_eq!(mounts[volume], (env[var].as_str(), true), "{volume}");
        assert!(claims[volume].1, "the {volume} claim is mounted read-only");
    }
    assert_eq!(mounts["results"], (env["OUT"].as_str(), false));
    assert!(!claims["results"].1);

    // every pod writes to the results claim at once: ReadWriteMany
    let pvc = yaml("deploy/kubernetes/results-pvc.yaml");
    assert_eq!(s(at(&pvc, "kind"), "kind"), "PersistentVolumeClaim");
    assert_eq!(s(at(&pvc, "metadata.name"), "name"), claims["results"].0);
    let modes: Vec<&str> = at(&pvc, "spec.accessModes")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| s(m, "accessModes"))
        .collect();
    assert_eq!(modes, ["ReadWriteMany"]);

    // the merge Job: same image and results claim, the shards of the same run id
    let merge = yaml("deploy/kubernetes/merge-job.yaml");
    assert_eq!(s(at(&merge, "kind"), "kind"), "Job");
    assert!(at(&merge, "spec").get("completionMode").is_none());
    let mpod = at(&merge, "spec.template.spec");
    let mc = &at(mpod, "containers").as_sequence().unwrap()[0];
    assert_eq!(at(mc, "image"), at(c, "image"));
    let menv = env_of(mc);
    assert_eq!(menv["RUN_ID"], env["RUN_ID"]);
    let mscript = script_of(mc);
    assert!(
        mscript.contains("edgebench merge \"$RUN_ID-shard-*\" --run-id \"$RUN_ID\" --out \"$OUT\""),
        "{mscript}"
    );
    let mmount = &at(mc, "volumeMounts").as_sequence().unwrap()[0];
    assert_eq!(s(&mmount["mountPath"], "mountPath"), menv["OUT"]);
    assert_ne!(mmount["readOnly"].as_bool(), Some(true));
    let mvol = &at(mpod, "volumes").as_sequence().unwrap()[0];
    assert_eq!(
        s(&mvol["persistentVolumeClaim"]["claimName"], "claimName"),
        claims["results"].0
    );
    // the manifests' security context matches the image's user
    let user = dockerfile(&read("Dockerfile"))
        .into_iter()
        .rfind(|i| i.op == "USER")
        .unwrap()
        .args;
    for p in [pod, mpod] {
        assert_eq!(
            at(p, "securityContext.runAsUser")
                .as_u64()
                .map(|u| u.to_string()),
            Some(user.clone())
        );
    }
}

/// `#SBATCH` options of a batch script, by name.
fn sbatch_options(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("#SBATCH "))
        .map(|o| {
            let (k, v) = o.trim().split_once('=').unwrap_or((o.trim(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Checks the shell syntax of `rel` with `bash -n` (where bash is installed).
fn bash_syntax(rel: &str) {
    match Command::new("bash")
        .arg("-n")
        .arg(common::repo().join(rel))
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "{rel}: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("skipping bash -n {rel}: {e}"),
    }
}

#[test]
fn slurm_array_runs_a_shard_per_task_and_the_merge_waits_for_all() {
    let batch = read("deploy/slurm/edgebench-array.sbatch");
    assert!(batch.starts_with("#!/bin/bash\n"));
    let opts = sbatch_options(&batch);
    let (first, last) = opts["--array"].split_once('-').expect("--array=1-N");
    assert_eq!(first, "1");
    assert!(last.parse::<usize>().unwrap() > 1);
    assert!(opts.contains_key("--cpus-per-task"), "{opts:?}");
    // the task's threads are the CPUs Slurm gave it
    assert!(batch.contains("THREADS=${SLURM_CPUS_PER_TASK:-"), "{batch}");
    assert!(
        batch.contains("edgebench run --shard auto --run-id \"$RUN_ID\""),
        "{batch}"
    );
    assert!(
        batch.contains(
            "$RUN_ID-shard-$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0} + 1))-of-$SLURM_ARRAY_TASK_COUNT"
        ),
        "{batch}"
    );
    let submit = read("deploy/slurm/submit.sh");
    assert!(submit.contains("--array=\"1-$SHARDS\""), "{submit}");
    assert!(
        submit.contains("--dependency=\"afterok:$array\""),
        "{submit}"
    );
    assert!(
        submit.contains("edgebench merge '$RUN_ID-shard-*' --run-id '$RUN_ID' --out '$OUT'"),
        "{submit}"
    );
    for rel in [
        "deploy/slurm/edgebench-array.sbatch",
        "deploy/slurm/submit.sh",
    ] {
        bash_syntax(rel);
    }
}

#[test]
fn github_actions_matrix_uploads_each_shard_and_merges_them() {
    let rel = "deploy/github-actions/edgebench-shards.yml";
    let wf = yaml(rel);
    let shards: usize = at(&wf, "env.SHARDS").as_u64().unwrap() as usize;
    assert!(!common::repo()
        .join(".github/workflows/edgebench-shards.yml")
        .exists());
    let jobs = at(&wf, "jobs");
    let build_runs: Vec<&str> = at(jobs, "build.steps")
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|st| st["run"].as_str())
        .collect();
    assert_eq!(build_runs, ["cargo build --release --locked"]);

    let job = at(jobs, "shards");
    assert_eq!(s(at(job, "needs"), "needs"), "build");
    assert_eq!(at(job, "strategy.fail-fast").as_bool(), Some(false));
    let matrix: Vec<u64> = at(job, "strategy.matrix.shard")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(matrix, (1..=shards as u64).collect::<Vec<_>>());
    let steps = at(job, "steps").as_sequence().unwrap();
    let run = steps
        .iter()
        .find_map(|st| st["run"].as_str())
        .expect("a run step");
    assert!(
        run.contains("edgebench run --shard \"${{ matrix.shard }}/$SHARDS\" --run-id \"$RUN_ID\""),
        "{run}"
    );
    let folder = "${{ env.RUN_ID }}-shard-${{ matrix.shard }}-of-${{ env.SHARDS }}";
    let upload = steps
        .iter()
        .find(|st| st["uses"].as_str() == Some("actions/upload-artifact@v4"))
        .expect("an upload step");
    // the artifact's name is the run folder's, so the merge job unpacks each into its folder
    assert_eq!(s(&upload["with"]["name"], "name"), folder);
    assert_eq!(
        s(&upload["with"]["path"], "path"),
        format!("reports/runs/{folder}")
    );

    let merge = at(jobs, "merge");
    assert_eq!(s(at(merge, "needs"), "needs"), "shards");
    let msteps = at(merge, "steps").as_sequence().unwrap();
    let download = msteps
        .iter()
        .find(|st| st["with"]["pattern"].is_string())
        .expect("a download step for the shards");
    assert_eq!(
        s(&download["with"]["pattern"], "pattern"),
        "${{ env.RUN_ID }}-shard-*"
    );
    assert_eq!(s(&download["with"]["path"], "path"), "reports/runs");
    assert!(download["with"].get("merge-multiple").is_none());
    let mrun = msteps
        .iter()
        .find_map(|st| st["run"].as_str())
        .expect("a merge step");
    assert!(
        mrun.contains("edgebench merge \"$RUN_ID-shard-*\" --run-id \"$RUN_ID\" --out reports"),
        "{mrun}"
    );
}

/// Subcommands the examples and docs/scale-out.md may use, with their flags.
fn interface() -> BTreeMap<&'static str, Vec<&'static str>> {
    // on every subcommand
    let global = [
        "--out",
        "--data-dir",
        "--suites-dir",
        "--suite-file",
        "--threads",
        "--lowering",
        "--max-isa",
        "--no-fuse-attention",
        "--no-dense",
        "--help",
    ];
    let with = |own: &[&'static str]| own.iter().chain(&global).copied().collect::<Vec<_>>();
    BTreeMap::from([
        (
            "run",
            with(&[
                "--model",
                "--suites",
                "--limit",
                "--seed",
                "--run-id",
                "--shard",
                "--costs-from",
                "--resume",
                "--quiet",
                "--json",
                "--bootstrap",
            ]),
        ),
        (
            "merge",
            with(&["--run-id", "--allow-partial", "--quiet", "--json"]),
        ),
        (
            "plan",
            with(&[
                "--model",
                "--suites",
                "--limit",
                "--seed",
                "--shards",
                "--from",
                "--costs-from",
            ]),
        ),
        ("rescore", with(&["--bootstrap", "--json"])),
    ])
}

/// Texts that hold command lines: scripts and manifests whole, Markdown's code only.
fn command_texts() -> Vec<(String, String)> {
    let mut out = vec![("Dockerfile".to_string(), read("Dockerfile"))];
    for dir in ["deploy/kubernetes", "deploy/slurm", "deploy/github-actions"] {
        let mut files: Vec<_> = std::fs::read_dir(common::repo().join(dir))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let rel = f
                .strip_prefix(common::repo())
                .unwrap()
                .display()
                .to_string();
            out.push((rel.clone(), read(&rel)));
        }
    }
    let doc = read("docs/scale-out.md");
    let mut code = String::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            code.push_str(line);
            code.push('\n');
        } else {
            // inline code spans, one per line
            for (i, span) in line.split('`').enumerate() {
                if i % 2 == 1 {
                    code.push_str(span);
                    code.push('\n');
                }
            }
        }
    }
    out.push(("docs/scale-out.md".into(), code));
    out
}

/// Every `edgebench <subcommand> ...` in `text` as (subcommand, flags), lines continued
/// with `\` joined; a command ends at `;`, `&&`, `||`, `|`, `#` or the line's end.
fn command_lines(text: &str) -> Vec<(String, Vec<String>)> {
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        for (i, t) in tokens.iter().enumerate() {
            let t = t.trim_matches(|c| c == '"' || c == '\'' || c == '(');
            if t != "edgebench" && !t.ends_with("/edgebench") {
                continue;
            }
            let Some(sub) = tokens.get(i + 1) else {
                continue;
            };
            if !sub.chars().all(|c| c.is_ascii_lowercase()) || sub.is_empty() {
                continue; // an image name, a path, a flag of another command
            }
            let mut flags = Vec::new();
            for tok in &tokens[i + 2..] {
                if [";", "&&", "||", "|", "&"].contains(tok) || tok.starts_with('#') {
                    break;
                }
                let tok = tok.trim_matches(|c| c == '"' || c == '\'');
                if tok.starts_with("--") {
                    flags.push(tok.split('=').next().unwrap().to_string());
                }
            }
            out.push((sub.to_string(), flags));
        }
    }
    out
}

#[test]
fn command_lines_use_only_the_sharding_interface() {
    let allowed = interface();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in command_texts() {
        for (sub, flags) in command_lines(&text) {
            let Some(known) = allowed.get(sub.as_str()) else {
                panic!("{file}: `edgebench {sub}` is not a subcommand these examples may use");
            };
            for f in &flags {
                assert!(
                    known.contains(&f.as_str()),
                    "{file}: `edgebench {sub}` has no flag {f}"
                );
            }
            seen.entry(sub).or_default().extend(flags);
        }
    }
    // the extraction found the commands the examples are about
    for (sub, flag) in [
        ("run", "--shard"),
        ("run", "--resume"),
        ("merge", "--run-id"),
        ("merge", "--allow-partial"),
        ("plan", "--shards"),
        ("plan", "--from"),
    ] {
        assert!(
            seen.get(sub).is_some_and(|f| f.contains(flag)),
            "no `edgebench {sub} {flag}` found: {seen:?}"
        );
    }

    // and the binary has them
    let bin = env!("CARGO_BIN_EXE_edgebench");
    let help = |sub: &str| Command::new(bin).args([sub, "--help"]).output().unwrap();
    for (sub, flags) in &seen {
        let out = help(sub);
        assert!(out.status.success(), "edgebench {sub} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        for f in flags {
            assert!(
                text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .any(|w| w == f),
                "`edgebench {sub} --help` does not list {f}"
            );
        }
    }
}

/// Copies the folder `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Runs `program args` in `cwd` with `env` added; panics, with its output, unless it succeeds.
fn succeed(program: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .env_remove("EDGEBENCH_SUITES_PATH")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} {env:?}: {text}");
    text
}

/// The shard scripts of deploy/ run as their schedulers would start them (the schedulers'
/// variables set, `edgebench` on PATH), and their merge steps give the one-process run.
#[cfg(unix)]
#[test]
fn the_shard_scripts_run_and_merge_into_the_one_process_run() {
    let bin = Path::new(env!("CARGO_BIN_EXE_edgebench"));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // three suites of the bundled fixtures (multiple choice, retrieval: one unit, generation);
    // the others are reported missing and skipped
    let data = root.join("data");
    for f in [
        "commonsense-commonsenseqa",
        "multilingual-xtreme-bucc",
        "stem-scierc",
    ] {
        copy_dir(&common::repo().join("fixtures").join(f), &data.join(f));
    }
    let out = root.join("out");
    let (data_s, out_s) = (data.display().to_string(), out.display().to_string());
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let base = [
        ("PATH", path.as_str()),
        ("MODEL", "builtin:tiny"),
        ("EDGEBENCH_DATA", data_s.as_str()),
        ("OUT", out_s.as_str()),
        ("THREADS", "1"),
    ];
    let with = |more: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        base.iter().copied().chain(more.iter().copied()).collect()
    };
    let metrics = |id: &str| read_abs(&out.join("runs").join(id).join("metrics.csv"));

    let bin_s = bin.display().to_string();
    succeed(
        &bin_s,
        &[
            "run",
            "--run-id",
            "one",
            "--model",
            "builtin:tiny",
            "--out",
            &out_s,
            "--data-dir",
            &data_s,
            "--threads",
            "1",
            "--quiet",
        ],
        root,
        &[],
    );
    let one = metrics("one");
    assert!(one.lines().count() > 3, "{one}");

    // Kubernetes: the pods of the Indexed Job, a retried pod, then the merge Job
    let job = yaml("deploy/kubernetes/indexed-job.yaml");
    let pod_script = script_of(
        &at(&job, "spec.template.spec.containers")
            .as_sequence()
            .unwrap()[0],
    );
    for index in ["0", "1", "2"] {
        let env = with(&[
            ("JOB_COMPLETION_INDEX", index),
            ("EDGEBENCH_SHARDS", "3"),
            ("RUN_ID", "k8s"),
        ]);
        succeed("sh", &["-c", &pod_script], root, &env);
    }
    assert!(out.join("runs/k8s-shard-3-of-3/run.json").is_file());
    let records = |id: &str| {
        read_abs(
            &out.join("runs")
                .join(id)
                .join("records/commonsenseqa.jsonl"),
        )
    };
    let before = records("k8s-shard-2-of-3");
    let env = with(&[
        ("JOB_COMPLETION_INDEX", "1"),
        ("EDGEBENCH_SHARDS", "3"),
        ("RUN_ID", "k8s"),
    ]);
    succeed("sh", &["-c", &pod_script], root, &env);
    assert_eq!(
        records("k8s-shard-2-of-3"),
        before,
        "a retried pod resumes its shard"
    );
    let merge = yaml("deploy/kubernetes/merge-job.yaml");
    let merge_script = script_of(
        &at(&merge, "spec.template.spec.containers")
            .as_sequence()
            .unwrap()[0],
    );
    succeed(
        "sh",
        &["-c", &merge_script],
        root,
        &with(&[("RUN_ID", "k8s")]),
    );
    assert_eq!(metrics("k8s"), one);

    // Slurm: tasks 5 and 6 of an array that starts at 5, then submit.sh with a stand-in
    // sbatch that records its arguments and runs the merge job's --wrap command
    let sbatch = common::repo().join("deploy/slurm/edgebench-array.sbatch");
    for id in ["5", "6"] {
        let env = with(&[
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_CPUS_PER_TASK", "1"),
            ("RUN_ID", "slurm"),
        ]);
        succeed("bash", &[&sbatch.display().to_string()], root, &env);
    }
    let fake = root.join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let log = root.join("sbatch.log");
    std::fs::write(
        fake.join("sbatch"),
        format!(
            "#!/bin/bash\necho \"$*\" >> '{}'\nfor a in \"$@\"; do case $a in --wrap=*) bash -c \"${{a#--wrap=}}\" >&2 || exit 1;; esac; done\necho '42;cluster'\n",
            log.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(fake.join("sbatch"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let fake_path = format!("{}:{path}", fake.display());
    let mut env = with(&[("RUN_ID", "slurm"), ("SHARDS", "2")]);
    env[0] = ("PATH", fake_path.as_str());
    let said = succeed(
        "bash",
        &[&common::repo()
            .join("deploy/slurm/submit.sh")
            .display()
            .to_string()],
        root,
        &env,
    );
    assert!(
        said.contains("array job 42 (2 shards), merge job 42:"),
        "{said}"
    );
    let calls = read_abs(&log);
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].contains("--array=1-2") && calls[0].ends_with("edgebench-array.sbatch"));
    assert!(calls[1].contains("--dependency=afterok:42"), "{}", calls[1]);
    assert_eq!(metrics("slurm"), one);
}

fn read_abs(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
