//! `pymalloc inspect PID`: the allocator's statistics of a running process, read from
//! outside ([`crate::target`]), as the library's own report at exit, with the process's RSS
//! beside them; `--json` for tools; `--watch` for a timeline. `pymalloc trim PID`: asks a
//! process that opted in to give its free pools back.

use crate::fail;
use crate::introspect::figures;
use crate::target::{HeapRow, Snapshot, Target};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Reads a running process's pymalloc-rs statistics from outside, without stopping it:
/// what PYMALLOC_STATS=1 prints at exit, with the process's RSS beside it.
///
/// The process must use the same version of libpymalloc. Reading another process's memory
/// needs the same user (and /proc/sys/kernel/yama/ptrace_scope at 0) or CAP_SYS_PTRACE.
/// The figures are a snapshot taken while the process runs.
#[derive(clap::Args)]
pub struct Args {
    /// The process to read.
    pid: i32,
    /// Print the figures as JSON (the fields of pymalloc_stats, per class and per heap).
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Sample for SECONDS, printing a line per sample: RSS, bytes in use, stranded, kept.
    #[arg(long, value_name = "SECONDS")]
    watch: Option<f64>,
    /// With --watch: seconds between samples.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 1.0,
        requires = "watch"
    )]
    every: f64,
    /// With --watch: draw the timeline as an SVG chart into FILE.
    #[arg(long, value_name = "FILE", requires = "watch")]
    svg: Option<PathBuf>,
}

pub fn main(args: Args) -> ExitCode {
    // (At most a million samples: NaN and infinities fail too.)
    if args
        .watch
        .is_some_and(|w| !(w >= 0.0 && args.every > 0.0 && w / args.every < 1e6))
    {
        return fail("--watch wants SECONDS >= 0 and --every SECONDS > 0", 2);
    }
    let target = match Target::open(args.pid) {
        Ok(t) => t,
        Err(e) => return fail(&e, 2),
    };
    if let Some(seconds) = args.watch {
        return watch(&target, seconds, args.every, args.svg.as_deref());
    }
    let started = Instant::now();
    let snap = match target.snapshot() {
        Ok(s) => s,
        Err(e) => return fail(&e, 2),
    };
    let elapsed = started.elapsed();
    if args.json {
        print!("{}", json(&target, &snap, elapsed));
    } else {
        print!("{}", text(&target, &snap, elapsed));
    }
    ExitCode::SUCCESS
}

/// `--watch`: a snapshot every `every` seconds for `seconds`, a line each, then the
/// timeline as an SVG line chart into `svg` if asked. Ends early, keeping what it has, when
/// the process exits.
fn watch(target: &Target, seconds: f64, every: f64, svg: Option<&std::path::Path>) -> ExitCode {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let start = Instant::now();
    let mut samples: Vec<(f64, [f64; 4])> = Vec::new();
    println!(
        "pymalloc inspect {} --watch: snapshots while the process runs (MiB)",
        target.pid
    );
    println!("    time        RSS     in use   stranded  kept pools");
    loop {
        let t = start.elapsed().as_secs_f64();
        let Ok(snap) = target.snapshot() else {
            eprintln!("pymalloc: process {} exited", target.pid);
            break;
        };
        let s = &snap.stats;
        let values = [
            mib(snap.rss),
            mib(s.bytes_in_use),
            mib(s.bytes_stranded),
            mib(s.pools_cached * crate::geometry::POOL_SIZE as u64),
        ];
        println!(
            "{t:7.1} s {:10.1} {:10.1} {:10.1} {:11.1}",
            values[0], values[1], values[2], values[3]
        );
        samples.push((t, values));
        let next = (samples.len() as f64 * every).max(0.0);
        if next > seconds {
            break;
        }
        std::thread::sleep(Duration::from_secs_f64(
            (next - start.elapsed().as_secs_f64()).max(0.0),
        ));
    }
    let Some(path) = svg else {
        return ExitCode::SUCCESS;
    };
    let chart = crate::chart::BarChart {
        title: format!("pymalloc inspect {} --watch: MiB over time", target.pid),
        series: ["RSS", "bytes in use", "bytes stranded", "kept empty pools"]
            .map(String::from)
            .to_vec(),
        groups: samples
            .iter()
            .map(|(t, v)| (format!("{t:.1} s"), v.to_vec()))
            .collect(),
        reference: None,
        lines: true,
    };
    match std::fs::write(path, crate::chart::document(&[chart])) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot write {}: {e}", path.display()), 1),
    }
}

