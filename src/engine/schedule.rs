//! The stage scheduler: runs the stages of a plan on a bounded pool of
//! worker threads, each stage as soon as the stages it needs are built.
//!
//! The master (the calling thread) keeps the ready set and dispatches the
//! ready stage with the longest remaining path first (its own weight plus
//! the heaviest chain of stages that wait on it), so the critical path
//! starts early and the pool is not left waiting for one long chain at the
//! end. A failure stops dispatching; stages already running are told to
//! stop through the shared flag and are waited for, so no thread outlives
//! the build.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The work of one run: `deps[i]` are the indices that must finish before
/// `i` starts (all lower than `i`), `weight[i]` its estimated cost.
#[derive(Debug, Clone)]
pub struct Graph {
    pub deps: Vec<Vec<usize>>,
    pub weight: Vec<u64>,
}

impl Graph {
    /// For each node, its weight plus the heaviest path of nodes that
    /// depend on it, transitively.
    pub fn remaining_path(&self) -> Vec<u64> {
        let n = self.deps.len();
        let mut rank: Vec<u64> = self.weight.clone();
        // Dependencies point backwards, so one pass from the end settles
        // every node before its dependencies are looked at.
        for i in (0..n).rev() {
            for &d in &self.deps[i] {
                if d < n {
                    rank[d] = rank[d].max(self.weight[d] + rank[i]);
                }
            }
        }
        rank
    }
}

