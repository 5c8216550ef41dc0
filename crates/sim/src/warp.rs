//! What Warp 10 does with the WarpScript Erlenmeyer sends for an `ovh` query, where it matters to
//! a client: which stored points a `FETCH` keeps, how much it may fetch, the text of its errors,
//! and what Erlenmeyer makes of those errors before the client sees them.
//!
//! # The fetch range
//! Erlenmeyer (`proto/opentsdb/query.go`, `selection()`) fetches with
//! `[ $token 'class' {labels} '<start ISO>' '<end ISO>' ] FETCHDOUBLE`, the dates written by
//! `core.IsoTime` (RFC 3339 with nanoseconds). Which end is kept depends on the Warp 10 release
//! ([`FetchStart`]):
//!
//! - up to 2.2 (`FETCH.java` of tag 2.2.0, list form with two strings), `timespan = stop - start`
//!   and the store is asked for `(end - timespan, end]`: "Timestamps at or before now - timespan
//!   will be ignored" (the class doc of `FETCH.java`, still there at HEAD). `start` is excluded.
//! - from 2.3 (`FetchRequest`, `StoreClient.fetch`: "then Start timestamp (included)",
//!   `MultiScanGTSDecoderIterator`: `timestamp <= now && timestamp >= then`), `[start, end]`.
//!
//! Erlenmeyer's integer times have second precision (`proto/opentsdb/time.go`, `Parse`:
//! `time.Unix(ts/1000, ts%1000)` makes the millisecond part nanoseconds, and Warp's
//! `TOTIMESTAMP.parseTimestamp` divides nanoseconds by 1000 into microseconds, truncating). A
//! request start of `S*1000 - 1` ms is therefore the instant `S - 1` s: with the start excluded, a
//! point stamped exactly `S` s is returned, and one stamped `S - 1` s is not; a request start of
//! exactly `S*1000` ms excludes the point at `S`.
//!
//! # Errors
//! Warp 10 answers a failed script with a 500 whose `X-Warp10-Error-Message` header holds the
//! message of the exception chain (`EgressExecHandler`, `ThrowableUtils.getErrorMessage`:
//! `msg0 (msg1 (msg2))`); for an exception in a statement, `MemoryWarpScriptStack.exec` makes
//! `msg0` `Exception at '<up to 3 statements> =><statement><= <up to 3 statements>' in section
//! [TOP]`, from the one script line being run (releases 2.3 to 2.11; Warp 3 removed
//! `AUTHENTICATE`, which Erlenmeyer's scripts call, so OVH runs a 2.x).
//!
//! Erlenmeyer then relays it one of two ways ([`ErrorMode`]). In its public HEAD (`core/warp.go`,
//! `HTTPWarp10Server.Query`), for every protocol not starting with `warp`, a Warp 500 gets its
//! body replaced by the header text and is returned as a success; `QueryGTS` then fails to decode
//! that text as JSON, and `executeQuery` (`proto/opentsdb/query.go`) or `HandleLookup`
//! (`lookup.go`) answers `http.Error(w, err.Error(), 500)`: the client sees only Go's decoder
//! error, `invalid character 'E' looking for beginning of value`, whatever went wrong.

use std::fmt;
use std::str::FromStr;

use axum::http::StatusCode;

use super::error::ApiError;

/// Datapoints one sub-query may fetch on OVH: Erlenmeyer's `DUP AUTHENTICATE 20000000 LIMIT`
/// (`executeQuery`, `proto/opentsdb/query.go`). The default of
/// [`SimConfig::max_fetch_points`](super::SimConfig::max_fetch_points).
pub const ERLENMEYER_FETCH_LIMIT: u64 = 20_000_000;

/// How Erlenmeyer relays a Warp 10 execution error (a 500 from `/api/v0/exec`) on `/api/query`
/// and `/api/search/lookup`, in the `ovh` dialect. Both exist in the field: the public HEAD
/// hides the cause, and the reference reports Warp's text as seen in production, so a client
/// must survive both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorMode {
    /// Warp 10's own message, as plain text (what the `X-Warp10-Error-Message` header says).
    #[default]
    Text,
    /// Erlenmeyer HEAD: Go's JSON decoder error on that message, e.g. `invalid character 'E'
    /// looking for beginning of value`, the same for a fetch limit, a bad token or a timeout.
    Head,
}

impl ErrorMode {
    /// The name used in pipeline files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorMode::Text => "text",
            ErrorMode::Head => "head",
        }
    }
}

impl fmt::Display for ErrorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorMode {
    type Err = String;

