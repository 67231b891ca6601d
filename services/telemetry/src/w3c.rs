//! The W3C Trace Context format: strict parsing and allocation-free formatting of `traceparent`,
//! and validation of `tracestate`.
//!
//! The rules follow the Trace Context specification (Level 2) and the W3C test suite
//! (`w3c/trace-context`, `test/test.py`), which is stricter than the OpenTelemetry SDK's own
//! parser: the SDK accepts wrong lengths, unknown versions with garbage after them and
//! uppercase hex, and it masks the flags down to the sampled bit.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

/// Length of a version `00` `traceparent`: `vv-` + 32 + `-` + 16 + `-` + 2.
pub const TRACEPARENT_LEN: usize = 55;

/// Trace flags this implementation knows: `sampled` (0x01) and `random` (0x02, Level 2).
///
/// The specification says unknown flags "are reserved for future use. Vendors MUST set those to
/// zero", so [`TraceParent::format`] keeps exactly these bits.
pub const KNOWN_FLAGS: u8 = SAMPLED | RANDOM;

/// The `sampled` trace flag.
pub const SAMPLED: u8 = 0x01;

/// The Level 2 `random-trace-id` flag: at least the right-most 7 bytes of the trace id are random.
pub const RANDOM: u8 = 0x02;

/// At most this many list-members in a `tracestate`; a header with more is invalid.
pub const TRACESTATE_MAX_MEMBERS: usize = 32;

/// A parsed `traceparent` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The version the sender wrote; `0x00` today, higher ones are parsed by their first fields.
    pub version: u8,
    /// The trace id; never all zeros once parsed.
    pub trace_id: TraceId,
    /// The sender's span id (the "parent-id"); never all zeros once parsed.
    pub parent_id: SpanId,
    /// The whole flags byte as received, including bits this version does not define.
    pub flags: TraceFlags,
}

/// Why a `traceparent` was rejected. Each variant is one rule of the specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Shorter than 55 characters, or a version `00` header that is not exactly 55 characters.
    #[error("traceparent has length {0}; version 00 is exactly 55 characters")]
    Length(usize),
    /// A field is not lowercase hex (`[0-9a-f]`), e.g. uppercase or a stray character.
    #[error("traceparent field {0} is not lowercase hex")]
    NotHex(&'static str),
    /// A `-` separator is missing where the format requires one.
    #[error("traceparent separator missing after {0}")]
    Separator(&'static str),
    /// Version `ff` is forbidden by the specification.
    #[error("traceparent version ff is invalid")]
    VersionFf,
    /// The trace id is all zeros.
    #[error("traceparent trace-id is all zeros")]
    ZeroTraceId,
    /// The parent id is all zeros.
    #[error("traceparent parent-id is all zeros")]
    ZeroParentId,
}

/// Why a `tracestate` was rejected; the whole header is dropped in every case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceStateError {
    /// More than 32 list-members.
    #[error("tracestate has {0} list-members; at most 32 are allowed")]
    TooManyMembers(usize),
    /// A list-member has no `=`, or its key breaks the key grammar.
    #[error("tracestate list-member {0} has an invalid key")]
    Key(usize),
    /// A list-member's value breaks the value grammar (empty, too long, bad character).
    #[error("tracestate list-member {0} has an invalid value")]
    Value(usize),
}

/// A formatted `traceparent`, held on the stack: formatting never allocates.
#[derive(Clone, Copy)]
pub struct TraceParentBuf([u8; TRACEPARENT_LEN]);

impl TraceParentBuf {
    /// The header value as bytes (always 55 ASCII bytes).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The header value as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and dashes are ever written, so this cannot fail; the check costs a
        // few nanoseconds and keeps the crate free of `unsafe`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for TraceParentBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TraceParentBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Each byte's two lowercase hex digits, for formatting a byte per lookup.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    table
};

/// Maps a byte to its value as a lowercase hex digit, or to `INVALID` (high bits set).
const INVALID: u8 = 0xf0;
const HEX_VALUE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes a few lowercase hex digits (the 2-digit fields) into an integer, or `None` if any
/// is not one.
#[inline]
fn hex_u64(digits: &[u8]) -> Option<u64> {
    let mut acc: u64 = 0;
    let mut bad = 0u8;
    for &d in digits {
        let v = HEX_VALUE[usize::from(d)];
        // Accumulate the "invalid" bits instead of branching on every digit.
        bad |= v;
        acc = (acc << 4) | u64::from(v & 0x0f);
    }
    (bad & INVALID == 0).then_some(acc)
}

