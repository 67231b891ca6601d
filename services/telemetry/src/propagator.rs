//! The W3C propagator: `traceparent`, `tracestate` and `baggage` through OpenTelemetry's
//! [`TextMapPropagator`] interface, on top of the strict parsers in [`crate::w3c`] and
//! [`crate::baggage`].
//!
//! Invalid input never fails a request: an invalid `traceparent` means "no parent" (the receiver
//! starts a new trace and drops `tracestate`), an invalid `tracestate` or `baggage` is dropped,
//! and each case is counted so a run can report how much bad context it saw.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceId, TraceState};

use crate::{baggage, w3c};

/// Header name of the trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// Header name of the vendor trace state.
pub const TRACESTATE: &str = "tracestate";
/// Header name of the W3C baggage.
pub const BAGGAGE: &str = "baggage";

/// Counts of rejected context, by header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InvalidContexts {
    /// `traceparent` values rejected (malformed, or sent more than once).
    pub traceparent: u64,
    /// `tracestate` values dropped while their `traceparent` was valid.
    pub tracestate: u64,
    /// `baggage` values dropped.
    pub baggage: u64,
}

#[derive(Debug, Default)]
struct Counters {
    traceparent: AtomicU64,
    tracestate: AtomicU64,
    baggage: AtomicU64,
}

/// What the next hop must inherit about a trace that OpenTelemetry's span context does not
/// carry. It rides in the [`Context`], so every span started under it (the SDK builds a child's
/// context from its parent's) finds it at injection.
///
/// - The `random` flag. The SDK starts a sampled child with its parent's flags (the bit
///   survives), but gives a span it drops `00` and a new root `01`. So a note is needed for a
///   parent that arrived random and not sampled (`-02`: its children are dropped, under the
///   parent-based sampler `init` always installs), and for a trace started here
///   ([`started_here`]; its id is random, so the flag "SHOULD be set"). Every other parent's
///   bit survives in the SDK's own flags: `-01` and `-03` in a sampled child's, `-00` in a
///   dropped child's `00`.
/// - The whole `tracestate`, when the SDK's `TraceState` cannot hold some of its Level 2 keys.
#[derive(Debug)]
struct Inherited {
    /// The trace this note is about; `TraceId::INVALID` for [`started_here`]'s note, which is
    /// about whatever root the SDK starts under it.
    trace_id: TraceId,
    random: bool,
    tracestate: Option<String>,
}

impl Inherited {
    /// Whether the context extracted onto `cx` needs this note: when the SDK's own flags will
    /// not carry the random bit (a parent that is random and not sampled), when the SDK's
    /// `TraceState` could not hold the whole header, or when `cx` holds an older note, which
    /// would otherwise speak for this trace. So a `-01` or `-03` parent, what nearly every hop
    /// carries, costs no context entry.
    fn needed(&self, sampled: bool, cx: &Context) -> bool {
        (self.random && !sampled) || self.tracestate.is_some() || cx.get::<Self>().is_some()
    }

    /// Whether this note speaks for spans of `trace_id`.
    fn covers(&self, trace_id: TraceId) -> bool {
        self.trace_id == trace_id || self.trace_id == TraceId::INVALID
    }
}

/// The parent context for a span about to start under `cx`: `cx` itself when it holds a valid
/// span; otherwise the span is a root, and `cx` gets the note "a trace started here" (its id is
/// drawn at random, so the spans of that trace send the `random` flag, sampled or not). The
/// span helpers ([`crate::spans`]) start their spans under it; a root started without it sends
/// the flags the SDK gave it (`01` or `00`), which never claims randomness it did not note.
pub fn started_here(cx: Context) -> Context {
    if cx.span().span_context().is_valid() {
        return cx;
    }
    cx.with_value(Inherited {
        trace_id: TraceId::INVALID,
        random: true,
        tracestate: None,
    })
}

/// The propagator `init` installs globally. Clones share their counters.
#[derive(Clone, Debug)]
pub struct W3cPropagator {
    counters: Arc<Counters>,
    fields: Arc<[String; 3]>,
}

impl Default for W3cPropagator {
    fn default() -> Self {
        Self::new()
    }
}

/// What a carrier holds for a single-valued header (`traceparent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    /// Not there.
    Absent,
    /// Exactly one value.
    One(&'a str),
    /// More than one value: no single parent, so a new trace.
    Repeated,
}

