//! The price of a response: an embedded table of Anthropic list prices per model, which a
//! price file (`claude.prices_file`) and the config's `[claude.prices]` may override or
//! extend, and the cost formula.
//!
//! A price file is JSON in one of two formats, told apart by its keys: LiteLLM's
//! `model_prices_and_context_window.json` (what ccusage reads; USD per token:
//! `input_cost_per_token`, `output_cost_per_token`, `cache_creation_input_token_cost`,
//! `cache_read_input_token_cost`, `cache_creation_input_token_cost_above_1hr` and the
//! `*_above_200k_tokens` tier), or the agent's own table (`{"model": {"input": 3, "output":
//! 15, ...}}`, USD per million tokens, the keys of `[claude.prices]`). In LiteLLM's file, a
//! missing cache price is zero, as ccusage takes it; entries without token prices (image
//! models, `sample_spec`) are skipped. [`parse_price_file`] is pure; the config reads the
//! file and refuses a malformed one.
//!
//! Prices are the ones ccusage 20.0.24 uses offline (LiteLLM's table), so the agent and
//! ccusage agree on cost to the last few ulps: input, output, cache writes (5-minute at 1.25×
//! input, 1-hour at 2× input), cache reads (0.1× input), and for Claude Sonnet 4 and 4.5 the
//! long-context tier that ccusage applies per token type above 200 000 tokens. Web-search
//! requests cost $10 per 1000 (ccusage does not price them; transcripts of ordinary sessions
//! carry zero). A model that is not in the table is never priced as zero: [`PriceTable::cost`]
//! says so and the ledger counts it in `vibe_claude_unpriced_tokens_total`.
//!
//! Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::line::Tokens;

/// Tokens of one type in one response above which ccusage applies the long-context tier.
pub const LONG_CONTEXT_THRESHOLD_TOKENS: u64 = 200_000;

/// USD per token of each kind, for one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
}

impl Rates {
    /// The usual Anthropic ratios from input and output prices in USD per million tokens.
    const fn per_million(input: f64, output: f64) -> Self {
        Self {
            input: input / 1e6,
            output: output / 1e6,
            cache_write_5m: input * 1.25 / 1e6,
            cache_write_1h: input * 2.0 / 1e6,
            cache_read: input * 0.1 / 1e6,
        }
    }
}

/// The price of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub base: Rates,
    /// Rates for the tokens of one type above [`LONG_CONTEXT_THRESHOLD_TOKENS`].
    pub long_context: Option<Rates>,
    /// USD per web-search request.
    pub web_search: f64,
}

/// USD per web-search request ($10 per 1000).
pub const WEB_SEARCH_USD: f64 = 0.01;

const fn price(input: f64, output: f64) -> ModelPrice {
    ModelPrice {
        base: Rates::per_million(input, output),
        long_context: None,
        web_search: WEB_SEARCH_USD,
    }
}

/// Model families (the API id without its date suffix) and their list prices.
const EMBEDDED: &[(&str, ModelPrice)] = &[
    ("claude-opus-4-8", price(5.0, 25.0)),
    ("claude-opus-4-7", price(5.0, 25.0)),
    ("claude-opus-4-6", price(5.0, 25.0)),
    ("claude-opus-4-5", price(5.0, 25.0)),
    ("claude-opus-4-1", price(15.0, 75.0)),
    ("claude-opus-4", price(15.0, 75.0)),
    ("claude-3-opus", price(15.0, 75.0)),
    ("claude-sonnet-4-6", price(3.0, 15.0)),
    (
        "claude-sonnet-4-5",
        ModelPrice {
            long_context: Some(Rates::per_million(6.0, 22.5)),
            ..price(3.0, 15.0)
        },
    ),
    (
        "claude-sonnet-4",
        ModelPrice {
            long_context: Some(Rates::per_million(6.0, 22.5)),
            ..price(3.0, 15.0)
        },
    ),
    ("claude-3-7-sonnet", price(3.0, 15.0)),
    ("claude-3-5-sonnet", price(3.0, 15.0)),
    ("claude-haiku-4-5", price(1.0, 5.0)),
    ("claude-3-5-haiku", price(0.8, 4.0)),
    // Haiku 3's cache prices do not follow the usual ratios.
    (
        "claude-3-haiku",
        ModelPrice {
            base: Rates {
                input: 0.25 / 1e6,
                output: 1.25 / 1e6,
                cache_write_5m: 0.3 / 1e6,
                cache_write_1h: 0.5 / 1e6,
                cache_read: 0.03 / 1e6,
            },
            long_context: None,
            web_search: WEB_SEARCH_USD,
        },
    ),
];

