import { CloudEvent, type Job } from "@posthorn/core";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import { connect } from "nats";
import { createSubscriber } from "posthorn";
import { afterAll, describe, expect, it } from "vitest";
import { type Outcome, queueUrls, runWorker, submitJobs } from "../src/job-queue.js";

const ok = await requireBroker("nats");

// Each test makes a queue of its own: two streams, removed at the end.
const queues: string[] = [];
const queue = (prefix: string) => {
  const name = `${prefix}${Date.now()}`;
  queues.push(name);
  return name;
};
afterAll(async () => {
  if (!ok || queues.length === 0) return;
  const nc = await connect({ servers: new URL(brokerUrl("nats") as string).host });
  const jsm = await nc.jetstreamManager();
  for (const name of queues) {
    for (const kind of ["WORK", "DEAD"]) {
      await jsm.streams.delete(`${name.toUpperCase()}_${kind}`).catch(() => undefined);
    }
  }
  await nc.close();
});

describe.skipIf(!ok)("job queue over JetStream (skipped: no broker outside CI)", () => {
  it("shares jobs between two workers, retries failures, and dead-letters a poison job", async () => {
    const options = {
      server: brokerUrl("nats") as string,
      name: queue("exjobs"),
      maxAttempts: 3,
    };
    const jobs = Array.from({ length: 20 }, (_, i) =>
      CloudEvent.create({ type: "com.example.job", source: "/test", id: `job-${i}`, data: { i } }),
    );
    await submitJobs(options, jobs);
    const stop = new AbortController();
    const log: Array<{ worker: string; id: string; attempt: number; outcome: Outcome }> = [];
    let finished = 0;
    const timer = setTimeout(() => stop.abort(), 20_000);
    const worker = (name: string) =>
      runWorker(
        options,
        async (job: Job) => {
          // Give the other worker a chance to take jobs too.
          await new Promise((r) => setTimeout(r, 5));
          if ((job.event.data as { i: number }).i === 13) throw new Error("poison");
        },
        (job, outcome) => {
          log.push({ worker: name, id: job.event.id, attempt: job.attempt, outcome });
          if (outcome !== "retry" && ++finished === jobs.length) stop.abort();
        },
        stop.signal,
      );
    await Promise.all([worker("a"), worker("b")]);
    clearTimeout(timer);
    const done = log.filter((l) => l.outcome === "done").map((l) => l.id);
    expect(new Set(done).size).toBe(19);
    expect(new Set(log.map((l) => l.worker))).toEqual(new Set(["a", "b"]));
    const poison = log.filter((l) => l.id === "job-13");
    expect(poison.map((l) => l.outcome)).toEqual(["retry", "retry", "dead"]);
    expect(poison.map((l) => l.attempt)).toEqual([1, 2, 3]);
    const dead = await createSubscriber(queueUrls(options).dead);
    for await (const d of dead) {
      expect(d.event?.id).toBe("job-13");
      expect(d.event?.deadreason).toBe("poison");
      await d.accept();
      break;
    }
    await dead.close();
  });

  it("a stop during a job finishes and settles that job first, and starts no other", async () => {
    const options = { server: brokerUrl("nats") as string, name: queue("exstop") };
    const jobs = Array.from({ length: 3 }, (_, i) =>
      CloudEvent.create({ type: "com.example.job", source: "/test", id: `job-${i}`, data: { i } }),
    );
    await submitJobs(options, jobs);
    const stop = new AbortController();
    let started: (() => void) | undefined;
    const inHandler = new Promise<void>((r) => {
      started = r;
    });
    let finish: (() => void) | undefined;
    const log: Array<{ id: string; outcome: Outcome }> = [];
    const working = runWorker(
      options,
      (job: Job) =>
        new Promise<void>((resolve) => {
          if (job.event.id !== "job-0")
            throw new Error(`${job.event.id} was started after the stop`);
          finish = resolve;
          started?.();
        }),
      (job, outcome) => log.push({ id: job.event.id, outcome }),
      stop.signal,
    );
    await inHandler;
    stop.abort();
    await new Promise((r) => setTimeout(r, 100));
    finish?.();
    // Resolves (the job in hand was accepted, not handed back), and started nothing after it.
    await working;
    expect(log).toEqual([{ id: "job-0", outcome: "done" }]);
  });

  it("a stop while waiting for a job ends the worker at once", async () => {
    const options = { server: brokerUrl("nats") as string, name: queue("exidle") };
    await submitJobs(options, []); // nothing to do; the worker waits
    const stop = new AbortController();
    let handled = 0;
    const working = runWorker(
      options,
      async () => {
        handled++;
      },
      () => undefined,
      stop.signal,
    );
    await new Promise((r) => setTimeout(r, 500));
    const stopped = performance.now();
    stop.abort();
    await working;
    expect(performance.now() - stopped).toBeLessThan(1000);
    expect(handled).toBe(0);
  });

  it("when the dead-letter publisher cannot be made, the worker fails and leaves no connection open", async () => {
    const options = { server: brokerUrl("nats") as string, name: queue("exnodead") };
    await submitJobs(options, []);
    // Another stream already holds the dead-letter subject, so the dead-letter stream cannot be made.
    const nc = await connect({ servers: new URL(brokerUrl("nats") as string).host });
    const jsm = await nc.jetstreamManager();
    const squatter = `${options.name.toUpperCase()}_SQUAT`;
    await jsm.streams.add({ name: squatter, subjects: [`${options.name}.dead`] });
    const sockets = () =>
      process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length;
    try {
      const before = sockets();
      await expect(
        runWorker(
          options,
          async () => undefined,
          () => undefined,
          new AbortController().signal,
        ),
      ).rejects.toThrow(/overlap/);
      // A subscriber left open would keep its connection to the server.
      await new Promise((r) => setTimeout(r, 200));
      expect(sockets()).toBe(before);
    } finally {
      await jsm.streams.delete(squatter);
      await nc.close();
    }
  });
});
