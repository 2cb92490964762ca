//! Starting and stopping the gateway process.

#![cfg(unix)]

mod support;

use std::time::Duration;
use support::{gateway, load_sample};

#[test]
fn sigterm_exits_cleanly_and_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("airq.db");
    load_sample(&db);
    let mut g = gateway(&db, &[]);
    let status = g
        .terminate(Duration::from_secs(15))
        .expect("the gateway exits within 15 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn an_empty_database_is_created_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new").join("airq.db");
    let mut g = gateway(&db, &[]);
    assert!(db.exists());
    assert!(g.base.starts_with("http://127.0.0.1:"), "{}", g.base);
    let status = g.terminate(Duration::from_secs(15)).expect("exits");
    assert!(status.success());
}

#[test]
fn a_bad_flag_fails_fast() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airq-gateway"))
        .args(["--direct-max-span", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));
}

/// A request in flight when SIGTERM arrives is answered in full; new
/// connections are refused; then the process exits 0.
#[test]
fn sigterm_finishes_in_flight_requests() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("airq.db");
    load_sample(&db);
    let mut g = gateway(&db, &[]);
    let addr = g.base.trim_start_matches("http://").to_owned();

    let body =
        r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE"}"#;
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        conn,
        "POST /api/query HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let sent = std::process::Command::new("kill")
        .args(["-TERM", &g.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        g.wait_exit(Duration::ZERO).is_none(),
        "the gateway must wait for the request in flight"
    );
    assert!(
        TcpStream::connect(&addr).is_err(),
        "no new connections after SIGTERM"
    );

    conn.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response:.200}");
    assert!(
        response.contains("id,timestamp,sensor_id"),
        "{response:.400}"
    );

    let status = g
        .wait_exit(Duration::from_secs(15))
        .expect("exits once the request is done");
    assert!(status.success(), "{status:?}");
}
