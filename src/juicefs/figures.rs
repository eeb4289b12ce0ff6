//! The JuiceFS client's own figures, from either of its two outputs. Pure: text in, figures
//! out.
//!
//! - `<mount>/.stats`: an internal file of the mount, flat `name value` lines made from the
//!   client's Prometheus registry (`pkg/vfs/internal.go`, `collectMetrics`). Label values are
//!   folded into the name (`juicefs_fuse_ops_total_read`; 1.0-era clients folded every label
//!   but `mp` and `vol_name`, later ones only `method` and `errno`), and a histogram becomes
//!   `<name>_total` (its count) and `<name>_sum`.
//! - The client's metrics endpoint (`--metrics`, default `127.0.0.1:9567/metrics`): Prometheus
//!   text whose samples carry `mp` (mount point) and `vol_name` labels. It is parsed with the
//!   `prometheus-parse` crate.
//!
//! Counters keep JuiceFS's legacy names without `_total` (`juicefs_blockcache_hits`); a name
//! with `_total` is accepted too, in case a client writes the newer style.

use std::collections::HashMap;

use serde::Serialize;

/// Why a client's output gave no figures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FiguresError {
    #[error("no juicefs_* line in the text: not a JuiceFS client's output")]
    NotJuicefs,
    #[error(
        "the endpoint reports mount point {found:?}, not {wanted:?}: each JuiceFS client serves \
         its own port (9567, 9568, ...); set this mount's metrics_url to its client's address"
    )]
    OtherMount { wanted: String, found: String },
}

/// What one JuiceFS client says about itself. Every field is optional: versions differ in
/// what they export.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientFigures {
    /// `juicefs_used_space`: bytes used by the whole volume (the real figure; statfs adds
    /// a synthetic capacity around it).
    pub used_bytes: Option<f64>,
    /// `juicefs_used_inodes`.
    pub used_inodes: Option<f64>,
    /// `juicefs_uptime`, seconds since the client started.
    pub uptime_seconds: Option<f64>,
    /// `juicefs_cpu_usage`, CPU seconds the client used.
    pub cpu_seconds: Option<f64>,
    /// `juicefs_memory`, resident memory of the client.
    pub memory_bytes: Option<f64>,
    /// `juicefs_blockcache_hits` / `_miss`: reads served from and missed by the local block
    /// cache, in blocks.
    pub blockcache_hits: Option<f64>,
    pub blockcache_misses: Option<f64>,
    /// `juicefs_blockcache_hit_bytes` / `_miss_bytes`.
    pub blockcache_hit_bytes: Option<f64>,
    pub blockcache_miss_bytes: Option<f64>,
    /// `juicefs_object_request_errors`: failed requests to the object store.
    pub object_request_errors: Option<f64>,
    /// FUSE operations served: the count of `juicefs_fuse_ops_durations_histogram_seconds`.
    pub fuse_ops: Option<f64>,
    /// `juicefs_fuse_open_handlers`: open files and directories.
    pub fuse_open_handles: Option<f64>,
    /// Per-method FUSE operation counts (`juicefs_fuse_ops_total{method}`), when the client
    /// exports them; sorted by method.
    pub fuse_ops_by_method: Vec<(String, f64)>,
    /// The volume name the client reports (`vol_name` label; endpoint only).
    pub volume: Option<String>,
}

const FUSE_HIST: &str = "juicefs_fuse_ops_durations_histogram_seconds";
const FUSE_OPS_BY_METHOD: &str = "juicefs_fuse_ops_total";

impl ClientFigures {
    /// Builds the figures from a name lookup. `hist_count` is how the output names a
    /// histogram's count (`_total` in `.stats`, `_count` on the endpoint).
    fn from_lookup(get: impl Fn(&str) -> Option<f64>, hist_count: &str) -> Self {
        // Legacy counter names first, then the `_total` style.
        let counter = |base: &str| get(base).or_else(|| get(&format!("{base}_total")));
        Self {
            used_bytes: get("juicefs_used_space"),
            used_inodes: get("juicefs_used_inodes"),
            uptime_seconds: get("juicefs_uptime"),
            cpu_seconds: counter("juicefs_cpu_usage"),
            memory_bytes: get("juicefs_memory"),
            blockcache_hits: counter("juicefs_blockcache_hits"),
            blockcache_misses: counter("juicefs_blockcache_miss"),
            blockcache_hit_bytes: counter("juicefs_blockcache_hit_bytes"),
            blockcache_miss_bytes: counter("juicefs_blockcache_miss_bytes"),
            object_request_errors: counter("juicefs_object_request_errors"),
            fuse_ops: get(&format!("{FUSE_HIST}{hist_count}")),
            fuse_open_handles: get("juicefs_fuse_open_handlers"),
            fuse_ops_by_method: Vec::new(),
            volume: None,
        }
    }
}

