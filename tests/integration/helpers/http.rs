//! A worker's HTTP endpoints, read as a monitoring system would.

/// One GET against a worker's HTTP endpoints; `None` if it does not answer.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

/// Polls `/readyz` at `addr` until it answers 200, for at most `within`; if it never does, its
/// last answer (`None` if it never answered).
pub async fn readiness_within(
    addr: std::net::SocketAddr,
    within: std::time::Duration,
) -> Result<(), Option<String>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = http_get(addr, "/readyz").await;
        if answer
            .as_ref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200"))
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(answer);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The series of metric `name` in a `/metrics` page (Prometheus text), as the line that names
/// each (its labels included) and its value.
pub fn series<'a>(metrics: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    metrics.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None; // another metric whose name begins with this one
        }
        let value = line.rsplit(' ').next()?.parse().ok()?;
        Some((line, value))
    })
}

/// The sum of the series of metric `name` whose line contains `label` ("" for all).
pub fn metric_sum(metrics: &str, name: &str, label: &str) -> f64 {
    series(metrics, name)
        .filter(|(line, _)| line.contains(label))
        .map(|(_, value)| value)
        .sum()
}
