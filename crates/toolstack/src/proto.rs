//! The envelope: requests, responses and errors, one JSON object per line.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks. A request with another `v` gets a
/// [`ErrorCode::Version`] error; compatible additions (new ops, new optional arguments, new
/// result fields) do not change it.
pub const VERSION: u32 = 1;

/// One request line: `{"v":1,"id":N,"op":"...","args":{...}}`.
///
/// Unknown fields of the envelope are ignored (a later client may send more); `args` may be
/// left out when an op takes none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version, [`VERSION`].
    pub v: u32,
    /// Chosen by the client and echoed in the response.
    pub id: u64,
    /// The operation's name, e.g. `"list"`.
    pub op: String,
    /// The operation's arguments, an object (or absent).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
}

impl Request {
    /// Reads one request line. A line that is not a request gets the error response to send
    /// back: `version` for another protocol version, `bad-request` for anything malformed
    /// (with id 0 when the id itself could not be read).
    pub fn parse(line: &str) -> Result<Request, Box<Response>> {
        let value: Value = serde_json::from_str(line).map_err(|e| {
            Box::new(Response::err(
                0,
                ApiError::bad_request(format!("not JSON: {e}")),
            ))
        })?;
        let id = value.get("id").and_then(Value::as_u64).unwrap_or(0);
        let fail = |e: ApiError| Box::new(Response::err(id, e));
        let Some(obj) = value.as_object() else {
            return Err(fail(ApiError::bad_request("a request is a JSON object")));
        };
        match obj.get("v").map(|v| (v, v.as_u64())) {
            None => return Err(fail(ApiError::bad_request("the request has no \"v\""))),
            Some((_, Some(v))) if v == u64::from(VERSION) => {}
            Some((v, _)) => {
                return Err(fail(ApiError::new(
                    ErrorCode::Version,
                    format!(
                    "protocol version {v} is not supported; this oxend speaks version {VERSION}"
                ),
                )))
            }
        }
        let req: Request = serde_json::from_value(value)
            .map_err(|e| fail(ApiError::bad_request(format!("malformed request: {e}"))))?;
        if !(req.args.is_null() || req.args.is_object()) {
            return Err(fail(ApiError::bad_request("\"args\" must be an object")));
        }
        Ok(req)
    }
}

/// One response line: `{"v":1,"id":N,"ok":RESULT}` or `{"v":1,"id":N,"err":{...}}`.
///
/// Exactly one of `ok` and `err` is present; results are never `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version, [`VERSION`].
    pub v: u32,
    /// The request's id (0 when the request's id could not be read).
    pub id: u64,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<ApiError>,
}

impl Response {
    /// A success.
    pub fn ok(id: u64, result: Value) -> Response {
        Response {
            v: VERSION,
            id,
            ok: Some(result),
            err: None,
        }
    }

    /// A failure.
    pub fn err(id: u64, err: ApiError) -> Response {
        Response {
            v: VERSION,
            id,
            ok: None,
            err: Some(err),
        }
    }

    /// The outcome: the result or the error (a response with neither is an internal error).
    pub fn into_result(self) -> Result<Value, ApiError> {
        match (self.ok, self.err) {
            (_, Some(e)) => Err(e),
            (Some(v), None) => Ok(v),
            (None, None) => Err(ApiError::new(
                ErrorCode::Internal,
                "the response has neither \"ok\" nor \"err\"",
            )),
        }
    }
}

/// What went wrong, as a machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// No domain has that name or id.
    NoSuchDomain,
    /// A domain of that name already exists.
    Exists,
    /// The request is malformed: not JSON, unknown op, missing or wrong arguments, or a
    /// configuration that does not parse.
    BadRequest,
    /// The request's protocol version is not spoken here.
    Version,
    /// The caller may not manage domains.
    Permission,
    /// oxend failed (spawning the VMM, the VMM's start, I/O).
    Internal,
    /// A code this client does not know (a newer oxend); read `msg`.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoSuchDomain => "no-such-domain",
            ErrorCode::Exists => "exists",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Version => "version",
            ErrorCode::Permission => "permission",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// An error response's body: `{"code":"...","msg":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{msg} ({})", code.as_str())]