/// A carrier read in its own native form, for the direct path
/// ([`W3cPropagator::extract_from`]): each of [`crate::carrier`]'s carriers answers these two
/// questions with its own lookups, where the `Extractor` trait would hand out one `&str` per
/// call through dynamic dispatch and a `Vec` for every list.
///
/// The rules per transport are the `Extractor`'s (HTTP: a repeated field has no single value and
/// list fields are joined; AMQP: keys are unique; Kafka: the last header wins), and a value that
/// is not text is `""`, which no W3C parser accepts.
pub trait ContextCarrier {
    /// The `traceparent` header.
    fn traceparent(&self) -> Field<'_>;
    /// A list-valued header (`tracestate`, `baggage`); several fields joined with `,`.
    fn list(&self, key: &str) -> Option<Cow<'_, str>>;
}

/// Any `Extractor` as a [`ContextCarrier`]: the path [`TextMapPropagator::extract_with_context`]
/// takes.
struct ByExtractor<'a>(&'a dyn Extractor);

impl ContextCarrier for ByExtractor<'_> {
    fn traceparent(&self) -> Field<'_> {
        field(self.0, TRACEPARENT)
    }

    fn list(&self, key: &str) -> Option<Cow<'_, str>> {
        list_field(self.0, key)
    }
}

/// Reads a single-valued header (`traceparent`), telling one value from several.
///
/// Our carriers answer `get` by their transport's rule for repeated keys (HTTP: only when the key
/// occurs once; Kafka: the last one wins; AMQP: keys are unique), so a present header costs one
/// lookup and no allocation. `get_all` is asked only when `get` found nothing, to tell "absent"
/// from "repeated".
fn field<'a>(extractor: &'a dyn Extractor, key: &str) -> Field<'a> {
    if let Some(value) = extractor.get(key) {
        return Field::One(value);
    }
    match extractor.get_all(key) {
        None => Field::Absent,
        Some(mut values) if values.len() == 1 => Field::One(values.remove(0)),
        Some(values) if values.is_empty() => Field::Absent,
        Some(_) => Field::Repeated,
    }
}

/// Reads a list-valued header, joining repeated fields with `,` as RFC 7230 §3.2.2 says.
///
/// `get_all` answers by the carrier's rule (HTTP: every field line; Kafka: the last header;
/// AMQP: the one entry) and, for an absent key, in one lookup without allocating.
fn list_field<'a>(extractor: &'a dyn Extractor, key: &str) -> Option<Cow<'a, str>> {
    joined(extractor.get_all(key)?)
}

/// The fields of a list-valued header as one value: `None` for none, the one field borrowed,
/// several joined with `,` (RFC 7230 §3.2.2).
pub(crate) fn joined<'a>(fields: impl IntoIterator<Item = &'a str>) -> Option<Cow<'a, str>> {
    let mut fields = fields.into_iter();
    let first = fields.next()?;
    let Some(second) = fields.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut all = [first, second].join(",");
    for field in fields {
        all.push(',');
        all.push_str(field);
    }
    Some(Cow::Owned(all))
}

/// The header values injection writes for a context, computed once; each carrier writes them
/// in its own native form (the direct path, `inject_with` in each of [`crate::carrier`]'s
/// modules), or [`TextMapPropagator::inject_context`] hands them to an `Injector` as `String`s.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// `traceparent`, when the context holds a valid span.
    pub traceparent: Option<w3c::TraceParentBuf>,
    /// `tracestate`, when the trace has one.
    pub tracestate: Option<String>,
    /// `baggage`, when the context carries any.
    pub baggage: Option<String>,
}

/// The propagator the first [`crate::init`] installed; see [`installed`].
static INSTALLED: OnceLock<W3cPropagator> = OnceLock::new();

/// The propagator [`crate::init`] installed in this process, if it ran. The carriers' `inject`
/// and `extract` use it directly, without the global propagator's lock and dynamic dispatch;
/// before `init` they fall back to the global propagator.
pub fn installed() -> Option<&'static W3cPropagator> {
    INSTALLED.get()
}