/// The text report: who and when, the RSS, then the library's report.
fn text(target: &Target, snap: &Snapshot, elapsed: Duration) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "pymalloc inspect {}: libpymalloc {} ({}), read in {:.1} ms",
        target.pid,
        crate::target::VERSION,
        target.library.display(),
        elapsed.as_secs_f64() * 1e3
    );
    o.push_str(
        "A snapshot read while the process runs: a pool that changed meanwhile may be \
         counted slightly off.\n",
    );
    if snap.skipped_arenas > 0 {
        let _ = writeln!(
            o,
            "{} arenas changed while being read and are left out.",
            snap.skipped_arenas
        );
    }
    let _ = writeln!(
        o,
        "RSS of the process (VmRSS): {} bytes; arenas resident: {} bytes\n",
        snap.rss, snap.stats.bytes_resident
    );
    let rows = snap
        .heaps
        .iter()
        .map(|(role, figures)| (role.as_str(), *figures));
    let _ = figures::report(&mut o, &snap.stats, Some(rows));
    stranded_by_class(&mut o, target.pid, &snap.stats);
    o
}

/// The classes that hold stranded bytes, most first, with the common CPython objects of
/// each class's size for the process's interpreter version (`pytypes`).
fn stranded_by_class(o: &mut String, pid: i32, s: &figures::Stats) {
    let minor = crate::pytypes::python_minor(pid);
    let mut classes: Vec<(usize, &figures::ClassStats)> = s
        .classes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.bytes_stranded > 0)
        .collect();
    classes.sort_by_key(|(_, c)| std::cmp::Reverse(c.bytes_stranded));
    let _ = match minor {
        Some(m) => writeln!(
            o,
            "\nBytes stranded by class, most first, with the common CPython 3.{m} objects of \
             the class's size\n(measured with docs/object_sizes.py; the process runs python3.{m}):\n"
        ),
        None => writeln!(
            o,
            "\nBytes stranded by class, most first (no CPython version found in the process):\n"
        ),
    };
    o.push_str("class   size   bytes stranded   objects of this size\n");
    o.push_str("-----   ----   --------------   --------------------\n");
    for (i, c) in classes {
        let objects = minor.map_or(Vec::new(), |m| crate::pytypes::objects(m, c.size));
        let _ = writeln!(
            o,
            "{i:5} {:6} {:16}   {}",
            c.size,
            c.bytes_stranded,
            objects.join(", ")
        );
    }
}

/// The figures as JSON: `{"pid", "library_version", "read_ms", "rss_bytes",
/// "skipped_arenas", the fields of pymalloc_stats, "classes": [{"size", "pools",
/// "blocks_in_use", "blocks_free", "occupancy": [10], "bytes_stranded", "python_objects":
/// [the common CPython objects of the size]}], "heaps": [{"role", "pools_partly_filled",
/// "pools_full", "pools_kept", "blocks_in_use", "bytes_in_use"}], "python_version": "3.N"
/// or null}`.
fn json(target: &Target, snap: &Snapshot, elapsed: Duration) -> String {
    let s = &snap.stats;
    let mut o = format!(
        "{{\"pid\": {}, \"library_version\": {}, \"read_ms\": {:.3}, \"rss_bytes\": {}, \"skipped_arenas\": {}",
        target.pid,
        crate::compare::json_string(crate::target::VERSION),
        elapsed.as_secs_f64() * 1e3,
        snap.rss,
        snap.skipped_arenas
    );
    for (name, value) in [
        ("arenas_allocated_total", s.arenas_allocated_total),
        ("arenas_reclaimed", s.arenas_reclaimed),
        ("arenas_highwater", s.arenas_highwater),
        ("arenas_current", s.arenas_current),
        ("pools_in_use", s.pools_in_use),
        ("pools_free", s.pools_free),
        ("pools_returned", s.pools_returned),
        ("pools_cached", s.pools_cached),
        ("bytes_in_use", s.bytes_in_use),
        ("bytes_mapped", s.bytes_mapped),
        ("large_in_use", s.large_in_use),
        ("heaps", s.heaps),
        ("heaps_abandoned", s.heaps_abandoned),
        ("bytes_resident", s.bytes_resident),
        ("bytes_stranded", s.bytes_stranded),
    ] {
        let _ = write!(o, ", \"{name}\": {value}");
    }
    let minor = crate::pytypes::python_minor(target.pid);
    let classes: Vec<String> = s
        .classes
        .iter()
        .map(|c| {
            let objects: Vec<String> = minor
                .map_or(Vec::new(), |m| crate::pytypes::objects(m, c.size))
                .iter()
                .map(|o| crate::compare::json_string(o))
                .collect();
            format!(
                "{{\"size\": {}, \"pools\": {}, \"blocks_in_use\": {}, \"blocks_free\": {}, \"occupancy\": {:?}, \"bytes_stranded\": {}, \"python_objects\": [{}]}}",
                c.size,
                c.pools,
                c.blocks_in_use,
                c.blocks_free,
                c.occupancy,
                c.bytes_stranded,
                objects.join(", ")
            )
        })
        .collect();
    let heaps: Vec<String> = snap.heaps.iter().map(heap_json).collect();
    let _ = writeln!(
        o,
        ", \"classes\": [{}], \"heaps\": [{}], \"python_version\": {}}}",
        classes.join(", "),
        heaps.join(", "),
        minor.map_or("null".to_string(), |m| format!("\"3.{m}\""))
    );
    o
}

