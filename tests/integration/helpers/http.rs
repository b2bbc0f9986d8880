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