/// Decodes 8 lowercase hex digits at once, eight bytes in one `u64` ("SWAR"), or `None` if any
/// byte is not `[0-9a-f]`. The digit-by-digit loop is a chain of dependent shifts; this does the
/// range checks for all eight bytes in parallel, which halves the cost of a parse.
#[inline]
fn hex8(digits: &[u8]) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = u64::from_be_bytes(digits.try_into().ok()?);
    if x & HIGH != 0 {
        return None;
    }
    // High bit set in each byte that is >= n; no borrow crosses bytes since every byte < 0x80.
    let at_least = |n: u64| ((x | HIGH) - n * ONES) & HIGH;
    let digit = at_least(0x30) & !at_least(0x3a);
    let letter = at_least(0x61) & !at_least(0x67);
    if digit | letter != HIGH {
        return None;
    }
    // '0'..'9' carry their value in the low nibble; 'a'..'f' carry 1..6, which need +9.
    let v = (x & 0x0f0f_0f0f_0f0f_0f0f) + (letter >> 7) * 9;
    // Pack the eight nibbles, most significant first, into 32 bits.
    let v = (v | (v >> 4)) & 0x00ff_00ff_00ff_00ff;
    let v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
    Some((v | (v >> 16)) & 0x0000_0000_ffff_ffff)
}

/// Decodes 16 lowercase hex digits.
#[inline]
fn hex16(digits: &[u8]) -> Option<u64> {
    Some((hex8(&digits[..8])? << 32) | hex8(&digits[8..])?)
}

/// Writes `bytes` as lowercase hex into `out`, which holds exactly two digits per byte.
#[inline]
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
}

/// Trims the optional white space (space and horizontal tab) that HTTP allows around a value.
/// The common case, no white space at either end, returns without scanning.
pub(crate) fn trim_ows(s: &str) -> &str {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) if is_ows(first) || is_ows(last) => s.trim_matches([' ', '\t']),
        _ => s,
    }
}

impl TraceParent {
    /// Builds a version `00` value from its parts.
    pub fn new(trace_id: TraceId, parent_id: SpanId, flags: TraceFlags) -> Self {
        Self {
            version: 0,
            trace_id,
            parent_id,
            flags,
        }
    }