/// Runs `work` for every node on at most `jobs` threads. `done` is called on
/// the master thread with each result in completion order. Returns the
/// first error (nodes not yet started are skipped after it; after a
/// cancel, too, so not every node may have run). `stop` is set
/// on the first error, and whenever `cancel` is seen set, so that running
/// work can stop early.
pub fn run<T, E, W, D>(
    graph: &Graph,
    jobs: usize,
    stop: &AtomicBool,
    cancel: &AtomicBool,
    work: W,
    mut done: D,
) -> Result<(), E>
where
    T: Send,
    E: Send,
    W: Fn(usize) -> Result<T, E> + Sync,
    D: FnMut(usize, T),
{
    let n = graph.deps.len();
    let rank = graph.remaining_path();
    let mut waiting: Vec<usize> = graph.deps.iter().map(|d| d.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, deps) in graph.deps.iter().enumerate() {
        for &d in deps {
            if d < n {
                dependents[d].push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let jobs = jobs.max(1);
    let work = &work;
    let mut failure: Option<E> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<T, E>)>();
        let mut running = 0usize;
        loop {
            while running < jobs && failure.is_none() && !stop.load(Ordering::SeqCst) {
                // Longest remaining path first; ties go to the earlier stage,
                // which keeps a sequential run in Dockerfile order.
                let Some(pos) = ready
                    .iter()
                    .enumerate()
                    .max_by(|(_, a), (_, b)| rank[**a].cmp(&rank[**b]).then(b.cmp(a)))
                    .map(|(pos, _)| pos)
                else {
                    break;
                };
                let node = ready.swap_remove(pos);
                let tx = tx.clone();
                running += 1;
                scope.spawn(move || {
                    let result = work(node);
                    // The master is alive until every worker has reported.
                    let _ = tx.send((node, result));
                });
            }
            if running == 0 {
                break;
            }
            let (node, result) = match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(message) => message,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if cancel.load(Ordering::SeqCst) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            running -= 1;
            match result {
                Ok(value) => {
                    done(node, value);
                    for &next in &dependents[node] {
                        waiting[next] -= 1;
                        if waiting[next] == 0 {
                            ready.push(next);
                        }
                    }
                }
                Err(error) => {
                    stop.store(true, Ordering::SeqCst);
                    if failure.is_none() {
                        failure = Some(error);
                    }
                }
            }
        }
    });
    // Cancelled between stages, nothing failed: the caller sees that not
    // every stage was built.
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    fn graph(deps: Vec<Vec<usize>>, weight: Vec<u64>) -> Graph {
        Graph { deps, weight }
    }

    #[test]
    fn remaining_path_adds_the_heaviest_chain_of_dependents() {
        // 0 -> 2 -> 3, 1 -> 3
        let g = graph(vec![vec![], vec![], vec![0], vec![1, 2]], vec![1, 5, 10, 2]);
        assert_eq!(g.remaining_path(), vec![13, 7, 12, 2]);
    }

    #[test]
    fn dependencies_finish_before_dependents_start() {
        let g = graph(
            vec![vec![], vec![], vec![], vec![0, 1, 2], vec![3]],
            vec![1; 5],
        );
        let finished: Vec<AtomicBool> = (0..5).map(|_| AtomicBool::new(false)).collect();
        let order = Mutex::new(Vec::new());
        let (stop, cancel) = (AtomicBool::new(false), AtomicBool::new(false));
        run::<(), (), _, _>(
            &g,
            2,
            &stop,
            &cancel,
            |i| {
                for &d in &g.deps[i] {
                    assert!(finished[d].load(Ordering::SeqCst), "{i} started before {d}");
                }
                std::thread::sleep(Duration::from_millis(20));
                finished[i].store(true, Ordering::SeqCst);
                Ok(())
            },
            |i, ()| order.lock().unwrap().push(i),
        )
        .unwrap();
        let order = order.into_inner().unwrap();
        assert_eq!(order.len(), 5);
        assert_eq!(&order[3..], &[3, 4]);
    }

    #[test]
    fn at_most_jobs_run_at_once_and_independent_ones_overlap() {
        let g = graph(vec![vec![]; 6], vec![1; 6]);
        let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let (stop, cancel) = (AtomicBool::new(false), AtomicBool::new(false));
        run::<(), (), _, _>(
            &g,
            2,
            &stop,
            &cancel,
            |_| {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            },
            |_, ()| {},
        )
        .unwrap();
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_longest_remaining_path_starts_first() {
        // With one job: 1 heads the long chain (1 -> 2), so it goes before 0.
        let g = graph(vec![vec![], vec![], vec![1]], vec![1, 1, 10]);
        let order = Mutex::new(Vec::new());
        let (stop, cancel) = (AtomicBool::new(false), AtomicBool::new(false));
        run::<(), (), _, _>(
            &g,
            1,
            &stop,
            &cancel,
            |i| {
                order.lock().unwrap().push(i);
                Ok(())
            },
            |_, ()| {},
        )
        .unwrap();
        assert_eq!(order.into_inner().unwrap(), vec![1, 2, 0]);
    }

    #[test]
    fn a_failure_stops_dispatch_and_signals_running_work() {
        // 0 fails at once; 1 runs until told to stop; 2 (after 0) never runs.
        let g = graph(vec![vec![], vec![], vec![0]], vec![1, 1, 1]);
        let started = Mutex::new(Vec::new());
        let (stop, cancel) = (AtomicBool::new(false), AtomicBool::new(false));
        let result = run::<(), String, _, _>(
            &g,
            2,
            &stop,
            &cancel,
            |i| {
                started.lock().unwrap().push(i);
                match i {
                    0 => {
                        std::thread::sleep(Duration::from_millis(20));
                        Err("boom".to_string())
                    }
                    _ => {
                        while !stop.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err("stopped".to_string())
                    }
                }
            },
            |_, ()| {},
        );
        assert_eq!(result, Err("boom".to_string()));
        let mut started = started.into_inner().unwrap();
        started.sort();
        assert_eq!(started, vec![0, 1]);
    }

    #[test]
    fn cancel_is_forwarded_to_the_stop_flag() {
        let g = graph(vec![vec![]], vec![1]);
        let (stop, cancel) = (AtomicBool::new(false), AtomicBool::new(true));
        let result = run::<(), &str, _, _>(
            &g,
            1,
            &stop,
            &cancel,
            |_| {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err("interrupted")
            },
            |_, ()| {},
        );
        assert_eq!(result, Err("interrupted"));
    }
}
