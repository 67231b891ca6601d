//! The sink's bounds against hostile or runaway payloads ([`Limits`]), and the size syntax
//! (`512MiB`) its command line takes.

/// The default bound on what the store holds: 1 GiB, some two million of the pipeline's spans.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// What a store may hold before it evicts its oldest traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes held, as the store counts them (see [`super::store`]).
    pub max_bytes: u64,
    /// Spans held.
    pub max_spans: u64,
    /// Spans one export request may carry; a larger request is refused whole
    /// ([`TraceStore::admit`](super::store::TraceStore::admit)).
    pub max_spans_per_request: u64,
    /// Attributes a span may carry, and attributes, events and links each; a span over it is
    /// refused (a partial success), the rest of its request stored.
    pub max_attributes_per_span: usize,
    /// Export requests handled at once; more are refused (429 / `RESOURCE_EXHAUSTED`) for the
    /// exporter to retry.
    pub max_concurrent_requests: usize,
}

/// The default [`Limits::max_spans_per_request`]: 128 times the SDKs' default batch of 512.
pub const DEFAULT_MAX_SPANS_PER_REQUEST: u64 = 65_536;
/// The default [`Limits::max_attributes_per_span`], eight times the SDKs' default of 128.
pub const DEFAULT_MAX_ATTRIBUTES_PER_SPAN: usize = 1024;
/// The default [`Limits::max_concurrent_requests`].
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_spans: u64::MAX,
            max_spans_per_request: DEFAULT_MAX_SPANS_PER_REQUEST,
            max_attributes_per_span: DEFAULT_MAX_ATTRIBUTES_PER_SPAN,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
        }
    }
}

impl Limits {
    /// At most `max_spans` spans, and the default byte bound.
    pub fn spans(max_spans: u64) -> Self {
        Self {
            max_spans,
            ..Self::default()
        }
    }
}

/// Parses a size in bytes: a whole number with an optional unit, `B`, decimal `kB`/`MB`/`GB` or
/// binary `KiB`/`MiB`/`GiB` (units case-insensitive, space allowed): `512MiB`, `2 GB`, `1048576`.
///
/// # Errors
///
/// A message naming what is wrong, for a command line or a scenario error.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a size: expected a whole number and a unit, as in 512MiB")
    })?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "{other:?} is not a size unit: use B, kB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}