    /// Parses a `traceparent` header value.
    ///
    /// # Errors
    ///
    /// Fails when the value breaks any rule of the specification: wrong length for its version,
    /// a field that is not lowercase hex, a missing separator, version `ff`, or an all-zero trace
    /// or parent id. A version above `00` is accepted when its first four fields are well formed
    /// and it either ends there or continues with `-`.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let b = trim_ows(value).as_bytes();
        if b.len() < TRACEPARENT_LEN {
            return Err(TraceParentError::Length(b.len()));
        }
        let version = hex_u64(&b[0..2]).ok_or(TraceParentError::NotHex("version"))? as u8;
        if version == 0xff {
            return Err(TraceParentError::VersionFf);
        }
        if version == 0 && b.len() != TRACEPARENT_LEN {
            return Err(TraceParentError::Length(b.len()));
        }
        if version != 0 && b.len() > TRACEPARENT_LEN && b[TRACEPARENT_LEN] != b'-' {
            return Err(TraceParentError::Separator("trace-flags"));
        }
        if b[2] != b'-' {
            return Err(TraceParentError::Separator("version"));
        }
        if b[35] != b'-' {
            return Err(TraceParentError::Separator("trace-id"));
        }
        if b[52] != b'-' {
            return Err(TraceParentError::Separator("parent-id"));
        }
        let not_hex = |field| TraceParentError::NotHex(field);
        let hi = hex16(&b[3..19]).ok_or(not_hex("trace-id"))?;
        let lo = hex16(&b[19..35]).ok_or(not_hex("trace-id"))?;
        let trace_id = (u128::from(hi) << 64) | u128::from(lo);
        let parent_id = hex16(&b[36..52]).ok_or(not_hex("parent-id"))?;
        let flags = hex_u64(&b[53..55]).ok_or(not_hex("trace-flags"))? as u8;
        if trace_id == 0 {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == 0 {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(Self {
            version,
            trace_id: TraceId::from(trace_id),
            parent_id: SpanId::from(parent_id),
            flags: TraceFlags::new(flags),
        })
    }

    /// Formats this value as a version `00` header, keeping the known flags
    /// ([`KNOWN_FLAGS`]) and zeroing reserved ones, as the specification requires of a sender.
    pub fn format(&self) -> TraceParentBuf {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[0] = b'0';
        out[1] = b'0';
        write_hex(&mut out[3..35], &self.trace_id.to_bytes());
        write_hex(&mut out[36..52], &self.parent_id.to_bytes());
        write_hex(&mut out[53..55], &[self.flags.to_u8() & KNOWN_FLAGS]);
        TraceParentBuf(out)
    }
}

/// Checks a `tracestate` key by Level 2's grammar:
/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )` with
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
///
/// Level 1's `tenant@system` form, with its 241/14 limits and a single `@`, is gone: `foo@=1` and
/// `foo@@bar=1` are valid keys, `@foo=1` is not.
fn valid_key(key: &[u8]) -> bool {
    let is_key_char =
        |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@');
    match key.first() {
        Some(first) if first.is_ascii_lowercase() || first.is_ascii_digit() => {
            key.len() <= 256 && key.iter().all(is_key_char)
        }
        _ => false,
    }
}

/// Checks a `tracestate` value: 1–256 printable ASCII characters other than `,` and `=`,
/// the last one not a space.
fn valid_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && value[value.len() - 1] != b' '
}

/// Parses a `tracestate` header value (several header fields joined with `,` beforehand) into its
/// list-members, in order.
///
/// Empty list-members and optional white space around members are allowed, as the grammar says.
/// A key that repeats keeps its first (left-most, most recently updated) member and the later
/// ones are discarded, as Level 2 allows ("vendors MAY also discard duplicate keys that were not
/// generated by them"); the rest of the header is inherited.
///
/// # Errors
///
/// Fails, so that the whole header is dropped, when there are more than 32 list-members or when
/// a key or value breaks the grammar.
pub fn parse_tracestate(value: &str) -> Result<Vec<(&str, &str)>, TraceStateError> {
    let mut members: Vec<(&str, &str)> = Vec::new();
    let mut index = 0;
    for member in value.split(',') {
        let member = trim_ows(member);
        if member.is_empty() {
            continue;
        }
        if index == TRACESTATE_MAX_MEMBERS {
            let total = value.split(',').filter(|m| !trim_ows(m).is_empty()).count();
            return Err(TraceStateError::TooManyMembers(total));
        }
        let (key, val) = member.split_once('=').ok_or(TraceStateError::Key(index))?;
        if !valid_key(key.as_bytes()) {
            return Err(TraceStateError::Key(index));
        }
        if !valid_value(val.as_bytes()) {
            return Err(TraceStateError::Value(index));
        }
        if !members.iter().any(|(k, _)| *k == key) {
            members.push((key, val));
        }
        index += 1;
    }
    Ok(members)
}

/// A received `tracestate` as OpenTelemetry's [`TraceState`] holds it, plus the header to send on
/// when that type cannot hold it all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InheritedState {
    /// The members the SDK's type accepts, in order, for samplers and exporters to read.
    pub state: TraceState,
    /// The whole list as it must travel on, set only when `state` lacks members: the SDK still
    /// checks keys by Level 1's `tenant@system` rule and refuses Level 2 keys such as
    /// `foo@@bar` or `t@` followed by 15 characters.
    pub header: Option<String>,
}

/// Parses a `tracestate` header value into OpenTelemetry's [`TraceState`], keeping aside, as a
/// header, what that type cannot hold.
///
/// # Errors
///
/// As [`parse_tracestate`].
pub fn trace_state_from_header(value: &str) -> Result<InheritedState, TraceStateError> {
    let members = parse_tracestate(value)?;
    if members.is_empty() {
        return Ok(InheritedState::default());
    }
    if let Ok(state) = TraceState::from_key_value(members.iter().copied()) {
        return Ok(InheritedState {
            state,
            header: None,
        });
    }
    // Rare (a Level 2 key the SDK refuses), so the member-by-member check may allocate.
    let accepted = members
        .iter()
        .filter(|member| TraceState::from_key_value([**member]).is_ok());
    let header = members
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(InheritedState {
        state: TraceState::from_key_value(accepted.copied()).unwrap_or_default(),
        header: Some(header),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn err(s: &str) -> TraceParentError {
        TraceParent::parse(s).expect_err(s)
    }

    #[test]
    fn parses_the_spec_example() {
        let tp = TraceParent::parse(VALID).expect("valid");
        assert_eq!(tp.version, 0);
        assert_eq!(
            tp.trace_id,
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex")
        );
        assert_eq!(
            tp.parent_id,
            SpanId::from_hex("00f067aa0ba902b7").expect("hex")
        );
        assert_eq!(tp.flags, TraceFlags::SAMPLED);
        assert_eq!(tp.format().as_str(), VALID);
    }

    #[test]
    fn rejects_uppercase_hex_in_every_field() {
        assert_eq!(
            err("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            TraceParentError::NotHex("trace-id")
        );
        assert_eq!(
            err("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"),
            TraceParentError::NotHex("parent-id")
        );
        assert_eq!(
            err("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            TraceParentError::NotHex("version")
        );
        assert_eq!(
            err("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"),
            TraceParentError::NotHex("trace-flags")
        );
    }

    #[test]
    fn rejects_all_zero_ids() {
        assert_eq!(
            err("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            TraceParentError::ZeroTraceId
        );
        assert_eq!(
            err("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            TraceParentError::ZeroParentId
        );
    }

    #[test]
    fn rejects_short_and_long_fields() {
        for s in [
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47361-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b71-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-001",
            "",
            "00",
        ] {
            assert!(TraceParent::parse(s).is_err(), "accepted {s:?}");
        }
    }

    #[test]
    fn rejects_version_ff() {
        assert_eq!(
            err("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            TraceParentError::VersionFf
        );
    }

    #[test]
    fn rejects_version_00_with_trailing_data() {
        assert_eq!(
            err("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01."),
            TraceParentError::Length(56)
        );
        assert!(TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like").is_err());
    }

    #[test]
    fn accepts_higher_version_with_trailing_data_after_a_dash() {
        let exact = TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("future version, exact length");
        assert_eq!(exact.version, 0xcc);
        let longer = TraceParent::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
        )
        .expect("future version with more fields");
        assert_eq!(longer.trace_id, exact.trace_id);
        // We speak version 00, so a forwarded future-version context is written as 00.
        assert_eq!(longer.format().as_str(), VALID);
        assert_eq!(
            err(
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what-the-future-will-be-like"
            ),
            TraceParentError::Separator("trace-flags")
        );
    }

    #[test]
    fn rejects_non_hex_characters_and_bad_separators() {
        for s in [
            ".0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-.bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b.-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-.0",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
        ] {
            assert!(TraceParent::parse(s).is_err(), "accepted {s:?}");
        }
    }

    #[test]
    fn accepts_optional_white_space_around_the_value() {
        for s in [
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "\t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \t",
        ] {
            assert!(TraceParent::parse(s).is_ok(), "rejected {s:?}");
        }
    }

    #[test]
    fn flags_03_round_trip_and_reserved_flags_are_zeroed_on_output() {
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
            .expect("valid");
        assert_eq!(tp.flags.to_u8(), 0x03);
        assert_eq!(
            tp.format().as_str(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
        );
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff")
            .expect("unknown flags are still valid input");
        assert_eq!(tp.flags.to_u8(), 0xff, "parsing keeps the whole byte");
        assert!(tp.format().as_str().ends_with("-03"));
    }

    #[test]
    fn swar_hex_decoding_agrees_with_the_table_for_every_byte() {
        for pos in 0..8 {
            for b in 0u8..=255 {
                let mut digits = *b"0123abcd";
                digits[pos] = b;
                assert_eq!(hex8(&digits), hex_u64(&digits), "byte {b:#04x} at {pos}");
            }
        }
        assert_eq!(hex16(b"00f067aa0ba902b7"), Some(0x00f0_67aa_0ba9_02b7));
        assert_eq!(hex16(b"ffffffffffffffff"), Some(u64::MAX));
    }

    #[test]
    fn formats_small_ids_with_leading_zeros() {
        let tp = TraceParent::new(
            TraceId::from(1u128),
            SpanId::from(2u64),
            TraceFlags::default(),
        );
        assert_eq!(
            tp.format().as_str(),
            "00-00000000000000000000000000000001-0000000000000002-00"
        );
    }

    #[test]
    fn tracestate_parses_members_in_order_with_white_space() {
        let members = parse_tracestate("vendor1=value1 \t, \t vendor2=value2,,congo=t61rcWkgMzE")
            .expect("valid");
        assert_eq!(
            members,
            vec![
                ("vendor1", "value1"),
                ("vendor2", "value2"),
                ("congo", "t61rcWkgMzE")
            ]
        );
        assert_eq!(parse_tracestate("").expect("empty is valid"), vec![]);
    }

    #[test]
    fn tracestate_accepts_every_allowed_character() {
        let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
        let value: String = (0x20u8..=0x7e)
            .filter(|&b| b != b',' && b != b'=')
            .map(char::from)
            .collect();
        let header = format!("{key}={value},{key}@a-z0-9_-*/={value}");
        let members = parse_tracestate(&header).expect("all allowed characters");
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].1, value);
    }

    #[test]
    fn tracestate_with_33_members_is_dropped_and_32_kept() {
        let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        assert_eq!(
            parse_tracestate(&members[..32].join(","))
                .expect("32 members")
                .len(),
            32
        );
        assert_eq!(
            parse_tracestate(&members.join(",")),
            Err(TraceStateError::TooManyMembers(33))
        );
    }

    #[test]
    fn tracestate_duplicate_keys_keep_the_first_member_and_the_rest_of_the_header() {
        assert_eq!(
            parse_tracestate("foo=1,foo=1").expect("inherited"),
            vec![("foo", "1")]
        );
        assert_eq!(
            parse_tracestate("foo=1,bar=2,foo=2").expect("inherited"),
            vec![("foo", "1"), ("bar", "2")]
        );
        // Duplicates still count towards the 32-member limit: the header had 33 members.
        let mut many: Vec<String> = (1..=32).map(|i| format!("k{i}=v")).collect();
        many.push("k1=w".to_owned());
        assert_eq!(
            parse_tracestate(&many.join(",")),
            Err(TraceStateError::TooManyMembers(33))
        );
    }

    #[test]
    fn tracestate_invalid_keys_and_values_are_rejected() {
        for s in [
            "foo =1",
            "FOO=1",
            "foo.bar=1",
            "@foo=1,bar=2",
            "_foo=1",
            "foo@BAR=1",
            "foo",
            "foo=",
            "foo=bar\u{7f}",
            "foo=a=b",
            "foo=é",
        ] {
            assert!(parse_tracestate(s).is_err(), "accepted {s:?}");
        }
    }

    #[test]
    fn tracestate_keys_follow_the_level_2_grammar() {
        for (header, key) in [
            ("foo@=1,bar=2", "foo@"),
            ("foo@@bar=1,bar=2", "foo@@bar"),
            ("foo@bar@baz=1,bar=2", "foo@bar@baz"),
            ("t@vvvvvvvvvvvvvvv=1", "t@vvvvvvvvvvvvvvv"),
            ("1foo=1", "1foo"),
            ("0@/*-_=1", "0@/*-_"),
        ] {
            let members = parse_tracestate(header).unwrap_or_else(|e| panic!("{header}: {e}"));
            assert_eq!(members[0], (key, "1"), "{header}");
        }
    }

    #[test]
    fn tracestate_key_length_limits() {
        assert!(parse_tracestate(&format!("{}=1", "z".repeat(256))).is_ok());
        assert!(parse_tracestate(&format!("{}=1", "z".repeat(257))).is_err());
        // `@` anywhere after the first character, within the same 256.
        assert!(parse_tracestate(&format!("{}@{}=1", "t".repeat(241), "v".repeat(14))).is_ok());
        assert!(parse_tracestate(&format!("{}@v=1", "t".repeat(242))).is_ok());
        assert!(parse_tracestate(&format!("t@{}=1", "v".repeat(254))).is_ok());
        assert!(parse_tracestate(&format!("t@{}=1", "v".repeat(255))).is_err());
        assert!(parse_tracestate(&format!("foo={}", "v".repeat(256))).is_ok());
        assert!(parse_tracestate(&format!("foo={}", "v".repeat(257))).is_err());
    }

    #[test]
    fn tracestate_converts_to_the_sdk_type() {
        let inherited =
            trace_state_from_header("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").expect("valid");
        assert_eq!(inherited.state.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(
            inherited.state.header(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        );
        assert_eq!(inherited.header, None, "the SDK holds it all");
        assert_eq!(
            trace_state_from_header(" , ").expect("empty"),
            InheritedState::default()
        );
    }

    #[test]
    fn tracestate_the_sdk_cannot_hold_travels_as_a_header() {
        let inherited =
            trace_state_from_header("foo@@bar=1,rojo=2,foo=3,foo=4,t@vvvvvvvvvvvvvvv=5")
                .expect("valid in Level 2");
        assert_eq!(
            inherited.header.as_deref(),
            Some("foo@@bar=1,rojo=2,foo=3,t@vvvvvvvvvvvvvvv=5")
        );
        assert_eq!(inherited.state.header(), "rojo=2,foo=3");
    }
}
