//! Footprint (issue 10), side by side in one run, pymalloc-rs against CPython 3.11's own
//! pymalloc, fresh processes, medians:
//!
//! 1. `python3.11 -c pass`: VmSize and VmRSS, and the resident KiB of the library's own
//!    mappings (`/proc/self/smaps`: libpymalloc, and libgcc_s, which only it would pull in);
//! 2. 1.5M mixed objects (tuples, dicts, lists, short strs) built in CPython: peak RSS
//!    (VmHWM), then all but every 101st dropped (1 % of each kind) and RSS read after one
//!    second of light activity;
//! 3. the 90 %-free C workload of `cargo bench --bench rss` (1M blocks of 1..512 bytes):
//!    RSS held above the start;
//! 4. the peak-RSS table of `pymalloc compare` (its geometric mean is the issue's figure),
//!    unless `FOOTPRINT_COMPARE=0`.
//!
//! `cargo bench --bench footprint`; `FOOTPRINT_RUNS` (default 5) runs per cell.

mod common;

#[path = "../cli/src/median.rs"]
mod median_of;

use median_of::median;
use std::process::Command;

/// The sum of the `field:` lines (KiB) of an smaps text: `Size` is VmSize, `Rss` VmRSS.
fn smaps_total(smaps: &str, field: &str) -> f64 {
    smaps
        .lines()
        .filter_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .filter_map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .sum()
}

/// At `python3.11 -c` start: VmSize, VmRSS, libpymalloc's and libgcc_s's resident KiB.
fn at_start(py: &str, preload: bool) -> Vec<f64> {
    let lib = common::our_cdylib().unwrap_or_else(|e| panic!("{e}"));
    let smaps = common::smaps::python_start_smaps(
        std::path::Path::new(py),
        preload.then_some(std::path::Path::new(&lib)),
    )
    .expect("python runs");
    vec![
        smaps_total(&smaps, "Size"),
        smaps_total(&smaps, "Rss"),
        common::smaps::resident_kib(&smaps, "libpymalloc") as f64,
        common::smaps::resident_kib(&smaps, "libgcc_s") as f64,
    ]
}

/// 1.5M objects: prints RSS at start, VmHWM after building, RSS with 1 % kept after one
/// second of light activity (KiB).
const BUILD_DROP: &str = r#"
import time
def kib(name):
    for line in open('/proc/self/status'):
        if line.startswith(name):
            return int(line.split()[1])