/// The propagator for `init` to install: the process's one, made by the first call, so every
/// `init` in a process (and the carriers' direct path) share its counters.
pub(crate) fn install() -> W3cPropagator {
    INSTALLED.get_or_init(W3cPropagator::new).clone()
}

impl W3cPropagator {
    /// A propagator with fresh counters.
    pub fn new() -> Self {
        Self {
            counters: Arc::default(),
            fields: Arc::new([
                TRACEPARENT.to_owned(),
                TRACESTATE.to_owned(),
                BAGGAGE.to_owned(),
            ]),
        }
    }

    /// How much invalid context this propagator (and its clones) has rejected so far.
    pub fn invalid_contexts(&self) -> InvalidContexts {
        InvalidContexts {
            traceparent: self.counters.traceparent.load(Ordering::Relaxed),
            tracestate: self.counters.tracestate.load(Ordering::Relaxed),
            baggage: self.counters.baggage.load(Ordering::Relaxed),
        }
    }

    /// Extracts the remote span context alone, or `None` when there is no valid one.
    pub fn extract_span_context(&self, extractor: &dyn Extractor) -> Option<SpanContext> {
        self.extract_parent(&ByExtractor(extractor))
            .map(|(sc, _)| sc)
    }

    /// The remote span context and what the next hop must inherit beside it.
    fn extract_parent<C: ContextCarrier + ?Sized>(
        &self,
        carrier: &C,
    ) -> Option<(SpanContext, Inherited)> {
        let parent = match carrier.traceparent() {
            Field::Absent => return None,
            Field::One(value) => w3c::TraceParent::parse(value).ok(),
            // Two traceparents cannot both be the parent; the test suite expects a new trace.
            Field::Repeated => None,
        };
        let Some(parent) = parent else {
            self.counters.traceparent.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let state = match carrier.list(TRACESTATE) {
            None => w3c::InheritedState::default(),
            Some(header) => w3c::trace_state_from_header(&header).unwrap_or_else(|_| {
                self.counters.tracestate.fetch_add(1, Ordering::Relaxed);
                w3c::InheritedState::default()
            }),
        };
        let inherited = Inherited {
            trace_id: parent.trace_id,
            random: parent.flags.to_u8() & w3c::RANDOM != 0,
            tracestate: state.header,
        };
        // Only the flags this version knows: the SDK starts a child with its parent's flags and
        // exports them, so an unknown bit would otherwise reach the backend.
        let flags = TraceFlags::new(parent.flags.to_u8() & (w3c::SAMPLED | w3c::RANDOM));
        let sc = SpanContext::new(parent.trace_id, parent.parent_id, flags, true, state.state);
        Some((sc, inherited))
    }
}

/// The flags to send for `sc`: its `sampled` bit, and the `random` bit by Level 2's rules.
///
/// - What `inherited` noted, when there is a note for the trace: a continued trace keeps its
///   parent's bit ("it MUST also be set / unset in all outgoing traceparent headers which use
///   the same trace-id"), and a trace started here has it set.
/// - Otherwise the span's own bit: the SDK carried it from the extracted parent into every
///   sampled descendant, a dropped span has `00` only when its parent's bit was unset (a set
///   one was noted), and a remote context that did not come through this propagator keeps its
///   own flags.
fn outgoing_flags(inherited: Option<&Inherited>, sc: &SpanContext) -> TraceFlags {
    let own = sc.trace_flags().to_u8();
    let random = inherited.map_or(own & w3c::RANDOM != 0, |inherited| inherited.random);
    TraceFlags::new((own & w3c::SAMPLED) | if random { w3c::RANDOM } else { 0 })
}

impl W3cPropagator {
    /// What injecting `cx` writes: `traceparent` for a valid span, with the flags by Level 2's
    /// rules ([`outgoing_flags`]); `tracestate`, the whole inherited header when the SDK's
    /// `TraceState` could not hold it; `baggage` when there is any.
    pub fn outgoing(&self, cx: &Context) -> Outgoing {
        let mut out = Outgoing::default();
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            let inherited = cx
                .get::<Inherited>()
                .filter(|inherited| inherited.covers(sc.trace_id()));
            let flags = outgoing_flags(inherited, sc);
            out.traceparent =
                Some(w3c::TraceParent::new(sc.trace_id(), sc.span_id(), flags).format());
            out.tracestate = match inherited.and_then(|i| i.tracestate.clone()) {
                Some(header) => Some(header),
                None if *sc.trace_state() != TraceState::NONE => {
                    Some(sc.trace_state().header()).filter(|header| !header.is_empty())
                }
                None => None,
            };
        }
        let bag = cx.baggage();
        if !bag.is_empty() {
            out.baggage = Some(baggage::to_header(bag)).filter(|header| !header.is_empty());
        }
        out
    }

