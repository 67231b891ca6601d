//! `overhead.json`: its types ([`schema`]), the statistics its figures are made of
//! ([`stats`]), and the terminal table and HTML page that show it ([`render`]).

pub mod render;
pub mod schema;
pub mod stats;

pub use render::{overhead_html, overhead_summary};
pub use schema::{OVERHEAD_SCHEMA_VERSION, OverheadResult, TOTAL};