    /// `text` or `head`.
    fn from_str(s: &str) -> Result<ErrorMode, String> {
        match s {
            "text" => Ok(ErrorMode::Text),
            "head" => Ok(ErrorMode::Head),
            other => Err(format!(
                "unknown error mode '{other}': expected 'text' or 'head'"
            )),
        }
    }
}

/// Whether Warp 10's `FETCH` with two ISO dates keeps a point stamped exactly on the start (see
/// the module docs): the release OVH runs is not public, so both are served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FetchStart {
    /// `(start, end]`: Warp 10 up to 2.2 (`end`, `timespan = end - start`), as
    /// `reference/api.md` §2.3 says of OVH.
    #[default]
    Excluded,
    /// `[start, end]`: Warp 10 2.3 and later (`FetchRequest` with `thents` included).
    Included,
}

impl FetchStart {
    /// The name used in pipeline files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchStart::Excluded => "excluded",
            FetchStart::Included => "included",
        }
    }

    /// The first instant (ms) a fetch from `start_ms` keeps. Stored points are on whole
    /// milliseconds (whole seconds in the simulator), so "after `start`" is `start + 1`.
    pub(crate) fn first_kept_ms(self, start_ms: i64) -> i64 {
        match self {
            FetchStart::Excluded => start_ms.saturating_add(1),
            FetchStart::Included => start_ms,
        }
    }
}

impl fmt::Display for FetchStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FetchStart {
    type Err = String;

    /// `excluded` or `included`.
    fn from_str(s: &str) -> Result<FetchStart, String> {
        match s {
            "excluded" => Ok(FetchStart::Excluded),
            "included" => Ok(FetchStart::Included),
            other => Err(format!(
                "unknown fetch start '{other}': expected 'excluded' or 'included'"
            )),
        }
    }
}

/// The script lines of Erlenmeyer's `/api/query` WarpScript where an error can happen, as Warp
/// quotes them (`executeQuery` and `selection()` in `proto/opentsdb/query.go`).
mod line {
    /// `fmt.Fprintf(out, "DUP AUTHENTICATE 20000000 LIMIT\n")`.
    pub(super) const AUTHENTICATE: &str = "DUP =>AUTHENTICATE<= 20000000 LIMIT";
    /// `fmt.Fprint(out, "5 ->LIST FETCHDOUBLE\n\n")`.
    pub(super) const FETCH: &str = "5 ->LIST =>FETCHDOUBLE<=";
    /// `fmt.Fprint(out, " 3 ->LIST FIND\n")` of `/api/search/lookup` (`lookup.go`).
    pub(super) const FIND: &str = "3 ->LIST =>FIND<=";
}

/// A Warp 10 execution error: the text of its `X-Warp10-Error-Message` header. Erlenmeyer turns
/// it into the client's answer with [`WarpError::relay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WarpError(String);

impl WarpError {
    /// `Exception at '<line>' in section [TOP] (<cause>)`: an exception thrown by a statement
    /// (`MemoryWarpScriptStack.exec` wraps it, `ThrowableUtils.buildErrorMessage` adds the
    /// parenthesised cause).
    fn at(line: &str, cause: &str) -> WarpError {
        WarpError(format!("Exception at '{line}' in section [TOP] ({cause})"))
    }

    /// `FETCHDOUBLE` over the script's fetch limit (`FETCH.java`: `getName() + " exceeded limit
    /// of " + fetchLimit + " datapoints, current count is " + fetched.get()`; the count is the
    /// running total when the limit was passed, not the whole selection).
    pub(crate) fn fetch_limit(limit: u64, count: u64) -> WarpError {
        WarpError::at(
            line::FETCH,
            &format!("FETCHDOUBLE exceeded limit of {limit} datapoints, current count is {count}"),
        )
    }

    /// `AUTHENTICATE` given a token Warp does not know (`AUTHENTICATE.java` of 2.8 to 2.11
    /// around `Tokens.extractReadToken`, which says `Invalid token.`). The token itself is on
    /// the previous script line, so it is not quoted.
    pub(crate) fn invalid_token() -> WarpError {
        WarpError::at(
            line::AUTHENTICATE,
            "AUTHENTICATE given an invalid read token. (Invalid token.)",
        )
    }

    /// `FIND` of `/api/search/lookup` given an unknown token (`FIND.java`: `getName() + " given
    /// an invalid token."`); the lookup script does not `AUTHENTICATE`.
    pub(crate) fn invalid_token_find() -> WarpError {
        WarpError::at(line::FIND, "FIND given an invalid token. (Invalid token.)")
    }

