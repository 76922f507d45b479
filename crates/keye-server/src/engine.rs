//! Continuous batching: one thread owns every running sequence and advances them all with one
//! batched decode step at a time; finished, abandoned and timed-out sequences leave the batch
//! between steps. Admitted requests are prefilled on a second thread, so a long prompt (or a
//! video being decoded) does not stall the streams already running; each joins the batch
//! between two steps once its first token is out.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keye::{FinishReason, Keye, Sequence, Usage};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// What the engine tells the handler of one request, in this order: `Started` or `Failed`,
/// then `Text` deltas, then `Finished` or `Failed`.
#[derive(Debug)]
pub(crate) enum Update {
    Started,
    Text(String),
    Finished { reason: FinishReason, usage: Usage },
    Failed(ApiError),
}

/// A place in the queue, held from a request's arrival until its sequence starts; the queue
/// depth is the number of live slots.
pub(crate) struct QueueSlot {
    metrics: Arc<Metrics>,
}

impl QueueSlot {
    /// `None` when `max_queue` requests already wait.
    pub fn try_acquire(metrics: &Arc<Metrics>, max_queue: usize) -> Option<Self> {
        metrics
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < max_queue).then_some(queued + 1)
            })
            .ok()?;
        Some(Self {
            metrics: Arc::clone(metrics),
        })
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.metrics.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A prepared request waiting for a batch slot.
pub(crate) struct Job {
    pub request: keye::Request,
    /// KV-cache tokens the sequence will hold: prompt plus `max_new_tokens`.
    pub kv_tokens: usize,
    pub arrived: Instant,
    pub deadline: Instant,
    pub updates: UnboundedSender<Update>,
    pub slot: QueueSlot,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct EngineLimits {
    pub max_running: usize,
    pub kv_token_budget: usize,
}

enum Mode {
    Serving,
    /// Shutting down: no new work; running sequences may finish until `cancel_at`.
    Draining {
        cancel_at: Instant,
    },
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Sequences (or failures) back from the prefill thread, waiting to join the batch.
    prefilled: Vec<Prefilled>,
    mode: Mode,
}

/// What the prefill thread hands back for one job. It has already told the client that the
/// answer started (or why it failed); `sequence` is `None` when there is nothing to run.
struct Prefilled {
    sequence: Option<Sequence>,
    answer: Answer,
    /// When the first token was sampled.
    first_token: Instant,
}

/// A request's channel and bookkeeping while its sequence exists.
struct Answer {
    updates: UnboundedSender<Update>,
    kv_tokens: usize,
    arrived: Instant,
    deadline: Instant,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    alive: AtomicBool,
    crashed: AtomicBool,
}

/// Handle on the engine thread.
pub(crate) struct Engine {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    pub fn spawn(
        keye: Arc<Keye>,
        metrics: Arc<Metrics>,
        limits: EngineLimits,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                prefilled: Vec::new(),
                mode: Mode::Serving,
            }),
            wake: Condvar::new(),
            alive: AtomicBool::new(true),
            crashed: AtomicBool::new(false),
        });
        let (prefill_jobs, prefill_queue) = std::sync::mpsc::channel();
        let prefill_thread = {
            let (keye, metrics, shared) =
                (Arc::clone(&keye), Arc::clone(&metrics), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("keye-prefill".into())
                .spawn(move || prefill_loop(&keye, &metrics, &shared, prefill_queue))?
        };
        let worker = Worker {
            keye,
            metrics,
            limits,
            shared: Arc::clone(&shared),
            running: Vec::with_capacity(limits.max_running),
            prefilling: 0,
            kv_reserved: 0,
            prefill_jobs: Some(prefill_jobs),
            prefill_thread: Some(prefill_thread),
        };
        let thread = std::thread::Builder::new()
            .name("keye-engine".into())
            .spawn(move || {
                let shared = Arc::clone(&worker.shared);
                // Dropping the worker's sequences closes every request's channel, so each
                // waiting handler answers instead of hanging.
                let crashed = catch_unwind(AssertUnwindSafe(|| worker.run())).is_err();
                if crashed {
                    tracing::error!("the batching engine crashed");
                }
                shared.crashed.store(crashed, Ordering::Release);
                shared.alive.store(false, Ordering::Release);
                let mut queue = lock(&shared.queue);
                queue.jobs.clear();
                queue.prefilled.clear();
            })?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a job; it is refused when the server is shutting down.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let mut queue = lock(&self.shared.queue);
        if !matches!(queue.mode, Mode::Serving) || !self.is_alive() {
            return Err(ApiError::shutting_down());
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.shared.wake.notify_one();
        Ok(())
    }

    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    pub fn is_serving(&self) -> bool {
        matches!(lock(&self.shared.queue).mode, Mode::Serving) && self.is_alive()
    }

    /// Stops taking work: queued requests are refused now, running ones may finish within
    /// `grace` and are cancelled after it.
    pub fn begin_shutdown(&self, grace: Duration) {
        let mut queue = lock(&self.shared.queue);
        if matches!(queue.mode, Mode::Serving) {
            queue.mode = Mode::Draining {
                cancel_at: Instant::now() + grace,
            };
        }
        drop(queue);
        self.shared.wake.notify_one();
    }

    /// Waits until the engine thread has ended (after [`Engine::begin_shutdown`]); true if it
    /// crashed instead of draining.
    pub fn join(&self) -> bool {
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            // The thread catches its own panics and records them in `crashed`.
            let _ = thread.join();
        }
        self.shared.crashed.load(Ordering::Acquire)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The engine never leaves the queue half-updated, so a poisoned lock is still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sequence in the batch and the request it answers.
struct Active {
    sequence: Sequence,
    answer: Answer,
    last_token: Instant,
}

/// Why a sequence leaves the batch before it finished.
enum Removal {
    ClientGone,
    Failed(ApiError),
}

/// What the engine thread takes from the shared queue in one go.
struct Work {
    admitted: Vec<Job>,
    prefilled: Vec<Prefilled>,
}

struct Worker {
    keye: Arc<Keye>,
    metrics: Arc<Metrics>,
    limits: EngineLimits,
    shared: Arc<Shared>,
    running: Vec<Active>,
    /// Admitted jobs handed to the prefill thread and not back yet.
    prefilling: usize,
    kv_reserved: usize,
    prefill_jobs: Option<Sender<Job>>,
    prefill_thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn run(mut self) {
        while let Some(work) = self.next_work() {
            for job in work.admitted {
                self.prefill(job);
            }
            for prefilled in work.prefilled {
                self.prefilling -= 1;
                self.join_batch(prefilled);
            }
            self.remove_unwanted();
            if !self.running.is_empty() {
                self.step();
            }
        }
        // Closing the channel ends the prefill thread.
        self.prefill_jobs = None;
        if let Some(thread) = self.prefill_thread.take() {
            let _ = thread.join();
        }
    }

    /// Takes the queued jobs that fit in the batch and the finished prefills, waiting while
    /// there is nothing to do. `None` once draining has finished.
    fn next_work(&mut self) -> Option<Work> {
        let mut queue = lock(&self.shared.queue);
        loop {
            let now = Instant::now();
            // Requests whose client left or whose time ran out leave the queue now.
            queue.jobs.retain(|job| {
                if job.updates.is_closed() {
                    return false;
                }
                if now >= job.deadline {
                    let _ = job.updates.send(Update::Failed(ApiError::timeout(
                        "The request timed out while waiting for a batch slot.",
                    )));
                    return false;
                }
                true
            });
            let prefilled = std::mem::take(&mut queue.prefilled);
            let mut admitted = Vec::new();
            if let Mode::Draining { .. } = queue.mode {
                for job in queue.jobs.drain(..) {
                    let _ = job.updates.send(Update::Failed(ApiError::shutting_down()));
                }
                if self.running.is_empty() && self.prefilling == 0 {
                    return None;
                }
            }
            while let Some(job) = queue.jobs.front() {
                let fits = self.running.len() + self.prefilling + admitted.len()
                    < self.limits.max_running
                    && self.kv_reserved + job.kv_tokens <= self.limits.kv_token_budget;
                if !fits {
                    break;
                }
                self.kv_reserved += job.kv_tokens;
                admitted.extend(queue.jobs.pop_front());
            }
            if !admitted.is_empty() || !prefilled.is_empty() || !self.running.is_empty() {
                return Some(Work {
                    admitted,
                    prefilled,
                });
            }
            if self.prefilling == 0
                && let Some(job) = queue.jobs.pop_front()
            {
                // Only a job larger than the whole budget can wait on an idle engine; the
                // handler refuses those, so this is a last line of defence.
                let _ = job.updates.send(Update::Failed(ApiError::invalid(format!(
                    "The request needs {} KV-cache tokens; the server allows {}.",
                    job.kv_tokens, self.limits.kv_token_budget
                ))));
                continue;
            }
            queue = self
                .shared
                .wake
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Hands an admitted job (its batch slot and KV tokens reserved) to the prefill thread.
    fn prefill(&mut self, job: Job) {
        let Some(prefill_jobs) = &self.prefill_jobs else {
            return;
        };
        match prefill_jobs.send(job) {
            Ok(()) => self.prefilling += 1,
            Err(std::sync::mpsc::SendError(job)) => {
                self.kv_reserved -= job.kv_tokens;
                let _ = job.updates.send(Update::Failed(ApiError::internal(
                    "The prefill thread has stopped.",
                )));
            }
        }
    }

    /// Puts a prefilled sequence into the batch, or releases what its job reserved.
    fn join_batch(&mut self, prefilled: Prefilled) {
        let Prefilled {
            sequence,
            answer,
            first_token,
        } = prefilled;
        let Some(sequence) = sequence else {
            self.kv_reserved -= answer.kv_tokens;
            self.publish_batch_size();
            return;
        };
        let active = Active {
            sequence,
            answer,
            last_token: first_token,
        };
        if active.sequence.is_finished() {
            self.finish(active);
        } else {
            self.running.push(active);
            self.publish_batch_size();
        }
    }

    /// Drops sequences whose client disconnected, timed out, or outlived a shutdown's grace.
    fn remove_unwanted(&mut self) {
        let now = Instant::now();
        let cancel_all = match lock(&self.shared.queue).mode {
            Mode::Draining { cancel_at } => now >= cancel_at,
            Mode::Serving => false,
        };
        let mut index = 0;
        while index < self.running.len() {
            let active = &self.running[index];
            let removal = if active.answer.updates.is_closed() {
                Some(Removal::ClientGone)
            } else if cancel_all {
                Some(Removal::Failed(ApiError::shutting_down()))
            } else if now >= active.answer.deadline {
                Some(Removal::Failed(ApiError::timeout(
                    "The request did not finish within the server's request timeout.",
                )))
            } else {
                None
            };
            match removal {
                Some(removal) => {
                    let active = self.running.swap_remove(index);
                    self.abort(active, removal);
                }
                None => index += 1,
            }
        }
    }

    /// One batched decode step for every running sequence.
    fn step(&mut self) {
        let keye = &self.keye;
        let result = {
            let mut batch: Vec<&mut Sequence> =
                self.running.iter_mut().map(|a| &mut a.sequence).collect();
            catch_unwind(AssertUnwindSafe(|| keye.step(&mut batch)))
        };
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("the decode step panicked".to_owned()),
        };
        if let Some(failure) = failure {
            tracing::error!("decode step failed: {failure}");
            for active in std::mem::take(&mut self.running) {
                self.abort(
                    active,
                    Removal::Failed(ApiError::internal("The model failed while decoding.")),
                );
            }
            return;
        }
        let now = Instant::now();
        let mut index = 0;
        while index < self.running.len() {
            let active = &mut self.running[index];
            self.metrics.observe_token_interval(now - active.last_token);
            active.last_token = now;
            if forward_updates(&mut active.sequence, &active.answer.updates) {
                let active = self.running.swap_remove(index);
                self.finish(active);
            } else {
                index += 1;
            }
        }
    }

    fn finish(&mut self, active: Active) {
        let usage = Usage {
            prompt_tokens: active.sequence.prompt_tokens(),
            completion_tokens: active.sequence.generated_tokens().len(),
        };
        let reason = active
            .sequence
            .finish_reason()
            .unwrap_or(FinishReason::Stop);
        self.metrics
            .record_tokens(usage.prompt_tokens, usage.completion_tokens);
        self.metrics
            .observe_request_duration(active.answer.arrived.elapsed());
        let updates = self.release(active);
        let _ = updates.send(Update::Finished { reason, usage });
    }

    fn abort(&mut self, mut active: Active, removal: Removal) {
        active.sequence.cancel();
        let updates = self.release(active);
        if let Removal::Failed(error) = removal {
            let _ = updates.send(Update::Failed(error));
        }
    }

    /// Frees a sequence that left the batch and returns its client's channel: the gauges are
    /// up to date before the client hears that its answer ended.
    fn release(&mut self, active: Active) -> UnboundedSender<Update> {
        let Active {
            sequence, answer, ..
        } = active;
        drop(sequence);
        self.kv_reserved -= answer.kv_tokens;
        self.publish_batch_size();
        answer.updates
    }

    fn publish_batch_size(&self) {
        self.metrics
            .running
            .store(self.running.len(), Ordering::Relaxed);
        self.metrics
            .kv_tokens_reserved
            .store(self.kv_reserved, Ordering::Relaxed);
    }
}

/// The prefill thread: prompts are prepared and run through the model one at a time, beside
/// the decode steps of the running batch.
fn prefill_loop(keye: &Keye, metrics: &Metrics, shared: &Shared, jobs: Receiver<Job>) {
    for job in jobs {
        let Job {
            request,
            kv_tokens,
            arrived,
            deadline,
            updates,
            slot,
        } = job;
        drop(slot);
        let sequence = if updates.is_closed() {
            None
        } else if Instant::now() >= deadline {
            let _ = updates.send(Update::Failed(ApiError::timeout(
                "The request timed out while waiting for a batch slot.",
            )));
            None
        } else {
            match catch_unwind(AssertUnwindSafe(|| keye.start(&request))) {
                Ok(Ok(mut sequence)) => {
                    metrics.observe_first_token(arrived.elapsed());
                    let _ = updates.send(Update::Started);
                    forward_updates(&mut sequence, &updates);
                    Some(sequence)
                }
                Ok(Err(error)) => {
                    let _ = updates.send(Update::Failed(error.into()));
                    None
                }
                Err(_) => {
                    tracing::error!("prefill panicked");
                    let _ = updates.send(Update::Failed(ApiError::internal(
                        "The model failed while reading the prompt.",
                    )));
                    None
                }
            }
        };
        drop(request);
        let prefilled = Prefilled {
            sequence,
            answer: Answer {
                updates,
                kv_tokens,
                arrived,
                deadline,
            },
            first_token: Instant::now(),
        };
        let mut queue = lock(&shared.queue);
        // After an engine crash nobody would pick this up; dropping it closes the channel.
        if shared.alive.load(Ordering::Acquire) {
            queue.prefilled.push(prefilled);
        }
        drop(queue);
        shared.wake.notify_one();
    }
}

/// Sends the sequence's new text to its client; true when the sequence has finished.
fn forward_updates(sequence: &mut Sequence, updates: &UnboundedSender<Update>) -> bool {
    for event in sequence.take_events() {
        if !event.text.is_empty() {
            // A closed channel is noticed before the next step.
            let _ = updates.send(Update::Text(event.text));
        }
    }
    sequence.is_finished()
}
