//! Placing a job's workers on free slots as processes × threads (timely needs the same
//! thread count in every process of a job), and handing out ports.

use std::collections::{BTreeMap, BTreeSet};

/// A node's offer as placement sees it.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Node id.
    pub node: String,
    /// Slots not used by any job process.
    pub free: u32,
}

/// A placement: `threads` workers per process, the node of each process in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Worker threads per process.
    pub threads: u32,
    /// Node of process 0, 1, …
    pub nodes: Vec<String>,
}

/// Places `workers` workers on `offers`: the fewest threads per process that fit (so a job
/// spreads over nodes, one process per node where it can), processes dealt round-robin over
/// the nodes with the most free slots. `Err(free)` when the slots do not suffice: `free` is
/// the number of free slots.
pub fn place(workers: u32, offers: &[Offer]) -> Result<Plan, u32> {
    let free: u32 = offers.iter().map(|o| o.free).sum();
    if workers == 0 || workers > free {
        return Err(free);
    }
    for threads in (1..=workers).filter(|t| workers.is_multiple_of(*t)) {
        let processes = workers / threads;
        let capacity: u32 = offers.iter().map(|o| o.free / threads).sum();
        if capacity < processes {
            continue;
        }
        // Deal one process at a time to the node with the most room left (ties: the node
        // listed first), so processes spread before they stack.
        let mut room: Vec<(String, u32)> = offers
            .iter()
            .map(|o| (o.node.clone(), o.free / threads))
            .collect();
        let mut nodes = Vec::with_capacity(processes as usize);
        for _ in 0..processes {
            let Some(best) = room
                .iter_mut()
                .filter(|(_, r)| *r > 0)
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            else {
                break;
            };
            best.1 -= 1;
            nodes.push(best.0.clone());
        }
        if nodes.len() as u32 == processes {
            return Ok(Plan { threads, nodes });
        }
    }
    Err(free)
}

/// Three ports from `range` (inclusive) not in `used`, scanning from `next` and wrapping:
/// data, metrics, control. `None` when fewer than three are free.
pub fn ports(range: (u16, u16), used: &BTreeSet<u16>, next: &mut u16) -> Option<[u16; 3]> {
    let (lo, hi) = range;
    if lo > hi {
        return None;
    }
    let span = u32::from(hi - lo) + 1;
    let mut got = Vec::with_capacity(3);
    let start = if (lo..=hi).contains(next) { *next } else { lo };
    for i in 0..span {
        let p = (u32::from(start - lo) + i) % span + u32::from(lo);
        let p = p as u16;
        if !used.contains(&p) {
            got.push(p);
            if got.len() == 3 {
                *next = if p == hi { lo } else { p + 1 };
                return Some([got[0], got[1], got[2]]);
            }
        }
    }
    None
}

/// The workers of process `index` (timely numbers them process-major).
pub fn workers_of(index: u32, threads: u32) -> Vec<u32> {
    (index * threads..(index + 1) * threads).collect()
}

/// Inclusive ranges of the sorted `values`.
pub fn ranges(values: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &v in values {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == v => *hi = v,
            _ => out.push((v, v)),
        }
    }
    out
}

/// Free slots per node given what every job's placement uses.
pub fn free_slots(slots: &BTreeMap<String, u32>, used: &BTreeMap<String, u32>) -> Vec<Offer> {
    slots
        .iter()
        .map(|(node, s)| Offer {
            node: node.clone(),
            free: s.saturating_sub(used.get(node).copied().unwrap_or(0)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(free: &[u32]) -> Vec<Offer> {
        free.iter()
            .enumerate()
            .map(|(i, f)| Offer {
                node: format!("n{i}"),
                free: *f,
            })
            .collect()
    }

    #[test]
    fn spreads_one_thread_per_process_when_nodes_suffice() {
        let p = place(3, &offers(&[2, 2, 2])).expect("fits");
        assert_eq!(p.threads, 1);
        assert_eq!(p.nodes, ["n0", "n1", "n2"]);
        let p = place(2, &offers(&[2, 2, 2])).expect("fits");
        assert_eq!((p.threads, p.nodes.len()), (1, 2));
    }

    #[test]
    fn stacks_or_threads_when_nodes_are_few() {
        // Two nodes with 2 slots: 4 workers are 4 processes of 1 thread, two per node.
        let p = place(4, &offers(&[2, 2])).expect("fits");
        assert_eq!(p.threads, 1);
        assert_eq!(p.nodes.iter().filter(|n| *n == "n0").count(), 2);
        // 3 workers on one node with 3 free slots and one with 0.
        let p = place(3, &offers(&[3, 0])).expect("fits");
        assert_eq!(p.nodes.len() as u32 * p.threads, 3);
        assert!(p.nodes.iter().all(|n| n == "n0"));
    }

    #[test]
    fn refuses_with_the_free_count() {
        assert_eq!(place(7, &offers(&[2, 2, 2])), Err(6));
        assert_eq!(place(1, &offers(&[0, 0])), Err(0));
    }

    #[test]
    fn ports_skip_used_and_wrap() {
        let used: BTreeSet<u16> = [7101, 7103].into_iter().collect();
        let mut next = 7100;
        assert_eq!(
            ports((7100, 7105), &used, &mut next),
            Some([7100, 7102, 7104])
        );
        assert_eq!(next, 7105);
        assert_eq!(
            ports((7100, 7105), &used, &mut next),
            Some([7105, 7100, 7102])
        );
        let full: BTreeSet<u16> = (7100..=7104).collect();
        assert_eq!(ports((7100, 7105), &full, &mut next), None);
    }

    #[test]
    fn ranges_merge_runs() {
        let v: BTreeSet<u32> = [0, 1, 2, 5, 7, 8].into_iter().collect();
        assert_eq!(ranges(&v), [(0, 2), (5, 5), (7, 8)]);
        assert_eq!(workers_of(2, 3), [6, 7, 8]);
    }
}