    /// Extracts from a carrier read natively (the direct path): as
    /// [`TextMapPropagator::extract_with_context`], without dynamic dispatch or a `Vec` per list
    /// header. With no `traceparent` and no `baggage` it hands back a clone of `cx`, which
    /// allocates nothing.
    pub fn extract_from<C: ContextCarrier + ?Sized>(&self, cx: &Context, carrier: &C) -> Context {
        let mut out = match self.extract_parent(carrier) {
            Some((sc, inherited)) if inherited.needed(sc.is_sampled(), cx) => {
                cx.with_value(inherited).with_remote_span_context(sc)
            }
            Some((sc, _)) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        };
        if let Some(header) = carrier.list(BAGGAGE) {
            match baggage::baggage_from_header(&header) {
                Ok(bag) if !bag.is_empty() => out = out.with_baggage(bag),
                Ok(_) => {}
                Err(_) => {
                    self.counters.baggage.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out
    }
}

impl TextMapPropagator for W3cPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let out = self.outgoing(cx);
        if let Some(traceparent) = out.traceparent {
            injector.set(TRACEPARENT, traceparent.as_str().to_owned());
        }
        if let Some(header) = out.tracestate {
            injector.set(TRACESTATE, header);
        }
        if let Some(header) = out.baggage {
            injector.set(BAGGAGE, header);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        self.extract_from(cx, &ByExtractor(extractor))
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(self.fields.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

    use super::*;

    /// A carrier that keeps every value of a key, like an HTTP header map.
    #[derive(Default)]
    struct Multi(Vec<(&'static str, &'static str)>);

    impl Extractor for Multi {
        fn get(&self, key: &str) -> Option<&str> {
            let mut it = self.0.iter().filter(|(k, _)| *k == key);
            let first = it.next()?;
            it.next().is_none().then_some(first.1)
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| *k).collect()
        }
        fn get_all(&self, key: &str) -> Option<Vec<&str>> {
            let all: Vec<&str> = self
                .0
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .collect();
            (!all.is_empty()).then_some(all)
        }
    }

    const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

    fn extract(p: &W3cPropagator, headers: &[(&'static str, &'static str)]) -> Context {
        p.extract_with_context(&Context::new(), &Multi(headers.to_vec()))
    }

    #[test]
    fn valid_traceparent_becomes_the_remote_parent() {
        let p = W3cPropagator::new();
        let cx = extract(&p, &[(TRACEPARENT, TP), (TRACESTATE, "foo=1,bar=2")]);
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_remote());
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("12345678901234567890123456789012").expect("hex")
        );
        assert_eq!(sc.trace_state().get("bar"), Some("2"));
        assert_eq!(p.invalid_contexts(), InvalidContexts::default());
    }

    #[test]
    fn invalid_traceparent_means_no_parent_drops_tracestate_and_is_counted() {
        let p = W3cPropagator::new();
        for bad in [
            "00-12345678901234567890123456789012-1234567890123456-01x",
            "00-ABCDEF78901234567890123456789012-1234567890123456-01",
            "00-00000000000000000000000000000000-1234567890123456-01",
        ] {
            let cx = p.extract_with_context(
                &Context::new(),
                &HashMap::from([
                    (TRACEPARENT.to_owned(), bad.to_owned()),
                    (TRACESTATE.to_owned(), "foo=1".to_owned()),
                ]),
            );
            assert!(!cx.has_active_span(), "{bad} gave a parent");
        }
        assert_eq!(p.invalid_contexts().traceparent, 3);
        assert_eq!(p.invalid_contexts().tracestate, 0);
    }

    #[test]
    fn duplicated_traceparent_is_invalid() {
        let p = W3cPropagator::new();
        let cx = extract(
            &p,
            &[
                (TRACEPARENT, TP),
                (
                    TRACEPARENT,
                    "00-12345678901234567890123456789011-1234567890123456-01",
                ),
            ],
        );
        assert!(!cx.has_active_span());
        assert_eq!(p.invalid_contexts().traceparent, 1);
    }

    #[test]
    fn repeated_tracestate_fields_are_combined_in_order() {
        let p = W3cPropagator::new();
        let cx = extract(
            &p,
            &[
                (TRACEPARENT, TP),
                (TRACESTATE, "foo=1,bar=2"),
                (TRACESTATE, ""),
                (TRACESTATE, "rojo=1,congo=2"),
            ],
        );
        assert_eq!(
            cx.span().span_context().trace_state().header(),
            "foo=1,bar=2,rojo=1,congo=2"
        );
    }

    #[test]
    fn keys_duplicated_across_tracestate_fields_keep_the_first_member() {
        let p = W3cPropagator::new();
        let cx = extract(
            &p,
            &[
                (TRACEPARENT, TP),
                (TRACESTATE, "foo=1"),
                (TRACESTATE, "foo=2"),
            ],
        );
        assert!(cx.span().span_context().is_valid());
        assert_eq!(cx.span().span_context().trace_state().header(), "foo=1");
        assert_eq!(p.invalid_contexts().tracestate, 0);
    }

    #[test]
    fn an_invalid_tracestate_is_dropped_and_counted() {
        let p = W3cPropagator::new();
        let cx = extract(&p, &[(TRACEPARENT, TP), (TRACESTATE, "@foo=1,bar=2")]);
        assert!(cx.span().span_context().is_valid());
        assert_eq!(*cx.span().span_context().trace_state(), TraceState::NONE);
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert!(!out.contains_key(TRACESTATE));
        assert_eq!(p.invalid_contexts().tracestate, 1);
    }

    #[test]
    fn a_second_extract_of_the_same_trace_replaces_what_the_first_said() {
        let p = W3cPropagator::new();
        let unset = "00-12345678901234567890123456789012-1234567890123456-01";
        let set = "00-12345678901234567890123456789012-1234567890123456-03";
        let first = extract(&p, &[(TRACEPARENT, unset)]);
        let second = p.extract_with_context(&first, &Multi(vec![(TRACEPARENT, set)]));
        let mut out = HashMap::new();
        p.inject_context(&second, &mut out);
        assert_eq!(out[TRACEPARENT], set);
    }

    #[test]
    fn what_was_inherited_applies_to_its_own_trace_only() {
        // A context that extracted one trace, then carries a span of another (a consumer that
        // links instead of continuing): the other trace was started here.
        let p = W3cPropagator::new();
        let cx = extract(&p, &[(TRACEPARENT, TP), (TRACESTATE, "foo@@bar=1")]);
        let other = SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        );
        let mut out = HashMap::new();
        p.inject_context(&cx.with_remote_span_context(other.clone()), &mut out);
        assert!(
            out[TRACEPARENT].ends_with("-01"),
            "a foreign remote keeps its flags"
        );
        assert!(!out.contains_key(TRACESTATE));
    }

