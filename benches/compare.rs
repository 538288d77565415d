//! Issue 5's C-level comparison, outside criterion: every workload of `common` (W1–W6) for
//! every allocator, each run in a fresh child process, allocators alternating, and a
//! markdown table of median ratios against CPython's pymalloc; RSS peak and after freeing
//! everything for W2, W3 and W5; and, with `-- callgrind`, instructions per W1 pair.
//!
//! - `cargo bench --bench compare` — time ratios and RSS (`COMPARE_RUNS`, default 5).
//! - `cargo bench --bench compare -- callgrind` — instructions per malloc+free pair under
//!   `valgrind --tool=callgrind`: two loop counts, the difference over the count, so start-up
//!   (CPython's included) cancels out. `CALLGRIND_ALLOCS=empty,pymalloc-rs.so` limits it to
//!   the allocators named.
//!
//! jemalloc (and tcmalloc if it will not `dlopen`) run with their library in `LD_PRELOAD`;
//! a peer that still cannot be loaded is skipped with a line saying why.

mod common;

use common::{load, output, Alloc, Replay, Rng, Slots, Warm, ALL, REFERENCE, W1_SIZES};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

/// One measured thing of a child: seconds and operations.
fn report(key: &str, t: Instant, ops: u64) {
    println!("t {key} {} {ops}", t.elapsed().as_secs_f64());
}

/// Reports RSS at the start, the peak, and after everything was freed and one second of
/// light activity (memory goes back after a decay driven by activity).
fn report_rss(key: &str, a: &Alloc, start: u64) {
    let peak = common::peak_rss_kib();
    common::light_activity(a, &mut Rng(0x5151));
    println!("rss {key} {start} {peak} {}", common::rss_kib());
}

/// Child: runs workload group `what` on `a` and prints its measurements.
fn run_child(what: &str, a: &Alloc) {
    let mut vec = Vec::with_capacity(common::W2_BLOCKS);
    vec.resize(common::W2_BLOCKS, std::ptr::null_mut());
    vec.clear();
    match what {
        "w1" => {
            let warm = Warm::new(a);
            for n in W1_SIZES {
                common::w1(a, n, 200_000);
                let t = Instant::now();
                let ops = common::w1(a, n, 50_000_000);
                report(&format!("W1 {n} B"), t, ops);
            }
            warm.free(a);
        }
        "w2" => {
            let mut rng = Rng(0x2222);
            let start = common::rss_kib();
            common::w2(a, &mut vec, &mut rng);
            let (t, mut ops) = (Instant::now(), 0);
            for _ in 0..3 {
                common::w2_fill(a, &mut vec, &mut rng);
                ops += common::w2_drain(a, &mut vec);
            }
            report("W2", t, ops);
            report_rss("W2", a, start);
        }
        "w3" | "w5" => {
            let key = if what == "w3" { "W3" } else { "W5" };
            let start = common::rss_kib();
            let mut s = Slots::new(a, what == "w5");
            s.steps(a, 500_000);
            let t = Instant::now();
            let ops = s.steps(a, 3_000_000);
            report(key, t, ops);
            s.free(a);
            report_rss(key, a, start);
        }
        "w4" => {
            common::w4(a, 64, &mut vec);
            let (t, mut ops) = (Instant::now(), 0);
            for _ in 0..20_000 {
                ops += common::w4(a, 1, &mut vec);
            }
            report("W4 single", t, ops);
            let (t, mut ops) = (Instant::now(), 0);
            for _ in 0..400 {
                ops += common::w4(a, 64, &mut vec);
            }
            report("W4 64 interleaved", t, ops);
        }
        "w6" => {
            let mut r = Replay::new();
            r.run(a);
            let (t, mut ops) = (Instant::now(), 0);
            for _ in 0..300 {
                ops += r.run(a);
            }
            report("W6 replay", t, ops);
        }
        _ => panic!("unknown workload {what}"),
    }
}

/// Child for callgrind: the warm heap, then `loops` W1 pairs of `n` bytes.
fn icount_child(n: usize, loops: u64, a: &Alloc) {
    let warm = Warm::new(a);
    common::w1(a, n, 1000);
    common::w1(a, n, loops);
    warm.free(a);
}

