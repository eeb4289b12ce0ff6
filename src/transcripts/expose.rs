//! Metric families of the transcript totals (names per the contract in docs/design.md). Called by
//! `exposition::families`; builds with its [`Family`] and measures nothing.

use prometheus::proto::MetricFamily;

use super::state::TranscriptTotals;
use crate::exposition::family::Family;

/// Appends the transcript families to `out`.
pub fn families(t: &TranscriptTotals, out: &mut Vec<MetricFamily>) {
    let mut tokens = Family::counter(
        "vibe_claude_tokens_total",
        "Tokens of deduplicated Claude API responses in transcripts, by type.",
    );
    let mut cost = Family::counter(
        "vibe_claude_cost_usd_total",
        "Cost of Claude API responses in transcripts, in USD (costUSD when written, else list price).",
    );
    let mut messages = Family::counter(
        "vibe_claude_messages_total",
        "Deduplicated Claude API responses in transcripts.",
    );
    let mut unpriced = Family::counter(
        "vibe_claude_unpriced_messages_total",
        "Responses whose model has no price (counted in tokens, not in cost); set claude.prices.",
    );
    let mut web = Family::counter(
        "vibe_claude_web_search_requests_total",
        "Web-search requests made by Claude API responses in transcripts.",
    );
    let mut tools = Family::counter(
        "vibe_claude_tool_uses_total",
        "tool_use blocks in Claude transcripts, by tool name.",
    );
    let mut prompts = Family::counter(
        "vibe_claude_prompts_total",
        "Prompts typed by the user (not tool results, not subagent tasks).",
    );
    let mut errors = Family::counter(
        "vibe_claude_api_errors_total",
        "API error messages written by Claude Code (<synthetic> model).",
    );
    let mut sessions = Family::counter(
        "vibe_claude_sessions_total",
        "Distinct Claude Code sessions seen in transcripts.",
    );
    let mut active = Family::gauge(
        "vibe_claude_active_sessions",
        "Sessions that wrote a transcript line within claude.active_window.",
    );
    let mut last = Family::gauge(
        "vibe_claude_last_activity_timestamp_seconds",
        "Time of the newest transcript line of the user.",
    );
    let mut block_cost = Family::gauge(
        "vibe_claude_block_cost_usd",
        "Cost of the current 5-hour billing block (ccusage's blocks); 0 when none is active.",
    );
    let mut block_tokens = Family::gauge(
        "vibe_claude_block_tokens",
        "Tokens of the current 5-hour billing block, by type; 0 when none is active.",
    );
    let mut block_start = Family::gauge(
        "vibe_claude_block_start_timestamp_seconds",
        "Start of the current 5-hour billing block.",
    );
    let mut block_end = Family::gauge(
        "vibe_claude_block_end_timestamp_seconds",
        "End of the current 5-hour billing block.",
    );
    let mut project_tokens = Family::counter(
        "vibe_claude_project_tokens_total",
        "Tokens of deduplicated Claude API responses per project (the directory under projects/, as ccusage names it), by type; projects beyond claude.max_projects are counted as \"other\".",
    );
    let mut project_cost = Family::counter(
        "vibe_claude_project_cost_usd_total",
        "Cost of Claude API responses per project, in USD.",
    );
    let mut project_messages = Family::counter(
        "vibe_claude_project_messages_total",
        "Deduplicated Claude API responses per project.",
    );
    let mut project_overflow = Family::counter(
        "vibe_claude_project_overflow_messages_total",
        "Responses counted under project=\"other\" because the user had claude.max_projects projects already.",
    );
    let mut today_cost = Family::gauge(
        "vibe_claude_today_cost_usd",
        "Cost of the user's Claude API responses since local midnight (otlp.time_zone), from transcripts (ccusage daily's today).",
    );
    let mut today_tokens = Family::gauge(
        "vibe_claude_today_tokens",
        "Tokens of the user's Claude API responses since local midnight, by type, from transcripts.",
    );
    let mut burn_tokens = Family::gauge(
        "vibe_claude_block_burn_rate_tokens_per_minute",
        "Tokens (all four types) per minute of the current 5-hour block, over its first to last response (ccusage's burnRate.tokensPerMinute); absent when none.",
    );
    let mut burn_cost = Family::gauge(
        "vibe_claude_block_burn_rate_usd_per_hour",
        "Cost per hour of the current 5-hour block (ccusage's burnRate.costPerHour); absent when none.",
    );
    let mut projected_tokens = Family::gauge(
        "vibe_claude_block_projected_tokens",
        "Tokens the current block reaches at its end at the current burn rate (ccusage's projection.totalTokens, unrounded).",
    );
    let mut projected_cost = Family::gauge(
        "vibe_claude_block_projected_cost_usd",
        "Cost the current block reaches at its end at the current burn rate (ccusage's projection.totalCost, unrounded).",
    );
    for (user, u) in &t.users {
        let user = user.as_str();
        for (project, p) in &u.projects {
            let project = project.as_str();
            for (kind, n) in p.tokens.by_type() {
                project_tokens.sample(
                    &[("user", user), ("project", project), ("type", kind)],
                    n as f64,
                );
            }
            let l = [("user", user), ("project", project)];
            project_cost.sample(&l, p.cost_usd);
            project_messages.sample(&l, p.messages as f64);
        }
        if !u.projects.is_empty() {
            project_overflow.sample(&[("user", user)], u.project_overflow as f64);
        }
        today_cost.sample(&[("user", user)], u.today.cost_usd);
        for (kind, n) in u.today.tokens.by_type() {
            today_tokens.sample(&[("user", user), ("type", kind)], n as f64);
        }
        if let Some(b) = &u.block
            && let Some(rate) = b.burn_rate()
        {
            let l = [("user", user)];
            burn_tokens.sample(&l, rate.tokens_per_minute);
            burn_cost.sample(&l, rate.cost_usd_per_hour);
            if let Some(p) = b.projection(t.at) {
                projected_tokens.sample(&l, p.tokens);
                projected_cost.sample(&l, p.cost_usd);
            }
        }
        for (model, m) in &u.models {
            let model = model.as_str();
            for (kind, n) in m.tokens.by_type() {
                tokens.sample(
                    &[("user", user), ("model", model), ("type", kind)],
                    n as f64,
                );
            }
            let l = [("user", user), ("model", model)];
            cost.sample(&l, m.cost_usd);
            messages.sample(&l, m.messages as f64);
            unpriced.sample(&l, m.unpriced_messages as f64);
            web.sample(&l, m.tokens.web_search_requests as f64);
        }
        for (tool, n) in &u.tools {
            tools.sample(&[("user", user), ("tool", tool.as_str())], *n as f64);
        }
        let l = [("user", user)];
        prompts.sample(&l, u.prompts as f64);
        errors.sample(&l, u.api_errors as f64);
        sessions.sample(&l, u.sessions_total as f64);
        active.sample(&l, u.active_sessions as f64);
        if let Some(at) = u.last_activity {
            last.sample(&l, at);
        }
        let b = u.block.unwrap_or_default();
        block_cost.sample(&l, b.cost_usd);
        for (kind, n) in b.tokens.by_type() {
            block_tokens.sample(&[("user", user), ("type", kind)], n as f64);
        }
        if let Some(b) = &u.block {
            block_start.sample(&l, b.start);
            block_end.sample(&l, b.end);
        }
    }
    for f in [
        tokens,
        cost,
        messages,
        unpriced,
        web,
        tools,
        prompts,
        errors,
        sessions,
        active,
        last,
        block_cost,
        block_tokens,
        block_start,
        block_end,
        project_tokens,
        project_cost,
        project_messages,
        project_overflow,
        today_cost,
        today_tokens,
        burn_tokens,
        burn_cost,
        projected_tokens,
        projected_cost,
    ] {
        f.finish(out);
    }

    let s = &t.tail;
    let mut f = Family::counter(
        "vibe_claude_transcript_lines_read_total",
        "Complete transcript lines read (counted or skipped) since the agent started.",
    );
    f.sample(&[], s.lines_read as f64);
    f.finish(out);
    let mut f = Family::counter(
        "vibe_claude_transcript_lines_skipped_total",
        "Transcript lines not counted, by reason.",
    );
    for (reason, n) in &s.lines_skipped {
        f.sample(&[("reason", reason)], *n as f64);
    }
    f.finish(out);
    let counters: [(&str, &str, u64); 2] = [
        (
            "vibe_claude_transcript_bytes_read_total",
            "Transcript bytes read since the agent started.",
            s.bytes_read,
        ),
        (
            "vibe_claude_transcript_watch_errors_total",
            "inotify errors and queue overflows (the reconcile scan covers for them).",
            s.watch_errors,
        ),
    ];
    for (name, help, v) in counters {
        let mut f = Family::counter(name, help);
        f.sample(&[], v as f64);
        f.finish(out);
    }
    let gauges: [(&str, &str, u64); 3] = [
        (
            "vibe_claude_transcript_files_watched",
            "Transcript files tracked.",
            s.files_watched,
        ),
        (
            "vibe_claude_transcript_homes",
            "Claude homes found.",
            s.homes,
        ),
        (
            "vibe_claude_transcript_dedupe_keys",
            "Response keys held for deduplication (freed when their file is deleted).",
            s.dedupe_keys,
        ),
    ];
    for (name, help, v) in gauges {
        let mut f = Family::gauge(name, help);
        f.sample(&[], v as f64);
        f.finish(out);
    }
}
