//! The generator's coordinated-omission correction, checked against a server that stalls for
//! 1 s every 10 s, driven at 1000 requests/s over 32 connections. During the stall the
//! schedule keeps its times, so the ~1000 requests due in that second wait up to 1 s from their
//! *intended* send: the corrected p99 is ≈ 0.9 s. Measured from when a request actually got a
//! connection, only the 32 requests caught on the server see the stall: the uncorrected p99 is
//! far lower.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tb_load::{Arrival, HttpGet, Load, Plan, Tracker};

#[test]
fn corrected_p99_sees_a_one_second_stall_that_uncorrected_hides() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let epoch = Instant::now();
        // Stalled during the last second of every ten: a request arriving then is answered
        // at the next ten-second boundary.
        let app = Router::new().route(
            "/",
            get(move || async move {
                let t = epoch.elapsed().as_secs_f64();
                if t % 10.0 >= 9.0 {
                    let resume = epoch + Duration::from_secs_f64((t / 10.0).floor() * 10.0 + 10.0);
                    tokio::time::sleep_until(resume.into()).await;
                }
                "ok"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });

        let target = Arc::new(HttpGet::new(format!("http://{addr}/"), 32));
        let plan = Plan {
            load: Load {
                arrival: Arrival::Constant { rate: 1000.0 },
                max_in_flight: 5000,
                connections: 32,
            },
            warmup: Duration::ZERO,
            duration: Duration::from_secs(10),
            seed: 1,
            drain: Duration::from_secs(10),
        };
        let report = tb_load::drive(target, plan, Arc::new(Tracker::default()), |_, _| {}).await;
        assert_eq!(report.requests.failed, 0, "{:?}", report.sample_errors);
        assert_eq!(report.requests.skipped, 0);
        let corrected = report.http.corrected.p99;
        let uncorrected = report.http.uncorrected.p99;
        assert!(
            (810.0..=990.0).contains(&corrected),
            "corrected p99 {corrected} ms, expected 900 ms ± 10 %"
        );
        assert!(
            uncorrected < corrected / 5.0,
            "uncorrected p99 {uncorrected} ms should be far below corrected {corrected} ms"
        );
        // The schedule held: 10 000 requests in 10 s.
        assert!(
            (report.requests.sent as i64 - 10_000).abs() <= 1,
            "{}",
            report.requests.sent
        );
    });
}
