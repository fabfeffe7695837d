import { webSocketPublisher } from "@posthorn/binding-websocket";
import { settledWithin, shutdownEvent, unencodableEvent } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";
import { formats, type Link, link, nextId } from "./link.js";

// The publisher's contract over a real connection (an in-process ws server).
const links: Link[] = [];
const open = async (): Promise<Link> => {
  const l = await link();
  links.push(l);
  return l;
};

afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
});

describe("webSocketPublisher close()", () => {
  it("resolves every concurrent call, and only once every frame in flight was written", async () => {
    const l = await open();
    const publisher = webSocketPublisher(l.client, { formats });
    const total = 200;
    let settled = 0;
    const publishes = Array.from({ length: total }, (_, i) =>
      publisher.publish(shutdownEvent("websocket", i)).then(() => {
        settled++;
      }),
    );
    // Each call reports how many publishes had settled when it resolved.
    const first = publisher.close().then(() => settled);
    const second = publisher.close().then(() => settled);
    expect(settled).toBe(0);
    await Promise.all(publishes);
    expect(await settledWithin(Promise.all([first, second]), 2000)).toEqual({
      resolved: [total, total],
    });
    expect(await settledWithin(publisher.close(), 2000)).toEqual({ resolved: undefined });
  });
});

describe("webSocketPublisher publish(array)", () => {
  it("sends none of the array when one event cannot be encoded", async () => {
    const l = await open();
    const publisher = webSocketPublisher(l.client, { formats });
    const invalid = unencodableEvent("ws");
    await expect(
      publisher.publish([shutdownEvent("ws", 1), invalid, shutdownEvent("ws", 3)]),
    ).rejects.toMatchObject({ name: "PosthornError", code: "InvalidEvent" });
    // The next event the server gets is the one sent after: nothing of the array went out.
    await publisher.publish(shutdownEvent("ws", 4));
    expect(await nextId(l)).toBe("shutdown-4");
  });
});
