//! Which CPython objects a size class holds, for `pymalloc inspect`: attribution to Python
//! types needs the interpreter (`pymalloc_rs.pinning()` runs inside it), but a class's
//! block size already narrows the types down. The tables in `pytypes/` were measured with
//! `docs/object_sizes.py` (each object's block found with `pymalloc_attribute`, so the GC
//! header and pre-header are counted) on pyenv's CPython 3.8-3.13 and Debian's 3.14 and
//! 3.15; a table holds for the versions from its name up to the next table's.

/// The tables, by the first minor version of CPython 3 each holds for, ascending: lines of
/// `SIZE<TAB>OBJECT`.
const TABLES: [(u32, &str); 6] = [
    (8, include_str!("pytypes/3.8.tsv")),
    (10, include_str!("pytypes/3.10.tsv")),
    (11, include_str!("pytypes/3.11.tsv")),
    (12, include_str!("pytypes/3.12.tsv")),
    (13, include_str!("pytypes/3.13.tsv")),
    (14, include_str!("pytypes/3.14.tsv")),
];

/// The last minor version the tables were measured on.
const LAST_MEASURED: u32 = 15;

/// The common objects of CPython 3.`minor` whose block is `size` bytes; empty for a
/// version the tables do not cover.
pub fn objects(minor: u32, size: u64) -> Vec<&'static str> {
    if !(TABLES[0].0..=LAST_MEASURED).contains(&minor) {
        return Vec::new();
    }
    let (_, table) = TABLES
        .iter()
        .rev()
        .find(|(first, _)| *first <= minor)
        .unwrap();
    table
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(s, _)| s.parse() == Ok(size))
        .map(|(_, object)| object)
        .collect()
}

/// The minor version of CPython 3 that process `pid` runs, from its executable's name
/// (`python3.11`) or its libpython mapping (`libpython3.11.so`); `None` when neither says.
pub fn python_minor(pid: i32) -> Option<u32> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    exe.iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .chain(maps.lines().filter_map(|l| {
            let name = l.rsplit('/').next()?;
            name.starts_with("libpython3.").then(|| name.to_string())
        }))
        .find_map(|name| {
            let rest = name
                .strip_prefix("lib")
                .unwrap_or(&name)
                .strip_prefix("python3.")?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_float_is_32_bytes_and_unknown_versions_have_no_table() {
        for minor in 8..=15 {
            assert!(objects(minor, 32).contains(&"float"), "3.{minor}");
        }
        assert!(objects(11, 64).contains(&"str (ASCII, 2-15 chars)"));
        assert!(objects(14, 48).contains(&"str (ASCII, 2-7 chars)"));
        assert!(objects(7, 32).is_empty() && objects(16, 32).is_empty());
    }

    #[test]
    fn finds_its_own_version_or_none() {
        // The test binary is no Python.
        assert_eq!(python_minor(std::process::id() as i32), None);
    }
}
