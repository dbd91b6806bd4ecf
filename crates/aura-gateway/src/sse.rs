//! An incremental Server-Sent Events parser: bytes in as they arrive, whole events out, each with its raw text
//! so it can be forwarded unchanged (no buffering beyond one event).

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The event as received, including its blank-line terminator.
    pub raw: String,
}

impl Event {
    /// An event to send: `event:` (if named) and one `data:` line per line of `data`.
    pub fn new(event: Option<&str>, data: String) -> Event {
        let mut raw = String::with_capacity(data.len() + 32);
        if let Some(name) = event {
            raw.push_str("event: ");
            raw.push_str(name);
            raw.push('\n');
        }
        for line in data.split('\n') {
            raw.push_str("data: ");
            raw.push_str(line);
            raw.push('\n');
        }
        raw.push('\n');
        Event {
            event: event.map(str::to_owned),
            data,
            raw,
        }
    }
}

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
}

/// The most a single event may hold before the stream is refused.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

impl Parser {
    /// A parser with nothing buffered.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Adds `chunk` and returns every event it completed. `Err` when one event grows past [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some((end, sep)) = find_boundary(&self.buf) {
            let raw_bytes: Vec<u8> = self.buf.drain(..end + sep).collect();
            let raw = String::from_utf8_lossy(&raw_bytes).into_owned();
            if let Some(e) = parse_event(&raw) {
                events.push(e);
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err("an upstream event is larger than 16 MiB".into());
        }
        Ok(events)
    }

    /// Whatever is left when the stream ends (an unterminated last event), as an event.
    pub fn finish(&mut self) -> Option<Event> {
        let raw = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
        if raw.trim().is_empty() {
            return None;
        }
        parse_event(&format!("{raw}\n\n"))
    }
}

fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if buf[i] == b'\r' && buf.get(i + 1..i + 4) == Some(b"\n\r\n") {
            return Some((i, 4));
        }
        i += 1;
    }
    None
}

fn parse_event(raw: &str) -> Option<Event> {
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in raw.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() && event.is_none() {
        return None;
    }
    Some(Event {
        event,
        data: data.join("\n"),
        raw: raw.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut p = Parser::new();
        assert!(
            p.push(b"event: message_start\ndata: {\"a\"")
                .unwrap()
                .is_empty()
        );
        let e = p.push(b":1}\n\ndata: [DONE]\n\n: comment\n\n").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].event.as_deref(), Some("message_start"));
        assert_eq!(e[0].data, "{\"a\":1}");
        assert_eq!(e[0].raw, "event: message_start\ndata: {\"a\":1}\n\n");
        assert_eq!(e[1].data, "[DONE]");
        let mut crlf = Parser::new();
        let e = crlf.push(b"data: x\r\n\r\n").unwrap();
        assert_eq!(e[0].data, "x");
        let mut tail = Parser::new();
        tail.push(b"data: partial").unwrap();
        assert_eq!(tail.finish().unwrap().data, "partial");
    }
}
