//! Loopback listeners for benchmarks: listens on 127.0.0.1 ports
//! FIRST..FIRST+COUNT, accepts every connection and closes it at once.
//! Prints "ready COUNT" when listening, and runs until stdin closes.
//!
//! Usage: cargo run --release --example listeners -- FIRST COUNT

use std::io::Read;

fn main() {
    let args: Vec<u16> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let [first, count] = args[..] else {
        panic!("usage: listeners FIRST COUNT");
    };
    portwatch::probe::scan::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        for port in first..first + count {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            socket
                .bind(([127, 0, 0, 1], port).into())
                .unwrap_or_else(|e| panic!("port {port}: {e}"));
            let listener = socket.listen(4096).unwrap();
            tokio::spawn(async move {
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        drop(stream);
                    }
                }
            });
        }
        println!("ready {count}");
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await
        .unwrap();
    });
}
