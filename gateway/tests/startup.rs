//! An operator's errors at start: one line on stderr and a non-zero exit,
//! never a panic or a half-started node.

mod common;

use common::*;
use std::net::TcpListener;

/// Runs the gateway with every listener on a free port but `which`, which
/// is taken, and asserts how it fails.
fn start_with_taken(which: &str, driver: Driver) {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let addr = taken.local_addr().unwrap().to_string();
    let mut args = vec!["--driver", driver.name(), "--jwt-secret", SECRET];
    for flag in ["--ws-listen", "--tcp-listen", "--admin-listen"] {
        let value = if flag == which { &addr } else { "127.0.0.1:0" };
        args.extend([flag, value]);
    }
    let out = run_cli(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{which} taken, yet {:?}", out.status);
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    assert!(out.stdout.is_empty(), "a ready line? {:?}", out.stdout);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    assert!(
        lines[0].contains(&addr),
        "the line names {addr}: {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn port_taken(driver: Driver) {
    for which in ["--ws-listen", "--tcp-listen", "--admin-listen"] {
        start_with_taken(which, driver);
    }
}

fn bad_config_is_one_line(driver: Driver) {
    let out = run_cli(&["--driver", driver.name(), "--no-such-flag"]);
    assert!(!out.status.success());
    let config = std::env::temp_dir().join(format!(
        "gateway-bad-config-{}-{}.toml",
        std::process::id(),
        driver.name()
    ));
    std::fs::write(&config, "[limits]\nno_such_key = 1\n").unwrap();
    let out = run_cli(&[
        "--config",
        config.to_str().unwrap(),
        "--driver",
        driver.name(),
    ]);
    std::fs::remove_file(&config).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.contains("no_such_key"), "{stderr:?}");
}

driver_tests!(port_taken, bad_config_is_one_line);
