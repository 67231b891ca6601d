//! `faults.schedule` in a run: a fault proxy ([`tb_faults::Proxy`]) in front of RabbitMQ, the
//! collector, the Vision API or the LLM API when the schedule touches it, the embedded Kafka
//! broker's own down/up controls, and the task that plays the schedule while the load runs.

use std::net::SocketAddr;
use std::sync::Arc;

use tb_faults::Proxy;
use tb_messaging::kafka::KafkaControl;
use tb_pipeline::Wiring;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::RunError;
use crate::children::ChildControl;
use tb_report::InjectedFault;
use tb_scenario::{Fault, FaultHop, ScheduledFault};

/// The RabbitMQ URL the services get, and the proxy it goes through when the schedule faults
/// RabbitMQ.
pub(super) async fn rabbitmq(
    schedule: &[ScheduledFault],
    amqp_url: &str,
) -> Result<(String, Option<Arc<Proxy>>), RunError> {
    through_if(schedule, FaultHop::Rabbitmq, amqp_url).await
}

/// The OTLP endpoint the services export to, and the proxy it goes through when the schedule
/// faults the collector.
///
/// # Errors
///
/// When the endpoint is not a URL, does not resolve, or no loopback port can be bound.
pub async fn collector(
    schedule: &[ScheduledFault],
    endpoint: &str,
) -> Result<(String, Option<Arc<Proxy>>), RunError> {
    through_if(schedule, FaultHop::Collector, endpoint).await
}

/// Whether the schedule faults `hop`.
fn touches(schedule: &[ScheduledFault], hop: FaultHop) -> bool {
    schedule.iter().any(|f| f.fault.hop() == hop)
}

/// `url` unchanged when the schedule does not fault `hop`; else a proxy in front of the
/// host and port it names, and `url` pointing at the proxy instead.
async fn through_if(
    schedule: &[ScheduledFault],
    hop: FaultHop,
    url: &str,
) -> Result<(String, Option<Arc<Proxy>>), RunError> {
    if !touches(schedule, hop) {
        return Ok((url.to_owned(), None));
    }
    let (proxied, proxy) = proxied(url)
        .await
        .map_err(|why| RunError::Faults(format!("a proxy in front of {}: {why}", hop.name())))?;
    Ok((proxied, Some(proxy)))
}

/// A fault proxy in front of the host and port `url` names, and `url` pointing at the proxy
/// instead (user, path and query kept).
///
/// # Errors
///
/// Why not, in words: `url` is not a URL, its host does not resolve, or no loopback port can
/// be bound.
pub async fn proxied(url: &str) -> Result<(String, Arc<Proxy>), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL"))?;
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let upstream = tokio::net::lookup_host(authority)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve {authority:?}"))?;
    let proxy = Proxy::start(upstream).await.map_err(|e| e.to_string())?;
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    let proxied = format!("{scheme}://{user}{}{path}", proxy.addr());
    Ok((proxied, Arc::new(proxy)))
}

/// `wiring` with a fault proxy between the worker and each API the schedule faults: the API's
/// mock gets a fixed loopback port of its own, and the worker the proxy's URL instead. Returns
/// the proxies (Vision, LLM).
pub(super) async fn apis(
    schedule: &[ScheduledFault],
    wiring: &mut Wiring,
) -> Result<(Option<Arc<Proxy>>, Option<Arc<Proxy>>), RunError> {
    let vision = api(
        schedule,
        FaultHop::Vision,
        &mut wiring.vision_addr,
        &mut wiring.vision_via,
    )
    .await?;
    let llm = api(
        schedule,
        FaultHop::Llm,
        &mut wiring.llm_addr,
        &mut wiring.llm_via,
    )
    .await?;
    Ok((vision, llm))
}

/// One API of [`apis`]: its mock's address (`addr`) and the worker's way to it (`via`).
async fn api(
    schedule: &[ScheduledFault],
    hop: FaultHop,
    addr: &mut SocketAddr,
    via: &mut Option<String>,
) -> Result<Option<Arc<Proxy>>, RunError> {
    if !touches(schedule, hop) {
        return Ok(None);
    }
    *addr = crate::children::free_port(hop.name())?;
    let (url, proxy) = through_if(schedule, hop, &format!("http://{addr}")).await?;
    *via = Some(url);
    Ok(proxy)
}

/// What the faults act through: the proxies in front of RabbitMQ, the collector and the APIs,
/// and the embedded Kafka broker's controls.
#[derive(Clone, Default)]
pub(super) struct Rig {
    pub(super) rabbitmq: Option<Arc<Proxy>>,
    pub(super) collector: Option<Arc<Proxy>>,
    pub(super) vision: Option<Arc<Proxy>>,
    pub(super) llm: Option<Arc<Proxy>>,
    pub(super) kafka: Option<KafkaControl>,
    /// Kills and restarts service processes (`--services process` only).
    pub(super) control: Option<ChildControl>,
}

