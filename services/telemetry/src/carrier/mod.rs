//! Carriers: how trace context rides on each transport. One file per carrier, each a small
//! [`Injector`](opentelemetry::propagation::Injector) / [`Extractor`](opentelemetry::propagation::Extractor)
//! pair plus `inject` / `extract` helpers that use the global propagator.
//!
//! Every carrier answers [`Extractor::get`](opentelemetry::propagation::Extractor::get) by its
//! transport's rule for a repeated key (HTTP: no single value; AMQP: keys cannot repeat; Kafka:
//! the last header wins) and hands out a value that is not text as `""`, which no W3C parser
//! accepts, so such a value is counted as invalid instead of silently ignored.

pub mod amqp;
pub mod http;
pub mod kafka;

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
