import { asJob, type CloudEvent, type Job, type Publisher } from "@posthorn/core";
import { createPublisher, createSubscriber } from "posthorn";

/** Where the queue lives: subjects and streams on one NATS server. */
export interface JobQueueOptions {
  /** `nats://host:port` of a server with JetStream. */
  readonly server: string;
  /** A name for the queue; streams and subjects are derived from it. */
  readonly name: string;
  /** Attempts before a job is dead-lettered. Default 3. */
  readonly maxAttempts?: number;
}

/** The URLs of a queue: work, and dead letters. */
export function queueUrls(options: JobQueueOptions): { work: string; dead: string } {
  const base = options.server.replace(/\/+$/, "");
  const n = options.name;
  return {
    work: `${base}/${n}.work?stream=${n.toUpperCase()}_WORK&durable=workers`,
    dead: `${base}/${n}.dead?stream=${n.toUpperCase()}_DEAD&durable=inspect`,
  };
}

/** What a worker did with one job. */
export type Outcome = "done" | "retry" | "dead";

/**
 * Runs one worker until `signal` fires: takes jobs one at a time, calls `handle`, accepts on
 * success, releases on failure, and dead-letters after `maxAttempts`. When `signal` fires during
 * a job, the worker finishes and settles that job first, then stops; the jobs it had not started
 * go back to the queue for the other workers.
 */
export async function runWorker(
  options: JobQueueOptions,
  handle: (job: Job) => Promise<void>,
  report: (job: Job, outcome: Outcome) => void,
  signal: AbortSignal,
): Promise<void> {
  const { work, dead } = queueUrls(options);
  const maxAttempts = options.maxAttempts ?? 3;
  const jobs = await createSubscriber(work);
  let deadLetters: Publisher;
  try {
    deadLetters = await createPublisher(dead);
  } catch (err) {
    await jobs.close();
    throw err;
  }
  // Closing the subscriber while a job is in hand would give that job back (another worker then
  // does it again) and make its accept() fail; so a stop waits for the job in hand.
  let busy = false;
  signal.addEventListener(
    "abort",
    () => {
      if (!busy) void jobs.close();
    },
    { once: true },
  );
  try {
    for await (const delivery of jobs) {
      if (signal.aborted) break;
      const job = asJob(delivery);
      if (!job) {
        await delivery.reject("not a CloudEvent");
        continue;
      }
      busy = true;
      try {
        await handle(job);
        await job.accept();
        report(job, "done");
      } catch (err) {
        if (job.attempt >= maxAttempts) {
          // Dead-letter first, then accept: a crash in between leaves the job to be retried,
          // never lost.
          await deadLetters.publish(
            job.event.cloneWith({ deadreason: (err as Error).message || "failed" }),
          );
          await job.accept();
          report(job, "dead");
        } else {
          await job.release({ delayMs: 100 });
          report(job, "retry");
        }
      } finally {
        busy = false;
      }
      // Leaving the loop closes the subscriber.
      if (signal.aborted) break;
    }
  } finally {
    await jobs.close();
    await deadLetters.close();
  }
}

/** Submits jobs to the queue; resolves once the stream stored each. */
export async function submitJobs(
  options: JobQueueOptions,
  jobs: readonly CloudEvent[],
): Promise<void> {
  const publisher = await createPublisher(queueUrls(options).work);
  try {
    for (const job of jobs) await publisher.publish(job);
  } finally {
    await publisher.close();
  }
}
