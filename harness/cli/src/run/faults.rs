//! `faults.schedule` in a run: a fault proxy ([`tb_faults::Proxy`]) in front of RabbitMQ when
//! the schedule touches it, the embedded Kafka broker's own down/up controls, and the task that
//! plays the schedule while the load runs.

use std::sync::Arc;

use tb_faults::Proxy;
use tb_messaging::kafka::KafkaControl;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::RunError;
use crate::report::InjectedFault;
use crate::scenario::{Fault, FaultHop, ScheduledFault};

/// The RabbitMQ URL the services get, and the proxy it goes through when the schedule faults
/// RabbitMQ.
pub(super) async fn rabbitmq(
    schedule: &[ScheduledFault],
    amqp_url: &str,
) -> Result<(String, Option<Arc<Proxy>>), RunError> {
    if !schedule.iter().any(|f| f.fault.hop() == FaultHop::Rabbitmq) {
        return Ok((amqp_url.to_owned(), None));
    }
    let unusable = |why: String| RunError::Faults(format!("a proxy in front of RabbitMQ: {why}"));
    let (scheme, rest) = amqp_url
        .split_once("://")
        .ok_or_else(|| unusable(format!("{amqp_url:?} is not a URL")))?;
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let upstream = tokio::net::lookup_host(authority)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| unusable(format!("cannot resolve {authority:?}")))?;
    let proxy = Proxy::start(upstream)
        .await
        .map_err(|e| unusable(e.to_string()))?;
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    let url = format!("{scheme}://{user}{}{path}", proxy.addr());
    Ok((url, Some(Arc::new(proxy))))
}

/// The schedule, playing.
pub(super) struct Playing {
    task: JoinHandle<Vec<InjectedFault>>,
    proxy: Option<Arc<Proxy>>,
    kafka: Option<KafkaControl>,
}

/// Starts playing `schedule` from now: each fault starts at its `at` and ends `for` later.
///
/// # Errors
///
/// A Kafka outage without the embedded broker to take down.
pub(super) fn play(
    schedule: &[ScheduledFault],
    proxy: Option<Arc<Proxy>>,
    kafka: Option<KafkaControl>,
    quiet: bool,
) -> Result<Playing, RunError> {
    if kafka.is_none() && schedule.iter().any(|f| f.fault.hop() == FaultHop::Kafka) {
        return Err(RunError::Faults(
            "a Kafka outage needs the embedded broker (leave infra.kafka unset or embedded)"
                .to_owned(),
        ));
    }
    let schedule = schedule.to_vec();
    let (p, k) = (proxy.clone(), kafka.clone());
    let task = tokio::spawn(async move {
        let start = Instant::now();
        let mut injected = Vec::new();
        for f in schedule {
            tokio::time::sleep_until(start + f.at).await;
            apply(f.fault, true, p.as_deref(), k.as_ref());
            if !quiet {
                eprintln!("tracebench: fault {} for {:?}", f.fault, f.lasts);
            }
            tokio::time::sleep_until(start + f.at + f.lasts).await;
            apply(f.fault, false, p.as_deref(), k.as_ref());
            if !quiet {
                eprintln!("tracebench: fault {} over", f.fault);
            }
            injected.push(InjectedFault {
                fault: f.fault.to_string(),
                at_s: f.at.as_secs_f64(),
                for_s: f.lasts.as_secs_f64(),
            });
        }
        injected
    });
    Ok(Playing { task, proxy, kafka })
}

impl Playing {
    /// Stops the schedule (the load is over), ends any fault still on, and returns the faults
    /// played to the end.
    pub(super) async fn stop(self) -> Vec<InjectedFault> {
        self.task.abort();
        let injected = self.task.await.unwrap_or_default();
        if let Some(proxy) = &self.proxy {
            proxy.set(tb_faults::Fault::None);
        }
        if let Some(kafka) = &self.kafka {
            let _ = kafka.set_down(false);
        }
        injected
    }
}

/// Turns `fault` on or off.
fn apply(fault: Fault, on: bool, proxy: Option<&Proxy>, kafka: Option<&KafkaControl>) {
    match fault {
        Fault::Outage(FaultHop::Kafka) | Fault::Blackhole(FaultHop::Kafka) => {
            if let Some(Err(e)) = kafka.map(|k| k.set_down(on)) {
                eprintln!("tracebench: fault {fault}: {e}");
            }
        }
        Fault::Latency(FaultHop::Kafka, _) => {}
        Fault::Outage(FaultHop::Rabbitmq)
        | Fault::Blackhole(FaultHop::Rabbitmq)
        | Fault::Latency(FaultHop::Rabbitmq, _) => {
            let set = match (on, fault) {
                (false, _) => tb_faults::Fault::None,
                (true, Fault::Outage(_)) => tb_faults::Fault::Down,
                (true, Fault::Blackhole(_)) => tb_faults::Fault::Blackhole,
                (true, Fault::Latency(_, d)) => tb_faults::Fault::Latency(d),
            };
            if let Some(proxy) = proxy {
                proxy.set(set);
            }
        }
    }
}
