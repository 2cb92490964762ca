//! airq's CloudFormation stack on the moto emulator (`AIRQ_TEST_AWS_ENDPOINT`;
//! `bash scripts/test.sh` starts it), driven by the real `airq-deploy`:
//! `provision --stack NAME --compute false` creates the data plane from the
//! template and prints its outputs and settings → the same again changes
//! nothing → `--upload-release DIR` puts a release in the stack's bucket and
//! points the stack at it → `destroy --stack NAME` refuses without a
//! terminal, then with `--yes` empties the bucket and deletes the stack.
//!
//! moto creates a stack at once and records only the stack's own events, so
//! this checks the commands' flow and what they print, not CloudFormation's
//! timing.

use airq_deploy::emulator;
use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one `airq-deploy` run may take here (moto answers at once).
const RUN_LIMIT: Duration = Duration::from_secs(180);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_airq-deploy"))
}

/// What one run printed, and whether it succeeded.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn both(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `airq-deploy ARGS` with no `AIRQ_*` variable of the test's
/// environment, no terminal, and at most [`RUN_LIMIT`].
fn deploy(args: &[&str]) -> Run {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AIRQ_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting airq-deploy: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).ok();
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped")));
    let err = reader(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for airq-deploy") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("airq-deploy {args:?} took over {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        ok: status.success(),
        stdout: out.join().expect("stdout"),
        stderr: err.join().expect("stderr"),
    }
}

fn succeeds(args: &[&str]) -> Run {
    let run = deploy(args);
    assert!(run.ok, "airq-deploy {args:?} failed:\n{}", run.both());
    run
}

/// A file that is, to its ELF header, an x86_64 Linux executable.
fn fake_binary(dir: &Path, name: &str) {
    let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    h.resize(18, 0);
    h.extend_from_slice(&62u16.to_le_bytes());
    h.resize(64, 0);
    h.extend_from_slice(name.as_bytes());
    std::fs::write(dir.join(name), h).expect("writing a fake binary");
}

