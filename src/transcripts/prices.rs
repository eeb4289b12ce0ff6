//! The price of a response: an embedded table of Anthropic list prices per model, which the
//! config may override or extend, and the cost formula.
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

impl PriceTable {
    /// The embedded prices, with `overrides` (keyed by model id or family) replacing them.
    pub fn new(overrides: &BTreeMap<String, PriceOverride>) -> Self {
        let mut prices: BTreeMap<String, ModelPrice> = EMBEDDED
            .iter()
            .map(|(name, p)| ((*name).to_string(), *p))
            .collect();
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