    #[test]
    fn only_a_random_unsampled_parent_or_a_tracestate_the_sdk_refuses_costs_a_note() {
        let p = W3cPropagator::new();
        for (traceparent, noted) in [
            (
                "00-12345678901234567890123456789012-1234567890123456-00",
                false,
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-01",
                false,
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-02",
                true,
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-03",
                false,
            ),
        ] {
            let cx = extract(&p, &[(TRACEPARENT, traceparent)]);
            assert_eq!(cx.get::<Inherited>().is_some(), noted, "{traceparent}");
        }
        let cx = extract(&p, &[(TRACEPARENT, TP), (TRACESTATE, "foo@@bar=1")]);
        assert!(
            cx.get::<Inherited>().is_some(),
            "a Level 2 key the SDK refuses"
        );
        let cx = extract(&p, &[(TRACEPARENT, TP), (TRACESTATE, "foo=1")]);
        assert!(cx.get::<Inherited>().is_none(), "a key the SDK holds");
    }

    #[test]
    fn unknown_flags_never_reach_the_span_context() {
        // The SDK starts children with their parent's flags and exports them.
        let p = W3cPropagator::new();
        let cx = extract(
            &p,
            &[(
                TRACEPARENT,
                "00-12345678901234567890123456789012-1234567890123456-0b",
            )],
        );
        assert_eq!(
            cx.span().span_context().trace_flags(),
            TraceFlags::new(0x03)
        );
    }

