//! One transcript line (a JSON object on one line of `~/.claude/projects/**/*.jsonl`) turned
//! into the few facts the ledger counts: an API response's usage, a user prompt, or neither,
//! with the session and time it belongs to.
//!
//! Pure and allocation-light: strings borrow from the line, content blocks are skipped
//! without being copied (only `type` and a tool's `name` are read), so no prompt, response or
//! file content is ever held beyond the call. Validity follows ccusage (the peer the agent is
//! checked against): a usage line counts only with numeric `input_tokens` and
//! `output_tokens` and a timestamp of the form `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Token counts of one response (or a sum of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    /// Cache writes of both durations (`cache_creation_input_tokens`).
    pub cache_creation: u64,
    /// The part of `cache_creation` written for one hour (priced higher).
    pub cache_creation_1h: u64,
    pub cache_read: u64,
    pub web_search_requests: u64,
}

impl Tokens {
    pub fn add(&mut self, o: &Tokens) {
        self.input += o.input;
        self.output += o.output;
        self.cache_creation += o.cache_creation;
        self.cache_creation_1h += o.cache_creation_1h;
        self.cache_read += o.cache_read;
        self.web_search_requests += o.web_search_requests;
    }

    /// The four token types of the metric contract, with their `type` label values.
    pub fn by_type(&self) -> [(&'static str, u64); 4] {
        [
            ("input", self.input),
            ("output", self.output),
            ("cache_creation", self.cache_creation),
            ("cache_read", self.cache_read),
        ]
    }
}

/// Why a line was not counted (the `reason` label of `vibe_claude_lines_skipped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SkipReason {
    /// Whitespace only.
    Blank,
    /// Not UTF-8.
    InvalidUtf8,
    /// Not JSON (a torn or garbled line).
    InvalidJson,
    /// JSON, but a field has the wrong type (e.g. token counts as strings).
    InvalidSchema,
    /// `message.usage` without numeric `input_tokens` and `output_tokens`.
    InvalidUsage,
    /// A usage line whose timestamp is missing or not ISO 8601 UTC.
    InvalidTimestamp,
    /// Longer than `claude.max_line_bytes` (decided by the reader, not here).
    TooLong,
}

impl SkipReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Blank => "blank",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidJson => "invalid_json",
            Self::InvalidSchema => "invalid_schema",
            Self::InvalidUsage => "invalid_usage",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TooLong => "too_long",
        }
    }
}

/// What one line says.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub session_id: Option<Cow<'a, str>>,
    /// Seconds since the Unix epoch, when the line has a valid timestamp.
    pub timestamp: Option<f64>,
    pub event: Event<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A line with `message.usage`: one content block of an API response.
    Response(Response<'a>),
    /// A person's prompt (a user line with text, not a tool result, not in a subagent).
    Prompt,
    /// Anything else (tool results, attachments, summaries, queue operations...).
    Other,
}

/// One content block of an API response, with the response's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Response<'a> {
    /// Hash of `message.id` + `requestId` when both are present: every content-block line
    /// of a response carries the same key, and the ledger counts the usage once per key.
    pub dedupe_key: Option<u64>,
    /// `message.model` as the API answered ("unknown" when absent).
    pub model: Cow<'a, str>,
    pub tokens: Tokens,
    /// `costUSD`, written by old Claude Code versions; used as the cost when present (as
    /// ccusage's default "auto" mode does).
    pub cost_usd: Option<f64>,
    /// Names of the `tool_use` blocks on this line.
    pub tool_uses: Vec<Cow<'a, str>>,
    /// An API error written by the CLI (`<synthetic>` model, zero usage).
    pub api_error: bool,
}

impl Line<'_> {
    /// The same facts, owning their strings (to hand a parsed line to another thread).
    pub fn into_owned(self) -> Line<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Line {
            session_id: self.session_id.map(own),
            timestamp: self.timestamp,
            event: match self.event {
                Event::Response(r) => Event::Response(Response {
                    dedupe_key: r.dedupe_key,
                    model: own(r.model),
                    tokens: r.tokens,
                    cost_usd: r.cost_usd,
                    tool_uses: r.tool_uses.into_iter().map(own).collect(),
                    api_error: r.api_error,
                }),
                Event::Prompt => Event::Prompt,
                Event::Other => Event::Other,
            },
        }
    }
}

/// The dedupe key of a response.
pub fn dedupe_key(message_id: &str, request_id: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(message_id.as_bytes());
    h.update(b"\0");
    h.update(request_id.as_bytes());
    h.digest()
}

/// A stable hash of a session id (sessions are counted by hash, not by name).
pub fn session_key(session_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(session_id.as_bytes())
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "sessionId", borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(rename = "requestId", borrow, default)]
    request_id: Option<Cow<'a, str>>,
    #[serde(rename = "costUSD", default)]
    cost_usd: Option<f64>,
    #[serde(rename = "isSidechain", default)]
    is_sidechain: Option<bool>,
    #[serde(rename = "isMeta", default)]
    is_meta: Option<bool>,
    #[serde(rename = "isApiErrorMessage", default)]
    is_api_error: Option<bool>,
    #[serde(borrow, default)]
    message: Option<RawMessage<'a>>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Content<'a>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct RawUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation: Option<RawCacheCreation>,
    #[serde(default)]
    server_tool_use: Option<RawServerToolUse>,
}