    /// `FETCHDOUBLE` failing on a storage read timeout (`FETCH.java`: `getName() + " failed."`
    /// around the store's exception). The inner text is the simulator's: the sources only show
    /// that Erlenmeyer's log classifier looks for `SocketTimeoutException` in it.
    pub(crate) fn socket_timeout() -> WarpError {
        WarpError::at(
            line::FETCH,
            "FETCHDOUBLE failed. (java.net.SocketTimeoutException: Read timed out)",
        )
    }

    /// A label or class selector Java's `Pattern` refuses while `FETCHDOUBLE` selects series.
    /// The inner text is the simulator's regex error, not Java's exact wording.
    pub(crate) fn bad_selector(pattern: &str, why: &str) -> WarpError {
        WarpError::at(
            line::FETCH,
            &format!("java.util.regex.PatternSyntaxException: {why} '{pattern}'"),
        )
    }

    /// The header text, for tests.
    #[cfg(test)]
    fn message(&self) -> &str {
        &self.0
    }

    /// The 500 the client receives for this error from Erlenmeyer in `mode`.
    pub(crate) fn relay(&self, mode: ErrorMode) -> ApiError {
        let body = match mode {
            ErrorMode::Text => self.0.clone(),
            ErrorMode::Head => go_json_syntax_error(&self.0),
        };
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, body)
    }
}

/// The error Go's `json.Decoder.Decode` returns for a body that is Warp's plain-text message
/// (`encoding/json` `scanner.stateBeginValue` → `SyntaxError`, `quoteChar`): `invalid character
/// 'X' looking for beginning of value` for its first non-space character, `EOF` for an empty
/// one. Warp's messages start with a letter (`Exception at`), which never begins a JSON value;
/// the other openings Go words differently (`t`, `f`, `n` start a literal) do not occur here.
fn go_json_syntax_error(text: &str) -> String {
    let Some(c) = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .chars()
        .next()
    else {
        return "EOF".to_owned();
    };
    let quoted = match c {
        '\'' => "'\\''".to_owned(),
        '"' => "'\"'".to_owned(),
        c => format!("'{c}'"),
    };
    format!("invalid character {quoted} looking for beginning of value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warp_messages_have_the_2x_shape() {
        assert_eq!(
            WarpError::fetch_limit(20_000_000, 20_000_060).message(),
            "Exception at '5 ->LIST =>FETCHDOUBLE<=' in section [TOP] (FETCHDOUBLE exceeded \
             limit of 20000000 datapoints, current count is 20000060)"
        );
        assert_eq!(
            WarpError::invalid_token().message(),
            "Exception at 'DUP =>AUTHENTICATE<= 20000000 LIMIT' in section [TOP] (AUTHENTICATE \
             given an invalid read token. (Invalid token.))"
        );
        assert!(
            WarpError::socket_timeout()
                .message()
                .contains("SocketTimeoutException")
        );
    }

    #[test]
    fn head_mode_hides_every_cause_behind_the_decoder_error() {
        let opaque = "invalid character 'E' looking for beginning of value";
        for e in [
            WarpError::fetch_limit(5, 6),
            WarpError::invalid_token(),
            WarpError::invalid_token_find(),
            WarpError::socket_timeout(),
            WarpError::bad_selector("(", "Unclosed group"),
        ] {
            assert_eq!(go_json_syntax_error(e.message()), opaque);
            let text = e.relay(ErrorMode::Text);
            assert_eq!(text.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(text.message(), e.message());
            assert_eq!(e.relay(ErrorMode::Head).message(), opaque);
        }
    }

    #[test]
    fn go_decoder_errors_name_the_first_character() {
        assert_eq!(go_json_syntax_error(""), "EOF");
        assert_eq!(go_json_syntax_error(" \n"), "EOF");
        assert_eq!(
            go_json_syntax_error("  in section '[TOP]': x"),
            "invalid character 'i' looking for beginning of value"
        );
        assert_eq!(
            go_json_syntax_error("'x"),
            "invalid character '\\'' looking for beginning of value"
        );
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for m in [ErrorMode::Text, ErrorMode::Head] {
            assert_eq!(m.as_str().parse::<ErrorMode>(), Ok(m));
        }
        for f in [FetchStart::Excluded, FetchStart::Included] {
            assert_eq!(f.to_string().parse::<FetchStart>(), Ok(f));
        }
        assert!("HEAD".parse::<ErrorMode>().is_err());
        assert!("open".parse::<FetchStart>().is_err());
        assert_eq!(FetchStart::Excluded.first_kept_ms(1_000), 1_001);
        assert_eq!(FetchStart::Included.first_kept_ms(1_000), 1_000);
        assert_eq!(FetchStart::Excluded.first_kept_ms(i64::MAX), i64::MAX);
    }
}
