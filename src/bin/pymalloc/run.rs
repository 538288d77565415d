//! `pymalloc run`: exec a command with the library preloaded.

use crate::{fail, library};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

pub fn main(args: &[String]) -> ExitCode {
    let mut cmd_start = None;
    let mut env: Vec<(&str, &str)> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        match a.as_str() {
            "--stats" => env.push(("PYMALLOC_STATS", "1")),
            "--debug" => env.push(("PYMALLOC_DEBUG", "1")),
            "--verbose" => env.push(("PYMALLOC_VERBOSE", "1")),
            "--" => {
                cmd_start = Some(i + 1);
                break;
            }
            other if other.starts_with('-') => {
                return fail(&format!("run: unknown option {other:?}"), 2)
            }
            _ => {
                cmd_start = Some(i);
                break;
            }
        }
    }
    let cmd = match cmd_start.map(|i| &args[i..]) {
        Some(cmd) if !cmd.is_empty() => cmd,
        _ => {
            return fail(
                "run: no command given (pymalloc run [--stats] [--debug] -- CMD...)",
                2,
            )
        }
    };
    let lib = match library() {
        Ok(lib) => lib,
        Err(e) => return fail(&e, 2),
    };
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(old) if !old.is_empty() => format!("{} {old}", lib.display()),
        _ => lib.display().to_string(),
    };
    let err = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("LD_PRELOAD", preload)
        .envs(env)
        .exec();
    let code = if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    fail(&format!("cannot run {:?}: {err}", cmd[0]), code)
}
