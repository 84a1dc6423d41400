//! `kubectl logs`: the CRI log file of a container, as kubelet serves it.
//!
//! The runtime writes one entry per line: `2016-10-06T00:17:09.669794202Z stdout F text`, where
//! the tag is `F` for a full line or `P` for a partial one (continued by the next entry).

use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

/// Query options of the log request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<usize>,
}

impl LogOptions {
    pub fn from_query(query: &[(String, String)]) -> Result<Self, String> {
        let mut options = LogOptions::default();
        for (key, value) in query {
            let flag = value == "true" || value == "1";
            match key.as_str() {
                "follow" => options.follow = flag,
                "previous" => options.previous = flag,
                "timestamps" => options.timestamps = flag,
                "tailLines" => options.tail_lines = Some(value.parse().map_err(|_| format!("invalid tailLines {value:?}"))?),
                "limitBytes" => options.limit_bytes = Some(value.parse().map_err(|_| format!("invalid limitBytes {value:?}"))?),
                "sinceSeconds" => {
                    let seconds: i64 = value.parse().map_err(|_| format!("invalid sinceSeconds {value:?}"))?;
                    options.since = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(seconds)).ok();
                }
                "sinceTime" => options.since = Some(value.parse().map_err(|_| format!("invalid sinceTime {value:?}"))?),
                _ => {}
            }
        }
        Ok(options)
    }
}

/// One parsed entry of a CRI log file.
#[derive(Debug, PartialEq)]
pub struct Entry<'a> {
    pub timestamp: &'a str,
    pub partial: bool,
    pub text: &'a str,
}

pub fn parse_line(line: &str) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default();
    Some(Entry { timestamp, partial: tag.starts_with('P'), text })
}

/// Turns log entries into output lines: partial pieces joined, timestamps optional, entries
/// before `since` skipped.
#[derive(Default)]
pub struct Formatter {
    pending: String,
    pending_timestamp: String,
}

impl Formatter {
    pub fn push(&mut self, line: &str, options: &LogOptions) -> Option<String> {
        let entry = parse_line(line)?;
        if self.pending.is_empty() {
            self.pending_timestamp = entry.timestamp.to_owned();
        }
        self.pending.push_str(entry.text);
        if entry.partial {
            return None;
        }
        let text = std::mem::take(&mut self.pending);
        if let Some(since) = options.since {
            if self.pending_timestamp.parse::<jiff::Timestamp>().is_ok_and(|t| t < since) {
                return None;
            }
        }
        Some(if options.timestamps { format!("{} {text}\n", self.pending_timestamp) } else { format!("{text}\n") })
    }
}

/// Streams the log at `path` into `out`; with `follow`, keeps reading as it grows until
/// `still_written` says the writer is gone (and everything is read) or the receiver goes away.
pub async fn stream<F, Fut>(path: &Path, options: LogOptions, out: tokio::sync::mpsc::Sender<bytes::Bytes>, still_written: F) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let file = tokio::fs::File::open(path).await?;
    let mut reader = BufReader::new(file);
    let mut formatter = Formatter::default();
    let mut budget = options.limit_bytes.unwrap_or(usize::MAX);
    // Tail: format the whole file first, keep the last N lines.
    let mut initial = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).await?;
        if read == 0 || !line.ends_with('\n') {
            // A line still being written is read again later.
            let back = -(read as i64);
            reader.seek(std::io::SeekFrom::Current(back)).await?;
            break;
        }
        if let Some(text) = formatter.push(line.trim_end_matches('\n'), &options) {
            initial.push(text);
        }
    }
    let skip = options.tail_lines.map(|n| initial.len().saturating_sub(n)).unwrap_or(0);
    for text in initial.into_iter().skip(skip) {
        if !send_limited(&out, text, &mut budget).await {
            return Ok(());
        }
    }
    if !options.follow {
        return Ok(());
    }
    let mut idle_checks = 0u32;
    loop {
        line.clear();
        let read = reader.read_line(&mut line).await?;
        if read > 0 && line.ends_with('\n') {
            idle_checks = 0;
            if let Some(text) = formatter.push(line.trim_end_matches('\n'), &options) {
                if !send_limited(&out, text, &mut budget).await {
                    return Ok(());
                }
            }
            continue;
        }
        if read > 0 {
            reader.seek(std::io::SeekFrom::Current(-(read as i64))).await?;
        }
        if out.is_closed() {
            return Ok(());
        }
        // Ask about the writer once a second, not on every poll.
        idle_checks += 1;
        if idle_checks.is_multiple_of(10) && !still_written().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send_limited(out: &tokio::sync::mpsc::Sender<bytes::Bytes>, text: String, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    let mut bytes = text.into_bytes();
    bytes.truncate(*budget);
    *budget -= bytes.len();
    out.send(bytes::Bytes::from(bytes)).await.is_ok() && *budget > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(lines: &[&str], options: &LogOptions) -> Vec<String> {
        let mut formatter = Formatter::default();
        lines.iter().filter_map(|l| formatter.push(l, options)).collect()
    }

    #[test]
    fn partial_entries_join_and_timestamps_prefix() {
        let lines = ["2026-01-01T00:00:01.5Z stdout P hel", "2026-01-01T00:00:02Z stdout F lo", "2026-01-01T00:00:03Z stderr F oops"];
        assert_eq!(collect(&lines, &LogOptions::default()), ["hello\n", "oops\n"]);
        let stamped = collect(&lines, &LogOptions { timestamps: true, ..Default::default() });
        assert_eq!(stamped[0], "2026-01-01T00:00:01.5Z hello\n");
        let since = LogOptions { since: Some("2026-01-01T00:00:02.5Z".parse().unwrap()), ..Default::default() };
        assert_eq!(collect(&lines, &since), ["oops\n"]);
    }

    #[test]
    fn query_options_parse() {
        let query = vec![("follow".to_owned(), "true".to_owned()), ("tailLines".to_owned(), "5".to_owned()), ("limitBytes".to_owned(), "10".to_owned())];
        let options = LogOptions::from_query(&query).unwrap();
        assert!(options.follow);
        assert_eq!((options.tail_lines, options.limit_bytes), (Some(5), Some(10)));
        assert!(LogOptions::from_query(&[("tailLines".into(), "x".into())]).is_err());
    }

    #[tokio::test]
    async fn tail_and_limit_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2026-01-01T00:00:01Z stdout F one\n2026-01-01T00:00:02Z stdout F two\n2026-01-01T00:00:03Z stdout F three\n").unwrap();
        let read = |options: LogOptions| {
            let path = path.clone();
            async move {
                let (tx, mut rx) = tokio::sync::mpsc::channel(16);
                stream(&path, options, tx, || async { false }).await.unwrap();
                let mut text = String::new();
                while let Ok(chunk) = rx.try_recv() {
                    text.push_str(std::str::from_utf8(&chunk).unwrap());
                }
                text
            }
        };
        assert_eq!(read(LogOptions::default()).await, "one\ntwo\nthree\n");
        assert_eq!(read(LogOptions { tail_lines: Some(2), ..Default::default() }).await, "two\nthree\n");
        assert_eq!(read(LogOptions { limit_bytes: Some(6), ..Default::default() }).await, "one\ntw");
    }
}
