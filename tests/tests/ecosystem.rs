//! Scheduled connections under the ecosystem's protocol stacks: `tokio_util::codec::Framed`
//! and a hyper HTTP/1 exchange, through `Connection::into_io`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use fairio::{Config, Scheduler};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LinesCodec};

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (c.unwrap(), s.unwrap().0)
}

fn limited() -> Config {
    Config::new(16 * 1024)
        .max_upload_speed(Some(4 << 20))
        .max_download_speed(Some(4 << 20))
        .read_queue_size(Some(64 * 1024))
        .write_queue_size(Some(64 * 1024))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_lines_both_ends_scheduled() {
    let sched = Scheduler::new(limited()).unwrap();
    let (a, b) = pair().await;
    let mut left = Framed::new(sched.register(a).unwrap().into_io(), LinesCodec::new());
    let mut right = Framed::new(sched.register(b).unwrap().into_io(), LinesCodec::new());
    let lines: Vec<String> = (0..500)
        .map(|i| format!("line {i} {}", "x".repeat(i % 97)))
        .collect();
    let sent = lines.clone();
    let sender = tokio::spawn(async move {
        for l in sent {
            left.send(l).await.unwrap();
        }
        left
    });
    for expected in &lines {
        let got = right.next().await.unwrap().unwrap();
        assert_eq!(&got, expected);
    }
    let mut left = sender.await.unwrap();
    // Echo one back the other way.
    right.send("pong".to_string()).await.unwrap();
    assert_eq!(left.next().await.unwrap().unwrap(), "pong");
    sched.shutdown(Some(Duration::from_secs(2))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_http1_exchange_over_scheduled_connections() {
    let sched = Scheduler::new(limited()).unwrap();
    let (a, b) = pair().await;
    let server_io = TokioIo::new(sched.register(a).unwrap().into_io());
    let client_io = TokioIo::new(sched.register(b).unwrap().into_io());
    let body = Bytes::from(vec![42u8; 300 * 1024]);
    let served = body.clone();
    let server = tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let served = served.clone();
            async move {
                let uploaded = req.into_body().collect().await.unwrap().to_bytes();
                let mut reply = format!("got {} bytes;", uploaded.len()).into_bytes();
                reply.extend_from_slice(&served);
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(reply))))
            }
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(server_io, service)
            .await
    });
    let (mut sender, conn) = hyper::client::conn::http1::handshake(client_io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let upload = Bytes::from(vec![7u8; 200 * 1024]);
    let req = Request::post("/upload").body(Full::new(upload)).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert!(resp.status().is_success());
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    let prefix = b"got 204800 bytes;";
    assert_eq!(&got[..prefix.len()], prefix);
    assert_eq!(&got[prefix.len()..], &body[..]);
    drop(sender);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    sched.shutdown(Some(Duration::from_secs(2))).await;
}