#[derive(Deserialize)]
struct RawCacheCreation {
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct RawServerToolUse {
    #[serde(default)]
    web_search_requests: Option<u64>,
}

/// What `message.content` holds, read without copying any of it.
#[derive(Default)]
struct Content<'a> {
    text: bool,
    tool_result: bool,
    tool_uses: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Content<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("message content (a string or a list of blocks)")
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Content {
                    text: true,
                    ..Content::default()
                })
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Content::default())
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Content::default())
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Content::default())
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                let mut c = Content::default();
                while let Some(b) = s.next_element::<Block<'de>>()? {
                    match b.kind.as_deref() {
                        Some("text") => c.text = true,
                        Some("tool_result") => c.tool_result = true,
                        Some("tool_use" | "server_tool_use") => {
                            if let Some(name) = b.name {
                                c.tool_uses.push(name);
                            }
                        }
                        _ => {}
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Parses the ISO 8601 UTC timestamps Claude Code writes (`2026-08-01T10:00:00.000Z`),
/// exactly the shape ccusage accepts.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let shape_ok = match b.len() {
        20 => true,
        24 => b[19] == b'.' && b[20..23].iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !shape_ok || b[b.len() - 1] != b'Z' {
        return None;
    }
    let t = humantime::parse_rfc3339(s).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// Turns one line (without its newline) into facts, or says why it cannot be counted.
pub fn parse(line: &[u8]) -> Result<Line<'_>, SkipReason> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(SkipReason::Blank);
    }
    let text = std::str::from_utf8(line).map_err(|_| SkipReason::InvalidUtf8)?;
    let raw: RawLine<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => SkipReason::InvalidSchema,
        _ => SkipReason::InvalidJson,
    })?;
    let timestamp = raw.timestamp.as_deref().and_then(parse_timestamp);
    let session_id = raw.session_id;
    let Some(message) = raw.message else {
        return Ok(Line {
            session_id,
            timestamp,
            event: Event::Other,
        });
    };
    let event = match message.usage {
        Some(u) => {
            let (Some(input), Some(output)) = (u.input_tokens, u.output_tokens) else {
                return Err(SkipReason::InvalidUsage);
            };
            if timestamp.is_none() {
                return Err(SkipReason::InvalidTimestamp);
            }
            let cache_creation = u.cache_creation_input_tokens.unwrap_or(0);
            let tokens = Tokens {
                input,
                output,
                cache_creation,
                cache_creation_1h: u
                    .cache_creation
                    .and_then(|c| c.ephemeral_1h_input_tokens)
                    .unwrap_or(0)
                    .min(cache_creation),
                cache_read: u.cache_read_input_tokens.unwrap_or(0),
                web_search_requests: u
                    .server_tool_use
                    .and_then(|s| s.web_search_requests)
                    .unwrap_or(0),
            };
            let model = message.model.unwrap_or(Cow::Borrowed("unknown"));
            let api_error = raw.is_api_error == Some(true) || model == "<synthetic>";
            let dedupe_key = match (&message.id, &raw.request_id) {
                (Some(m), Some(r)) => Some(dedupe_key(m, r)),
                _ => None,
            };
            Event::Response(Response {
                dedupe_key,
                model,
                tokens,
                cost_usd: raw.cost_usd,
                tool_uses: message.content.tool_uses,
                api_error,
            })
        }
        None => {
            let c = &message.content;
            let human = raw.kind.as_deref() == Some("user")
                && raw.is_sidechain != Some(true)
                && raw.is_meta != Some(true);
            if human && c.text && !c.tool_result {
                Event::Prompt
            } else {
                Event::Other
            }
        }
    };
    Ok(Line {
        session_id,
        timestamp,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSISTANT_TOOL: &str = r#"{"parentUuid":"a","isSidechain":false,"type":"assistant","sessionId":"s1","version":"2.1.3","requestId":"req_1","timestamp":"2026-08-01T10:00:00.037Z","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"echo SECRET"}}],"usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":5000,"cache_creation":{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":40},"output_tokens":321,"service_tier":"standard","server_tool_use":{"web_search_requests":2}}}}"#;

    fn response(line: &str) -> Response<'_> {
        match parse(line.as_bytes()).unwrap().event {
            Event::Response(r) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn assistant_line_gives_usage_tools_and_key() {
        let l = parse(ASSISTANT_TOOL.as_bytes()).unwrap();
        assert_eq!(l.session_id.as_deref(), Some("s1"));
        assert_eq!(l.timestamp, Some(1785578400.037));
        let r = response(ASSISTANT_TOOL);
        assert_eq!(r.model, "claude-sonnet-4-5-20250929");
        assert_eq!(
            r.tokens,
            Tokens {
                input: 12,
                output: 321,
                cache_creation: 100,
                cache_creation_1h: 40,
                cache_read: 5000,
                web_search_requests: 2
            }
        );
        assert_eq!(r.tool_uses, vec!["Bash"]);
        assert_eq!(r.dedupe_key, Some(dedupe_key("msg_1", "req_1")));
        assert!(!r.api_error);
    }

    /// One response is written as one line per content block: same id, same key.
    #[test]
    fn content_block_lines_share_the_key() {
        let text_block = ASSISTANT_TOOL.replace(
            r#"{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"echo SECRET"}}"#,
            r#"{"type":"text","text":"hello \"world\" \u00e9"}"#,
        );
        let a = response(ASSISTANT_TOOL);
        let b = response(&text_block);
        assert_eq!(a.dedupe_key, b.dedupe_key);
        assert_eq!(a.tokens, b.tokens);
        assert!(b.tool_uses.is_empty());
    }

    #[test]
    fn synthetic_error_lines_have_no_key_and_are_api_errors() {
        let l = r#"{"type":"assistant","sessionId":"s","timestamp":"2026-08-01T10:00:00.000Z","isApiErrorMessage":true,"message":{"id":"e1","model":"<synthetic>","role":"assistant","content":[{"type":"text","text":"Claude AI usage limit reached|1785582000"}],"usage":{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"server_tool_use":{"web_search_requests":0},"service_tier":null}}}"#;
        let r = response(l);
        assert!(r.api_error);
        assert_eq!(r.dedupe_key, None);
        assert_eq!(r.tokens, Tokens::default());
    }

    #[test]
    fn prompts_are_human_text_lines_only() {
        let cases = [
            (
                r#"{"type":"user","sessionId":"s","timestamp":"2026-08-01T10:00:00.000Z","message":{"role":"user","content":"fix the bug"}}"#,
                Event::Prompt,
            ),
            (
                r#"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"look"},{"type":"image","source":{}}]}}"#,
                Event::Prompt,
            ),
            (
                r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"t","type":"tool_result","content":"out","is_error":false}]},"toolUseResult":{"stdout":"x"}}"#,
                Event::Other,
            ),
            (
                r#"{"type":"user","isSidechain":true,"message":{"role":"user","content":"subagent task"}}"#,
                Event::Other,
            ),
            (
                r#"{"type":"user","isMeta":true,"message":{"role":"user","content":"caveat"}}"#,
                Event::Other,
            ),
            (
                r#"{"type":"summary","summary":"x","leafUuid":"u"}"#,
                Event::Other,
            ),
            (
                r#"{"type":"queue-operation","operation":"enqueue","content":"x"}"#,
                Event::Other,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line.as_bytes()).unwrap().event, want, "{line}");
        }
    }

    /// The malformed kinds of the corpus generator, each with its reason.
    #[test]
    fn malformed_lines_say_why() {
        let good = r#"{"type":"assistant","timestamp":"2026-08-01T10:00:00.000Z","requestId":"r","message":{"id":"m","model":"claude-opus-4-8","usage":{"input_tokens":10,"output_tokens":20}}}"#;
        assert!(parse(good.as_bytes()).is_ok());
        let cases: Vec<(Vec<u8>, SkipReason)> = vec![
            (b"   ".to_vec(), SkipReason::Blank),
            (good.as_bytes()[..40].to_vec(), SkipReason::InvalidJson),
            (
                b"\x00\x01not json at all {".to_vec(),
                SkipReason::InvalidJson,
            ),
            (
                b"{\"type\":\"user\",\"x\":\"\xff\xfe\"}".to_vec(),
                SkipReason::InvalidUtf8,
            ),
            (
                good.replace("\"input_tokens\":10", "\"input_tokens\":\"10\"")
                    .into_bytes(),
                SkipReason::InvalidSchema,
            ),
            (
                good.replace(",\"output_tokens\":20", "").into_bytes(),
                SkipReason::InvalidUsage,
            ),
            (
                good.replace("2026-08-01T10:00:00.000Z", "2026/08/01 10:00:00")
                    .into_bytes(),
                SkipReason::InvalidTimestamp,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse(&line).unwrap_err(),
                want,
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    #[test]
    fn unknown_model_and_missing_model_still_parse() {
        let l = r#"{"type":"assistant","timestamp":"2026-08-01T10:00:00Z","message":{"usage":{"input_tokens":1,"output_tokens":2}}}"#;
        let r = response(l);
        assert_eq!(r.model, "unknown");
        assert_eq!(r.dedupe_key, None);
    }

    #[test]
    fn timestamps_follow_ccusage_shape() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.500Z"), Some(1.5));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1.0));
        for bad in [
            "1970-01-01T00:00:01.5Z",
            "1970-01-01 00:00:01Z",
            "1970-01-01T00:00:01+00:00",
            "",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
