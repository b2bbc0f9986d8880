//! Where the time per event goes on a machine where RabbitMQ, Redis and the handlers share the
//! cores: CPU seconds by process, read from `/proc`, over one drain.

use std::time::Instant;

/// CPU seconds used by RabbitMQ, Redis and the event handlers (worker processes, or this
/// process for the relay) since the start of a drain.
pub struct CpuUse {
    handlers: Vec<u32>,
    at_start: [f64; 3],
    started: Instant,
}

/// CPU milliseconds per 1,000 events, by process.
#[derive(Clone, Copy, Default)]
pub struct CpuPerEvents {
    pub rabbitmq: f64,
    pub redis: f64,
    pub handler: f64,
    /// Share of the machine's cores in use during the drain.
    pub busy: f64,
}

impl CpuUse {
    pub fn start(handlers: Vec<u32>) -> CpuUse {
        let at_start = Self::sample(&handlers);
        CpuUse {
            handlers,
            at_start,
            started: Instant::now(),
        }
    }

    fn sample(handlers: &[u32]) -> [f64; 3] {
        let rabbitmq = cpu_seconds_named("beam.smp");
        let redis = cpu_seconds_named("redis-server");
        let handler = handlers.iter().map(|p| cpu_seconds(*p)).sum();
        [rabbitmq, redis, handler]
    }

    pub fn finish(self, events: u64) -> CpuPerEvents {
        let now = Self::sample(&self.handlers);
        let per = |i: usize| (now[i] - self.at_start[i]) * 1e6 / events as f64;
        let used: f64 = (0..3).map(|i| now[i] - self.at_start[i]).sum();
        CpuPerEvents {
            rabbitmq: per(0),
            redis: per(1),
            handler: per(2),
            busy: used / self.started.elapsed().as_secs_f64() / cores() as f64,
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

/// User + system CPU seconds of every process of this name.
pub fn cpu_seconds_named(name: &str) -> f64 {
    pids_named(name).iter().map(|p| cpu_seconds(*p)).sum()
}

/// User + system CPU seconds of a process (0 if it is gone).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may contain spaces) : state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // `after` starts at field 3, so field n is index n - 3. Linux reports in 1/100 s ticks.
    (ticks(14 - 3) + ticks(15 - 3)) / 100.0
}

/// The machine, for the report: cores and CPU model.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!("{} cores, {model}", cores())
}
