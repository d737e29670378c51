//! A small work-sharing thread pool for the forward pass. The calling thread works too, and the helpers spin
//! briefly between jobs before parking, so the hundreds of short parallel ops of one decode step cost little more
//! than their work (a cross-thread wake-up per op, as a general-purpose pool pays, is tens of microseconds).
//!
//! A job is `f(task)` for task in `0..n_tasks`, tasks taken dynamically. `run` returns when every task is done.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spins of a helper waiting for the next job before it parks.
const SPINS_BEFORE_PARKING: u32 = 20_000;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// (epoch << 32) | next task index. The epoch changes with every job, so a helper that wakes late can never
    /// take a task of a job other than the one it read.
    cursor: AtomicU64,
    /// Tasks finished in the current job.
    done: AtomicUsize,
    /// The current job: its epoch, a `*const Job` with its lifetime erased (valid while its epoch has tasks
    /// left) and its task count, published together.
    job: Mutex<Option<(u32, JobPtr, usize)>>,
    shutdown: AtomicBool,
    /// Parked helpers wait here for a new epoch.
    wake: Condvar,
    parked: Mutex<()>,
    /// Helpers parked (or about to park); `run` only pays for a wake-up when there are some.
    n_parked: AtomicUsize,
}

#[derive(Clone, Copy)]
struct JobPtr(*const Job);
// SAFETY: the pointee is Sync and outlives every use (see `WorkPool::run`).
unsafe impl Send for JobPtr {}

pub struct WorkPool {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
    epoch: std::cell::Cell<u32>,
    /// `run` is not reentrant: one job at a time.
    busy: Mutex<()>,
}

// SAFETY: `epoch` is only touched while `busy` is held.
unsafe impl Sync for WorkPool {}

impl WorkPool {
    /// A pool of `n_threads` workers in all: the caller plus `n_threads - 1` helpers.
    pub fn new(n_threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            cursor: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            job: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            wake: Condvar::new(),
            parked: Mutex::new(()),
            n_parked: AtomicUsize::new(0),
        });
        let mut helpers = Vec::new();
        for i in 1..n_threads.max(1) {
            let s = shared.clone();
            helpers.push(
                std::thread::Builder::new()
                    .name(format!("quarrel-cpu-{i}"))
                    .spawn(move || helper(&s))?,
            );
        }
        Ok(Self {
            shared,
            helpers,
            epoch: std::cell::Cell::new(0),
            busy: Mutex::new(()),
        })
    }

    pub fn n_threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `f(0) … f(n_tasks - 1)` over the pool and returns when all are done.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if n_tasks == 1 || self.helpers.is_empty() {
            (0..n_tasks).for_each(f);
            return;
        }
        assert!(n_tasks < u32::MAX as usize, "task count fits the cursor");
        let _one_job = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        let epoch = self.epoch.get().wrapping_add(1);
        self.epoch.set(epoch);
        // SAFETY: the erased pointer is used only by tasks of this epoch, and this function does not return
        // before all of them have finished (done == n_tasks below).
        let ptr: *const Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(f) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some((epoch, JobPtr(ptr), n_tasks));
        s.done.store(0, Ordering::Relaxed);
        s.cursor.store((epoch as u64) << 32, Ordering::SeqCst);
        // Either a parking helper sees the new epoch, or we see it counted as parked (both SeqCst).
        if s.n_parked.load(Ordering::SeqCst) > 0 {
            let _g = s.parked.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        work(s, epoch, n_tasks, f);
        while s.done.load(Ordering::Acquire) < n_tasks {
            std::hint::spin_loop();
        }
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Takes tasks of `epoch` until none are left.
fn work(s: &Shared, epoch: u32, n_tasks: usize, f: &(dyn Fn(usize) + Sync + '_)) {
    loop {
        let cur = s.cursor.load(Ordering::Acquire);
        let (e, idx) = ((cur >> 32) as u32, (cur & 0xffff_ffff) as usize);
        if e != epoch || idx >= n_tasks {
            return;
        }
        if s.cursor
            .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            f(idx);
            s.done.fetch_add(1, Ordering::Release);
        }
    }
}

fn helper(s: &Shared) {
    let mut seen = 0u32;
    loop {
        let mut spins = 0;
        let epoch = loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let e = (s.cursor.load(Ordering::Acquire) >> 32) as u32;
            if e != seen {
                break e;
            }
            spins += 1;
            if spins < SPINS_BEFORE_PARKING {
                std::hint::spin_loop();
            } else {
                let g = s.parked.lock().unwrap_or_else(|e| e.into_inner());
                s.n_parked.fetch_add(1, Ordering::SeqCst);
                let e = (s.cursor.load(Ordering::SeqCst) >> 32) as u32;
                if e == seen && !s.shutdown.load(Ordering::Acquire) {
                    let _ = s.wake.wait_timeout(g, std::time::Duration::from_millis(50));
                }
                s.n_parked.fetch_sub(1, Ordering::SeqCst);
                spins = 0;
            }
        };
        seen = epoch;
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((epoch, JobPtr(ptr), n_tasks)) = job {
            // SAFETY: epoch, pointer and task count were published together; `work` only runs a task while the
            // cursor still carries that epoch with tasks left, and the job of that epoch stays alive until all
            // its tasks are done.
            let f = unsafe { &*ptr };
            work(s, epoch, n_tasks, f);
        }
    }
}

impl Drop for WorkPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _g = self.shared.parked.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_per_job() {
        let pool = WorkPool::new(3).unwrap();
        for round in 0..2000 {
            let n = 1 + round % 37;
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "round {round}");
        }
    }

    #[test]
    fn helpers_park_and_wake() {
        let pool = WorkPool::new(2).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(120));
        let sum = AtomicU32::new(0);
        pool.run(100, &|i| {
            sum.fetch_add(i as u32, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 4950);
    }
}
