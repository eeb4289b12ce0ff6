//! OTLP metric names and attribute keys in Prometheus form, translated the way the
//! OpenTelemetry Collector's Prometheus exporter does (otlptranslator `normalizeName` with
//! unit suffixes and `_total`), so community dashboards for Claude Code work unchanged:
//! `claude_code.cost.usage` with unit `USD` becomes `claude_code_cost_usage_USD_total`.
//!
//! Pure string functions; no state.

/// What kind of Prometheus metric an OTLP metric becomes; decides the suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A monotonic sum: `_total`.
    Counter,
    /// A gauge or non-monotonic sum: unit "1" becomes `_ratio`.
    Gauge,
    /// A histogram: unit suffix only.
    Histogram,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// Replaces characters Prometheus does not allow in names with `_` and trims `_`.
fn clean_unit(word: &str) -> String {
    let s: String = word
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    s.trim_matches('_').to_string()
}

/// The Prometheus name of an OTLP metric.
pub fn metric_name(name: &str, unit: &str, kind: NameKind) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !is_name_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let mut units = unit.splitn(2, '/');
    let main = units.next().unwrap_or("").trim();
    if !main.is_empty() && !main.contains(['{', '}']) {
        let word = clean_unit(unit_word(main));
        if !word.is_empty() && !tokens.contains(&word) {
            tokens.push(word);
        }
    }
    if let Some(per) = units.next().map(str::trim) {
        if !per.is_empty() && !per.contains(['{', '}']) {
            let word = clean_unit(per_unit_word(per));
            if !word.is_empty() && !tokens.contains(&word) {
                tokens.push("per".into());
                tokens.push(word);
            }
        }
    }
    match kind {
        NameKind::Counter => {
            tokens.retain(|t| t != "total");
            tokens.push("total".into());
        }
        NameKind::Gauge if unit == "1" => {
            tokens.retain(|t| t != "ratio");
            tokens.push("ratio".into());
        }
        _ => {}
    }
    let mut out = tokens.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The Prometheus label name of an attribute key (`agent.name` → `agent_name`).
pub fn label_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_metrics_get_the_collector_names() {
        let c = NameKind::Counter;
        let cases = [
            (
                "claude_code.session.count",
                "",
                "claude_code_session_count_total",
            ),
            (
                "claude_code.cost.usage",
                "USD",
                "claude_code_cost_usage_USD_total",
            ),
            (
                "claude_code.token.usage",
                "tokens",
                "claude_code_token_usage_tokens_total",
            ),
            (
                "claude_code.lines_of_code.count",
                "",
                "claude_code_lines_of_code_count_total",
            ),
            (
                "claude_code.code_edit_tool.decision",
                "",
                "claude_code_code_edit_tool_decision_total",
            ),
            (
                "claude_code.commit.count",
                "",
                "claude_code_commit_count_total",
            ),
            (
                "claude_code.pull_request.count",
                "",
                "claude_code_pull_request_count_total",
            ),
            (
                "claude_code.active_time.total",
                "s",
                "claude_code_active_time_seconds_total",
            ),
        ];
        for (name, unit, want) in cases {
            assert_eq!(metric_name(name, unit, c), want, "{name} [{unit}]");
        }
    }

    #[test]
    fn other_clients_follow_the_same_rules() {
        assert_eq!(
            metric_name("http.server.duration", "ms", NameKind::Histogram),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", NameKind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("requests", "{request}", NameKind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_name("net.io", "By/s", NameKind::Gauge),
            "net_io_bytes_per_second"
        );
        assert_eq!(metric_name("9lives", "", NameKind::Gauge), "_9lives");
        assert_eq!(metric_name("a.total.b", "", NameKind::Counter), "a_b_total");
        assert_eq!(label_name("agent.name"), "agent_name");
        assert_eq!(label_name("1x"), "key_1x");
    }
}