impl Rig {
    /// Turns `fault` on or off.
    fn apply(&self, fault: Fault, on: bool) {
        let proxy = match fault.hop() {
            FaultHop::Worker => {
                if let Some(control) = &self.control {
                    crash(control, on);
                }
                return;
            }
            FaultHop::Kafka => {
                if let Some(Err(e)) = self.kafka.as_ref().map(|k| k.set_down(on)) {
                    eprintln!("tracebench: fault {fault}: {e}");
                }
                return;
            }
            FaultHop::Rabbitmq => self.rabbitmq.as_deref(),
            FaultHop::Collector => self.collector.as_deref(),
            FaultHop::Vision => self.vision.as_deref(),
            FaultHop::Llm => self.llm.as_deref(),
        };
        let set = match (on, fault) {
            (false, _) => tb_faults::Fault::None,
            (true, Fault::Outage(_)) => tb_faults::Fault::Down,
            (true, Fault::Blackhole(_)) => tb_faults::Fault::Blackhole,
            (true, Fault::Latency(_, d)) => tb_faults::Fault::Latency(d),
            (true, Fault::Bandwidth(_, b)) => tb_faults::Fault::Bandwidth(b),
            (true, Fault::WorkerCrash) => return,
        };
        if let Some(proxy) = proxy {
            proxy.set(set);
        }
    }

    /// Ends every fault.
    fn clear(&self) {
        for proxy in [&self.rabbitmq, &self.collector, &self.vision, &self.llm]
            .into_iter()
            .flatten()
        {
            proxy.set(tb_faults::Fault::None);
        }
        if let Some(kafka) = &self.kafka {
            let _ = kafka.set_down(false);
        }
        if let Some(control) = &self.control {
            crash(control, false);
        }
    }
}

/// Kills the worker (`on`) or starts it again.
fn crash(control: &ChildControl, on: bool) {
    if on {
        control.kill(tb_worker::SERVICE);
    } else if let Err(e) = control.restart(tb_worker::SERVICE) {
        eprintln!("tracebench: restarting the worker after worker_crash: {e}");
    }
}

/// The schedule, playing.
pub(super) struct Playing {
    task: JoinHandle<Vec<InjectedFault>>,
    rig: Rig,
}

/// Starts playing `schedule` from now: each fault starts at its `at` and ends `for` later.
///
/// # Errors
///
/// A Kafka outage without the embedded broker to take down.
pub(super) fn play(
    schedule: &[ScheduledFault],
    rig: Rig,
    quiet: bool,
) -> Result<Playing, RunError> {
    if rig.kafka.is_none() && schedule.iter().any(|f| f.fault.hop() == FaultHop::Kafka) {
        return Err(RunError::Faults(
            "a Kafka outage needs the embedded broker (leave infra.kafka unset or embedded)"
                .to_owned(),
        ));
    }
    if rig.control.is_none() && schedule.iter().any(|f| f.fault == Fault::WorkerCrash) {
        return Err(RunError::Faults(
            "worker_crash kills the worker process: it needs --services process".to_owned(),
        ));
    }
    if rig.collector.is_none()
        && schedule
            .iter()
            .any(|f| f.fault.hop() == FaultHop::Collector)
    {
        return Err(RunError::Faults(
            "no fault proxy on the OTLP path to take the collector down".to_owned(),
        ));
    }
    let schedule = schedule.to_vec();
    let r = rig.clone();
    let task = tokio::spawn(async move {
        let start = Instant::now();
        let mut injected = Vec::new();
        for f in schedule {
            tokio::time::sleep_until(start + f.at).await;
            r.apply(f.fault, true);
            if !quiet {
                eprintln!("tracebench: fault {} for {:?}", f.fault, f.lasts);
            }
            tokio::time::sleep_until(start + f.at + f.lasts).await;
            r.apply(f.fault, false);
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
    Ok(Playing { task, rig })
}

impl Playing {
    /// Stops the schedule (the load is over), ends any fault still on, and returns the faults
    /// played to the end with the rig, which must outlive the services (the run's `stop` drops
    /// it after them): they reach RabbitMQ and the APIs through its proxies, and a proxy dropped
    /// resets its connections and refuses new ones, so a service still draining would wait
    /// for its broker forever.
    pub(super) async fn stop(self) -> (Vec<InjectedFault>, Rig) {
        self.task.abort();
        let injected = self.task.await.unwrap_or_default();
        self.rig.clear();
        (injected, self.rig)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Whether a connection to `addr` reaches `upstream`: the proxy connects on through only
    /// while it forwards.
    async fn reaches(addr: &str, upstream: &TcpListener) -> bool {
        let Ok(_client) = TcpStream::connect(addr).await else {
            return false;
        };
        tokio::time::timeout(Duration::from_secs(5), upstream.accept())
            .await
            .is_ok_and(|accepted| accepted.is_ok())
    }

    #[tokio::test]
    async fn the_proxies_outlive_the_schedule_until_the_rig_is_dropped() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let at = upstream.local_addr().expect("addr");
        let schedule = [ScheduledFault {
            at: Duration::ZERO,
            lasts: Duration::from_millis(20),
            fault: Fault::Outage(FaultHop::Rabbitmq),
        }];
        let (url, proxy) = rabbitmq(&schedule, &format!("amqp://guest:guest@{at}/%2f"))
            .await
            .expect("a proxy");
        let addr = url
            .trim_start_matches("amqp://guest:guest@")
            .trim_end_matches("/%2f")
            .to_owned();
        let rig = Rig {
            rabbitmq: proxy,
            ..Rig::default()
        };
        let playing = play(&schedule, rig, true).expect("playable");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (injected, rig) = playing.stop().await;
        assert_eq!(injected.len(), 1);
        // The load is over, the services not yet stopped: they still reach RabbitMQ.
        assert!(
            reaches(&addr, &upstream).await,
            "the proxy forwards after the schedule"
        );
        drop(rig);
        assert!(
            !reaches(&addr, &upstream).await,
            "a dropped proxy forwards nothing"
        );
    }
}
