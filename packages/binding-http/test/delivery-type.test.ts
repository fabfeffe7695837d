import {
  type HttpDelivery,
  type HttpReceiverRequest,
  httpReceiver,
  toHttpMessage,
} from "@posthorn/binding-http";
import { CloudEvent, type Delivery, type Subscriber } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { describe, expect, expectTypeOf, it } from "vitest";

// The receiver's deliveries are typed HttpDelivery, whose `event` is a CloudEvent, because a
// request that is not a CloudEvent is answered 4xx and never delivered: the tests below check
// that behaviour, and the expectTypeOf lines (checked by `npx tsc -p tsconfig.json --noEmit`,
// which covers tests) the type that rests on it.

const events = [1, 2].map((n) =>
  CloudEvent.create({ type: "com.example.t", source: "/s", id: `h${n}`, data: { n } }),
);

function request(message: { headers: Record<string, string>; body: Uint8Array }) {
  return {
    method: "POST",
    headers: message.headers,
    readBody: async () => message.body,
  } satisfies HttpReceiverRequest;
}

describe("HTTP receiver deliveries", () => {
  it("are typed with a CloudEvent, and are still Deliveries of a Subscriber", () => {
    expectTypeOf<HttpDelivery["event"]>().toEqualTypeOf<CloudEvent>();
    expectTypeOf<HttpDelivery<{ n: number }>["event"]>().toEqualTypeOf<CloudEvent<{ n: number }>>();
    expectTypeOf<HttpDelivery>().toExtend<Delivery>();
    const receiver = httpReceiver({ formats: [json] });
    expectTypeOf(receiver).toExtend<Subscriber>();
    expectTypeOf(receiver[Symbol.asyncIterator]()).toEqualTypeOf<AsyncIterator<HttpDelivery>>();
    expectTypeOf(httpReceiver)
      .parameter(0)
      .exclude<undefined>()
      .toHaveProperty("onDelivery")
      .toEqualTypeOf<((delivery: HttpDelivery) => unknown) | undefined>();
    // A handler written for any Delivery is still accepted.
    expectTypeOf<(delivery: Delivery) => void>().toExtend<(delivery: HttpDelivery) => unknown>();
  });

  it("carry every event of a batch to onDelivery, with no undefined event", async () => {
    const seen: string[] = [];
    const receiver = httpReceiver({
      formats: [json],
      onDelivery: (delivery) => void seen.push(delivery.event.id),
    });
    const reply = await receiver.handle(
      request(toHttpMessage(events, { mode: "batch", format: json })),
    );
    expect(reply.status).toBe(204);
    expect(seen).toEqual(["h1", "h2"]);
  });

  it("carry the event when iterated, and a request that is not a CloudEvent delivers nothing", async () => {
    const receiver = httpReceiver({ formats: [json] });
    const iterator = receiver[Symbol.asyncIterator]();
    const notAnEvent = await receiver.handle(
      request({
        headers: { "content-type": "application/json" },
        body: new TextEncoder().encode('{"order":1}'),
      }),
    );
    const invalid = await receiver.handle(
      request({
        headers: { "content-type": "application/cloudevents+json" },
        body: new TextEncoder().encode('{"specversion":"1.0","id":"x"}'),
      }),
    );
    expect([notAnEvent.status, invalid.status]).toEqual([415, 400]);
    const answered = receiver.handle(request(toHttpMessage(events[0] as CloudEvent)));
    const first = await iterator.next();
    expect(first.done).toBe(false);
    // The first delivery is the valid event's: the two refused requests queued nothing.
    const delivery = first.value as HttpDelivery;
    expect(delivery.event.id).toBe("h1");
    await delivery.accept();
    expect((await answered).status).toBe(204);
    await receiver.close();
    expect((await iterator.next()).done).toBe(true);
  });
});
