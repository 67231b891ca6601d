//! The W3C Baggage format: parsing and formatting the `baggage` header with its size limits.
//!
//! Grammar (W3C Baggage, §3.2): `list-member 0*179( OWS "," OWS list-member )`, where a member is
//! `key OWS "=" OWS value *( OWS ";" OWS property )`, a key is an RFC 7230 token and a value is
//! percent-encoded UTF-8 made of `baggage-octet`s. Like the Go and Java OpenTelemetry
//! implementations, a header that breaks the grammar or the limits is dropped whole, so a
//! receiver never acts on a half-understood baggage.

use opentelemetry::baggage::Baggage;

use crate::w3c::trim_ows;

/// The most list-members a baggage may carry (the specification's "at least 64" floor, which is
/// also the OpenTelemetry SDK's limit).
pub const MAX_MEMBERS: usize = 64;

/// The most bytes a `baggage` header may have (the specification's "at least 8192" floor).
pub const MAX_BYTES: usize = 8192;

/// Why a `baggage` header was rejected; the whole header is dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BaggageError {
    /// The header is longer than [`MAX_BYTES`].
    #[error("baggage is {0} bytes; at most 8192 are allowed")]
    TooLong(usize),
    /// More list-members than [`MAX_MEMBERS`].
    #[error("baggage has more than 64 list-members")]
    TooManyMembers,
    /// A list-member's key is not an RFC 7230 token, or `=` is missing.
    #[error("baggage list-member {0} has an invalid key")]
    Key(usize),
    /// A value has a character outside `baggage-octet`, or a broken `%XX` escape, or is not UTF-8
    /// once decoded.
    #[error("baggage list-member {0} has an invalid value")]
    Value(usize),
    /// A property (after `;`) breaks the grammar.
    #[error("baggage list-member {0} has an invalid property")]
    Property(usize),
}

/// One list-member of a parsed baggage header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The key, as sent.
    pub key: String,
    /// The value, percent-decoded.
    pub value: String,
    /// The properties after the first `;`, as sent (may be empty).
    pub properties: String,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn valid_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a value made of `baggage-octet`s into UTF-8 text.