/// A price override from the config, in USD per million tokens (web search: per request).
/// Missing cache rates follow the usual ratios to `input`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: Option<f64>,
    pub cache_write_1h: Option<f64>,
    pub cache_read: Option<f64>,
    pub web_search: Option<f64>,
}

impl PriceOverride {
    /// The first price that is negative or not finite, with its field.
    pub fn validate(&self) -> Result<(), (&'static str, f64)> {
        let fields = [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cache_write_5m", self.cache_write_5m),
            ("cache_write_1h", self.cache_write_1h),
            ("cache_read", self.cache_read),
            ("web_search", self.web_search),
        ];
        for (name, v) in fields {
            if let Some(v) = v
                && !(v >= 0.0 && v.is_finite())
            {
                return Err((name, v));
            }
        }
        Ok(())
    }

    fn to_price(self) -> ModelPrice {
        let usual = Rates::per_million(self.input, self.output);
        ModelPrice {
            base: Rates {
                cache_write_5m: self
                    .cache_write_5m
                    .map_or(usual.cache_write_5m, |p| p / 1e6),
                cache_write_1h: self
                    .cache_write_1h
                    .map_or(usual.cache_write_1h, |p| p / 1e6),
                cache_read: self.cache_read.map_or(usual.cache_read, |p| p / 1e6),
                ..usual
            },
            long_context: None,
            web_search: self.web_search.unwrap_or(WEB_SEARCH_USD),
        }
    }
}

/// Prices by model: the embedded table with the config's overrides on top.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, ModelPrice>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::new(&BTreeMap::new())
    }
}

/// Largest price file accepted (LiteLLM's is about 1.5 MB).
pub const MAX_PRICE_FILE_BYTES: usize = 32 << 20;

/// Why a price file was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PriceFileError {
    #[error(
        "not a JSON object of models ({0}); write LiteLLM's model_prices_and_context_window.json or the agent's table ({{\"model\": {{\"input\": 3, \"output\": 15}}}})"
    )]
    NotJson(String),
    #[error("model \"{model}\": {field} is {value}, not a price (a number of USD at or above 0)")]
    BadPrice {
        model: String,
        field: String,
        value: String,
    },
    #[error("model \"{model}\": {message}")]
    BadEntry { model: String, message: String },
    #[error(
        "holds no model with token prices (input_cost_per_token and output_cost_per_token, or input and output)"
    )]
    Empty,
    #[error("is larger than {MAX_PRICE_FILE_BYTES} bytes")]
    TooLarge,
}

/// The LiteLLM fields read, with where each goes.
const LITELLM_FIELDS: [&str; 10] = [
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_creation_input_token_cost",
    "cache_creation_input_token_cost_above_1hr",
    "cache_read_input_token_cost",
    "input_cost_per_token_above_200k_tokens",
    "output_cost_per_token_above_200k_tokens",
    "cache_creation_input_token_cost_above_200k_tokens",
    "cache_read_input_token_cost_above_200k_tokens",
    "cache_creation_input_token_cost_above_1hr_above_200k_tokens",
];

/// Parses a price file (see the module doc for the two formats).
pub fn parse_price_file(bytes: &[u8]) -> Result<BTreeMap<String, ModelPrice>, PriceFileError> {
    if bytes.len() > MAX_PRICE_FILE_BYTES {
        return Err(PriceFileError::TooLarge);
    }
    let doc: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| PriceFileError::NotJson(e.to_string()))?;
    // LiteLLM's entries name prices `*_cost*` and carry `litellm_provider`; the agent's
    // own table has neither.
    let litellm = doc.values().any(|v| {
        v.as_object().is_some_and(|o| {
            o.keys()
                .any(|k| k.contains("_cost") || k == "litellm_provider")
        })
    });
    let mut out = BTreeMap::new();
    for (model, v) in doc {
        let price = if litellm {
            match litellm_price(&model, &v)? {
                Some(p) => p,
                None => continue,
            }
        } else {
            let o: PriceOverride =
                serde_json::from_value(v).map_err(|e| PriceFileError::BadEntry {
                    model: model.clone(),
                    message: e.to_string(),
                })?;
            o.validate()
                .map_err(|(field, value)| PriceFileError::BadPrice {
                    model: model.clone(),
                    field: field.to_string(),
                    value: value.to_string(),
                })?;
            o.to_price()
        };
        out.insert(model, price);
    }
    if out.is_empty() {
        return Err(PriceFileError::Empty);
    }
    Ok(out)
}

