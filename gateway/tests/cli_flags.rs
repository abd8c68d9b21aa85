//! The binary's flags and environment variables for the HTTP proxy bounds, the private-address
//! check, the drain, the webhook and the per-connection queue reach the configuration: a value it refuses makes the
//! binary exit with an error naming the key instead of starting.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary and returns its stderr once it has exited with an error.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = std::env::temp_dir().join(format!("mpush-gateway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpush-gateway"))
        .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .arg("--key-file")
        .arg(dir.join("key.toml"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} {env:?}: the gateway started instead of refusing the value");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    // 2: a value that does not parse; 1: one the configuration refuses.
    assert!(matches!(status.code(), Some(1 | 2)), "exit {status}, stderr: {stderr}");
    stderr
}

#[test]
fn http_proxy_drain_and_webhook_keys_from_flags_and_environment() {
    let invalid = "must be > 0";
    for (args, env) in [
        (&["--max-in-flight", "0"][..], &[][..]),
        (&["--max-read-timeout", "0"], &[]),
        (&[], &[("MPUSH_GATEWAY_MAX_IN_FLIGHT", "0")]),
        (&[], &[("MPUSH_GATEWAY_MAX_READ_TIMEOUT", "0")]),
        (&[], &[("MPUSH_GATEWAY_WEBHOOK_QUEUE", "0")]),
    ] {
        let stderr = refused(args, env);
        assert!(stderr.contains(invalid), "{args:?} {env:?}: {stderr}");
    }
    for name in ["MPUSH_GATEWAY_DENY_PRIVATE_ADDRESSES", "MPUSH_GATEWAY_DRAIN_TIMEOUT"] {
        let stderr = refused(&[], &[(name, "soon")]);
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[test]
fn max_queued_commands_from_flag_and_environment() {
    let out_of_range = "max-queued-commands must be 1 to 1048576";
    for (args, env) in
        [(&["--max-queued-commands", "0"][..], &[][..]), (&[], &[("MPUSH_GATEWAY_MAX_QUEUED_COMMANDS", "2000000")])]
    {
        let stderr = refused(args, env);
        assert!(stderr.contains(out_of_range), "{args:?} {env:?}: {stderr}");
    }
    let stderr = refused(&[], &[("MPUSH_GATEWAY_MAX_QUEUED_COMMANDS", "lots")]);
    assert!(stderr.contains("MPUSH_GATEWAY_MAX_QUEUED_COMMANDS"), "{stderr}");
}
