//! Carriers: how trace context rides on each transport. One file per carrier, each with two ways
//! through it:
//!
//! - a small [`Injector`](opentelemetry::propagation::Injector) /
//!   [`Extractor`](opentelemetry::propagation::Extractor) pair, for any `TextMapPropagator`;
//! - the direct path: `inject_with` writes what [`crate::W3cPropagator::outgoing`] computed as
//!   the carrier's own values, and the carrier's [`crate::propagator::ContextCarrier`] lets
//!   [`crate::W3cPropagator::extract_from`] read it in place.
//!
//! The `inject` / `extract` helpers the services call take the direct path with the propagator
//! `init` installed, and the first way with the global propagator before `init`.
//!
//! Every carrier answers [`Extractor::get`](opentelemetry::propagation::Extractor::get) by its
//! transport's rule for a repeated key (HTTP: no single value; AMQP: keys cannot repeat; Kafka:
//! the last header wins) and hands out a value that is not text as `""`, which no W3C parser
//! accepts, so such a value is counted as invalid instead of silently ignored.

pub mod amqp;
pub mod http;
pub mod kafka;

/// The two ways through each carrier agree: the `Injector`/`Extractor` pair behind
/// `TextMapPropagator`, and the direct path (`inject_with`, [`crate::W3cPropagator::extract_from`]
/// over the carrier's [`crate::propagator::ContextCarrier`]).
#[cfg(test)]
pub(crate) mod paths {
    use std::collections::HashMap;

    use opentelemetry::Context;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use opentelemetry::{KeyValue, trace};

    use crate::W3cPropagator;

    /// What injecting `cx` writes, by the trait path into a map.
    fn written(cx: &Context) -> HashMap<String, String> {
        let mut out = HashMap::new();
        W3cPropagator::new().inject_context(cx, &mut out);
        out
    }

    /// Extracts by the trait path with `p` and by the direct path with a fresh propagator, checks
    /// both give the same span context and inject the same headers, and that the fresh
    /// propagator counted what `p` counted; answers the trait path's context.
    pub(crate) fn extract_both(
        p: &W3cPropagator,
        by_trait: impl FnOnce(&W3cPropagator) -> Context,
        direct: impl FnOnce(&W3cPropagator) -> Context,
    ) -> Context {
        let before = p.invalid_contexts();
        let cx = by_trait(p);
        let after = p.invalid_contexts();
        let fresh = W3cPropagator::new();
        let direct = direct(&fresh);
        let counted = fresh.invalid_contexts();
        assert_eq!(
            (
                after.traceparent - before.traceparent,
                after.tracestate - before.tracestate,
                after.baggage - before.baggage
            ),
            (counted.traceparent, counted.tracestate, counted.baggage),
            "both paths reject the same context"
        );
        assert_eq!(direct.span().span_context(), cx.span().span_context());
        assert_eq!(written(&direct), written(&cx));
        cx
    }

    /// A context holding everything injection writes: a sampled span, a `tracestate` and
    /// `baggage`.
    pub(crate) fn full() -> Context {
        let state = TraceState::from_key_value([("congo", "t61rcWkgMzE"), ("rojo", "00f067aa")])
            .expect("a valid tracestate");
        Context::new()
            .with_remote_span_context(SpanContext::new(
                trace::TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
                trace::SpanId::from(0x00f0_67aa_0ba9_02b7),
                TraceFlags::SAMPLED,
                true,
                state,
            ))
            .with_baggage([KeyValue::new("user", "u-1")])
    }

    /// The three headers as `read` finds them in a carrier.
    pub(crate) fn read_three(read: impl Fn(&str) -> Option<String>) -> [Option<String>; 3] {
        ["traceparent", "tracestate", "baggage"].map(read)
    }

    /// What [`full`] must write, read back as [`read_three`] does.
    pub(crate) fn full_written() -> [Option<String>; 3] {
        let written = written(&full());
        ["traceparent", "tracestate", "baggage"].map(|key| written.get(key).cloned())
    }
}

/// Trace Context Level 2's rules, checked through one carrier by each carrier's tests: a real
/// SDK span is started under what the carrier carried in, and what it injects is read back.
#[cfg(test)]
pub(crate) mod level2 {
    use opentelemetry::Context;
    use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

    use crate::W3cPropagator;

    /// Extracts with the propagator from a carrier holding these headers, in order.
    type Extract<'a> = &'a dyn Fn(&W3cPropagator, &[(&str, &str)]) -> Context;

