//! Health bodies: pure parsers of what code-server's `/healthz`, JupyterLab's `/api` and
//! `/api/status`, and generic JSON health endpoints answer. Bytes in, typed values or a
//! message for a person out; no I/O.

use serde::Deserialize;

use super::state::JupyterStatus;
use crate::common::UnixTime;

/// code-server's `/healthz`.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeServerHealth {
    /// `alive`; `expired` (idle for 60 s) is false here and still up.
    pub alive: bool,
    /// `lastHeartbeat`, in seconds since the epoch (the body has milliseconds).
    pub last_heartbeat: Option<UnixTime>,
}

/// Parses `{"status":"alive"|"expired","lastHeartbeat":<unix ms>}`.
pub fn parse_codeserver_healthz(body: &[u8]) -> Result<CodeServerHealth, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        status: String,
        last_heartbeat: Option<f64>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        format!(
            "body is not code-server /healthz JSON ({e}): {}",
            excerpt(body)
        )
    })?;
    let alive = match raw.status.as_str() {
        "alive" => true,
        "expired" => false,
        other => {
            return Err(format!(
                "code-server /healthz status is \"{other}\", expected \"alive\" or \"expired\""
            ));
        }
    };
    Ok(CodeServerHealth {
        alive,
        last_heartbeat: raw.last_heartbeat.filter(|ms| *ms > 0.0).map(|ms| ms / 1e3),
    })
}

/// Parses JupyterLab's unauthenticated `/api` answer (`{"version": "2.14.2"}`) and returns
/// the server version.
pub fn parse_jupyter_api(body: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Raw {
        version: String,
    }
    serde_json::from_slice::<Raw>(body)
        .map(|r| r.version)
        .map_err(|e| format!("body is not Jupyter /api JSON ({e}): {}", excerpt(body)))
}

/// Parses JupyterLab's `/api/status`:
/// `{"started": "2026-11-22T03:00:00.123456Z", "last_activity": "…", "kernels": 1, "connections": 0}`.
pub fn parse_jupyter_status(body: &[u8]) -> Result<JupyterStatus, String> {
    #[derive(Deserialize)]
    struct Raw {
        started: Option<String>,
        last_activity: Option<String>,
        kernels: f64,
        connections: f64,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        format!(
            "body is not Jupyter /api/status JSON ({e}): {}",
            excerpt(body)
        )
    })?;
    let time = |field: &str, v: Option<String>| -> Result<Option<UnixTime>, String> {
        v.map(|s| {
            humantime::parse_rfc3339_weak(s.trim_end_matches('Z').trim_end_matches("+00:00"))
                .map(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64())
                })
                .map_err(|e| format!("Jupyter /api/status {field} \"{s}\" is not a time: {e}"))
        })
        .transpose()
    };
    Ok(JupyterStatus {
        kernels: raw.kernels,
        connections: raw.connections,
        started: time("started", raw.started)?,
        last_activity: time("last_activity", raw.last_activity)?,
    })
}

/// Checks that the JSON body has `field` (dot-separated path) equal to `expected`, compared
/// as text (`"ok"`, `true` and `1` match "ok", "true" and "1").
pub fn check_json_field(body: &[u8], field: &str, expected: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("body is not JSON ({e}): {}", excerpt(body)))?;
    let mut cur = &value;
    for part in field.split('.') {
        cur = match cur {
            serde_json::Value::Object(m) => m.get(part),
            serde_json::Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("JSON field \"{field}\" is missing"))?;
    }
    let got = match cur {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "JSON field \"{field}\" is \"{got}\", expected \"{expected}\""
        ))
    }
}

/// The start of a body, printable, for error messages (never more than 80 characters).
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(80)]);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > 80 {
        format!("\"{text}…\"")
    } else {
        format!("\"{text}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codeserver_bodies() {
        type Expected = Result<(bool, Option<f64>), &'static str>;
        let cases: &[(&str, Expected)] = &[
            (
                r#"{"status":"alive","lastHeartbeat":1732240000123}"#,
                Ok((true, Some(1732240000.123))),
            ),
            (
                r#"{"status":"expired","lastHeartbeat":1732240000000}"#,
                Ok((false, Some(1732240000.0))),
            ),
            (
                r#"{"status":"expired","lastHeartbeat":0}"#,
                Ok((false, None)),
            ),
            (r#"{"status":"alive"}"#, Ok((true, None))),
            (r#"{"status":"dead","lastHeartbeat":1}"#, Err("\"dead\"")),
            (
                "<html>502 Bad Gateway</html>",
                Err("not code-server /healthz JSON"),
            ),
            ("", Err("not code-server")),
            (r#"{"lastHeartbeat":1}"#, Err("status")),
        ];
        for (body, want) in cases {
            let got = parse_codeserver_healthz(body.as_bytes());
            match (got, want) {
                (Ok(h), Ok((alive, hb))) => {
                    assert_eq!(h.alive, *alive, "{body}");
                    assert_eq!(h.last_heartbeat, *hb, "{body}");
                }
                (Err(e), Err(frag)) => assert!(e.contains(frag), "{body}: {e}"),
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn jupyter_api_and_status() {
        assert_eq!(
            parse_jupyter_api(br#"{"version": "2.14.2"}"#).unwrap(),
            "2.14.2"
        );
        assert!(parse_jupyter_api(b"forbidden").is_err());
        let st = parse_jupyter_status(
            br#"{"connections": 1, "kernels": 2, "last_activity": "2026-11-22T03:00:00.500000Z", "started": "2026-11-22T02:00:00.000000Z"}"#,
        )
        .unwrap();
        assert_eq!(st.kernels, 2.0);
        assert_eq!(st.connections, 1.0);
        assert_eq!(st.started, Some(1795312800.0));
        assert_eq!(st.last_activity, Some(1795316400.5));
        let st = parse_jupyter_status(
            br#"{"connections": 0, "kernels": 0, "last_activity": "2026-11-22T03:00:00+00:00", "started": null}"#,
        )
        .unwrap();
        assert_eq!(st.started, None);
        assert_eq!(st.last_activity, Some(1795316400.0));
        let err = parse_jupyter_status(br#"{"connections":0,"kernels":0,"started":"yesterday"}"#)
            .unwrap_err();
        assert!(
            err.contains("started") && err.contains("yesterday"),
            "{err}"
        );
        assert!(parse_jupyter_status(br#"{"kernels":"two","connections":0}"#).is_err());
    }

    #[test]
    fn json_field_checks() {
        let body = br#"{"status":"ok","db":{"up":true,"replicas":[{"lag":0}]}}"#;
        assert!(check_json_field(body, "status", "ok").is_ok());
        assert!(check_json_field(body, "db.up", "true").is_ok());
        assert!(check_json_field(body, "db.replicas.0.lag", "0").is_ok());
        let e = check_json_field(body, "status", "fine").unwrap_err();
        assert!(e.contains("\"ok\"") && e.contains("\"fine\""), "{e}");
        assert!(
            check_json_field(body, "db.down", "x")
                .unwrap_err()
                .contains("missing")
        );
        assert!(
            check_json_field(b"nope", "a", "b")
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn excerpts_are_short_and_printable() {
        let long = vec![b'a'; 200];
        assert_eq!(excerpt(&long).chars().count(), 83);
        assert_eq!(excerpt(b"a\nb"), "\"a b\"");
    }
}
