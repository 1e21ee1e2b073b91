//! A small blocking client: one connection, one request at a time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::{DomainInfo, DomainRef};
use crate::ops::{CreateArgs, DomainArgs, DomidArgs, DomnameArgs, Op, VersionInfo};
use crate::proto::{ApiError, Request, Response, VERSION};

/// What can go wrong talking to oxend.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached (oxend not running, no permission).
    #[error("connecting to oxend at {path}: {source}")]
    Connect {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("talking to oxend ({op}): {source}")]
    Io {
        /// The op under way.
        op: String,
        /// Why.
        source: std::io::Error,
    },
    /// oxend closed the connection before answering.
    #[error("oxend closed the connection during '{0}'")]
    Closed(String),
    /// oxend's answer was not a response to this request.
    #[error("bad response from oxend to '{op}': {msg}")]
    Protocol {
        /// The op under way.
        op: String,
        /// What was wrong.
        msg: String,
    },
    /// oxend answered with an error.
    #[error("{0}")]
    Api(#[from] ApiError),
}

/// A connection to oxend.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects to the socket at `path` (usually [`crate::socket_path`]).
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let connect_err = |source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let writer = UnixStream::connect(path).map_err(connect_err)?;
        let reader = BufReader::new(writer.try_clone().map_err(connect_err)?);
        Ok(Client {
            reader,
            writer,
            next_id: 1,
        })
    }

    /// Sends `op` with `args` (an object, or `null`) and returns the result.
    pub fn call(&mut self, op: &str, args: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = Request {
            v: VERSION,
            id,
            op: op.into(),
            args,
        };
        let io = |source| ClientError::Io {
            op: op.into(),
            source,
        };
        let mut line = serde_json::to_string(&req).map_err(|e| ClientError::Protocol {
            op: op.into(),
            msg: format!("encoding the request: {e}"),
        })?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(io)?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer).map_err(io)? == 0 {
            return Err(ClientError::Closed(op.into()));
        }
        let resp: Response = serde_json::from_str(&answer).map_err(|e| ClientError::Protocol {
            op: op.into(),
            msg: e.to_string(),
        })?;
        // An error about the envelope itself may carry id 0.
        if resp.id != id && !(resp.id == 0 && resp.err.is_some()) {
            return Err(ClientError::Protocol {
                op: op.into(),
                msg: format!("answer to request {} instead of {id}", resp.id),
            });
        }
        Ok(resp.into_result()?)
    }

    fn typed<T: DeserializeOwned>(&mut self, op: Op) -> Result<T, ClientError> {
        let v = self.call(op.name(), op.args())?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol {
            op: op.name().into(),
            msg: e.to_string(),
        })
    }

    fn field<T: DeserializeOwned>(&mut self, op: Op, key: &str) -> Result<T, ClientError> {
        let name = op.name();
        let mut v: Value = self.typed(op)?;
        let f = v.get_mut(key).map(Value::take).unwrap_or(Value::Null);
        serde_json::from_value(f).map_err(|e| ClientError::Protocol {
            op: name.into(),
            msg: format!("\"{key}\": {e}"),
        })
    }

    /// `version`.
    pub fn version(&mut self) -> Result<VersionInfo, ClientError> {
        self.typed(Op::Version)
    }

    /// `list`.
    pub fn list(&mut self) -> Result<Vec<DomainInfo>, ClientError> {
        self.typed(Op::List)
    }

    /// `info`.
    pub fn info(&mut self, domain: impl Into<DomainRef>) -> Result<DomainInfo, ClientError> {
        self.typed(Op::Info(DomainArgs {
            domain: domain.into(),
        }))
    }

    /// `domid`.
    pub fn domid(&mut self, name: &str) -> Result<u32, ClientError> {
        self.field(Op::Domid(DomidArgs { name: name.into() }), "domid")
    }

    /// `domname`.
    pub fn domname(&mut self, domid: u32) -> Result<String, ClientError> {
        self.field(Op::Domname(DomnameArgs { domid }), "name")
    }

    /// `create`; a relative config path is made absolute against this process's directory.
    pub fn create(&mut self, mut args: CreateArgs) -> Result<DomainInfo, ClientError> {
        if args.config.is_relative() {
            if let Ok(abs) = std::path::absolute(&args.config) {
                args.config = abs;
            }
        }
        self.typed(Op::Create(args))
    }

    /// `destroy`.
    pub fn destroy(&mut self, domain: impl Into<DomainRef>) -> Result<DomainInfo, ClientError> {
        self.typed(Op::Destroy(DomainArgs {
            domain: domain.into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;
    use std::os::unix::net::UnixListener;

    /// A one-connection server answering each line with `answer(request)`.
    fn serve(answer: impl Fn(Request) -> String + Send + 'static) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            for line in BufReader::new(s).lines() {
                let req = Request::parse(&line.unwrap()).unwrap();
                let out = answer(req);
                if out.is_empty() {
                    return;
                }
                w.write_all(format!("{out}\n").as_bytes()).unwrap();
            }
        });
        (dir, path)
    }

    #[test]
    fn typed_calls_decode_results_and_errors() {
        let (_d, path) = serve(|req| {
            let r = match req.op.as_str() {
                "list" => Response::ok(
                    req.id,
                    serde_json::to_value(vec![crate::domain::sample()]).unwrap(),
                ),
                "domid" => Response::ok(req.id, serde_json::json!({"domid": 3})),
                "create" => {
                    assert!(req.args["config"].as_str().unwrap().starts_with('/'));
                    Response::err(
                        req.id,
                        ApiError::new(ErrorCode::Exists, "domain 'web' exists"),
                    )
                }
                _ => Response::ok(req.id + 1, Value::Null),
            };
            serde_json::to_string(&r).unwrap()
        });
        let mut c = Client::connect(&path).unwrap();
        assert_eq!(c.list().unwrap()[0].name, "web");
        assert_eq!(c.domid("web").unwrap(), 3);
        let e = c
            .create(CreateArgs {
                config: "web.cfg".into(),
                overrides: vec![],
                paused: false,
            })
            .unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::Api(ApiError {
                    code: ErrorCode::Exists,
                    ..
                })
            ),
            "{e}"
        );
        let e = c.info("web").unwrap_err();
        assert!(e.to_string().contains("answer to request"), "{e}");
    }

    #[test]
    fn closed_connections_and_missing_sockets() {
        let (_d, path) = serve(|_| String::new());
        let mut c = Client::connect(&path).unwrap();
        assert!(matches!(c.version(), Err(ClientError::Closed(_))));
        let e = Client::connect(path.with_file_name("none.sock")).unwrap_err();
        assert!(e.to_string().contains("none.sock"), "{e}");
    }
}
