//! The TOML config file of `fairio proxy --config FILE`: its schema, and errors that name the
//! line and the key, and suggest a valid value.

use serde::Deserialize;
use toml::Spanned;

use super::class::{Class, Classes};
use super::prefixes::parse_net;
use crate::rate::parse_rate;

/// The file, as written. Every key is optional; flags override what the file says.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    pub(super) listener: Vec<Listener>,
    pub(super) max_to_clients: Option<Spanned<String>>,
    pub(super) max_from_clients: Option<Spanned<String>>,
    pub(super) per_client_cap: Option<Spanned<String>>,
    pub(super) policy: Option<Spanned<String>>,
    pub(super) fair_by: Option<Spanned<String>>,
    pub(super) connect_timeout: Option<Spanned<f64>>,
    pub(super) half_close_timeout: Option<Spanned<f64>>,
    pub(super) drain_timeout: Option<Spanned<f64>>,
    pub(super) idle_timeout: Option<Spanned<f64>>,
    pub(super) max_connections: Option<Spanned<u32>>,
    pub(super) max_connections_per_host: Option<Spanned<u32>>,
    pub(super) admin: Option<Spanned<String>>,
    pub(super) admin_token: Option<String>,
    /// Series per client address in `/metrics` (off by default: their number grows with the
    /// clients).
    #[serde(default)]
    pub(super) metrics_per_host: bool,
    #[serde(default)]
    pub(super) class: Vec<FileClass>,
    pub(super) default_class: Option<FileClass>,
}

/// One `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Listener {
    /// `IP:port`, or `unix:/path/to/socket`.
    pub(super) listen: Spanned<String>,
    /// `host:port`: a name is resolved at each connection, its addresses tried in turn.
    pub(super) upstream: Spanned<String>,
    /// Networks whose connections start with a PROXY protocol header (v1 or v2).
    pub(super) accept_proxy_protocol_from: Option<Spanned<Vec<String>>>,
    /// `"v1"` or `"v2"`: the header sent to the upstream before the client's bytes.
    pub(super) send_proxy_protocol: Option<Spanned<String>>,
}

/// One `[[class]]`, or the `[default_class]` (which has no networks).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileClass {
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) networks: Vec<Spanned<String>>,
    pub(super) weight: Option<Spanned<u32>>,
    pub(super) max_to_clients: Option<Spanned<String>>,
    pub(super) max_from_clients: Option<Spanned<String>>,
    pub(super) max_to_each_address: Option<Spanned<String>>,
    pub(super) max_from_each_address: Option<Spanned<String>>,
    pub(super) min_to_clients: Option<Spanned<String>>,
    pub(super) min_from_clients: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<u32>>,
}

/// A file's text, for turning spans into line numbers in messages.
pub(super) struct Source<'a> {
    pub(super) path: &'a str,
    pub(super) text: &'a str,
}

impl Source<'_> {
    /// "FILE line N, `key`: message".
    pub(super) fn at<T>(&self, v: &Spanned<T>, key: &str, msg: impl std::fmt::Display) -> String {
        let line = self.text[..v.span().start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        format!("{} line {line}, `{key}`: {msg}", self.path)
    }

    pub(super) fn rate(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
    ) -> Result<Option<u64>, String> {
        v.as_ref()
            .map(|r| parse_rate(r.get_ref()).map_err(|e| self.at(r, key, e)))
            .transpose()
    }
}

/// Reads and parses `path`.
///
/// # Errors
/// The file cannot be read, is not TOML, has a key it does not know (the message lists the
/// known ones), or a value out of range.
pub(super) fn read(path: &str) -> Result<(File, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let file: File = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok((file, text))
}

impl FileClass {
    fn to_class(&self, src: &Source<'_>, index: Option<usize>) -> Result<Class, String> {
        let default = index.is_none();
        // Live groups are found again by their class's name at a reload: every class has one.
        let name = match (&self.name, index) {
            (Some(n), _) => n.clone(),
            (None, None) => "default".to_owned(),
            (None, Some(i)) => {
                return Err(format!(
                    "{}: class {} has no `name`; give every class one, e.g. name = \"office\"",
                    src.path,
                    i + 1
                ));
            }
        };
        if default && !self.networks.is_empty() {
            return Err(src.at(
                &self.networks[0],
                "default_class.networks",
                "the default class holds every client no class matched: it takes no networks",
            ));
        }
        if !default && self.networks.is_empty() {
            return Err(format!(
                "{}: class `{name}` has no `networks`; give it some, e.g. networks = [\"10.0.0.0/8\"]",
                src.path
            ));
        }
        let networks = self
            .networks
            .iter()
            .map(|n| parse_net(n.get_ref()).map_err(|e| src.at(n, "networks", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let weight = match &self.weight {
            Some(w) if *w.get_ref() == 0 => {
                return Err(src.at(w, "weight", "a weight is at least 1, e.g. weight = 2"));
            }
            Some(w) => *w.get_ref(),
            None => 1,
        };
        let max_connections = match &self.max_connections {
            Some(m) if *m.get_ref() == 0 => {
                return Err(src.at(
                    m,
                    "max_connections",
                    "at least 1, e.g. max_connections = 100",
                ));
            }
            m => m.as_ref().map(|m| *m.get_ref() as usize),
        };
        let caps = (
            src.rate(&self.max_to_clients, "max_to_clients")?,
            src.rate(&self.max_from_clients, "max_from_clients")?,
        );
        let mins = (
            src.rate(&self.min_to_clients, "min_to_clients")?,
            src.rate(&self.min_from_clients, "min_from_clients")?,
        );
        // A class guaranteed more than it may ever use.
        for ((min, max), (key, spanned)) in
            [mins.0, mins.1].into_iter().zip([caps.0, caps.1]).zip([
                ("min_to_clients", &self.min_to_clients),
                ("min_from_clients", &self.min_from_clients),
            ])
        {
            if let (Some(min), Some(max), Some(s)) = (min, max, spanned) {
                if min > max {
                    return Err(src.at(
                        s,
                        key,
                        format!("{min} B/s is above the class's cap of {max} B/s; lower it or raise the cap"),
                    ));
                }
            }
        }
        Ok(Class {
            name,
            networks,
            weight,
            caps,
            each: (
                src.rate(&self.max_to_each_address, "max_to_each_address")?,
                src.rate(&self.max_from_each_address, "max_from_each_address")?,
            ),
            mins,
            max_connections,
        })
    }
}

impl File {
    /// The classes the file defines.
    pub(super) fn classes(&self, src: &Source<'_>) -> Result<Classes, String> {
        let list = self
            .class
            .iter()
            .enumerate()
            .map(|(i, c)| c.to_class(src, Some(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let default = match &self.default_class {
            Some(c) => c.to_class(src, None)?,
            None => Class::default_class(),
        };
        let mut names = std::collections::HashSet::new();
        for c in list.iter().chain([&default]) {
            if !names.insert(c.name.as_str()) {
                return Err(format!(
                    "{}: two classes are named `{}`{}; names must differ",
                    src.path,
                    c.name,
                    if c.name == default.name {
                        " (the default class has that name)"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(Classes::new(list, default))
    }
}