/// The value of `export VAR=VALUE` in `out`.
fn exported(out: &str, var: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("export {var}=")))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_is_created_kept_released_and_destroyed() {
    let endpoint = emulator::endpoint();
    let clients = emulator::clients().await;
    let prefix = emulator::unique_prefix();
    let stack = format!("airq-{}", prefix.trim_end_matches('-'));
    let names = emulator::names(&prefix);
    let with = |head: &[&str]| -> Vec<String> {
        head.iter()
            .map(|s| s.to_string())
            .chain(
                [
                    "--stack",
                    &stack,
                    "--endpoint-url",
                    &endpoint,
                    "--aws-prefix",
                    &prefix,
                    "--stack-timeout",
                    "120s",
                ]
                .map(String::from),
            )
            .collect()
    };
    let run = |head: &[&str]| {
        let args = with(head);
        succeeds(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // 1. Create: the data plane only; it waits and prints the outputs. The
    // template asks for a VPC and subnets whatever Compute is (moto does not
    // check that they exist).
    let created = run(&[
        "provision",
        "--compute",
        "false",
        "--vpc-id",
        "vpc-0123456789abcdef0",
        "--subnet-ids",
        "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    ]);
    assert!(
        created
            .stdout
            .contains(&format!("stack {stack}: CREATE_COMPLETE")),
        "{}",
        created.both()
    );
    assert!(created.stdout.contains("BucketName"), "{}", created.both());
    assert!(
        created.stderr.contains("CREATE_COMPLETE"),
        "the stack's events are shown:\n{}",
        created.both()
    );
    let bucket = exported(&created.stdout, "AIRQ_BUCKET")
        .unwrap_or_else(|| panic!("no AIRQ_BUCKET in the settings:\n{}", created.both()));
    assert_eq!(
        exported(&created.stdout, "AIRQ_AWS_ENDPOINT_URL").as_deref(),
        Some(endpoint.as_str())
    );
    // What the settings name exists.
    for table in [
        &names.readings_table,
        &names.results_table,
        &names.receipts_table,
        &names.keys_table,
    ] {
        clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the stack made no table {table}: {e:?}"));
    }
    for (queue, dlq) in names.queues() {
        for q in [queue, dlq] {
            clients
                .sqs
                .get_queue_url()
                .queue_name(&q)
                .send()
                .await
                .unwrap_or_else(|e| panic!("the stack made no queue {q}: {e:?}"));
        }
    }
    clients
        .s3
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the stack made no bucket {bucket}: {e:?}"));

    // 2. The same again: nothing to update (or an update that completes).
    let again = run(&["provision", "--compute", "false"]);
    assert!(
        again.stderr.contains("nothing to update") || again.stdout.contains("UPDATE_COMPLETE"),
        "{}",
        again.both()
    );
    assert_eq!(
        exported(&again.stdout, "AIRQ_BUCKET").as_deref(),
        Some(bucket.as_str())
    );

    // 3. A release: uploaded to the stack's bucket, then the stack points at it.
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["airq-master", "airq-gateway", "airq-worker"] {
        fake_binary(dir.path(), name);
    }
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let released = run(&["provision", "--upload-release", dir_arg]);
    let version = released
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("release ")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no release line:\n{}", released.both()))
        .to_owned();
    assert!(
        version.starts_with(&format!("v{}-", env!("CARGO_PKG_VERSION"))),
        "{}",
        released.both()
    );
    assert!(
        released
            .stdout
            .contains(&format!("release {version} (x86_64)")),
        "{}",
        released.both()
    );
    for name in ["airq-master", "airq-gateway", "airq-worker"] {
        let key = format!("releases/{version}/x86_64/{name}");
        clients
            .s3
            .head_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("s3://{bucket}/{key} was not uploaded: {e:?}"));
    }
    // The stack holds each binary's digest (the instances check their
    // download against it), and it is protected from termination.
    let cfn = emulator::cloudformation().await;
    let described = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .expect("DescribeStacks");
    let s = &described.stacks()[0];
    assert_eq!(s.enable_termination_protection(), Some(true));
    for name in ["airq-master", "airq-gateway", "airq-worker"] {
        let body = std::fs::read(dir.path().join(name)).expect("binary");
        let sha: String = sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = match name {
            "airq-master" => "MasterSha256",
            "airq-gateway" => "GatewaySha256",
            _ => "WorkerSha256",
        };
        let value = s
            .parameters()
            .iter()
            .find(|p| p.parameter_key() == Some(key))
            .and_then(|p| p.parameter_value());
        assert_eq!(value, Some(sha.as_str()), "{key}");
    }
    // The same build again: found, and the stack already runs it.
    let same = run(&["provision", "--upload-release", dir_arg]);
    assert!(same.stderr.contains("found"), "{}", same.both());
    assert!(
        same.stdout.contains(&format!("release {version} (x86_64)")),
        "{}",
        same.both()
    );
    // Binaries of another architecture than the stack's are refused.
    let args = with(&[
        "provision",
        "--upload-release",
        dir_arg,
        "--architecture",
        "arm64",
    ]);
    let wrong = deploy(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !wrong.ok && wrong.stderr.contains("are x86_64"),
        "{}",
        wrong.both()
    );
    // A release that was never uploaded is refused before the stack changes.
    let missing = with(&["provision", "--release", "v-never-uploaded"]);
    let missing = deploy(&missing.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !missing.ok && missing.stderr.contains("not in the bucket"),
        "{}",
        missing.both()
    );

    // 4. A plain destroy (no --stack) refuses what the stack owns: it used
    // to delete the stack's tables, queues and bucket under it, the stack
    // still saying CREATE_COMPLETE. (`plain`: destroy without --stack, on
    // the same prefix.)
    let plain = |extra: &[&str]| {
        let mut args = vec![
            "destroy",
            "--yes",
            "--endpoint-url",
            &endpoint,
            "--aws-prefix",
            &prefix,
        ];
        args.extend_from_slice(extra);
        deploy(&args)
    };
    let refused = plain(&[]);
    assert!(
        !refused.ok
            && refused
                .stderr
                .contains(&format!("belongs to the CloudFormation stack {stack}"))
            && refused.stderr.contains("destroy --stack"),
        "{}",
        refused.both()
    );
    assert!(
        clients
            .dynamodb
            .describe_table()
            .table_name(&names.readings_table)
            .send()
            .await
            .is_ok(),
        "the refused destroy deleted nothing"
    );

    // 5. Destroy: refused without a terminal to confirm on, then done.
    let args = with(&["destroy"]);
    let refused = deploy(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !refused.ok && refused.stderr.contains("--yes"),
        "{}",
        refused.both()
    );
    let gone = run(&["destroy", "--yes"]);
    assert!(
        gone.stdout.contains(&format!("stack {stack} deleted")),
        "{}",
        gone.both()
    );
    assert!(
        gone.stderr.contains("emptied bucket"),
        "the release was deleted first:\n{}",
        gone.both()
    );
    assert!(
        clients
            .s3
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .is_err(),
        "the bucket went with the stack"
    );
    // The readings and keys tables outlive the stack, protected, and the
    // output says so.
    assert!(gone.stdout.contains("kept"), "{}", gone.both());
    for table in [&names.readings_table, &names.keys_table] {
        assert!(gone.stdout.contains(table.as_str()), "{}", gone.both());
        let kept = clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{table} was kept: {e:?}"));
        assert_eq!(
            kept.table.and_then(|t| t.deletion_protection_enabled),
            Some(true),
            "{table}"
        );
    }
    let twice = run(&["destroy", "--yes"]);
    assert!(twice.stdout.contains("does not exist"), "{}", twice.both());
    // No stack owns them now: a plain destroy deletes them on purpose, and
    // only with --delete-data.
    let protected = plain(&[]);
    assert!(
        !protected.ok && protected.stderr.contains("--delete-data"),
        "{}",
        protected.both()
    );
    let deleted = plain(&["--delete-data"]);
    assert!(deleted.ok, "{}", deleted.both());
    for table in [&names.readings_table, &names.keys_table] {
        assert!(
            clients
                .dynamodb
                .describe_table()
                .table_name(table)
                .send()
                .await
                .is_err(),
            "{table} deleted on purpose"
        );
    }
}