pub struct ApiError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// A message for people.
    pub msg: String,
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            code,
            msg: msg.into(),
        }
    }

    /// A `bad-request` error.
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, msg)
    }

    /// An `internal` error.
    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_of(line: &str) -> Response {
        *Request::parse(line).unwrap_err()
    }

    #[test]
    fn request_round_trip_and_optional_args() {
        let r = Request {
            v: 1,
            id: 9,
            op: "info".into(),
            args: json!({"domain": "web"}),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(Request::parse(&line).unwrap(), r);
        let bare = Request::parse(r#"{"v":1,"id":2,"op":"list"}"#).unwrap();
        assert_eq!(
            (bare.id, bare.op.as_str(), bare.args.is_null()),
            (2, "list", true)
        );
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"v":1,"id":2,"op":"list"}"#
        );
    }

    #[test]
    fn unknown_envelope_fields_are_ignored() {
        let r = Request::parse(r#"{"v":1,"id":3,"op":"list","trace":true}"#).unwrap();
        assert_eq!(r.op, "list");
        let resp: Response =
            serde_json::from_str(r#"{"v":1,"id":3,"ok":[],"elapsed_ms":4}"#).unwrap();
        assert_eq!(resp.into_result().unwrap(), json!([]));
    }

    #[test]
    fn other_versions_get_a_version_error_with_their_id() {
        for line in [
            r#"{"v":2,"id":5,"op":"list"}"#,
            r#"{"v":"1","id":5,"op":"list"}"#,
        ] {
            let e = err_of(line);
            assert_eq!((e.v, e.id), (VERSION, 5));
            let err = e.err.unwrap();
            assert_eq!(err.code, ErrorCode::Version);
            assert!(err.msg.contains("version 1"), "{}", err.msg);
        }
    }

    #[test]
    fn malformed_requests_are_bad_requests() {
        for (line, id, why) in [
            ("{not json", 0, "not JSON"),
            ("[1,2]", 0, "object"),
            (r#"{"id":4,"op":"list"}"#, 4, "no \"v\""),
            (r#"{"v":1,"id":4}"#, 4, "malformed"),
            (r#"{"v":1,"op":"list"}"#, 0, "malformed"),
            (
                r#"{"v":1,"id":4,"op":"list","args":[1]}"#,
                4,
                "must be an object",
            ),
            (r#"{"v":1,"id":-1,"op":"list"}"#, 0, "malformed"),
        ] {
            let e = err_of(line);
            assert_eq!(e.id, id, "{line}");
            let err = e.err.unwrap();
            assert_eq!(err.code, ErrorCode::BadRequest, "{line}");
            assert!(err.msg.contains(why), "{line}: {}", err.msg);
        }
    }

    #[test]
    fn responses_round_trip_and_carry_one_outcome() {
        let ok = Response::ok(1, json!({"a": 1}));
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"v":1,"id":1,"ok":{"a":1}}"#
        );
        let err = Response::err(2, ApiError::new(ErrorCode::NoSuchDomain, "no 'x'"));
        let line = serde_json::to_string(&err).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"id":2,"err":{"code":"no-such-domain","msg":"no 'x'"}}"#
        );
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(
            back.clone().into_result().unwrap_err().code,
            ErrorCode::NoSuchDomain
        );
        assert_eq!(back, err);
        let empty: Response = serde_json::from_str(r#"{"v":1,"id":2}"#).unwrap();
        assert_eq!(empty.into_result().unwrap_err().code, ErrorCode::Internal);
    }

    #[test]
    fn error_codes_on_the_wire() {
        for code in [
            ErrorCode::NoSuchDomain,
            ErrorCode::Exists,
            ErrorCode::BadRequest,
            ErrorCode::Version,
            ErrorCode::Permission,
            ErrorCode::Internal,
        ] {
            let s = serde_json::to_string(&code).unwrap();
            assert_eq!(s, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&s).unwrap(), code);
        }
        // A newer oxend's code still decodes.
        assert_eq!(
            serde_json::from_str::<ErrorCode>("\"busy\"").unwrap(),
            ErrorCode::Unknown
        );
        let e = ApiError::new(ErrorCode::Exists, "domain 'web' exists");
        assert_eq!(e.to_string(), "domain 'web' exists (exists)");
    }
}
