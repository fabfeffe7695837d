import { CloudEvent } from "@posthorn/core";
import { runWorker, submitJobs } from "./job-queue.js";

// Two workers share a queue of ten jobs; job 7 always fails and ends up dead-lettered.
const options = { server: process.argv[2] ?? "nats://127.0.0.1:4222", name: `jobs${Date.now()}` };
const jobs = Array.from({ length: 10 }, (_, i) =>
  CloudEvent.create({
    type: "com.example.resize",
    source: "/examples/job-queue",
    id: `job-${i}`,
    data: { i },
  }),
);
await submitJobs(options, jobs);
const stop = new AbortController();
let finished = 0;
const workers = ["a", "b"].map((name) =>
  runWorker(
    options,
    async (job) => {
      if ((job.event.data as { i: number }).i === 7) throw new Error("cannot resize job 7");
    },
    (job, outcome) => {
      console.log(`worker ${name}: ${job.event.id} attempt ${job.attempt}: ${outcome}`);
      if (outcome !== "retry" && ++finished === jobs.length) stop.abort();
    },
    stop.signal,
  ),
);
await Promise.all(workers);