start = kib('VmRSS')
objs = []
for i in range(1_500_000 // 4):
    objs.append((i, i + 1))
    objs.append({'k': i})
    objs.append([i])
    objs.append(str(i) + 'x')
peak = kib('VmHWM')
keep = objs[::101]  # 1 %, of every kind (101 is prime to the 4 kinds)
del objs
t = time.time()
while time.time() - t < 1.0:
    x = [str(i) for i in range(1000)]
    del x
    time.sleep(0.005)
print(start, peak, kib('VmRSS'))
"#;

/// Runs `code` in CPython 3.11, preloaded or not; returns the numbers it prints.
fn python(python: &str, code: &str, preload: bool) -> Vec<f64> {
    let mut c = Command::new(python);
    c.args(["-c", code])
        .env_remove("PYTHONMALLOC")
        .env_remove("PYTHONDEVMODE")
        .env_remove("LD_PRELOAD");
    if preload {
        c.env(
            "LD_PRELOAD",
            common::our_cdylib().unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let out = c.output().expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Medians over `runs` alternating runs of `code`: (plain, preloaded), each a vector.
fn both(py: &str, code: &str, runs: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut plain, mut ours): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        plain.push(python(py, code, false));
        ours.push(python(py, code, true));
    }
    (medians(&mut plain), medians(&mut ours))
}

/// The median of each column of `rows`.
fn medians(rows: &mut [Vec<f64>]) -> Vec<f64> {
    (0..rows[0].len())
        .map(|i| median(&mut rows.iter().map(|r| r[i]).collect::<Vec<_>>()))
        .collect()
}

/// Child of part 3: the fragmentation workload for one allocator.
fn frag(name: &str, runs: usize) -> Option<f64> {
    let mut held = Vec::new();
    for _ in 0..runs {
        let out = Command::new(std::env::current_exe().unwrap())
            .env("FOOTPRINT_CHILD", name)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("{name}: {}", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        held.push(v[2] - v[0]);
    }
    Some(median(&mut held) / 1024.0)
}

fn main() {
    if let Ok(name) = std::env::var("FOOTPRINT_CHILD") {
        let a = common::load(&name).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(3)
        });
        common::fragmentation(&a);
        return;
    }
    let runs: usize = std::env::var("FOOTPRINT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let lib = common::dl::cpython_lib().expect("pyenv CPython 3.11 (pyenv install 3.11)");
    let py = lib.replace("lib/libpython3.11.so.1.0", "bin/python3.11");

    let (mut plain, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        plain.push(at_start(&py, false));
        ours.push(at_start(&py, true));
    }
    let (plain, ours) = (medians(&mut plain), medians(&mut ours));
    println!("## `python3.11 -c pass` (KiB, median of {runs})\n");
    println!("| | VmSize | VmRSS | libpymalloc resident | libgcc_s resident |");
    println!("|---|---|---|---|---|");
    println!(
        "| CPython's pymalloc | {:.0} | {:.0} | - | {:.0} |",
        plain[0], plain[1], plain[3]
    );
    println!(
        "| pymalloc-rs preloaded | {:.0} | {:.0} | {:.0} | {:.0} |",
        ours[0], ours[1], ours[2], ours[3]
    );
    println!(
        "| difference | {:+.0} | {:+.0} | | |",
        ours[0] - plain[0],
        ours[1] - plain[1]
    );

    let (plain, ours) = both(&py, BUILD_DROP, runs);
    println!("\n## 1.5M mixed objects built, then all but 1 % dropped (MiB above the start, median of {runs})\n");
    println!("| | peak | held with 1 % alive, after 1 s of light activity |");
    println!("|---|---|---|");
    let mib = |v: &[f64], i: usize| (v[i] - v[0]) / 1024.0;
    println!(
        "| CPython's pymalloc | {:.1} | {:.1} |",
        mib(&plain, 1),
        mib(&plain, 2)
    );
    println!(
        "| pymalloc-rs | {:.1} | {:.1} |",
        mib(&ours, 1),
        mib(&ours, 2)
    );
    println!(
        "| ratio | **{:.3}** | **{:.3}** |",
        mib(&ours, 1) / mib(&plain, 1),
        mib(&ours, 2) / mib(&plain, 2)
    );

    println!("\n## 1M blocks of 1..512 bytes, 90 % freed at random (MiB held above the start, after 1 s of light activity, median of {runs})\n");
    match (frag("pymalloc-rs", runs), frag("cpython-pymalloc", runs)) {
        (Some(o), Some(c)) => {
            println!("| CPython's pymalloc | pymalloc-rs | ratio |\n|---|---|---|");
            println!("| {c:.1} | {o:.1} | **{:.3}** |", o / c);
        }
        _ => println!("(skipped: see the line above)"),
    }

    if std::env::var("FOOTPRINT_COMPARE").as_deref() == Ok("0") {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let cli = exe.parent().unwrap().parent().unwrap().join("pymalloc");
    println!("\n## `pymalloc compare -n {runs}` (peak RSS)\n");
    match Command::new(&cli)
        .args(["compare", "-n", &runs.to_string()])
        .env("PYMALLOC_PYTHON", &py)
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let table = text.split("### Peak RSS").nth(1).unwrap_or(&text);
            println!("### Peak RSS{table}");
        }
        Ok(out) => println!(
            "(pymalloc compare failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!("(no {}: {e}; cargo build --release first)", cli.display()),
    }
}
