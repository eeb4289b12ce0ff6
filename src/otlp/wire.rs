//! Protobuf metrics requests straight to a [`MetricsBatch`], without building the decoded
//! message first: strings are borrowed from the body, fields the agent does not use are
//! skipped unread, and the conversion rules are [`BatchBuilder`]'s, shared with the
//! OTLP/JSON path ([`super::convert::metrics`]). Pure: bytes in, a batch or an error out.
//!
//! Protobuf's merge rules hold as prost applies them: fields may come in any order, a
//! repeated field may be split, the last value of a scalar or a `oneof` wins, and a message
//! field given twice is merged. Tests check that every request prost decodes converts to
//! the same batch here. Unlike prost, attribute keys and values are checked for UTF-8 only
//! where they are shown (label values; invalid bytes become U+FFFD), not on arrival.
//!
//! Wire reading is prost's own encoding layer (`prost::encoding`: keys, varints, skipping),
//! the functions its generated decoders call. Every nested message is read from its own
//! slice, so no read can leave it.

use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use super::convert::{
    Attr, AttrValue, BatchBuilder, DataKind, LabelPolicy, MetricCtx, MetricsBatch,
};

/// Deepest nesting of array and key-value-list attribute values.
const MAX_VALUE_DEPTH: u32 = 32;

/// Why a body is not a metrics request.
pub type WireError = String;

fn pe(e: prost::DecodeError) -> WireError {
    e.to_string()
}

/// The rest of one message, read from the front.
type Buf<'a> = &'a [u8];

/// Calls `f(field, wire type, rest)` for each field of `msg`. `f` reads the value from the
/// front of `rest` and returns true, or returns false to have it skipped.
#[inline(always)]
fn fields<'a>(
    msg: &'a [u8],
    mut f: impl FnMut(u32, WireType, &mut Buf<'a>) -> Result<bool, WireError>,
) -> Result<(), WireError> {
    let mut buf: Buf<'a> = msg;
    while !buf.is_empty() {
        let (field, wire) = decode_key(&mut buf).map_err(pe)?;
        if !f(field, wire, &mut buf)? {
            skip_field(wire, field, &mut buf, DecodeContext::default()).map_err(pe)?;
        }
    }
    Ok(())
}

fn want(wire: WireType, expected: WireType, field: u32, what: &str) -> Result<(), WireError> {
    if wire == expected {
        Ok(())
    } else {
        Err(format!(
            "{what} field {field}: wire type {wire:?}, expected {expected:?}"
        ))
    }
}

/// A length-delimited value: a nested message, string or bytes.
#[inline(always)]
fn bytes<'a>(buf: &mut Buf<'a>) -> Result<&'a [u8], WireError> {
    let len = decode_varint(buf).map_err(pe)?;
    if len > buf.len() as u64 {
        return Err(format!(
            "a length of {len} bytes runs past the end of its message ({} left)",
            buf.len()
        ));
    }
    let (head, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(head)
}

#[inline(always)]
fn string<'a>(buf: &mut Buf<'a>) -> Result<&'a str, WireError> {
    std::str::from_utf8(bytes(buf)?).map_err(|e| format!("a string is not UTF-8: {e}"))
}

#[inline(always)]
fn fixed64(buf: &mut Buf) -> Result<u64, WireError> {
    let Some((head, rest)) = buf.split_first_chunk::<8>() else {
        return Err("a 64-bit value runs past the end of its message".into());
    };
    *buf = rest;
    Ok(u64::from_le_bytes(*head))
}

#[inline(always)]
fn varint(buf: &mut Buf) -> Result<u64, WireError> {
    decode_varint(buf).map_err(pe)
}

/// Converts a protobuf `ExportMetricsServiceRequest` under `policy`.
pub fn metrics(body: &[u8], policy: &LabelPolicy) -> Result<MetricsBatch, WireError> {
    let mut b = BatchBuilder::new(policy);
    let mut attrs = Vec::new();
    fields(body, |field, wire, r| {
        if field != 1 {
            return Ok(false);
        }
        want(
            wire,
            WireType::LengthDelimited,
            field,
            "ExportMetricsServiceRequest",
        )?;
        let rm = bytes(r)?;
        resource_metrics(rm, &mut b, &mut attrs)?;
        Ok(true)
    })?;
    Ok(b.finish())
}

