//! What a run reports: [`schema`] (`result.json`'s types), the [`terminal`] summary,
//! [`junit`] XML and the [`html`] page. The schema sits at the bottom: the run fills it, the
//! reports read it, and neither imports the other.

pub mod html;
pub mod junit;
pub mod overhead;
pub mod schema;
pub mod terminal;

pub use html::{DrawError, html};
pub use junit::junit;
pub use schema::{
    CapacitySection, CapacityStep, InjectedFault, LatencySection, ProcessUsage, RunResult,
    SCHEMA_VERSION, SpanSummary, TracesSection, Verdict,
};
pub use terminal::summary;

/// `s` with `&`, `<`, `>` and `"` escaped (for JUnit XML and the HTML page).
pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
