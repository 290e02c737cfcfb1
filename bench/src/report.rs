//! The suite's results: figures with their targets, printed as a table for
//! people or as JSON for machines (and for `cargo xtask bench`).

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: Machine,
    pub quick: bool,
    pub figures: Vec<Figure>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_bytes: u64,
    pub cpu: String,
    pub os: String,
}

#[derive(Debug, Serialize)]
pub struct Figure {
    /// Stable name for scripts, such as `lateness.fired.p99`.
    pub id: String,
    /// What was measured, for people.
    pub figure: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Option<Target>,
    /// Further numbers behind the value (percentiles, sizes).
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Target {
    /// `at_most` or `at_least`.
    pub bound: Bound,
    pub limit: f64,
    pub met: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    AtMost,
    AtLeast,
}

impl Figure {
    pub fn new(id: impl Into<String>, figure: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Figure { id: id.into(), figure: figure.into(), value, unit, target: None, detail: String::new() }
    }

    pub fn at_most(mut self, limit: f64) -> Self {
        self.target = Some(Target { bound: Bound::AtMost, limit, met: self.value <= limit });
        self
    }

    pub fn at_least(mut self, limit: f64) -> Self {
        self.target = Some(Target { bound: Bound::AtLeast, limit, met: self.value >= limit });
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

impl Report {
    pub fn new(quick: bool) -> Self {
        Report {
            date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
            machine: Machine::this(),
            quick,
            figures: vec![],
        }
    }

    pub fn to_markdown(&self) -> String {
        let mut text = format!(
            "wasmcron-bench{} — {}, {} cores ({}), {:.0} GiB, {}\n\n| figure | target | measured | met | detail |\n|---|---|---|---|---|\n",
            if self.quick { " --quick (sizes too small to mean much)" } else { "" },
            self.date,
            self.machine.cores,
            self.machine.cpu,
            self.machine.memory_bytes as f64 / f64::from(1 << 30),
            self.machine.os,
        );
        for figure in &self.figures {
            let (target, met) = match &figure.target {
                Some(t) => {
                    let op = if t.bound == Bound::AtMost { "≤" } else { "≥" };
                    (format!("{op} {} {}", number(t.limit), figure.unit), if t.met { "yes" } else { "**no**" })
                }
                None => (String::new(), ""),
            };
            text.push_str(&format!(
                "| {} | {target} | {} {} | {met} | {} |\n",
                figure.figure,
                number(figure.value),
                figure.unit,
                figure.detail
            ));
        }
        text
    }
}

impl Machine {
    fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split(':').nth(1)))
            .map_or_else(|| std::env::consts::ARCH.to_owned(), |name| name.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: memory_kib * 1024,
            cpu,
            os: std::env::consts::OS.to_owned(),
        }
    }
}

/// A number with sensible precision for a table.
pub fn number(value: f64) -> String {
    match value.abs() {
        v if v >= 1000.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        v if v >= 0.1 => format!("{value:.2}"),
        _ => format!("{value:.4}"),
    }
}

/// The `p`-quantile (0..=1) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

pub fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// "p50 1.2 ms, p99 3.4 ms, max 5.6 ms (n samples)" for sorted samples.
pub fn spread(sorted: &[Duration]) -> String {
    format!(
        "p50 {} ms, p99 {} ms, max {} ms ({} samples)",
        number(ms(percentile(sorted, 0.5))),
        number(ms(percentile(sorted, 0.99))),
        number(ms(sorted.last().copied().unwrap_or_default())),
        sorted.len()
    )
}

/// CPU time this process has used, user plus system.
pub fn cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time the calling thread has used, user plus system.
pub fn this_thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Reads a CPU-time clock: the scheduler's own nanosecond count. (The
/// figures `getrusage` gives are scaled from ticks to stay monotonic and
/// can stand still across a millisecond of work.)
fn cpu_clock(clock: libc::clockid_t) -> Duration {
    // SAFETY: clock_gettime writes into the zeroed struct we own.
    let time = unsafe {
        let mut time: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(clock, &mut time);
        time
    };
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// One thread of a process and the CPU time it has used so far.
#[derive(Debug, Clone)]
pub struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub cpu: Duration,
}

/// CPU time (user plus system) of each thread of this process, from
/// `/proc/self/task/*`: to the nanosecond from `schedstat` where the kernel
/// keeps it, else in clock ticks (10 ms, usually) from `stat`.
pub fn threads_cpu() -> Vec<ThreadCpu> {
    threads_cpu_of("self")
}

/// The same for process `pid`: each of its threads and the CPU time it has used.
pub fn threads_cpu_of(pid: &str) -> Vec<ThreadCpu> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|task| {
            let task = task.ok()?;
            let tid = task.file_name().to_str()?.parse().ok()?;
            let (name, ticked) = stat_cpu(&task.path().join("stat"))?;
            let cpu = schedstat_cpu(&task.path().join("schedstat")).unwrap_or(ticked);
            Some(ThreadCpu { tid, name, cpu })
        })
        .collect()
}

/// CPU time (user plus system) process `pid` has used, its ended threads
/// included, in clock ticks (10 ms, usually): from `/proc/PID/stat`.
pub fn process_cpu_of(pid: &str) -> Option<Duration> {
    stat_cpu(std::path::Path::new(&format!("/proc/{pid}/stat"))).map(|(_, cpu)| cpu)
}

/// The first field of `schedstat`: nanoseconds spent on a CPU.
fn schedstat_cpu(path: &std::path::Path) -> Option<Duration> {
    let schedstat = std::fs::read_to_string(path).ok()?;
    Some(Duration::from_nanos(schedstat.split_whitespace().next()?.parse().ok()?))
}

fn stat_cpu(path: &std::path::Path) -> Option<(String, Duration)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // "tid (name) state ppid …": the name may hold spaces; fields resume after ')'.
    let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((name.to_owned(), Duration::from_secs_f64(ticks as f64 / per_second as f64)))
}
