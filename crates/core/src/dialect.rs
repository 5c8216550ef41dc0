//! Which server flavour answers `/api/query`: reference OpenTSDB 2.x, or OVH's Erlenmeyer proxy
//! over Warp 10 (`reference/api.md` §2). The client and the simulator both branch on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A server dialect. The differences that matter to us: errors are JSON (`opentsdb`) or plain
/// text (`ovh`); an unknown metric is a 400 (`opentsdb`) or `200 []` (`ovh`); `GET /api/query` and
/// `/api/version` exist only in `opentsdb`; only `ovh` adds `query.index` to every series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Reference OpenTSDB 2.4 semantics.
    Opentsdb,
    /// OVH Metrics Data Platform (Erlenmeyer → WarpScript → Warp 10), what vScope really runs.
    Ovh,
}

impl Dialect {
    /// The name used in pipeline files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Opentsdb => "opentsdb",
            Dialect::Ovh => "ovh",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "opentsdb" => Ok(Dialect::Opentsdb),
            "ovh" => Ok(Dialect::Ovh),
            other => Err(format!(
                "unknown dialect '{other}': expected 'opentsdb' or 'ovh'"
            )),
        }
    }
}