fn resource_metrics<'a>(
    rm: &'a [u8],
    b: &mut BatchBuilder,
    attrs: &mut Vec<Attr<'a>>,
) -> Result<(), WireError> {
    attrs.clear();
    let mut scopes: Vec<&'a [u8]> = Vec::new();
    fields(rm, |field, wire, r| match field {
        1 => {
            want(wire, WireType::LengthDelimited, field, "ResourceMetrics")?;
            let res = bytes(r)?;
            fields(res, |field, wire, r| {
                if field != 1 {
                    return Ok(false);
                }
                want(wire, WireType::LengthDelimited, field, "Resource")?;
                attrs.push(key_value(bytes(r)?, 0)?);
                Ok(true)
            })?;
            Ok(true)
        }
        2 => {
            want(wire, WireType::LengthDelimited, field, "ResourceMetrics")?;
            scopes.push(bytes(r)?);
            Ok(true)
        }
        _ => Ok(false),
    })?;
    b.resource(attrs);
    for sm in scopes {
        scope_metrics(sm, b, attrs)?;
    }
    Ok(())
}

fn scope_metrics<'a>(
    sm: &'a [u8],
    b: &mut BatchBuilder,
    attrs: &mut Vec<Attr<'a>>,
) -> Result<(), WireError> {
    let mut scope: Option<&str> = None;
    let mut metrics: Vec<&'a [u8]> = Vec::new();
    fields(sm, |field, wire, r| match field {
        1 => {
            want(wire, WireType::LengthDelimited, field, "ScopeMetrics")?;
            let s = bytes(r)?;
            let mut name = scope.unwrap_or("");
            fields(s, |field, wire, r| {
                if field != 1 {
                    return Ok(false);
                }
                want(
                    wire,
                    WireType::LengthDelimited,
                    field,
                    "InstrumentationScope",
                )?;
                name = string(r)?;
                Ok(true)
            })?;
            scope = Some(name);
            Ok(true)
        }
        2 => {
            want(wire, WireType::LengthDelimited, field, "ScopeMetrics")?;
            metrics.push(bytes(r)?);
            Ok(true)
        }
        _ => Ok(false),
    })?;
    b.scope(scope);
    for m in metrics {
        metric(m, b, attrs)?;
    }
    Ok(())
}