fn decode_value(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !is_baggage_octet(b) {
            return None;
        }
        if b == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes text so that every byte outside `baggage-octet`, and `%` itself, is escaped.
fn encode_value(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if is_baggage_octet(b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

fn valid_property(p: &str) -> bool {
    match p.split_once('=') {
        None => valid_token(trim_ows(p)),
        Some((k, v)) => valid_token(trim_ows(k)) && decode_value(trim_ows(v)).is_some(),
    }
}

/// Parses a `baggage` header value (several header fields joined with `,` beforehand).
///
/// # Errors
///
/// Fails when the header exceeds [`MAX_BYTES`] or [`MAX_MEMBERS`], or when any list-member breaks
/// the grammar; see [`BaggageError`].
pub fn parse(header: &str) -> Result<Vec<Member>, BaggageError> {
    if header.len() > MAX_BYTES {
        return Err(BaggageError::TooLong(header.len()));
    }
    let mut members = Vec::new();
    for raw in header.split(',') {
        let raw = trim_ows(raw);
        if raw.is_empty() {
            continue;
        }
        let index = members.len();
        if index == MAX_MEMBERS {
            return Err(BaggageError::TooManyMembers);
        }
        let (pair, properties) = match raw.split_once(';') {
            Some((pair, props)) => (pair, props),
            None => (raw, ""),
        };
        let (key, value) = pair.split_once('=').ok_or(BaggageError::Key(index))?;
        let key = trim_ows(key);
        if !valid_token(key) {
            return Err(BaggageError::Key(index));
        }
        let value = decode_value(trim_ows(value)).ok_or(BaggageError::Value(index))?;
        if !properties.is_empty() && !properties.split(';').all(valid_property) {
            return Err(BaggageError::Property(index));
        }
        members.push(Member {
            key: key.to_owned(),
            value,
            properties: trim_ows(properties).to_owned(),
        });
    }
    Ok(members)
}

/// Parses a `baggage` header into OpenTelemetry's [`Baggage`].
///
/// # Errors
///
/// As [`parse`].
pub fn baggage_from_header(header: &str) -> Result<Baggage, BaggageError> {
    let mut baggage = Baggage::new();
    for m in parse(header)? {
        baggage.insert_with_metadata(m.key, m.value, m.properties);
    }
    Ok(baggage)
}

/// Formats a [`Baggage`] as a `baggage` header value, percent-encoding the values.
///
/// Members are written while the header stays within [`MAX_BYTES`]; a member that would cross
/// it is left out whole, never cut, as the specification requires.
pub fn to_header(baggage: &Baggage) -> String {
    let mut out = String::new();
    let mut member = String::new();
    for (key, (value, metadata)) in baggage.iter().take(MAX_MEMBERS) {
        member.clear();
        member.push_str(key.as_str());
        member.push('=');
        encode_value(value.as_str(), &mut member);
        if !metadata.as_str().is_empty() {
            member.push(';');
            member.push_str(metadata.as_str());
        }
        let sep = usize::from(!out.is_empty());
        if out.len() + sep + member.len() > MAX_BYTES {
            continue;
        }
        if sep == 1 {
            out.push(',');
        }
        out.push_str(&member);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_members_with_white_space_properties_and_escapes() {
        let members = parse("userId=alice, serverNode = DF%2028 ;prop1;p2=v2 ,isProduction=false")
            .expect("valid");
        assert_eq!(members.len(), 3);
        assert_eq!(members[0].key, "userId");
        assert_eq!(members[1].value, "DF 28");
        assert_eq!(members[1].properties, "prop1;p2=v2");
        assert_eq!(members[2].value, "false");
    }

    #[test]
    fn decodes_utf8_values() {
        let members = parse("city=%EC%84%9C%EC%9A%B8").expect("valid");
        assert_eq!(members[0].value, "서울");
    }

    #[test]
    fn rejects_grammar_errors_whole() {
        for s in [
            "no-equals",
            "=value",
            "key with space=1",
            "k=v\"q",
            "k=a,b c=1",
            "k=%zz",
            "k=%e2%82",
            "k=v;=p",
            "k=v;bad prop",
            "k=v\\",
        ] {
            assert!(parse(s).is_err(), "accepted {s:?}");
        }
    }

    #[test]
    fn enforces_the_member_and_size_limits() {
        let sixty_four: Vec<String> = (0..64).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse(&sixty_four.join(",")).expect("64 members").len(), 64);
        let sixty_five: Vec<String> = (0..65).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            parse(&sixty_five.join(",")),
            Err(BaggageError::TooManyMembers)
        );
        let long = format!("k={}", "v".repeat(MAX_BYTES));
        assert_eq!(parse(&long), Err(BaggageError::TooLong(MAX_BYTES + 2)));
    }

    #[test]
    fn round_trips_through_the_sdk_type() {
        let baggage = baggage_from_header("user=J%C3%BCrgen%2C%20100%25;ttl=60").expect("valid");
        let header = to_header(&baggage);
        assert_eq!(header, "user=J%C3%BCrgen%2C%20100%25;ttl=60");
        let again = baggage_from_header(&header).expect("own output parses");
        assert_eq!(
            again.get("user").map(|v| v.as_str().to_owned()),
            Some("Jürgen, 100%".to_owned())
        );
    }

    #[test]
    fn formatting_leaves_out_members_past_the_size_limit() {
        let mut baggage = Baggage::new();
        // Spaces triple in size once encoded: 2000 + 1000 raw bytes become 9000 encoded ones.
        baggage.insert("a", " ".repeat(2000));
        baggage.insert("b", " ".repeat(1000));
        let header = to_header(&baggage);
        assert!(header.len() <= MAX_BYTES);
        assert_eq!(parse(&header).expect("own output parses").len(), 1);
    }
}