    #[test]
    fn a_trace_started_here_sends_the_random_flag_sampled_or_not() {
        let p = W3cPropagator::new();
        for (sdk_flags, sent) in [(TraceFlags::SAMPLED, "03"), (TraceFlags::default(), "02")] {
            // A root as the SDK makes it: flags 01 or 00, whatever its id.
            let root = SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                sdk_flags,
                false,
                TraceState::NONE,
            );
            let mut out = HashMap::new();
            let cx = started_here(Context::new()).with_remote_span_context(root.clone());
            p.inject_context(&cx, &mut out);
            assert!(out[TRACEPARENT].ends_with(sent), "{}", out[TRACEPARENT]);
            // Without the note, the SDK's flags go out: no claim of randomness.
            let mut out = HashMap::new();
            p.inject_context(&Context::new().with_remote_span_context(root), &mut out);
            assert!(out[TRACEPARENT].ends_with(&format!("{:02x}", sdk_flags.to_u8())));
        }
    }

    #[test]
    fn a_parent_extracted_under_a_started_here_note_speaks_for_its_own_trace() {
        let p = W3cPropagator::new();
        let parent = "00-12345678901234567890123456789012-1234567890123456-01";
        let cx = p.extract_with_context(
            &started_here(Context::new()),
            &Multi(vec![(TRACEPARENT, parent)]),
        );
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert_eq!(out[TRACEPARENT], parent);
    }

    #[test]
    fn tracestate_without_traceparent_is_ignored() {
        let p = W3cPropagator::new();
        let cx = extract(&p, &[(TRACESTATE, "foo=1")]);
        assert!(!cx.has_active_span());
        assert_eq!(p.invalid_contexts(), InvalidContexts::default());
    }

    #[test]
    fn inject_writes_known_flags_and_tracestate() {
        let p = W3cPropagator::new();
        let sc = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            TraceFlags::new(0x03),
            true,
            "vendor1=value1,vendor2=value2".parse().expect("tracestate"),
        );
        let mut out = HashMap::new();
        p.inject_context(&Context::new().with_remote_span_context(sc), &mut out);
        assert_eq!(
            out.get(TRACEPARENT).map(String::as_str),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
        );
        assert_eq!(
            out.get(TRACESTATE).map(String::as_str),
            Some("vendor1=value1,vendor2=value2")
        );
        assert!(!out.contains_key(BAGGAGE));
    }

    #[test]
    fn random_flag_survives_extract_then_inject() {
        let p = W3cPropagator::new();
        let cx = extract(
            &p,
            &[(
                TRACEPARENT,
                "00-12345678901234567890123456789012-1234567890123456-03",
            )],
        );
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert_eq!(
            out.get(TRACEPARENT).map(String::as_str),
            Some("00-12345678901234567890123456789012-1234567890123456-03")
        );
    }

    #[test]
    fn inject_without_a_span_writes_nothing() {
        let p = W3cPropagator::new();
        let mut out: HashMap<String, String> = HashMap::new();
        p.inject_context(&Context::new(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn baggage_is_extracted_and_injected_and_bad_baggage_counted() {
        let p = W3cPropagator::new();
        let cx = extract(&p, &[(BAGGAGE, "user.id=42"), (BAGGAGE, "tier=gold;ttl=5")]);
        assert_eq!(cx.baggage().len(), 2);
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        let header = out.get(BAGGAGE).expect("baggage injected");
        assert!(
            header.contains("user.id=42") && header.contains("tier=gold;ttl=5"),
            "{header}"
        );

        let cx = extract(&p, &[(TRACEPARENT, TP), (BAGGAGE, "bad key=1")]);
        assert!(cx.baggage().is_empty());
        assert!(
            cx.span().span_context().is_valid(),
            "bad baggage leaves the trace alone"
        );
        assert_eq!(p.invalid_contexts().baggage, 1);
    }

    #[test]
    fn fields_lists_the_three_headers() {
        let p = W3cPropagator::new();
        assert_eq!(
            p.fields().collect::<Vec<_>>(),
            vec![TRACEPARENT, TRACESTATE, BAGGAGE]
        );
    }
}
