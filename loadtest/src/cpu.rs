//! CPU accounting: the generator's own (getrusage) and, on Linux, that of a
//! process tree (the stack under test), from `/proc`.

use std::collections::BTreeMap;

/// User plus system CPU seconds this process has used so far.
pub fn own_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => 0.0,
    }
}

/// `/proc` reports CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// (name, parent pid, user+system seconds) of one process.
fn stat(pid: u32) -> Option<(String, u32, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces; fields follow the
    // last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, ppid, (utime + stime) / TICKS_PER_SECOND))
}

/// CPU seconds used so far by `root` and its descendants, summed by
/// process name (e.g. `airq-gateway`, `airq-worker`). Empty where `/proc`
/// is not available.
pub fn tree_seconds(root: u32) -> BTreeMap<String, f64> {
    let mut procs = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            {
                if let Some((name, ppid, secs)) = stat(pid) {
                    procs.push((pid, name, ppid, secs));
                }
            }
        }
    }
    let mut members = vec![root];
    // Parents precede children rarely in pid order after restarts, so
    // repeat until no new member is found (the tree is small).
    loop {
        let before = members.len();
        for (pid, _, ppid, _) in &procs {
            if members.contains(ppid) && !members.contains(pid) {
                members.push(*pid);
            }
        }
        if members.len() == before {
            break;
        }
    }
    let mut out = BTreeMap::new();
    for (pid, name, _, secs) in procs {
        if members.contains(&pid) {
            *out.entry(name).or_insert(0.0) += secs;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_grows_with_work() {
        let before = own_seconds();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(own_seconds() >= before);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_is_in_its_own_tree() {
        let tree = tree_seconds(std::process::id());
        assert!(!tree.is_empty());
    }
}
