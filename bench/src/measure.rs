//! Pure arithmetic and parsing for the benchmarks: the resident set size of a process from
//! `/proc/<pid>/status`, memory per connection, how a load is split over worker processes, and
//! medians. Kept free of I/O so the figures' arithmetic is unit tested.

use std::net::Ipv4Addr;

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut words = rest.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value),
        _ => None,
    }
}

/// Reads the current RSS (KiB) of process `pid`.
pub async fn read_rss_kib(pid: u32) -> crate::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(crate::Error::io(format!(
            "read {path} (is process {pid} alive?)"
        )))?;
    parse_vm_rss_kib(&text)
        .ok_or_else(|| crate::Error::Unexpected(format!("no VmRSS line in {path}")))
}

/// User + system CPU time (clock ticks) from the text of `/proc/<pid>/stat` (fields 14 and 15;
/// the command name in parentheses may contain spaces, so fields are counted after its `)`).
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux x86-64).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Reads the CPU time (clock ticks) process `pid` has used so far.
pub async fn read_cpu_ticks(pid: u32) -> crate::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(crate::Error::io(format!(
            "read {path} (is process {pid} alive?)"
        )))?;
    parse_stat_cpu_ticks(&text)
        .ok_or_else(|| crate::Error::Unexpected(format!("cannot parse {path}")))
}

/// A `field:value` line of Redis `INFO` output.
pub fn parse_info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// CPU-seconds per million deliveries.
pub fn cpu_seconds_per_million(ticks: u64, deliveries: u64) -> f64 {
    if deliveries == 0 {
        return f64::NAN;
    }
    ticks as f64 / TICKS_PER_SECOND / (deliveries as f64 / 1e6)
}

/// Memory per connection in KiB: the RSS growth spread over the connections opened.
pub fn per_connection_kib(before_kib: u64, after_kib: u64, connections: usize) -> f64 {
    if connections == 0 {
        return 0.0;
    }
    (after_kib as f64 - before_kib as f64) / connections as f64
}

/// Splits `total` connections over `workers` as evenly as possible (earlier workers take the
/// remainder). Returns `(first_index, count)` per worker, skipping empty ones.
pub fn split_counts(total: usize, workers: usize) -> Vec<(usize, usize)> {
    let workers = workers.max(1);
    let (base, extra) = (total / workers, total % workers);
    let mut first = 0;
    let mut out = Vec::with_capacity(workers);
    for w in 0..workers {
        let count = base + usize::from(w < extra);
        if count > 0 {
            out.push((first, count));
        }
        first += count;
    }
    out
}

/// The source address for connection number `index`: round robin over `sources`, so each
/// source address carries an equal share of the ephemeral ports.
pub fn source_for(sources: &[Ipv4Addr], index: usize) -> Ipv4Addr {
    if sources.is_empty() {
        Ipv4Addr::LOCALHOST
    } else {
        sources[index % sources.len()]
    }
}

/// Median of the values (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Status code and body of a raw HTTP/1.x response (the benchmark asks with HTTP/1.0, so the
/// body is everything after the header block, never chunked).
pub fn parse_http_response(raw: &[u8]) -> Option<(u16, &[u8])> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status = head
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, &raw[split + 4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let status = "Name:\tchat-node\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12345));
        assert_eq!(
            parse_vm_rss_kib("Name:\tx\n"),
            None,
            "kernel threads have no VmRSS"
        );
        assert_eq!(
            parse_vm_rss_kib("VmRSS:\t12 MB\n"),
            None,
            "unknown unit is not guessed"
        );
    }

    #[test]
    fn own_rss_is_readable_and_plausible() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let rss = rt.block_on(read_rss_kib(std::process::id())).unwrap();
        assert!(
            rss > 100,
            "a running test binary uses more than 100 KiB: {rss}"
        );
    }

    #[test]
    fn per_connection_figure_spreads_growth_and_allows_shrinking() {
        assert_eq!(per_connection_kib(1000, 161_000, 10_000), 16.0);
        assert_eq!(per_connection_kib(2000, 1000, 1000), -1.0);
        assert_eq!(per_connection_kib(1000, 5000, 0), 0.0);
    }

    #[test]
    fn load_is_split_evenly_with_contiguous_indices() {
        assert_eq!(split_counts(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split_counts(2, 4), vec![(0, 1), (1, 1)]);
        let parts = split_counts(10_000, 4);
        assert_eq!(parts.iter().map(|p| p.1).sum::<usize>(), 10_000);
        assert!(parts.iter().all(|p| p.1 == 2500));
    }

    #[test]
    fn sources_rotate() {
        let s = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
        assert_eq!(source_for(&s, 0), s[0]);
        assert_eq!(source_for(&s, 3), s[1]);
        assert_eq!(source_for(&[], 7), Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn cpu_ticks_come_from_fields_14_and_15() {
        let stat = "4242 (tokio rt (x)) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(175));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(cpu_seconds_per_million(300, 2_000_000), 1.5);
        assert!(cpu_seconds_per_million(1, 0).is_nan());
    }

    #[test]
    fn redis_info_fields() {
        let info = "$100\r\n# Server\r\nredis_version:7.0.15\r\nprocess_id:777\r\n";
        assert_eq!(parse_info_field(info, "process_id"), Some("777"));
        assert_eq!(parse_info_field(info, "process"), None);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn http_response_status_and_body() {
        let raw = b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(parse_http_response(raw), Some((200, &b"{\"a\":1}"[..])));
        assert_eq!(
            parse_http_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
                .unwrap()
                .0,
            503
        );
        assert_eq!(parse_http_response(b"garbage"), None);
    }
}
