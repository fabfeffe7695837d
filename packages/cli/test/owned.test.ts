import { AsyncQueue, type Delivery, PosthornError, type Subscriber } from "@posthorn/core";
import { describe, expect, it } from "vitest";
import { ownedSubscriber } from "../src/drivers/common.js";

// A subscriber over a queue, recording its close; what the CLI wraps is a binding's subscriber.
function queueSubscriber(
  queue: AsyncQueue<Delivery>,
  log: string[],
  ready: Promise<void> = Promise.resolve(),
): Subscriber {
  return {
    ready,
    capabilities: {
      release: "none",
      releaseDelay: false,
      reject: "none",
      inProgress: false,
      deliveryCount: "none",
    },
    [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
    async close() {
      log.push("inner closed");
      queue.end();
    },
  };
}

describe("ownedSubscriber", () => {
  it("closes the inner subscriber and what the CLI opened when a loop is left", async () => {
    const queue = new AsyncQueue<Delivery>();
    const log: string[] = [];
    const owned = ownedSubscriber(queueSubscriber(queue, log), () => {
      log.push("cleanup");
    });
    queue.push({} as Delivery);
    queue.push({} as Delivery);
    let seen = 0;
    for await (const _ of owned) {
      seen++;
      break;
    }
    expect(seen).toBe(1);
    expect(log).toEqual(["inner closed", "cleanup"]);
    await owned.close();
    expect(log).toEqual(["inner closed", "cleanup"]);
  });

  it("waits on the inner subscriber's ready, and fails with its error", async () => {
    let open!: () => void;
    const pending = new Promise<void>((resolve) => {
      open = resolve;
    });
    const owned = ownedSubscriber(queueSubscriber(new AsyncQueue(), [], pending), () => {});
    let done = false;
    void owned.ready.then(() => {
      done = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(done).toBe(false);
    open();
    await owned.ready;
    expect(done).toBe(true);

    const refused = new PosthornError("ConnectionFailed", "the broker refused the subscription");
    const failing = Promise.reject(refused);
    const owned2 = ownedSubscriber(queueSubscriber(new AsyncQueue(), [], failing), () => {});
    await expect(owned2.ready).rejects.toBe(refused);
  });
});