fn child_cmd(spec: &str, preload: Option<&str>) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env("COMPARE_CHILD", spec)
        .env_remove("PYTHONMALLOC")
        .env_remove("PYTHONDEVMODE");
    if let Some(lib) = preload {
        c.env("LD_PRELOAD", lib);
    }
    c
}

#[path = "../cli/src/median.rs"]
mod median_of;

fn median(mut v: Vec<f64>) -> f64 {
    median_of::median(&mut v)
}

/// Targets for pymalloc-rs (time ratio against CPython's pymalloc): issue 5's, as issue 13
/// restated them for W2, W3 and W5.
fn target(key: &str) -> &'static str {
    match key {
        k if k.starts_with("W1") => "≤ 0.9",
        "W2" => "≤ 0.5",
        "W3" => "≤ 0.7",
        "W4 64 interleaved" => "≤ 0.9",
        "W5" => "≤ 0.8",
        _ => "",
    }
}

fn times(runs: usize) {
    let allocs = common::available(&ALL, child_cmd);
    if !allocs.iter().any(|a| a.0 == REFERENCE) {
        eprintln!("{REFERENCE}, the reference of every ratio, cannot be loaded (see above)");
        std::process::exit(1);
    }
    let names: Vec<&str> = allocs.iter().map(|a| a.0).collect();
    // (key, allocator) -> per-run (seconds, ops); (key, allocator) -> per-run RSS.
    let mut t: BTreeMap<(String, &str), Vec<(f64, f64)>> = BTreeMap::new();
    let mut rss: BTreeMap<(String, &str), Vec<[f64; 3]>> = BTreeMap::new();
    let mut keys: Vec<String> = Vec::new();
    for run in 0..runs {
        for what in ["w1", "w2", "w3", "w4", "w5", "w6"] {
            for i in 0..allocs.len() {
                // Rotate the order from run to run.
                let (name, pre) = allocs[(i + run) % allocs.len()];
                let out = match output(child_cmd(&format!("{what}:{name}"), pre)) {
                    Ok(o) => o,
                    Err(e) => {
                        eprintln!("{what} {name} failed: {e}");
                        continue;
                    }
                };
                for line in out.lines() {
                    let f: Vec<&str> = line.split(' ').collect();
                    let nums = |k: usize| -> Vec<f64> {
                        f[f.len() - k..]
                            .iter()
                            .map(|x| x.parse().unwrap())
                            .collect()
                    };
                    match f[0] {
                        "t" => {
                            let key = f[1..f.len() - 2].join(" ");
                            if !keys.contains(&key) {
                                keys.push(key.clone());
                            }
                            let v = nums(2);
                            t.entry((key, name)).or_default().push((v[0], v[1]));
                        }
                        "rss" => {
                            let v = nums(3);
                            rss.entry((f[1].to_string(), name))
                                .or_default()
                                .push([v[0], v[1], v[2]]);
                        }
                        _ => {}
                    }
                }
            }
        }
        eprintln!("run {}/{runs} done", run + 1);
    }

    println!("## Time: median of per-run ratios against CPython's pymalloc ({runs} alternating runs, fresh processes)\n");
    print!("| workload | {REFERENCE} ns/op |");
    for n in &names {
        if *n != REFERENCE {
            print!(" {n} |");
        }
    }
    println!(" pymalloc-rs target |");
    println!("|---|---|{}---|", "---|".repeat(names.len() - 1));
    for key in &keys {
        let Some(base) = t.get(&(key.clone(), REFERENCE)) else {
            continue;
        };
        let ns = median(base.iter().map(|(s, o)| s / o * 1e9).collect());
        print!("| {key} | {ns:.1} |");
        for n in &names {
            if *n == REFERENCE {
                continue;
            }
            match t.get(&(key.clone(), *n)) {
                Some(v) if v.len() == base.len() => {
                    let r = median(v.iter().zip(base).map(|(a, b)| a.0 / b.0).collect());
                    print!(" {r:.2}× |");
                }
                _ => print!(" - |"),
            }
        }
        println!(" {} |", target(key));
    }

    println!("\n## RSS above the start of the workload, MiB (median of runs): peak / after freeing everything and 1 s of light activity\n");
    print!("| workload |");
    for n in &names {
        print!(" {n} |");
    }
    println!("\n|---|{}", "---|".repeat(names.len()));
    for key in ["W2", "W3", "W5"] {
        print!("| {key} |");
        for n in &names {
            match rss.get(&(key.to_string(), *n)) {
                Some(v) => {
                    let peak = median(v.iter().map(|r| (r[1] - r[0]) / 1024.0).collect());
                    let end = median(v.iter().map(|r| (r[2] - r[0]) / 1024.0).collect());
                    print!(" {peak:.1} / {end:.1} |");
                }
                None => print!(" - |"),
            }
        }
        println!();
    }
}