/// One LiteLLM entry; `None` when it has no token prices (not a chat model).
fn litellm_price(model: &str, v: &serde_json::Value) -> Result<Option<ModelPrice>, PriceFileError> {
    let Some(o) = v.as_object() else {
        return Ok(None);
    };
    let mut f = [None; LITELLM_FIELDS.len()];
    for (i, name) in LITELLM_FIELDS.iter().enumerate() {
        match o.get(*name) {
            None | Some(serde_json::Value::Null) => {}
            Some(x) => match x.as_f64() {
                Some(p) if p >= 0.0 && p.is_finite() => f[i] = Some(p),
                _ => {
                    return Err(PriceFileError::BadPrice {
                        model: model.to_string(),
                        field: (*name).to_string(),
                        value: x.to_string(),
                    });
                }
            },
        }
    }
    let [
        Some(input),
        Some(output),
        cw,
        cw1h,
        cr,
        li,
        lo,
        lcw,
        lcr,
        lcw1h,
    ] = f
    else {
        return Ok(None);
    };
    let cache_write_5m = cw.unwrap_or(0.0);
    let base = Rates {
        input,
        output,
        cache_write_5m,
        cache_write_1h: cw1h.unwrap_or(cache_write_5m),
        cache_read: cr.unwrap_or(0.0),
    };
    let long_context = [li, lo, lcw, lcr, lcw1h]
        .iter()
        .any(Option::is_some)
        .then(|| Rates {
            input: li.unwrap_or(base.input),
            output: lo.unwrap_or(base.output),
            cache_write_5m: lcw.unwrap_or(base.cache_write_5m),
            cache_write_1h: lcw1h.unwrap_or(base.cache_write_1h),
            cache_read: lcr.unwrap_or(base.cache_read),
        });
    Ok(Some(ModelPrice {
        base,
        long_context,
        web_search: WEB_SEARCH_USD,
    }))
}

impl PriceTable {
    /// The embedded prices, with `overrides` (keyed by model id or family) replacing them.
    pub fn new(overrides: &BTreeMap<String, PriceOverride>) -> Self {
        Self::with_file(&BTreeMap::new(), overrides)
    }

    /// The embedded prices, then a price file's, then the config's overrides, each
    /// replacing the same model's earlier price.
    pub fn with_file(
        file: &BTreeMap<String, ModelPrice>,
        overrides: &BTreeMap<String, PriceOverride>,
    ) -> Self {
        let mut prices: BTreeMap<String, ModelPrice> = EMBEDDED
            .iter()
            .map(|(name, p)| ((*name).to_string(), *p))
            .collect();
        prices.extend(file.iter().map(|(k, v)| (k.clone(), *v)));
        for (name, o) in overrides {
            prices.insert(name.clone(), o.to_price());
        }
        Self { prices }
    }

    /// The price of `model`: by exact id, then by its family (the id without a trailing
    /// `-YYYYMMDD` date, a `[1m]` context suffix, or a provider prefix such as
    /// `us.anthropic.`).
    pub fn lookup(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(p) = self.prices.get(model) {
            return Some(p);
        }
        self.prices.get(family(model))
    }

    /// USD for one response, or `None` when the model has no price.
    pub fn cost(&self, model: &str, tokens: &Tokens) -> Option<f64> {
        self.lookup(model).map(|p| cost_of(p, tokens))
    }
}

/// The model family of an API model id.
pub fn family(model: &str) -> &str {
    let mut m = model;
    if let Some(i) = m.find("anthropic.") {
        m = &m[i + "anthropic.".len()..];
    }
    if let Some(rest) = m.strip_prefix("anthropic/") {
        m = rest;
    }
    if let Some(i) = m.find('[') {
        m = &m[..i];
    }
    // Cut at a `-YYYYMMDD` date and anything after it (Bedrock's `-v1:0`).
    let b = m.as_bytes();
    let mut i = 0;
    while i + 9 <= b.len() {
        if b[i] == b'-'
            && b[i + 1..i + 9].iter().all(u8::is_ascii_digit)
            && (i + 9 == b.len() || !b[i + 9].is_ascii_digit())
        {
            return &m[..i];
        }
        i += 1;
    }
    m
}