fn metric<'a>(
    m: &'a [u8],
    b: &mut BatchBuilder,
    attrs: &mut Vec<Attr<'a>>,
) -> Result<(), WireError> {
    let (mut name, mut description, mut unit) = ("", "", "");
    // The `data` oneof: the last field wins; the same field given again is merged.
    let mut data_field = 0;
    let mut data: Vec<&'a [u8]> = Vec::new();
    fields(m, |field, wire, r| {
        match field {
            1..=3 => {
                want(wire, WireType::LengthDelimited, field, "Metric")?;
                let s = string(r)?;
                match field {
                    1 => name = s,
                    2 => description = s,
                    _ => unit = s,
                }
            }
            5 | 7 | 9 | 10 | 11 => {
                want(wire, WireType::LengthDelimited, field, "Metric")?;
                let d = bytes(r)?;
                if field != data_field {
                    data.clear();
                    data_field = field;
                }
                data.push(d);
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let (mut n_points, mut temporality, mut monotonic) = (0, 0i32, false);
    for d in &data {
        fields(d, |field, wire, r| match field {
            1 => {
                want(wire, WireType::LengthDelimited, field, "metric data")?;
                bytes(r)?;
                n_points += 1;
                Ok(true)
            }
            2 if matches!(data_field, 7 | 9 | 10) => {
                want(wire, WireType::Varint, field, "metric data")?;
                temporality = varint(r)? as i32;
                Ok(true)
            }
            3 if data_field == 7 => {
                want(wire, WireType::Varint, field, "Sum")?;
                monotonic = varint(r)? != 0;
                Ok(true)
            }
            _ => Ok(false),
        })?;
    }
    let kind = match data_field {
        0 => DataKind::None,
        5 => DataKind::Gauge,
        7 => DataKind::Sum {
            temporality,
            monotonic,
        },
        9 => DataKind::Histogram { temporality },
        10 => DataKind::ExponentialHistogram,
        _ => DataKind::Summary,
    };
    let Some(ctx) = b.metric(name, unit, description, kind, n_points) else {
        return Ok(());
    };
    for d in &data {
        fields(d, |field, wire, r| {
            if field != 1 {
                return Ok(false);
            }
            want(wire, WireType::LengthDelimited, field, "metric data")?;
            let p = bytes(r)?;
            if data_field == 9 {
                histogram_point(p, &ctx, b, attrs)?;
            } else {
                number_point(p, &ctx, b, attrs)?;
            }
            Ok(true)
        })?;
    }
    Ok(())
}

fn number_point<'a>(
    p: &'a [u8],
    ctx: &MetricCtx,
    b: &mut BatchBuilder,
    attrs: &mut Vec<Attr<'a>>,
) -> Result<(), WireError> {
    attrs.clear();
    let (mut start, mut time, mut value) = (0, 0, None);
    fields(p, |field, wire, r| {
        match field {
            7 => {
                want(wire, WireType::LengthDelimited, field, "NumberDataPoint")?;
                attrs.push(key_value(bytes(r)?, 0)?);
            }
            2 | 3 | 4 | 6 => {
                want(wire, WireType::SixtyFourBit, field, "NumberDataPoint")?;
                let x = fixed64(r)?;
                match field {
                    2 => start = x,
                    3 => time = x,
                    4 => value = Some(f64::from_bits(x)),
                    _ => value = Some(x as i64 as f64),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    b.number_point(ctx, attrs, start, time, value);
    Ok(())
}

/// Appends a repeated 64-bit field's values, packed or not.
fn fixed64s(
    r: &mut Buf,
    wire: WireType,
    field: u32,
    mut push: impl FnMut(u64),
) -> Result<(), WireError> {
    match wire {
        WireType::SixtyFourBit => push(fixed64(r)?),
        WireType::LengthDelimited => {
            let packed = bytes(r)?;
            if packed.len() % 8 != 0 {
                return Err(format!(
                    "HistogramDataPoint field {field}: packed length {} is not a multiple of 8",
                    packed.len()
                ));
            }
            for c in packed.chunks_exact(8) {
                push(u64::from_le_bytes(c.try_into().expect("8 bytes")));
            }
        }
        _ => want(wire, WireType::LengthDelimited, field, "HistogramDataPoint")?,
    }
    Ok(())
}

fn histogram_point<'a>(
    p: &'a [u8],
    ctx: &MetricCtx,
    b: &mut BatchBuilder,
    attrs: &mut Vec<Attr<'a>>,
) -> Result<(), WireError> {
    attrs.clear();
    let (mut start, mut time, mut count, mut sum) = (0, 0, 0, None);
    let (mut bounds, mut buckets) = (Vec::new(), Vec::new());
    fields(p, |field, wire, r| {
        match field {
            9 => {
                want(wire, WireType::LengthDelimited, field, "HistogramDataPoint")?;
                attrs.push(key_value(bytes(r)?, 0)?);
            }
            2..=5 => {
                want(wire, WireType::SixtyFourBit, field, "HistogramDataPoint")?;
                let x = fixed64(r)?;
                match field {
                    2 => start = x,
                    3 => time = x,
                    4 => count = x,
                    _ => sum = Some(f64::from_bits(x)),
                }
            }
            6 => fixed64s(r, wire, field, |x| buckets.push(x))?,
            7 => fixed64s(r, wire, field, |x| bounds.push(f64::from_bits(x)))?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    b.histogram_point(ctx, attrs, start, time, count, sum, bounds, buckets);
    Ok(())
}

/// The common encoding of a string attribute, as every OTLP SDK writes it: key (field 1),
/// then value (field 2) holding only a string (field 1), each length under 128 bytes.
/// Read without the general field loop; anything else returns `None` and takes it.
#[inline(always)]
fn plain_string_attr(kv: &[u8]) -> Option<Attr<'_>> {
    let [0x0a, klen, rest @ ..] = kv else {
        return None;
    };
    let klen = *klen as usize;
    if klen >= 0x80 || rest.len() < klen {
        return None;
    }
    let (key, rest) = rest.split_at(klen);
    let [0x12, vlen, 0x0a, slen, s @ ..] = rest else {
        return None;
    };
    let (vlen, slen) = (*vlen as usize, *slen as usize);
    if vlen >= 0x80 || slen >= 0x80 || vlen != slen + 2 || s.len() != slen {
        return None;
    }
    Some(Attr {
        key,
        value: AttrValue::Str(s),
    })
}

fn key_value(kv: &[u8], depth: u32) -> Result<Attr<'_>, WireError> {
    if let Some(a) = plain_string_attr(kv) {
        return Ok(a);
    }
    let mut key: &[u8] = b"";
    let mut value = AttrValue::Empty;
    fields(kv, |field, wire, r| {
        match field {
            1 => {
                want(wire, WireType::LengthDelimited, field, "KeyValue")?;
                key = bytes(r)?;
            }
            2 => {
                want(wire, WireType::LengthDelimited, field, "KeyValue")?;
                any_value(bytes(r)?, &mut value, depth)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Attr { key, value })
}

/// Merges an `AnyValue` message into `dst`: the last field of the oneof wins, and an array
/// or key-value list given again is extended.
fn any_value<'a>(v: &'a [u8], dst: &mut AttrValue<'a>, depth: u32) -> Result<(), WireError> {
    if depth >= MAX_VALUE_DEPTH {
        return Err(format!(
            "attribute values nested more than {MAX_VALUE_DEPTH} deep"
        ));
    }
    fields(v, |field, wire, r| {
        let new = match field {
            1 => {
                want(wire, WireType::LengthDelimited, field, "AnyValue")?;
                AttrValue::Str(bytes(r)?)
            }
            2 | 3 | 8 => {
                want(wire, WireType::Varint, field, "AnyValue")?;
                let x = varint(r)?;
                match field {
                    2 => AttrValue::Bool(x != 0),
                    3 => AttrValue::Int(x as i64),
                    _ => AttrValue::Other,
                }
            }
            4 => {
                want(wire, WireType::SixtyFourBit, field, "AnyValue")?;
                AttrValue::Double(f64::from_bits(fixed64(r)?))
            }
            5 => {
                want(wire, WireType::LengthDelimited, field, "AnyValue")?;
                let list = bytes(r)?;
                let mut items = match std::mem::replace(dst, AttrValue::Empty) {
                    AttrValue::Array(items) => items,
                    _ => Vec::new(),
                };
                fields(list, |field, wire, r| {
                    if field != 1 {
                        return Ok(false);
                    }
                    want(wire, WireType::LengthDelimited, field, "ArrayValue")?;
                    let mut item = AttrValue::Empty;
                    any_value(bytes(r)?, &mut item, depth + 1)?;
                    items.push(item);
                    Ok(true)
                })?;
                AttrValue::Array(items)
            }
            6 => {
                want(wire, WireType::LengthDelimited, field, "AnyValue")?;
                let list = bytes(r)?;
                let mut items = match std::mem::replace(dst, AttrValue::Empty) {
                    AttrValue::Kvlist(items) => items,
                    _ => Vec::new(),
                };
                fields(list, |field, wire, r| {
                    if field != 1 {
                        return Ok(false);
                    }
                    want(wire, WireType::LengthDelimited, field, "KeyValueList")?;
                    items.push(key_value(bytes(r)?, depth + 1)?);
                    Ok(true)
                })?;
                AttrValue::Kvlist(items)
            }
            7 => {
                want(wire, WireType::LengthDelimited, field, "AnyValue")?;
                AttrValue::Bytes(bytes(r)?)
            }
            _ => return Ok(false),
        };
        *dst = new;
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::convert;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum, Summary, metric::Data, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use proptest::prelude::*;
    use prost::Message;

    /// prost decode, then the decoded-message conversion: what the wire path must equal.
    fn reference(body: &[u8], policy: &LabelPolicy) -> Option<MetricsBatch> {
        ExportMetricsServiceRequest::decode(body)
            .ok()
            .map(|r| convert::metrics(&r, policy))
    }

    fn fixture_bodies() -> Vec<(String, Vec<u8>)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp");
        let mut out = Vec::new();
        for dir in walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_map(Result::ok)
        {
            let p = dir.path();
            if p.extension().is_some_and(|x| x == "body") {
                let raw = std::fs::read(p).unwrap();
                let plain =
                    super::super::decode::decompress(&raw, Some("gzip"), 1 << 24).unwrap_or(raw);
                out.push((p.display().to_string(), plain));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_real_cli_metrics_body_converts_as_prost_then_convert_does() {
        let policy = LabelPolicy::default();
        let mut compared = 0;
        for (name, body) in fixture_bodies() {
            let Some(want) = reference(&body, &policy) else {
                continue;
            };
            if want.total_points == 0 {
                continue;
            }
            let got = metrics(&body, &policy).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
            compared += 1;
        }
        assert!(compared >= 10, "only {compared} metrics fixtures compared");
    }

    #[test]
    fn stream_and_session_hashes_are_those_of_earlier_releases() {
        // Cumulative streams restored from a state file are matched by these hashes: a
        // change would count every restored cumulative stream again after an upgrade.
        // Values printed by the release before the wire path (commit ac3b96a).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/otlp/proto-delta/run1/0003.body");
        let got = metrics(&std::fs::read(path).unwrap(), &LabelPolicy::default()).unwrap();
        let streams: Vec<u64> = got.points.iter().map(|p| p.stream).collect();
        assert_eq!(
            streams,
            [
                17669443307549345551,
                1567629514342854259,
                7768438171655214693,
                11745409041826903820,
                18383549994988064979
            ],
            "{:?}",
            got.points
        );
        assert_eq!(got.sessions, [186075038901476460]);
    }

    #[test]
    fn fields_out_of_order_and_split_messages_merge_as_protobuf_says() {
        // A Metric whose data comes before its name, given in two halves; a point whose
        // value is given twice (the last wins) and whose attributes come after it.
        let attr = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let point = |v: f64, attrs: Vec<KeyValue>| NumberDataPoint {
            value: Some(number_data_point::Value::AsDouble(v)),
            attributes: attrs,
            time_unix_nano: 7,
            ..Default::default()
        };
        let sum = |points| {
            Some(Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: 1,
                is_monotonic: true,
            }))
        };
        let mut metric_bytes = Metric {
            data: sum(vec![point(1.0, vec![attr("model", "a")])]),
            ..Default::default()
        }
        .encode_to_vec();
        metric_bytes.extend(
            Metric {
                name: "claude_code.cost.usage".into(),
                unit: "USD".into(),
                data: sum(vec![point(2.0, vec![attr("model", "b")])]),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        let scope = ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "s".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut sm = scope.encode_to_vec();
        sm.push(2 << 3 | 2);
        prost::encode_length_delimiter(metric_bytes.len(), &mut sm).unwrap();
        sm.extend(&metric_bytes);
        // ResourceMetrics with its scope before its resource, and the resource given twice.
        let mut rm = Vec::new();
        rm.push(2 << 3 | 2);
        prost::encode_length_delimiter(sm.len(), &mut rm).unwrap();
        rm.extend(&sm);
        for a in [attr("type", "input"), attr("session.id", "x")] {
            rm.extend(
                ResourceMetrics {
                    resource: Some(Resource {
                        attributes: vec![a],
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .encode_to_vec(),
            );
        }
        let mut body = vec![1 << 3 | 2];
        prost::encode_length_delimiter(rm.len(), &mut body).unwrap();
        body.extend(&rm);
        let policy = LabelPolicy::default();
        let want = reference(&body, &policy).unwrap();
        assert_eq!(want.points.len(), 2);
        assert_eq!(&*want.points[0].family, "claude_code_cost_usage_USD_total");
        assert_eq!(
            *want.points[1].labels,
            vec![
                ("model".to_string(), "b".to_string()),
                ("type".to_string(), "input".to_string())
            ]
        );
        assert_eq!(metrics(&body, &policy).unwrap(), want);
    }

    #[test]
    fn the_plain_string_shortcut_reads_only_what_the_general_path_would() {
        let attr = |key: &'static str, value| Attr {
            key: key.as_bytes(),
            value,
        };
        // The common encoding takes the shortcut.
        let common = [0x0a, 1, b'k', 0x12, 3, 0x0a, 1, b'v'];
        assert!(plain_string_attr(&common).is_some());
        assert_eq!(
            key_value(&common, 0).unwrap(),
            attr("k", AttrValue::Str(b"v"))
        );
        // Value before key: the general path, same attribute.
        let swapped = [0x12, 3, 0x0a, 1, b'v', 0x0a, 1, b'k'];
        assert!(plain_string_attr(&swapped).is_none());
        assert_eq!(
            key_value(&swapped, 0).unwrap(),
            attr("k", AttrValue::Str(b"v"))
        );
        // A string, then a bool in the same AnyValue: the last of the oneof wins.
        let two = [0x0a, 1, b'k', 0x12, 5, 0x0a, 1, b'v', 0x10, 1];
        assert!(plain_string_attr(&two).is_none());
        assert_eq!(
            key_value(&two, 0).unwrap(),
            attr("k", AttrValue::Bool(true))
        );
        // The key given again after the value: the last key wins.
        let rekeyed = [0x0a, 1, b'k', 0x12, 3, 0x0a, 1, b'v', 0x0a, 1, b'j'];
        assert!(plain_string_attr(&rekeyed).is_none());
        assert_eq!(
            key_value(&rekeyed, 0).unwrap(),
            attr("j", AttrValue::Str(b"v"))
        );
        // A string length past the end is an error, not a shortcut.
        let short = [0x0a, 1, b'k', 0x12, 3, 0x0a, 5, b'v'];
        assert!(plain_string_attr(&short).is_none());
        assert!(key_value(&short, 0).is_err());
    }

    #[test]
    fn bad_bodies_are_errors_that_say_where() {
        let policy = LabelPolicy::default();
        // Field 1 of the request with a varint instead of a message.
        let e = metrics(&[1 << 3, 5], &policy).unwrap_err();
        assert!(
            e.contains("wire type Varint, expected LengthDelimited"),
            "{e}"
        );
        // A length past the end.
        let e = metrics(&[1 << 3 | 2, 50, 1], &policy).unwrap_err();
        assert!(e.contains("runs past the end"), "{e}");
        // Field number 0.
        assert!(
            metrics(&[0, 0], &policy)
                .unwrap_err()
                .contains("tag value: 0")
        );
        // Deeply nested attribute arrays stop at the limit instead of recursing on.
        let mut v = AnyValue {
            value: Some(Value::StringValue("x".into())),
        };
        for _ in 0..40 {
            v = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let req = request_with_attr(KeyValue {
            key: "k".into(),
            value: Some(v),
            ..Default::default()
        });
        let e = metrics(&req.encode_to_vec(), &policy).unwrap_err();
        assert!(e.contains("nested more than"), "{e}");
    }

    fn request_with_attr(kv: KeyValue) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                attributes: vec![kv],
                                value: Some(number_data_point::Value::AsInt(1)),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn any_value() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            "[a-z0-9.]{0,6}".prop_map(Value::StringValue),
            any::<bool>().prop_map(Value::BoolValue),
            any::<i64>().prop_map(Value::IntValue),
            any::<f64>().prop_map(Value::DoubleValue),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(Value::BytesValue),
            any::<i32>().prop_map(Value::StringValueStrindex),
        ]
        .prop_map(|v| AnyValue { value: Some(v) });
        let leaf = prop_oneof![9 => leaf, 1 => Just(AnyValue { value: None })];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue { values }))
                }),
                prop::collection::vec(("[a-z]{1,3}", inner), 0..3).prop_map(|kvs| AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, v)| KeyValue {
                                key,
                                value: Some(v),
                                ..Default::default()
                            })
                            .collect()
                    }))
                }),
            ]
        })
    }

    fn attrs() -> impl Strategy<Value = Vec<KeyValue>> {
        let key = prop_oneof![
            Just("model".to_string()),
            Just("type".to_string()),
            Just("session.id".to_string()),
            Just("user.email".to_string()),
            "[a-z.]{1,5}",
        ];
        prop::collection::vec((key, prop::option::weighted(0.9, any_value())), 0..4).prop_map(
            |kvs| {
                kvs.into_iter()
                    .map(|(key, value)| KeyValue {
                        key,
                        value,
                        ..Default::default()
                    })
                    .collect()
            },
        )
    }

    fn number_point() -> impl Strategy<Value = NumberDataPoint> {
        (
            attrs(),
            any::<u64>(),
            any::<u64>(),
            prop_oneof![
                Just(None),
                any::<f64>().prop_map(|v| Some(number_data_point::Value::AsDouble(v))),
                (-5i64..5).prop_map(|v| Some(number_data_point::Value::AsDouble(v as f64))),
                any::<i64>().prop_map(|v| Some(number_data_point::Value::AsInt(v))),
            ],
        )
            .prop_map(|(attributes, start, time, value)| NumberDataPoint {
                attributes,
                start_time_unix_nano: start % 4,
                time_unix_nano: time % 4,
                value,
                ..Default::default()
            })
    }

    fn histogram_point() -> impl Strategy<Value = HistogramDataPoint> {
        (
            attrs(),
            any::<u64>(),
            prop::option::of(any::<f64>()),
            prop::collection::vec(any::<u64>(), 0..4),
            prop::collection::vec(prop_oneof![Just(1.0), Just(2.5), any::<f64>()], 0..3),
        )
            .prop_map(|(attributes, count, sum, bucket_counts, explicit_bounds)| {
                HistogramDataPoint {
                    attributes,
                    count,
                    sum,
                    bucket_counts,
                    explicit_bounds,
                    time_unix_nano: 1,
                    ..Default::default()
                }
            })
    }

    fn metric() -> impl Strategy<Value = Metric> {
        let data = prop_oneof![
            Just(None),
            (
                prop::collection::vec(number_point(), 0..3),
                0i32..4,
                any::<bool>()
            )
                .prop_map(|(data_points, t, m)| Some(Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: t,
                    is_monotonic: m
                }))),
            prop::collection::vec(number_point(), 0..3)
                .prop_map(|data_points| Some(Data::Gauge(Gauge { data_points }))),
            (prop::collection::vec(histogram_point(), 0..3), 0i32..4).prop_map(
                |(data_points, t)| Some(Data::Histogram(Histogram {
                    data_points,
                    aggregation_temporality: t
                }))
            ),
            Just(Some(Data::Summary(Summary {
                data_points: vec![Default::default()]
            }))),
        ];
        let name = prop_oneof![
            Just("claude_code.cost.usage".to_string()),
            Just("claude_code.token.usage".to_string()),
            Just("vibe_up".to_string()),
            Just(String::new()),
            "[a-z._]{1,8}",
        ];
        let unit = prop_oneof![
            Just(String::new()),
            Just("USD".into()),
            Just("s".into()),
            Just("1".into())
        ];
        (name, unit, "[a-z ]{0,4}", data).prop_map(|(name, unit, description, data)| Metric {
            name,
            unit,
            description,
            data,
            ..Default::default()
        })
    }

    fn request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
        let scope = (
            prop::option::of("[a-z]{0,3}"),
            prop::collection::vec(metric(), 0..4),
        )
            .prop_map(|(name, metrics)| ScopeMetrics {
                scope: name.map(|name| InstrumentationScope {
                    name,
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            });
        let rm = (
            prop::option::of(attrs()),
            prop::collection::vec(scope, 0..3),
        )
            .prop_map(|(res, scope_metrics)| ResourceMetrics {
                resource: res.map(|attributes| Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_metrics,
                ..Default::default()
            });
        prop::collection::vec(rm, 0..3)
            .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
    }

    /// Batches compared with NaN gauges made comparable (NaN != NaN).
    fn comparable(b: &MetricsBatch) -> String {
        format!("{b:?}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn any_request_prost_decodes_converts_the_same_here(req in request()) {
            let body = req.encode_to_vec();
            let policy = LabelPolicy::default();
            let want = convert::metrics(&req, &policy);
            let got = metrics(&body, &policy);
            prop_assert!(got.is_ok(), "{:?}", got);
            prop_assert_eq!(comparable(&got.unwrap()), comparable(&want));
        }

        #[test]
        fn mutated_requests_never_panic_and_agree_when_prost_accepts(
            req in request(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut body = req.encode_to_vec();
            if body.is_empty() {
                return Ok(());
            }
            for (i, b) in &flips {
                let i = i.index(body.len());
                body[i] = *b;
            }
            let policy = LabelPolicy::default();
            let got = metrics(&body, &policy);
            if let Some(want) = reference(&body, &policy) {
                prop_assert!(got.is_ok(), "prost reads it, the wire path says {:?}", got);
                prop_assert_eq!(comparable(&got.unwrap()), comparable(&want));
            }
        }
    }
}