/// Instructions `valgrind --tool=callgrind` counts for a child.
fn callgrind_total(spec: &str, pre: Option<&str>) -> Result<f64, String> {
    let file = std::env::temp_dir().join(format!("compare-cg-{}.out", std::process::id()));
    let mut c = Command::new("valgrind");
    c.args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(std::env::current_exe().unwrap())
        .env("COMPARE_CHILD", spec);
    if let Some(lib) = pre {
        c.env("LD_PRELOAD", lib);
    }
    output(c)?;
    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&file);
    text.lines()
        .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no totals in callgrind output".into())
}

fn callgrind() {
    let mut names = vec!["empty", "pymalloc-rs.so"];
    names.extend(ALL);
    // `CALLGRIND_ALLOCS=empty,pymalloc-rs.so` measures only those (a quick check of ours).
    if let Ok(only) = std::env::var("CALLGRIND_ALLOCS") {
        names.retain(|n| only.split(',').any(|o| o == *n));
    }
    let allocs = common::available(&names, child_cmd);
    let (l1, l2) = (100_000u64, 300_000u64);
    println!("## Instructions per W1 malloc(n) + touch + free pair (callgrind, warm heap of 10,000 blocks)\n");
    println!("Loop counts {l1} and {l2}; (I₂ − I₁) / {}. `empty` is the harness alone (a malloc that returns a static buffer): subtract it for the allocator's own instructions (plus 3: the empty malloc and free run `lea`+`ret` and `ret` themselves).\n", l2 - l1);
    print!("| allocator |");
    for n in W1_SIZES {
        print!(" {n} B |");
    }
    println!(" 64 B minus harness |");
    println!("|---|{}---|", "---|".repeat(W1_SIZES.len()));
    let mut harness64 = None;
    for (name, pre) in allocs {
        print!("| {name} |");
        let mut own64 = None;
        for n in W1_SIZES {
            let count = |l| callgrind_total(&format!("icount:{name}:{n}:{l}"), pre);
            match (count(l1), count(l2)) {
                (Ok(a), Ok(b)) => {
                    let per = (b - a) / (l2 - l1) as f64;
                    print!(" {per:.1} |");
                    if n == 64 {
                        if name == "empty" {
                            harness64 = Some(per);
                        }
                        own64 = harness64.map(|h| per - h);
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("{name} {n}: {e}");
                    print!(" - |");
                }
            }
        }
        match own64 {
            Some(v) => println!(" {v:.1} |"),
            None => println!(" - |"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("COMPARE_CHILD") {
        let f: Vec<&str> = spec.split(':').collect();
        let name = if f[0] == "icount" {
            f[1]
        } else {
            f[f.len() - 1]
        };
        let a = load(name).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(3)
        });
        match f[0] {
            "probe" => {}
            "icount" => icount_child(f[2].parse().unwrap(), f[3].parse().unwrap(), &a),
            what => run_child(what, &a),
        }
        return;
    }
    if std::env::args().any(|a| a == "callgrind") {
        callgrind();
    } else {
        let runs = std::env::var("COMPARE_RUNS").map_or(5, |v| v.parse().unwrap());
        times(runs);
    }
}