fn tiered(tokens: u64, base: f64, long: Option<f64>) -> f64 {
    match long {
        Some(long) if tokens > LONG_CONTEXT_THRESHOLD_TOKENS => {
            LONG_CONTEXT_THRESHOLD_TOKENS as f64 * base
                + (tokens - LONG_CONTEXT_THRESHOLD_TOKENS) as f64 * long
        }
        _ => tokens as f64 * base,
    }
}

/// USD for `tokens` at `price`.
pub fn cost_of(price: &ModelPrice, t: &Tokens) -> f64 {
    let b = &price.base;
    let l = price.long_context.as_ref();
    let write_1h = t.cache_creation_1h.min(t.cache_creation);
    let write_5m = t.cache_creation - write_1h;
    tiered(t.input, b.input, l.map(|l| l.input))
        + tiered(t.output, b.output, l.map(|l| l.output))
        + tiered(write_5m, b.cache_write_5m, l.map(|l| l.cache_write_5m))
        + tiered(write_1h, b.cache_write_1h, l.map(|l| l.cache_write_1h))
        + tiered(t.cache_read, b.cache_read, l.map(|l| l.cache_read))
        + t.web_search_requests as f64 * price.web_search
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, output: u64, cw: u64, cw1h: u64, cr: u64) -> Tokens {
        Tokens {
            input,
            output,
            cache_creation: cw,
            cache_creation_1h: cw1h,
            cache_read: cr,
            web_search_requests: 0,
        }
    }

    #[test]
    fn families_strip_dates_contexts_and_providers() {
        for (id, fam) in [
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-opus-4-8[1m]", "claude-opus-4-8"),
            (
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                "claude-sonnet-4",
            ),
            ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            ("claude-opus-4-1-20250805", "claude-opus-4-1"),
            ("gpt-5", "gpt-5"),
        ] {
            assert_eq!(family(id), fam, "{id}");
        }
    }

    /// Figures read from `ccusage claude daily --offline --json` for one response with
    /// 1M tokens of one type (see tests/it/transcripts.rs for the live agreement test).
    #[test]
    fn one_million_tokens_cost_what_ccusage_says() {
        let t = PriceTable::default();
        let m = 1_000_000;
        let cases: &[(&str, Tokens, f64)] = &[
            ("claude-opus-4-1-20250805", tokens(m, 0, 0, 0, 0), 15.0),
            ("claude-opus-4-1-20250805", tokens(0, 0, m, m, 0), 30.0),
            ("claude-opus-4-8", tokens(0, m, 0, 0, 0), 25.0),
            ("claude-opus-4-8", tokens(0, 0, m, 0, 0), 6.25),
            (
                "claude-sonnet-4-5-20250929",
                tokens(m, 0, 0, 0, 0),
                5.3999999999999995,
            ),
            ("claude-sonnet-4-20250514", tokens(0, m, 0, 0, 0), 21.0),
            ("claude-sonnet-4-20250514", tokens(0, 0, m, 0, 0), 6.75),
            ("claude-sonnet-4-20250514", tokens(0, 0, 0, 0, m), 0.54),
            ("claude-sonnet-4-20250514", tokens(300_000, 0, 0, 0, 0), 1.2),
            ("claude-sonnet-4-6", tokens(m, 0, 0, 0, 0), 3.0),
            ("claude-haiku-4-5-20251001", tokens(0, 0, m, m, 0), 2.0),
            ("claude-3-5-haiku-20241022", tokens(0, m, 0, 0, 0), 4.0),
            ("claude-3-haiku-20240307", tokens(0, 0, 0, 0, m), 0.03),
        ];
        for (model, tok, want) in cases {
            let got = t.cost(model, tok).unwrap();
            assert!(
                (got - want).abs() <= want * 1e-12,
                "{model} {tok:?}: {got} != {want}"
            );
        }
        assert_eq!(t.cost("claude-fable-9", &tokens(m, 0, 0, 0, 0)), None);
    }

    #[test]
    fn a_litellm_file_prices_per_token_with_tiers_and_skips_non_token_entries() {
        let file = br#"{
            "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "max_tokens": "LEGACY", "litellm_provider": "one of https://docs.litellm.ai/docs/providers"},
            "claude-sonnet-4-20250514": {"input_cost_per_token": 6e-06, "output_cost_per_token": 3e-05, "cache_creation_input_token_cost": 7.5e-06, "cache_creation_input_token_cost_above_1hr": 1.2e-05, "cache_read_input_token_cost": 6e-07, "input_cost_per_token_above_200k_tokens": 1.2e-05, "litellm_provider": "anthropic", "mode": "chat", "max_input_tokens": 1000000},
            "claude-fable-9": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "litellm_provider": "anthropic"},
            "dall-e-3": {"input_cost_per_pixel": 1e-08, "output_cost_per_pixel": 0.0, "mode": "image_generation"}
        }"#;
        let parsed = parse_price_file(file).unwrap();
        assert!(!parsed.contains_key("dall-e-3"));
        let t = PriceTable::with_file(&parsed, &BTreeMap::new());
        let m = 1_000_000;
        // Twice the list price, as the file says, for the dated id...
        let c = t
            .cost("claude-sonnet-4-20250514", &tokens(m, m, m, 0, m))
            .unwrap();
        assert!(
            (c - (6.0 * 0.2 + 12.0 * 0.8 + 30.0 + 7.5 + 0.6)).abs() < 1e-9,
            "{c}"
        );
        let c = t
            .cost("claude-sonnet-4-20250514", &tokens(0, 0, m, m, 0))
            .unwrap();
        assert!((c - 12.0).abs() < 1e-9, "1h writes: {c}");
        // ...the family keeps the embedded price; a new model gets one; cache prices the
        // file leaves out are zero, as ccusage reads them.
        assert_eq!(
            t.cost("claude-sonnet-4", &tokens(100_000, 0, 0, 0, 0)),
            Some(0.3)
        );
        let c = t.cost("claude-fable-9", &tokens(m, m, m, 0, m)).unwrap();
        assert!((c - 3.0).abs() < 1e-9, "{c}");
    }

    #[test]
    fn malformed_price_files_are_refused_with_the_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"[1, 2]", "not a JSON object of models"),
            (b"{\"claude-x\": {\"input_cost_per_token\": \"3e-06\", \"output_cost_per_token\": 1e-05}}", "model \"claude-x\": input_cost_per_token is \"3e-06\""),
            (b"{\"claude-x\": {\"input_cost_per_token\": -1, \"output_cost_per_token\": 1e-05}}", "input_cost_per_token is -1"),
            (b"{\"claude-x\": {\"input\": 3, \"outptu\": 15}}", "unknown field `outptu`"),
            (b"{\"claude-x\": {\"input\": 3, \"output\": -15}}", "output is -15"),
            (b"{\"dall-e-3\": {\"input_cost_per_pixel\": 1e-08}}", "holds no model with token prices"),
            (b"{\"claude-x\": {\"input\": 3, ", "not a JSON object"),
        ];
        for (text, want) in cases {
            let e = parse_price_file(text).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(text));
        }
        let own = parse_price_file(br#"{"claude-fable-9": {"input": 2, "output": 10}}"#).unwrap();
        let t = PriceTable::with_file(&own, &BTreeMap::new());
        assert_eq!(
            t.cost("claude-fable-9", &tokens(1_000_000, 0, 0, 0, 0)),
            Some(2.0)
        );
    }

    #[test]
    fn overrides_replace_and_extend() {
        let mut o = BTreeMap::new();
        o.insert(
            "claude-fable-9".to_string(),
            PriceOverride {
                input: 2.0,
                output: 10.0,
                cache_write_5m: None,
                cache_write_1h: None,
                cache_read: Some(0.5),
                web_search: None,
            },
        );
        let t = PriceTable::new(&o);
        let c = t.cost(
            "claude-fable-9-20270101",
            &tokens(1_000_000, 0, 0, 0, 1_000_000),
        );
        assert_eq!(c, Some(2.5));
        let mut web = tokens(0, 0, 0, 0, 0);
        web.web_search_requests = 3;
        assert_eq!(t.cost("claude-opus-4-8", &web), Some(0.03));
    }
}
