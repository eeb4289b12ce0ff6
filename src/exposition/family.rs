//! [`Family`]: a Prometheus metric family under construction. A leaf: every source's
//! `expose` builds its families with it, and nothing here knows a source.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// A metric family under construction.
pub struct Family {
    inner: MetricFamily,
}

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Self {
        let mut inner = MetricFamily::default();
        inner.set_name(name.to_string());
        inner.set_help(help.to_string());
        inner.set_field_type(kind);
        Self { inner }
    }

    pub fn gauge(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::GAUGE)
    }

    pub fn counter(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::COUNTER)
    }

    pub fn histogram(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::HISTOGRAM)
    }

    /// Adds one histogram sample: `buckets` are (finite upper bound, cumulative count); the
    /// `+Inf` bucket is `count`.
    pub fn histogram_sample(
        &mut self,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        count: u64,
        sum: f64,
    ) -> &mut Self {
        let mut h = prometheus::proto::Histogram::default();
        h.set_sample_count(count);
        h.set_sample_sum(sum);
        h.set_bucket(
            buckets
                .iter()
                .filter(|(le, _)| le.is_finite())
                .map(|(le, c)| {
                    let mut b = prometheus::proto::Bucket::default();
                    b.set_upper_bound(*le);
                    b.set_cumulative_count(*c);
                    b
                })
                .collect(),
        );
        let mut m = Metric::from_label(Self::labels(labels));
        m.set_histogram(h);
        self.inner.mut_metric().push(m);
        self
    }

    fn labels(labels: &[(&str, &str)]) -> Vec<LabelPair> {
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v.to_string());
                l
            })
            .collect()
    }

    /// Adds one sample with these labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let mut m = Metric::from_label(Self::labels(labels));
        if self.inner.get_field_type() == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.inner.mut_metric().push(m);
        self
    }

    /// Adds a 0/1 sample.
    pub fn flag(&mut self, labels: &[(&str, &str)], value: bool) -> &mut Self {
        self.sample(labels, if value { 1.0 } else { 0.0 })
    }

    /// The family, or nothing when it has no samples (an empty family is not exposed).
    pub fn finish(self, out: &mut Vec<MetricFamily>) {
        if !self.inner.get_metric().is_empty() {
            out.push(self.inner);
        }
    }
}
