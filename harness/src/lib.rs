//! The tracebench harness. [`pipeline`] starts the scan pipeline's services — all of them in
//! this process, or any one — on real RabbitMQ and Kafka (embedded or external).

pub mod attribution;
pub mod children;
pub mod infra;
pub mod load;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sink;
pub mod verify;
