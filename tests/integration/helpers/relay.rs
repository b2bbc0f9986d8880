//! A TCP relay in front of a server, that can go silent: while frozen it passes nothing either
//! way and closes nothing, as a network path that drops packets does (a NAT or a load balancer
//! that forgot the connection, a frozen host). Connections made while frozen wait too.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub struct SilentRelay {
    addr: SocketAddr,
    frozen: watch::Sender<bool>,
    /// Accepts and relays; aborted when dropped, with every connection it relays.
    task: JoinHandle<()>,
}

impl SilentRelay {
    /// A relay on a free loopback port to `target`.
    pub async fn to(target: SocketAddr) -> SilentRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frozen, _) = watch::channel(false);
        let watched = frozen.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                connections.spawn(pass(client_read, server_write, watched.subscribe()));
                connections.spawn(pass(server_read, client_write, watched.subscribe()));
            }
        });
        SilentRelay { addr, frozen, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Nothing passes from now on, until [`SilentRelay::thaw`].
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for SilentRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction, holding what it read while frozen.
async fn pass(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if frozen.wait_for(|frozen| !frozen).await.is_err()
            || to.write_all(&buffer[..read]).await.is_err()
        {
            break;
        }
    }
    if frozen.wait_for(|frozen| !frozen).await.is_ok() {
        let _ = to.shutdown().await;
    }
}
