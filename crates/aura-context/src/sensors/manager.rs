//! The sensor manager: runs every sensor as a component with its own task and adaptive sampler,
//! retries failures with backoff, restarts a sensor (a fresh instance from its factory) after
//! repeated failures, a panic, or on request (Guardian repair level 5), detects crash loops,
//! and keeps each component's status for the asset file and `aura guardian status`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Sample, Sensor, SensorError};
use crate::metric_names;
use crate::sample::{AdaptiveSampler, SamplerOptions, SamplerStats};

/// Builds a fresh sensor (at start and at every restart).
pub type SensorFactory = Arc<dyn Fn() -> Result<Box<dyn Sensor>, SensorError> + Send + Sync>;

/// One sample (or failure) of one sensor, sent to the pipeline.
#[derive(Debug)]
pub struct SensorReport {
    /// The sensor.
    pub sensor: String,
    /// The sample, or the error message.
    pub result: Result<Sample, String>,
    /// How long the sample took.
    pub duration: Duration,
}

/// A component's state, as shown in `meta.sensor_status` and `aura guardian status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComponentStatus {
    /// `starting`, `ok`, `error`, `restarting`, `crash_loop` or `stopped`.
    pub state: String,
    /// Restarts since the manager started.
    pub restarts: u32,
    /// Failed samples in a row.
    pub consecutive_failures: u32,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// The sampler's statistics.
    pub sampler: SamplerStats,
}

impl ComponentStatus {
    /// The short status written to `meta.sensor_status`: `ok`, `starting`, `error: …`,
    /// `restarting`, `crash_loop`, `stopped`.
    #[must_use]
    pub fn summary(&self) -> String {
        match (&*self.state, &self.last_error) {
            ("error", Some(e)) => format!("error: {e}"),
            (s, _) => s.to_owned(),
        }
    }
}

/// Shared pacing inputs: host load and the watchdog's slowdown, read by every sampler.
#[derive(Debug, Default)]
pub struct Pacing {
    load_per_core_milli: AtomicU32,
    slowdown_percent: AtomicU32,
}

impl Pacing {
    /// Sets the host load per core (from the compute sensor).
    pub fn set_load(&self, load_per_core: f64) {
        self.load_per_core_milli.store(
            (load_per_core * 1000.0).clamp(0.0, 1e9) as u32,
            Ordering::Relaxed,
        );
    }

    /// Sets the watchdog's slowdown factor (1.0 = none).
    pub fn set_slowdown(&self, factor: f64) {
        self.slowdown_percent
            .store((factor * 100.0).clamp(100.0, 1e6) as u32, Ordering::Relaxed);
    }

    fn load(&self) -> f64 {
        f64::from(self.load_per_core_milli.load(Ordering::Relaxed)) / 1000.0
    }

    fn slowdown(&self) -> f64 {
        f64::from(self.slowdown_percent.load(Ordering::Relaxed).max(100)) / 100.0
    }
}

/// How the manager treats failures.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Sampling (base interval and bounds).
    pub sampler: SamplerOptions,
    /// Failed samples in a row before the sensor is restarted.
    pub max_failures: u32,
    /// Restarts within `crash_loop_window` that make a crash loop.
    pub crash_loop_restarts: usize,
    /// See `crash_loop_restarts`.
    pub crash_loop_window: Duration,
}

impl ManagerOptions {
    /// Defaults around a base interval: 3 failures → restart; 5 restarts in 5 minutes → crash loop.
    #[must_use]
    pub fn with_interval(interval: Duration) -> ManagerOptions {
        ManagerOptions {
            sampler: SamplerOptions::with_base(interval),
            max_failures: 3,
            crash_loop_restarts: 5,
            crash_loop_window: Duration::from_secs(300),
        }
    }
}