fn heap_json((role, h): &HeapRow) -> String {
    format!(
        "{{\"role\": {}, \"pools_partly_filled\": {}, \"pools_full\": {}, \"pools_kept\": {}, \"blocks_in_use\": {}, \"bytes_in_use\": {}}}",
        crate::compare::json_string(role),
        h.pools_partly_filled,
        h.pools_full,
        h.pools_kept,
        h.blocks_in_use,
        h.bytes_in_use
    )
}

/// Asks a running process to give its free pools and empty arenas back to the OS now.
///
/// The process must have opted in at start with PYMALLOC_TRIM_SIGNAL=SIGUSR2 (or SIGUSR1,
/// or a signal number): the signal's handler only sets a flag, and the process trims at
/// its next allocation slow path (a process that never allocates again does not trim).
/// Prints the arenas' resident bytes and the RSS before and after.
#[derive(clap::Args)]
pub struct TrimArgs {
    /// The process to ask.
    pid: i32,
    /// Seconds to wait for the trim to show before printing the figures after it.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    wait: f64,
}

pub fn trim(args: TrimArgs) -> ExitCode {
    let target = match Target::open(args.pid) {
        Ok(t) => t,
        Err(e) => return fail(&e, 2),
    };
    let pid = args.pid;
    let signal = match target.trim_signal() {
        Ok(0) => {
            return fail(
                &format!(
                    "process {pid} did not opt in to trims: start it with \
                     PYMALLOC_TRIM_SIGNAL=SIGUSR2 (or SIGUSR1, or a signal number)"
                ),
                2,
            )
        }
        Ok(s) => s,
        Err(e) => return fail(&e, 2),
    };
    let before = match target.snapshot() {
        Ok(s) => s,
        Err(e) => return fail(&e, 2),
    };
    // SAFETY: sends a signal; the process installed a handler for it (the descriptor says).
    if unsafe { libc::kill(pid, signal) } != 0 {
        let e = std::io::Error::last_os_error();
        return fail(&format!("cannot signal process {pid}: {e}"), 2);
    }
    std::thread::sleep(Duration::from_secs_f64(args.wait.max(0.0)));
    let after = match target.snapshot() {
        Ok(s) => s,
        Err(e) => return fail(&e, 2),
    };
    println!("sent signal {signal} to process {pid}; it trims at its next allocation slow path");
    for (label, s) in [("before", &before), ("after", &after)] {
        println!(
            "{label:>6}: arenas resident {} bytes, {} kept empty pools, {} free pools not returned, RSS {} bytes",
            s.stats.bytes_resident,
            s.stats.pools_cached,
            s.stats.pools_free.saturating_sub(s.stats.pools_returned),
            s.rss
        );
    }
    ExitCode::SUCCESS
}
