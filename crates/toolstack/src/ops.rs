//! The operations and their arguments, typed.
//!
//! Arguments are strict: an unknown argument is a `bad-request`, so a misspelt option is never
//! silently ignored. Results are lenient the other way (clients ignore unknown fields).

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::DomainRef;
use crate::proto::{ApiError, Request, VERSION};

/// `create`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    /// The xl.cfg file, an absolute path (oxend's working directory is not the client's).
    pub config: PathBuf,
    /// `KEY=VALUE` settings that override the file's, as on `oxl create`'s command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// Leave the domain paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// Arguments naming one domain (`info`, `destroy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainArgs {
    /// The domain, by name or id.
    pub domain: DomainRef,
}

/// `domid`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomidArgs {
    /// The domain's name.
    pub name: String,
}

/// `domname`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomnameArgs {
    /// The domain's id.
    pub domid: u32,
}

/// `version`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The protocol version oxend speaks.
    pub protocol: u32,
    /// oxend's own version.
    pub oxend: String,
    /// oxend's process id.
    pub pid: u32,
}

/// No arguments: absent, or `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// A request's operation with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// oxend's and the protocol's versions → [`VersionInfo`].
    Version,
    /// Every domain → `[DomainInfo]`, by domid.
    List,
    /// One domain → `DomainInfo`.
    Info(DomainArgs),
    /// A name's domid → `{"domid": N}`.
    Domid(DomidArgs),
    /// A domid's name → `{"name": "..."}`.
    Domname(DomnameArgs),
    /// Start a domain from an xl.cfg → its `DomainInfo`, once the VMM has registered it.
    Create(CreateArgs),
    /// Stop a domain at once (SIGTERM, then SIGKILL) → its last `DomainInfo`, state `dying`.
    Destroy(DomainArgs),
}

/// Every op's name, as in requests.
pub const OPS: &[&str] = &[
    "version", "list", "info", "domid", "domname", "create", "destroy",
];

fn args<T: DeserializeOwned>(op: &str, args: Value) -> Result<T, ApiError> {
    let args = if args.is_null() {
        Value::Object(Map::new())
    } else {
        args
    };
    serde_json::from_value(args)
        .map_err(|e| ApiError::bad_request(format!("arguments of '{op}': {e}")))
}

impl Op {
    /// The op a request asks for, its arguments checked.
    pub fn from_request(req: &Request) -> Result<Op, ApiError> {
        let a = req.args.clone();
        Ok(match req.op.as_str() {
            "version" => args::<NoArgs>("version", a).map(|_| Op::Version)?,
            "list" => args::<NoArgs>("list", a).map(|_| Op::List)?,
            "info" => Op::Info(args("info", a)?),
            "domid" => Op::Domid(args("domid", a)?),
            "domname" => Op::Domname(args("domname", a)?),
            "create" => Op::Create(args("create", a)?),
            "destroy" => Op::Destroy(args("destroy", a)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown op '{other}' (known: {})",
                    OPS.join(", ")
                )))
            }
        })
    }

    /// The op's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Version => "version",
            Op::List => "list",
            Op::Info(_) => "info",
            Op::Domid(_) => "domid",
            Op::Domname(_) => "domname",
            Op::Create(_) => "create",
            Op::Destroy(_) => "destroy",
        }
    }

    /// The op's arguments as JSON (`null` when it takes none).
    pub fn args(&self) -> Value {
        let v = match self {
            Op::Version | Op::List => return Value::Null,
            Op::Info(a) | Op::Destroy(a) => serde_json::to_value(a),
            Op::Domid(a) => serde_json::to_value(a),
            Op::Domname(a) => serde_json::to_value(a),
            Op::Create(a) => serde_json::to_value(a),
        };
        // These types always serialize (plain fields, string keys).
        v.unwrap_or(Value::Null)
    }

    /// The request line for this op.
    pub fn request(&self, id: u64) -> Request {
        Request {
            v: VERSION,
            id,
            op: self.name().into(),
            args: self.args(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;
    use serde_json::json;

    fn parse(op: &str, args: Value) -> Result<Op, ApiError> {
        Op::from_request(&Request {
            v: VERSION,
            id: 1,
            op: op.into(),
            args,
        })
    }

    #[test]
    fn every_op_round_trips_through_a_request() {
        let ops = [
            Op::Version,
            Op::List,
            Op::Info(DomainArgs {
                domain: "web".into(),
            }),
            Op::Destroy(DomainArgs { domain: 4.into() }),
            Op::Domid(DomidArgs { name: "web".into() }),
            Op::Domname(DomnameArgs { domid: 2 }),
            Op::Create(CreateArgs {
                config: "/etc/oxen/web.cfg".into(),
                overrides: vec!["memory=512".into()],
                paused: true,
            }),
            Op::Create(CreateArgs {
                config: "/c".into(),
                overrides: vec![],
                paused: false,
            }),
        ];
        for op in ops {
            let line = serde_json::to_string(&op.request(7)).unwrap();
            let req = Request::parse(&line).unwrap();
            assert_eq!(Op::from_request(&req).unwrap(), op, "{line}");
            assert!(OPS.contains(&op.name()));
        }
        let line = serde_json::to_string(
            &Op::Create(CreateArgs {
                config: "/c".into(),
                overrides: vec![],
                paused: false,
            })
            .request(1),
        )
        .unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"id":1,"op":"create","args":{"config":"/c"}}"#
        );
    }

    #[test]
    fn empty_args_are_accepted_where_none_are_taken() {
        assert_eq!(parse("list", json!({})).unwrap(), Op::List);
        assert_eq!(parse("version", Value::Null).unwrap(), Op::Version);
    }

    #[test]
    fn wrong_unknown_or_missing_args_are_bad_requests() {
        for (op, args, why) in [
            ("list", json!({"all": true}), "unknown field `all`"),
            ("info", json!({}), "missing field `domain`"),
            (
                "info",
                json!({"domain": "web", "verbose": 1}),
                "unknown field",
            ),
            ("domname", json!({"domid": "x"}), "arguments of 'domname'"),
            (
                "domname",
                json!({"domid": 1u64 << 40}),
                "arguments of 'domname'",
            ),
            (
                "create",
                json!({"config": "/c", "pausd": true}),
                "unknown field `pausd`",
            ),
            (
                "create",
                json!({"config": "/c", "overrides": "memory=1"}),
                "create",
            ),
            ("frobnicate", Value::Null, "unknown op 'frobnicate'"),
        ] {
            let e = parse(op, args.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{op} {args}");
            assert!(e.msg.contains(why), "{op} {args}: {}", e.msg);
        }
    }
}