/// Runs sensors; see the module documentation.
pub struct Manager {
    components: Vec<(String, SensorFactory)>,
    options: ManagerOptions,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field(
                "components",
                &self.components.iter().map(|c| &c.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A handle on a running manager: statuses and restarts.
#[derive(Debug, Clone)]
pub struct ManagerHandle {
    statuses: Arc<Mutex<BTreeMap<String, ComponentStatus>>>,
    restart: mpsc::UnboundedSender<Option<String>>,
    /// The pacing inputs shared with every sampler.
    pub pacing: Arc<Pacing>,
}

impl ManagerHandle {
    /// Every component's status, by sensor name.
    #[must_use]
    pub fn statuses(&self) -> BTreeMap<String, ComponentStatus> {
        self.statuses.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Restarts one sensor (`Some(name)`) or all of them (`None`). Returns `false` when the
    /// manager has stopped.
    pub fn restart(&self, sensor: Option<&str>) -> bool {
        self.restart.send(sensor.map(str::to_owned)).is_ok()
    }
}

impl Manager {
    /// An empty manager.
    #[must_use]
    pub fn new(options: ManagerOptions) -> Manager {
        Manager {
            components: Vec::new(),
            options,
        }
    }

    /// Adds a sensor.
    pub fn add(&mut self, name: &str, factory: SensorFactory) {
        self.components.push((name.to_owned(), factory));
    }

    /// Starts every sensor on `tracker`; reports go to `reports` (bounded: a slow consumer
    /// slows the sensors down rather than growing a queue). Stops on `cancel`.
    pub fn spawn(
        self,
        tracker: &TaskTracker,
        cancel: CancellationToken,
        reports: mpsc::Sender<SensorReport>,
    ) -> ManagerHandle {
        let statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let (restart_tx, restart_rx) = mpsc::unbounded_channel();
        let pacing = Arc::new(Pacing::default());
        let handle = ManagerHandle {
            statuses: statuses.clone(),
            restart: restart_tx,
            pacing: pacing.clone(),
        };
        tracker.spawn(supervise(
            self, statuses, restart_rx, pacing, cancel, reports,
        ));
        handle
    }
}

struct Component {
    name: String,
    factory: SensorFactory,
    restarts: VecDeque<Instant>,
    total_restarts: u32,
    abort: Option<tokio::task::AbortHandle>,
    generation: u64,
}

type Statuses = Arc<Mutex<BTreeMap<String, ComponentStatus>>>;

fn set_status(statuses: &Statuses, name: &str, f: impl FnOnce(&mut ComponentStatus)) {
    if let Ok(mut s) = statuses.lock() {
        let entry = s.entry(name.to_owned()).or_insert_with(|| ComponentStatus {
            state: "starting".into(),
            restarts: 0,
            consecutive_failures: 0,
            last_error: None,
            sampler: SamplerStats::default(),
        });
        f(entry);
    }
}

async fn supervise(
    manager: Manager,
    statuses: Statuses,
    mut restart_rx: mpsc::UnboundedReceiver<Option<String>>,
    pacing: Arc<Pacing>,
    cancel: CancellationToken,
    reports: mpsc::Sender<SensorReport>,
) {
    let Manager {
        components,
        options,
    } = manager;
    let mut comps: Vec<Component> = components
        .into_iter()
        .map(|(name, factory)| Component {
            name,
            factory,
            restarts: VecDeque::new(),
            total_restarts: 0,
            abort: None,
            generation: 0,
        })
        .collect();
    // Each task returns (component index, generation, why it ended).
    let mut set: JoinSet<(usize, u64, String)> = JoinSet::new();
    let mut ids: BTreeMap<tokio::task::Id, (usize, u64)> = BTreeMap::new();
    let start = |set: &mut JoinSet<(usize, u64, String)>,
                 ids: &mut BTreeMap<tokio::task::Id, (usize, u64)>,
                 i: usize,
                 c: &mut Component,
                 delay: Duration| {
        c.generation += 1;
        let gen_ = c.generation;
        set_status(&statuses, &c.name, |s| {
            s.state = if c.total_restarts == 0 {
                "starting"
            } else {
                "restarting"
            }
            .into();
            s.restarts = c.total_restarts;
        });
        let run = run_component(
            c.name.clone(),
            c.factory.clone(),
            options.clone(),
            statuses.clone(),
            pacing.clone(),
            cancel.clone(),
            reports.clone(),
            delay,
        );
        let abort = set.spawn(async move { (i, gen_, run.await) });
        ids.insert(abort.id(), (i, gen_));
        c.abort = Some(abort);
    };
    for (i, c) in comps.iter_mut().enumerate() {
        start(&mut set, &mut ids, i, c, Duration::ZERO);
    }
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            request = restart_rx.recv() => {
                let Some(which) = request else { continue };
                for (i, c) in comps.iter_mut().enumerate() {
                    if which.as_deref().is_none_or(|w| w == c.name) {
                        if let Some(a) = c.abort.take() {
                            a.abort();
                        }
                        c.total_restarts += 1;
                        metrics::counter!(metric_names::RESTARTS, "sensor" => c.name.clone()).increment(1);
                        start(&mut set, &mut ids, i, c, Duration::ZERO);
                    }
                }
            }
            Some(joined) = set.join_next_with_id() => {
                let (i, gen_, why) = match joined {
                    Ok((_, (i, g, why))) => (i, g, why),
                    Err(e) if e.is_cancelled() => continue,
                    Err(e) => match ids.get(&e.id()) {
                        Some((i, g)) => (*i, *g, "the sensor panicked".to_owned()),
                        None => continue,
                    },
                };
                let Some(c) = comps.get_mut(i) else { continue };
                if gen_ != c.generation || cancel.is_cancelled() {
                    continue;
                }
                let now = Instant::now();
                c.restarts.push_back(now);
                while c.restarts.front().is_some_and(|t| now.duration_since(*t) > options.crash_loop_window) {
                    c.restarts.pop_front();
                }
                c.total_restarts += 1;
                metrics::counter!(metric_names::RESTARTS, "sensor" => c.name.clone()).increment(1);
                let looping = c.restarts.len() >= options.crash_loop_restarts;
                tracing::warn!(sensor = %c.name, restarts = c.total_restarts, crash_loop = looping, reason = %why, "restarting sensor");
                let delay = if looping { options.sampler.max } else { options.sampler.base };
                start(&mut set, &mut ids, i, c, delay);
                if looping {
                    set_status(&statuses, &c.name, |s| {
                        s.state = "crash_loop".into();
                        s.last_error = Some(why);
                    });
                }
            }
        }
    }
    set.shutdown().await;
    if let Ok(mut s) = statuses.lock() {
        for st in s.values_mut() {
            st.state = "stopped".into();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_component(
    name: String,
    factory: SensorFactory,
    options: ManagerOptions,
    statuses: Statuses,
    pacing: Arc<Pacing>,
    cancel: CancellationToken,
    reports: mpsc::Sender<SensorReport>,
    delay: Duration,
) -> String {
    tokio::select! {
        () = cancel.cancelled() => return "stopped".into(),
        () = tokio::time::sleep(delay) => {}
    }
    let mut sensor = match factory() {
        Ok(s) => s,
        Err(e) => {
            set_status(&statuses, &name, |s| {
                s.state = "error".into();
                s.last_error = Some(e.to_string());
            });
            return e.to_string();
        }
    };
    let mut sampler = AdaptiveSampler::new(options.sampler.clone());
    let mut failures = 0u32;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return "stopped".into(),
            () = tokio::time::sleep(wait) => {}
        }
        let started = Instant::now();
        let result = sensor.sample().await;
        let duration = started.elapsed();
        metrics::histogram!(metric_names::SAMPLE_DURATION, "sensor" => name.clone())
            .record(duration.as_secs_f64());
        let result = match result {
            Ok(sample) => {
                failures = 0;
                wait = sampler.on_success(pacing.load(), pacing.slowdown());
                set_status(&statuses, &name, |s| {
                    s.state = "ok".into();
                    s.consecutive_failures = 0;
                    s.sampler = sampler.stats().clone();
                });
                Ok(sample)
            }
            Err(e) => {
                failures += 1;
                wait = sampler.on_error();
                metrics::counter!(metric_names::ERRORS, "sensor" => name.clone()).increment(1);
                let message = e.to_string();
                set_status(&statuses, &name, |s| {
                    s.state = "error".into();
                    s.consecutive_failures = failures;
                    s.last_error = Some(message.clone());
                    s.sampler = sampler.stats().clone();
                });
                Err(message)
            }
        };
        let failed = result.as_ref().err().cloned();
        let report = SensorReport {
            sensor: name.clone(),
            result,
            duration,
        };
        tokio::select! {
            () = cancel.cancelled() => return "stopped".into(),
            sent = reports.send(report) => if sent.is_err() { return "the pipeline stopped".into() },
        }
        if let Some(e) = failed
            && failures >= options.max_failures
        {
            return format!("{failures} failures in a row, last: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aav::Health;

    struct Flaky {
        calls: Arc<AtomicU32>,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl Sensor for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn sample(&mut self) -> Result<Sample, SensorError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                Err(SensorError::Other("boom".into()))
            } else {
                Ok(Sample {
                    section: toml::Table::new(),
                    health: Health::Healthy,
                })
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failing_sensors_restart_then_crash_loop() {
        let calls = Arc::new(AtomicU32::new(0));
        let made = Arc::new(AtomicU32::new(0));
        let mut m = Manager::new(ManagerOptions {
            sampler: SamplerOptions::with_base(Duration::from_secs(1)),
            max_failures: 2,
            crash_loop_restarts: 3,
            crash_loop_window: Duration::from_secs(3600),
        });
        let (c, mk) = (calls.clone(), made.clone());
        m.add(
            "flaky",
            Arc::new(move || {
                mk.fetch_add(1, Ordering::SeqCst);
                Ok(Box::new(Flaky {
                    calls: c.clone(),
                    fail: true,
                }) as Box<dyn Sensor>)
            }),
        );
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel(4);
        let handle = m.spawn(&tracker, cancel.clone(), tx);
        // Drain reports until the manager calls it a crash loop.
        loop {
            let r = rx.recv().await.unwrap();
            assert!(r.result.is_err());
            let st = handle.statuses();
            if st.get("flaky").is_some_and(|s| s.state == "crash_loop") {
                break;
            }
        }
        let st = handle.statuses()["flaky"].clone();
        assert!(st.restarts >= 3, "{st:?}");
        // The crash-loop restart waits the maximum interval before building its sensor.
        assert_eq!(made.load(Ordering::SeqCst), st.restarts);
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        assert_eq!(handle.statuses()["flaky"].state, "stopped");
    }

    #[tokio::test(start_paused = true)]
    async fn restart_on_request_builds_a_fresh_sensor() {
        let calls = Arc::new(AtomicU32::new(0));
        let made = Arc::new(AtomicU32::new(0));
        let mut m = Manager::new(ManagerOptions::with_interval(Duration::from_secs(1)));
        let (c, mk) = (calls.clone(), made.clone());
        m.add(
            "ok",
            Arc::new(move || {
                mk.fetch_add(1, Ordering::SeqCst);
                Ok(Box::new(Flaky {
                    calls: c.clone(),
                    fail: false,
                }) as Box<dyn Sensor>)
            }),
        );
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel(4);
        let handle = m.spawn(&tracker, cancel.clone(), tx);
        rx.recv().await.unwrap().result.unwrap();
        assert!(handle.restart(Some("ok")));
        while made.load(Ordering::SeqCst) < 2 {
            rx.recv().await.unwrap();
        }
        assert_eq!(handle.statuses()["ok"].restarts, 1);
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
