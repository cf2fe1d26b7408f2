//! The admin API driven with arbitrary requests over real sockets: any method, path, headers
//! and body (and bytes that are no HTTP at all) get an answer or a close, never a crash or a
//! hang, and the API still serves correct requests afterwards. `PROPTEST_CASES` sets how many
//! (64 by default; `PROPTEST_CASES=5000 cargo test -p fairio-cli --test admin_fuzz` for a long
//! run).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::{free_port, http, start_proxy, wait_for};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64)
}

/// A request: a head from HTTP's parts, valid or not, and a body.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET".to_owned()),
        Just("PUT".to_owned()),
        Just("POST".to_owned()),
        Just("DELETE".to_owned()),
        Just("HEAD".to_owned()),
        "[A-Z]{1,8}",
        "[ -~]{0,10}",
    ];
    let path = prop_oneof![
        Just("/metrics".to_owned()),
        Just("/clients".to_owned()),
        Just("/limits".to_owned()),
        Just("/reload".to_owned()),
        Just("/".to_owned()),
        "/[ -~]{0,40}",
        "[ -~]{0,40}",
    ];
    let header = prop_oneof![
        any::<u64>().prop_map(|n| format!("Content-Length: {n}")),
        (0u16..600).prop_map(|n| format!("Content-Length: {n}")),
        Just("Transfer-Encoding: chunked".to_owned()),
        Just("Expect: 100-continue".to_owned()),
        "Authorization: Bearer [ -~]{0,40}",
        "Content-Type: [ -~]{0,30}",
        "[A-Za-z-]{1,20}: [ -~]{0,60}",
        "[ -~]{0,80}",
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (
            prop_oneof![
                Just("\"8MiB\"".to_owned()),
                Just("null".to_owned()),
                "\"[ -~]{0,12}\"",
                any::<i64>().prop_map(|i| i.to_string())
            ],
            prop_oneof![
                Just("\"1KiB\"".to_owned()),
                Just("null".to_owned()),
                "[ -~]{0,12}"
            ],
        )
            .prop_map(
                |(a, b)| format!("{{\"to_clients\": {a}, \"from_clients\": {b}}}").into_bytes()
            ),
    ];
    let http = (
        method,
        path,
        proptest::collection::vec(header, 0..5),
        body,
        any::<bool>(),
    )
        .prop_map(|(m, p, headers, body, http11)| {
            let mut r =
                format!("{m} {p} HTTP/1.{}\r\nHost: fairio\r\n", u8::from(http11)).into_bytes();
            for h in headers {
                r.extend_from_slice(h.as_bytes());
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"\r\n");
            r.extend_from_slice(&body);
            r
        });
    // `PUT /limits` with a body of the right length, so that the JSON parser is reached.
    let limits = (
        prop_oneof![
            Just("\"8MiB\"".to_owned()),
            Just("null".to_owned()),
            "\"[ -~]{0,12}\"",
            any::<i64>().prop_map(|i| i.to_string()),
            "[ -~]{0,12}"
        ],
        prop_oneof![
            Just("\"1KiB\"".to_owned()),
            Just("null".to_owned()),
            "\"[ -~]{0,12}\"",
            "[ -~]{0,12}"
        ],
        proptest::sample::select(vec!["to_clients", "from_clients", "other", ""]),
    )
        .prop_map(|(a, b, key)| {
            let body = format!("{{\"{key}\": {a}, \"from_clients\": {b}}}");
            format!(
                "PUT /limits HTTP/1.1\r\nHost: fairio\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        });
    // Correct requests among the others, with headers of any kind: the handlers must keep
    // answering them (three in ten of the cases: in 64, none answered has a chance of 1e-10).
    let correct = (
        proptest::sample::select(vec![
            "GET /metrics HTTP/1.1\r\nHost: fairio\r\n".to_owned(),
            "GET /clients HTTP/1.1\r\nHost: fairio\r\n".to_owned(),
        ]),
        "(X-[A-Za-z]{1,10}: [ -~]{0,30}\r\n){0,3}",
    )
        .prop_map(|(head, extra)| format!("{head}{extra}\r\n").into_bytes());
    prop_oneof![
        4 => http,
        2 => limits,
        3 => correct,
        1 => proptest::collection::vec(any::<u8>(), 0..400),
    ]
}

/// Sends `bytes`, ends the sending side, and reads until the server closes (bounded: 20 s,
/// beyond the API's 5 s head timeout).
fn exchange(port: u16, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer and close before taking it all: a reset here is an answer.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => Ok(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(got),
        Err(e) => Err(format!("no answer and no close: {e}")),
    }
}

#[test]
fn arbitrary_requests_get_an_answer_or_a_close_and_the_api_still_serves() {
    let (port, admin) = (free_port(), free_port());
    let mut proxy = start_proxy(
        port,
        free_port(),
        &[
            "--max-to-clients",
            "8MiB",
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ],
    );
    // The admin API is bound after the listener start_proxy waited for.
    wait_for(admin);
    let mut runner = TestRunner::new(Config::with_cases(cases()));
    let answered = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&request(), |bytes| {
        let got = exchange(admin, &bytes).map_err(TestCaseError::fail)?;
        // Whatever came back is HTTP, or nothing.
        prop_assert!(
            got.is_empty() || got.starts_with(b"HTTP/1."),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        // Only the handlers answer 200 (hyper answers malformed requests 400 itself).
        if got.starts_with(b"HTTP/1.1 200") {
            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    assert!(proxy.0.try_wait().unwrap().is_none(), "the proxy exited");
    result.unwrap();
    // The strategies reach the handlers, not only the HTTP parser.
    let answered = answered.into_inner();
    println!("{answered} of {} requests answered 200", cases());
    assert!(answered > 0, "no request was answered 200 by a handler");
    let (status, body) = http(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: fairio\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("fairio_connections"), "{body}");
    let (status, _) = http(
        admin,
        "PUT /limits HTTP/1.1\r\nHost: fairio\r\nContent-Length: 44\r\nConnection: close\r\n\r\n{\"to_clients\": \"8MiB\", \"from_clients\": null}",
    );
    assert_eq!(status, 200);
}
