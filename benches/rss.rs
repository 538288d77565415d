//! Memory given back: RSS of the 90 %-free workload (read after one second with no
//! allocation at all, then after one second of light activity) and of freeing everything,
//! per allocator, each in a fresh child process; and W3 (random lifetime) time with pymalloc-rs's decay
//! at its default and off (`PYMALLOC_DECAY_MS=-1`), alternating runs.
//!
//! `cargo bench --bench rss` prints markdown tables. Peers are loaded with dlopen and
//! skipped, with a line saying so, when missing: the peers of `common::ALL` (jemalloc and
//! tcmalloc preloaded when they will not `dlopen`).

mod common;

#[path = "../cli/src/median.rs"]
mod median_of;

use common::{load, Alloc, Slots, ALL};
use median_of::median;
use std::process::Command;
use std::time::Instant;

/// Child: W3 (see `common::Slots`), 5M steps. Prints the seconds taken.
fn w3(a: &Alloc) {
    let mut slots = Slots::new(a, false);
    let t = Instant::now();
    slots.steps(a, 5_000_000);
    println!("{}", t.elapsed().as_secs_f64());
    slots.free(a);
}

/// Runs child `what` for allocator `name`; an allocator that will not `dlopen` is retried
/// with its library preloaded (see `common::preload_for`).
fn child(what: &str, name: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let run = |preload: Option<&str>| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.env("RSS_BENCH_CHILD", format!("{what}:{name}"))
            .envs(env.iter().copied());
        if let Some(lib) = preload {
            c.env("LD_PRELOAD", lib);
        }
        let out = c.output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    run(None).or_else(|e| match common::preload_for(name) {
        Some(lib) => run(Some(lib)).map_err(|_| e),
        None => Err(e),
    })
}

fn main() {
    if let Ok(spec) = std::env::var("RSS_BENCH_CHILD") {
        let (what, name) = spec.split_once(':').unwrap();
        let a = load(name).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(3)
        });
        match what {
            "frag" => common::fragmentation(&a),
            "w3" => w3(&a),
            _ => unreachable!(),
        }
        return;
    }
    println!("## 1M blocks of 1..512 bytes, 90 % freed at random (RSS, MiB)\n");
    println!("| allocator | start | peak | 90 % freed, 1 s idle | vs CPython pymalloc | then 1 s of light activity | vs CPython pymalloc | after freeing all | above start |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for name in ALL {
        match child("frag", name, &[]) {
            Ok(line) => {
                let v: Vec<f64> = line
                    .split_whitespace()
                    .map(|x| x.parse::<f64>().unwrap() / 1024.0)
                    .collect();
                rows.push((name, v));
            }
            Err(e) => eprintln!("{name}: skipped ({e})"),
        }
    }
    let base = rows.iter().find(|(n, _)| *n == "cpython-pymalloc");
    let ratio = |v: &[f64], k: usize| {
        base.map_or("-".to_string(), |(_, b)| {
            format!("{:.2}", (v[k] - v[0]) / (b[k] - b[0]))
        })
    };
    for (name, v) in &rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {} | {:.1} | {:.1} |",
            v[0],
            v[1],
            v[2],
            ratio(v, 2),
            v[3],
            ratio(v, 3),
            v[4],
            v[4] - v[0]
        );
    }
    println!("\n(\"vs CPython pymalloc\" compares the memory held above the start.)\n");
    println!(
        "## W3 with the decay at its default and off (pymalloc-rs, 7 alternating runs, median seconds)\n"
    );
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        for (decay, v) in [("400", &mut on), ("-1", &mut off)] {
            let s = child("w3", "pymalloc-rs", &[("PYMALLOC_DECAY_MS", decay)]).expect("w3 runs");
            v.push(s.parse::<f64>().unwrap());
        }
    }
    let (m_on, m_off) = (median(&mut on), median(&mut off));
    println!("| decay 400 ms | decay off | ratio |\n|---|---|---|");
    println!("| {m_on:.3} | {m_off:.3} | {:.3} |", m_on / m_off);
}
