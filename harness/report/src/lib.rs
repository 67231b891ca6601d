//! What tracebench reports, and the types it reports in. The schemas sit at the bottom: the
//! runner fills them, the renderers read them, and neither imports the other.
//!
//! | module       | what                                                                  |
//! |--------------|-----------------------------------------------------------------------|
//! | [`schema`]   | `result.json`'s types (schema version 1)                               |
//! | [`machine`]  | what a result ran on                                                  |
//! | [`terminal`] | the summary a run prints                                              |
//! | [`junit`]    | one JUnit test case per expectation                                   |
//! | [`html`]     | the report page: waterfalls, the histogram, the critical path         |
//! | [`overhead`] | `overhead.json`'s types, its statistics, its table and page           |
//! | [`compare`]  | `tracebench compare`: a candidate's result against a base's            |

pub mod compare;
pub mod html;
pub mod junit;
pub mod machine;
pub mod overhead;
pub mod schema;
pub mod terminal;

pub use html::{DrawError, html};
pub use junit::junit;
pub use machine::Machine;
pub use schema::{
    CapacitySection, CapacityStep, Choice, InfraReport, InjectedFault, LatencySection,
    ProcessUsage, RunResult, SCHEMA_VERSION, SpanSummary, TracesSection, Verdict,
};
pub use terminal::summary;

/// `s` with `&`, `<`, `>` and `"` escaped (for JUnit XML and the HTML page).
pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
