import { webSocketPublisher } from "@posthorn/binding-websocket";
import { isPosthornError } from "@posthorn/core";
import { nextDelivery } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import { bigEvent, formats, type Link, link } from "./link.js";

// A publish resolves only once its whole frame was handed to the kernel. Node reports a write that
// was still partly in its own buffers when the socket was destroyed as done (net's write callback
// runs without an error on a destroyed socket), so ws's send callback alone says nothing then.
// These tests back a real connection up (the server stops reading), lose it with frames half
// written, and check every publish against what the server then actually reads.

const links: Link[] = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
});

type Loss = "terminate()" | "a socket error" | "the heartbeat";

/** Destroys the client's TCP socket with an error, as a failed read or write does. */
function failSocket(l: Link): void {
  (l.client as unknown as { _socket: { destroy(err: Error): void } })._socket.destroy(
    Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }),
  );
}

describe("webSocketPublisher when the connection is lost with frames half written", () => {
  for (const loss of ["terminate()", "a socket error", "the heartbeat"] as Loss[]) {
    it(`through ${loss}: every publish resolved was received, every other failed with ConnectionFailed`, {
      timeout: 15_000,
    }, async () => {
      const l = await link();
      links.push(l);
      const publisher = webSocketPublisher(l.client, {
        formats,
        heartbeatMs: loss === "the heartbeat" ? 200 : 0,
      });
      const closed = new Promise<void>((resolve) => l.client.once("close", () => resolve()));
      l.server.pause();
      // 256 KiB events, four a tick (one writev each), until more waits in this process than
      // the kernels took: the write in flight is then a partly written one.
      const ids: string[] = [];
      // Each outcome is watched from the start: most publishes fail before the test looks.
      const publishes: Promise<PromiseSettledResult<void>>[] = [];
      for (let i = 0; i < 256 && l.client.bufferedAmount < 4 * 1024 * 1024; i++) {
        const id = `lost-${i}`;
        ids.push(id);
        publishes.push(
          publisher.publish(bigEvent(id, 256 * 1024)).then(
            (value) => ({ status: "fulfilled", value }),
            (reason: unknown) => ({ status: "rejected", reason }),
          ),
        );
        if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
      }
      await sleep(20);
      expect(l.client.bufferedAmount).toBeGreaterThan(0);
      if (loss === "terminate()") l.client.terminate();
      else if (loss === "a socket error") failSocket(l);
      await closed;

      const outcomes = await Promise.all(publishes);
      const resolved = new Set<string>();
      outcomes.forEach((outcome, i) => {
        if (outcome.status === "fulfilled") resolved.add(ids[i] as string);
        else {
          const err = outcome.reason;
          expect(isPosthornError(err) && err.code).toBe("ConnectionFailed");
          expect(isPosthornError(err) && err.retryable).toBe(true);
        }
      });

      // What the kernels hold still reaches the server once it reads again; a frame cut off
      // ends the connection there (1006), after the whole ones.
      l.server.resume();
      const received = new Set<string>();
      let end: unknown;
      for (;;) {
        try {
          const delivery = await nextDelivery(l.received, 5000);
          if (delivery.event) received.add(delivery.event.id);
        } catch (err) {
          end = err;
          break;
        }
      }
      expect(end).toMatchObject({ code: "ConnectionFailed", protocolCode: 1006 });
      const resolvedNotReceived = [...resolved].filter((id) => !received.has(id));
      console.log(
        `${loss}: ${publishes.length} publishes, ${resolved.size} resolved, ${received.size} received`,
      );
      expect(resolvedNotReceived).toEqual([]);
      expect(resolved.size).toBeLessThanOrEqual(received.size);
      // The connection was lost with frames waiting: some publishes failed.
      expect(resolved.size).toBeLessThan(publishes.length);
    });
  }
});