    /// `traceparent` and `tracestate` as a carrier holds them.
    type Written = (Option<String>, Option<String>);

    /// How a carrier's test plugs into [`check`].
    pub(crate) struct Carrier<'a> {
        /// Extracts with the propagator from a carrier holding these headers, in order.
        pub(crate) extract: Extract<'a>,
        /// Injects the context into a fresh carrier and reads `traceparent` and `tracestate`
        /// back from it.
        pub(crate) inject: &'a dyn Fn(&W3cPropagator, &Context) -> Written,
    }

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// One hop: extract `headers`, start a span under them with `root` as the sampler for new
    /// traces (parents decide for continued ones), inject the span's context. As the span
    /// helpers do, a root starts under [`crate::propagator::started_here`].
    fn hop(
        carrier: &Carrier<'_>,
        root: Sampler,
        headers: &[(&str, &str)],
    ) -> (String, Option<String>) {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(root)))
            .build();
        let p = W3cPropagator::new();
        let cx = crate::propagator::started_here((carrier.extract)(&p, headers));
        let span = provider.tracer("level2").start_with_context("hop", &cx);
        let (traceparent, tracestate) = (carrier.inject)(&p, &cx.with_span(span));
        let traceparent = traceparent.expect("a traceparent is always injected");
        (traceparent, tracestate)
    }

    /// The flags of an injected `traceparent`, after checking it kept the trace id.
    fn flags_of(traceparent: &str, continued: bool) -> &str {
        assert_eq!(traceparent.len(), 55, "{traceparent}");
        if continued {
            assert_eq!(&traceparent[3..35], ID, "{traceparent}");
        }
        &traceparent[53..]
    }

    /// Checks the random flag, the Level 2 key grammar and duplicated keys through `carrier`.
    pub(crate) fn check(carrier: &Carrier<'_>) {
        // The random flag is inherited set or unset, sampled or not (02 and 00 are dropped by
        // the sampler, so the SDK's own flags are 00 there).
        for flags in ["00", "01", "02", "03"] {
            let incoming = format!("00-{ID}-00f067aa0ba902b7-{flags}");
            let (out, _) = hop(carrier, Sampler::AlwaysOn, &[("traceparent", &incoming)]);
            assert_eq!(flags_of(&out, true), flags, "{incoming} → {out}");
        }
        // A trace started here has a random id, so the flag is set, sampled or not.
        let (out, _) = hop(carrier, Sampler::AlwaysOn, &[]);
        assert_eq!(flags_of(&out, false), "03", "{out}");
        let (out, _) = hop(carrier, Sampler::AlwaysOff, &[]);
        assert_eq!(flags_of(&out, false), "02", "{out}");
        // So is a trace restarted after an invalid traceparent.
        let (out, state) = hop(
            carrier,
            Sampler::AlwaysOn,
            &[("traceparent", "00-zz-01"), ("tracestate", "foo=1")],
        );
        assert_eq!((flags_of(&out, false), state), ("03", None), "{out}");

        let parent = format!("00-{ID}-00f067aa0ba902b7-02");
        for (incoming, outgoing) in [
            // Level 2 keys, which the SDK's own TraceState refuses, travel on whole.
            (
                "foo@@bar=1,rojo=2,t@vvvvvvvvvvvvvvv=3,foo@=4",
                Some("foo@@bar=1,rojo=2,t@vvvvvvvvvvvvvvv=3,foo@=4"),
            ),
            // A duplicated key keeps its first member; the header is inherited.
            ("foo=1,foo=2", Some("foo=1")),
            ("foo=1,bar=2,foo=1", Some("foo=1,bar=2")),
            // A key starting with `@`, or longer than 256, still makes the header invalid.
            ("@foo=1,bar=2", None),
        ] {
            let (out, state) = hop(
                carrier,
                Sampler::AlwaysOn,
                &[("traceparent", &parent), ("tracestate", incoming)],
            );
            assert_eq!(flags_of(&out, true), "02");
            assert_eq!(state.as_deref(), outgoing, "{incoming}");
        }
        let long = format!("foo=1,t@{}=2", "v".repeat(255));
        let (_, state) = hop(
            carrier,
            Sampler::AlwaysOn,
            &[("traceparent", &parent), ("tracestate", &long)],
        );
        assert_eq!(state, None, "a 257-character key");
    }
}