/// The `name value` lines of a `.stats` file. Names may hold any character but a space (label
/// values are folded in); the value is the last field. Lines that do not end in a number are
/// skipped.
pub fn parse_stats_lines(text: &str) -> HashMap<&str, f64> {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.trim_end().rsplit_once(' ')?;
            Some((name.trim(), value.parse::<f64>().ok()?))
        })
        .collect()
}

/// The figures in a `.stats` file.
pub fn from_stats(text: &str) -> Result<ClientFigures, FiguresError> {
    let lines = parse_stats_lines(text);
    if !lines.keys().any(|k| k.starts_with("juicefs_")) {
        return Err(FiguresError::NotJuicefs);
    }
    let mut f = ClientFigures::from_lookup(|n| lines.get(n).copied(), "_total");
    // `juicefs_fuse_ops_total{method="read"}` folds to `juicefs_fuse_ops_total_read`.
    let prefix = format!("{FUSE_OPS_BY_METHOD}_");
    f.fuse_ops_by_method = lines
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), *v)))
        .collect();
    f.fuse_ops_by_method.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(f)
}

/// How the Go client writes a label value: `\`, `"` and newline escaped.
fn escape_label_value(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The figures of the client mounted at `mount_point`, from its endpoint's Prometheus text.
///
/// Samples labelled with another `mp` are ignored; when the text has `mp` labels but none for
/// this mount, the endpoint belongs to another client and the answer is
/// [`FiguresError::OtherMount`]. Samples of the same name (one per label set) are summed.
pub fn from_prometheus_text(text: &str, mount_point: &str) -> Result<ClientFigures, FiguresError> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("parsing lines from memory cannot fail");
    // prometheus-parse keeps escapes as written and trims every '"' from both ends of a
    // value, so compare with the mount point written and trimmed the same way.
    let escaped = escape_label_value(mount_point);
    let wanted = escaped.trim_matches('"');
    let mut other_mp: Option<String> = None;
    let mut values: HashMap<&str, f64> = HashMap::new();
    let mut by_method: HashMap<&str, f64> = HashMap::new();
    let mut volume: Option<&str> = None;
    let mut any_juicefs = false;
    for s in &scrape.samples {
        if !s.metric.starts_with("juicefs_") {
            continue;
        }
        any_juicefs = true;
        match s.labels.get("mp") {
            Some(mp) if mp != wanted => {
                other_mp.get_or_insert_with(|| mp.to_string());
                continue;
            }
            _ => {}
        }
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        if volume.is_none() {
            volume = s.labels.get("vol_name");
        }
        *values.entry(s.metric.as_str()).or_default() += v;
        if s.metric == FUSE_OPS_BY_METHOD {
            if let Some(m) = s.labels.get("method") {
                *by_method.entry(m).or_default() += v;
            }
        }
    }
    if !any_juicefs {
        return Err(FiguresError::NotJuicefs);
    }
    if values.is_empty() {
        return Err(FiguresError::OtherMount {
            wanted: mount_point.to_string(),
            found: other_mp.unwrap_or_default(),
        });
    }
    let mut f = ClientFigures::from_lookup(|n| values.get(n).copied(), "_count");
    let mut methods: Vec<(String, f64)> = by_method
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    methods.sort_by(|a, b| a.0.cmp(&b.0));
    f.fuse_ops_by_method = methods;
    f.volume = volume.map(str::to_string);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/juicefs")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The figures of the client the fixtures were taken from, in either format.
    fn assert_reference_client(f: &ClientFigures) {
        assert_eq!(f.used_bytes, Some(52_613_349_376.0));
        assert_eq!(f.used_inodes, Some(183_402.0));
        assert_eq!(f.uptime_seconds, Some(86_417.512_334_208));
        assert_eq!(f.cpu_seconds, Some(1_843.27));
        assert_eq!(f.memory_bytes, Some(412_135_424.0));
        assert_eq!(f.blockcache_hits, Some(120_334.0));
        assert_eq!(f.blockcache_misses, Some(8_211.0));
        assert_eq!(f.blockcache_hit_bytes, Some(480_112_640_000.0));
        assert_eq!(f.blockcache_miss_bytes, Some(31_544_098_816.0));
        assert_eq!(f.object_request_errors, Some(3.0));
        assert_eq!(f.fuse_ops, Some(9_734_110.0), "histogram _count");
        assert_eq!(f.fuse_open_handles, Some(57.0));
    }

    #[test]
    fn stats_of_a_1_0_client_with_every_label_folded() {
        let f = from_stats(&fixture("stats-1.0.txt")).unwrap();
        // fuse_ops is the histogram's count, folded as `_total` (not a counter of that name).
        assert_reference_client(&f);
        assert!(
            f.fuse_ops_by_method.is_empty(),
            "1.0 has no per-method counter"
        );
        assert_eq!(f.volume, None, ".stats does not name the volume");
    }

    #[test]
    fn stats_of_a_newer_client_with_method_and_errno_folded() {
        let f = from_stats(&fixture("stats-1.2.txt")).unwrap();
        assert_eq!(f.used_bytes, Some(1_099_511_627_776.0));
        assert_eq!(f.object_request_errors, Some(0.0));
        assert_eq!(f.fuse_ops, Some(412_876.0));
        assert_eq!(
            f.fuse_ops_by_method,
            vec![
                ("getattr".to_string(), 201_553.0),
                ("lookup".to_string(), 150_003.0),
                ("open".to_string(), 20_110.0),
                ("read".to_string(), 38_540.0),
                ("write".to_string(), 2_670.0),
            ]
        );
    }

    #[test]
    fn counters_in_the_total_style_are_read_too() {
        let f = from_stats(
            "juicefs_blockcache_hits_total 7\njuicefs_blockcache_miss_total 2\n\
             juicefs_object_request_errors_total 5\njuicefs_cpu_usage_total 1.5\n",
        )
        .unwrap();
        assert_eq!(f.blockcache_hits, Some(7.0));
        assert_eq!(f.blockcache_misses, Some(2.0));
        assert_eq!(f.object_request_errors, Some(5.0));
        assert_eq!(f.cpu_seconds, Some(1.5));
        assert_eq!(f.used_bytes, None);
    }

    #[test]
    fn stats_lines_tolerate_odd_names_and_skip_junk() {
        let lines = parse_stats_lines(
            "juicefs_go_build_info__github.com/juicedata/juicefs_(devel) 1\n\
             juicefs_uptime 12.5\n\nnot a number here\nlonely\n",
        );
        assert_eq!(
            lines["juicefs_go_build_info__github.com/juicedata/juicefs_(devel)"],
            1.0
        );
        assert_eq!(lines["juicefs_uptime"], 12.5);
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn text_that_is_not_juicefs_is_refused() {
        assert_eq!(from_stats("hello 1\n"), Err(FiguresError::NotJuicefs));
        assert_eq!(from_stats(""), Err(FiguresError::NotJuicefs));
        assert_eq!(
            from_prometheus_text("# TYPE up gauge\nup 1\n", "/fs"),
            Err(FiguresError::NotJuicefs)
        );
    }

    #[test]
    fn endpoint_text_of_the_mount() {
        let f = from_prometheus_text(&fixture("metrics-1.1.txt"), "/fs").unwrap();
        assert_eq!(f.volume.as_deref(), Some("vibe"));
        assert_reference_client(&f);
    }

    #[test]
    fn endpoint_of_another_mount_is_named_in_the_error() {
        let err = from_prometheus_text(&fixture("metrics-1.1.txt"), "/data/models").unwrap_err();
        assert_eq!(
            err,
            FiguresError::OtherMount {
                wanted: "/data/models".into(),
                found: "/fs".into()
            }
        );
        assert!(err.to_string().contains("metrics_url"), "{err}");
    }

    #[test]
    fn endpoint_with_per_method_counters_and_escaped_mount_point() {
        let text = "# TYPE juicefs_fuse_ops_total counter\n\
            juicefs_fuse_ops_total{method=\"read\",mp=\"/mnt/a \\\"b\\\"\",vol_name=\"q\"} 4\n\
            juicefs_fuse_ops_total{method=\"write\",mp=\"/mnt/a \\\"b\\\"\",vol_name=\"q\"} 6\n\
            juicefs_object_request_errors{mp=\"/mnt/a \\\"b\\\"\",vol_name=\"q\"} 1\n\
            juicefs_object_request_errors{mp=\"/elsewhere\",vol_name=\"z\"} 100\n";
        let f = from_prometheus_text(text, "/mnt/a \"b\"").unwrap();
        assert_eq!(
            f.fuse_ops_by_method,
            vec![("read".to_string(), 4.0), ("write".to_string(), 6.0)]
        );
        assert_eq!(
            f.object_request_errors,
            Some(1.0),
            "the other mount's sample is ignored"
        );
        assert_eq!(f.volume.as_deref(), Some("q"));
    }

    #[test]
    fn endpoint_without_mp_labels_is_taken_as_this_mount() {
        let f = from_prometheus_text("juicefs_uptime 3\njuicefs_used_space 10\n", "/fs").unwrap();
        assert_eq!(f.uptime_seconds, Some(3.0));
        assert_eq!(f.used_bytes, Some(10.0));
    }
}
