import { CloudEvent } from "@posthorn/core";
import { describe, expect, it } from "vitest";
import { withPort } from "../src/endpoint-url.js";
import {
  createPublisher,
  createSubscriber,
  listeningDisplay,
  parseEndpointUrl,
} from "../src/index.js";
import { openCell } from "../src/matrix.js";

// Receiving on port 0: the system picks a free port when the server binds, so no other process
// can take it between a choice and the bind (the demo and the tests chose ports with freePort()).

const event = new CloudEvent({
  specversion: "1.0",
  id: "p0",
  source: "/port-zero",
  type: "t",
  data: { n: 1 },
});

describe("receiving on port 0", () => {
  for (const url of ["http://127.0.0.1:0/events", "ws://127.0.0.1:0/events"]) {
    it(`${url.split(":")[0]}: listens on a port the system picks and says which`, async () => {
      const subscriber = await createSubscriber(url);
      try {
        const port = subscriber.listeningPort ?? 0;
        expect(port).toBeGreaterThan(0);
        expect(listeningDisplay(url, url, subscriber)).toBe(url.replace(":0/", `:${port}/`));
        const publisher = await createPublisher(withPort(url, port));
        // Over HTTP the publish completes when the receiver accepts: take the delivery first.
        const published = publisher.publish(event);
        const delivery = (await subscriber[Symbol.asyncIterator]().next()).value;
        expect(delivery?.event?.id).toBe("p0");
        await delivery?.accept();
        await published;
        await publisher.close();
      } finally {
        await subscriber.close();
      }
    });
  }

  it("openCell (the demo's and conformance's cells) publishes to the port its receiver got", async () => {
    for (const url of ["http://127.0.0.1:0/cell?mode=binary", "ws://127.0.0.1:0/cell"]) {
      const cell = await openCell(url, 5000);
      try {
        const published = cell.publisher.publish(event);
        const delivery = await cell.next(5000);
        expect(delivery?.event?.id, url).toBe("p0");
        await delivery?.accept();
        await published;
      } finally {
        await cell.close();
      }
    }
  });

  it("refuses to send to port 0 (MalformedInput: it is for receiving)", async () => {
    for (const url of ["http://127.0.0.1:0/events", "ws://127.0.0.1:0/events"]) {
      await expect(createPublisher(url), url).rejects.toThrow(
        expect.objectContaining({
          code: "MalformedInput",
          message: expect.stringMatching(/port 0 is for receiving/),
        }),
      );
    }
  });

  it("refuses port 0 where a client connects to a broker (MalformedInput)", () => {
    for (const url of [
      "kafka://127.0.0.1:0/t",
      "kafka://127.0.0.1:9092,127.0.0.1:0/t",
      "amqp://127.0.0.1:0/q",
      "mqtt://127.0.0.1:0/t",
      "nats://127.0.0.1:0/s",
    ]) {
      expect(() => parseEndpointUrl(url), url).toThrow(
        expect.objectContaining({
          code: "MalformedInput",
          message: expect.stringMatching(
            /port 0 \(a port the system picks\) is only for receiving on http:\/\/ and ws:\/\//,
          ),
        }),
      );
    }
  });
});

describe("withPort", () => {
  it("puts the port in place, keeping credentials, path and query as written", () => {
    expect(withPort("http://u:p%40ss@127.0.0.1:0/a/b?mode=binary&token=x", 4100)).toBe(
      "http://u:p%40ss@127.0.0.1:4100/a/b?mode=binary&token=x",
    );
    expect(withPort("ws://[::1]:0/e", 4101)).toBe("ws://[::1]:4101/e");
    expect(withPort("http://localhost/e", 4102)).toBe("http://localhost:4102/e");
  });
});
