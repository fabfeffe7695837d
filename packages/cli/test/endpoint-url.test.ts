import { describe, expect, it } from "vitest";
import { openEndpoint, parseEndpointUrl, redact } from "../src/index.js";
import { parseEventsText } from "../src/input.js";

describe("parseEndpointUrl", () => {
  it("reads several Kafka bootstrap hosts, the path and the query", () => {
    const u = parseEndpointUrl(
      "kafka://a:9092,[::1]:9093/orders?group=g&mode=structured&format=avro",
    );
    expect(u.hosts).toEqual([
      { host: "a", port: 9092 },
      { host: "::1", port: 9093 },
    ]);
    expect(u.path).toBe("orders");
    expect(u.mode).toBe("structured");
    expect(u.format).toBe("avro");
    expect(u.params.get("group")).toBe("g");
  });

  it("decodes credentials, hides the password in display and in any later message", () => {
    const u = parseEndpointUrl("amqp://bob:p%40ss%2Fw0rd@broker:5672/queue/orders");
    expect(u.username).toBe("bob");
    expect(u.password).toBe("p@ss/w0rd");
    expect(u.display).toBe("amqp://bob:***@broker:5672/queue/orders");
    expect(redact("client said: bad password p@ss/w0rd for bob")).not.toContain("p@ss/w0rd");
    expect(redact("amqp://x:other-secret@h/q")).toBe("amqp://x:***@h/q");
  });

  it("refuses unknown modes, formats, ports and shapes with MalformedInput", () => {
    for (const bad of [
      "kafka://h/t?mode=fast",
      "kafka://h/t?format=xml",
      "kafka://h:99999/t",
      "not a url",
      "kafka:///t",
    ]) {
      expect(() => parseEndpointUrl(bad), bad).toThrow(
        expect.objectContaining({ code: "MalformedInput" }),
      );
    }
  });
});

describe("a # in an endpoint URL", () => {
  it("is MQTT's multi-level wildcard: part of the topic, and the query after it still counts", () => {
    // Read as a fragment, this subscribed to "sensors/" (matching nothing below it) at the
    // default version, whatever the query said.
    const u = parseEndpointUrl("mqtt://127.0.0.1:1883/sensors/#?version=3.1.1&qos=0");
    expect(u.path).toBe("sensors/#");
    expect(u.params.get("version")).toBe("3.1.1");
    expect(u.params.get("qos")).toBe("0");
    expect(u.display).toBe("mqtt://127.0.0.1:1883/sensors/#?version=3.1.1&qos=0");
    expect(parseEndpointUrl("mqtt://h/#").path).toBe("#");
    expect(parseEndpointUrl("amqp://h/exchange/amq.topic/orders.#").path).toBe(
      "exchange/amq.topic/orders.#",
    );
  });

  it("is refused in http:// and ws:// URLs, where it would be a fragment never sent", async () => {
    for (const url of ["http://127.0.0.1:1/events#x", "ws://127.0.0.1:1/e?subprotocol=a#b"]) {
      await expect(openEndpoint(url), url).rejects.toMatchObject({
        code: "MalformedInput",
        message: expect.stringContaining("write %23"),
      });
    }
  });

  it("cannot stand in for the path: a # right after the host is not an endpoint URL", () => {
    expect(() => parseEndpointUrl("kafka://h#t")).toThrow(
      expect.objectContaining({ code: "MalformedInput" }),
    );
  });
});

describe("mqtt version=", () => {
  it("takes 5, 3.1.1 and its protocol level 4, and refuses 3 (MQTT 3.1, another protocol)", async () => {
    expect((await openEndpoint("mqtt://h/t?version=4")).mode).toBe("structured");
    expect((await openEndpoint("mqtt://h/t?version=5")).mode).toBe("binary");
    for (const v of ["3", "3.1", "6"]) {
      await expect(openEndpoint(`mqtt://h/t?version=${v}`), v).rejects.toMatchObject({
        code: "MalformedInput",
        message: expect.stringContaining(`version="${v}" is not an MQTT version`),
      });
    }
  });
});

describe("receiving over https", () => {
  it("says what a user of the command can do, not only the option of code", async () => {
    const endpoint = await openEndpoint("https://127.0.0.1:1/events");
    await expect(endpoint.createSubscriber()).rejects.toMatchObject({
      code: "NotSupported",
      message: expect.stringContaining("receive on http:// behind a TLS proxy"),
    });
    // The URL once: "cannot receive from <url>: <url>: receiving over https ..." before.
    await expect(endpoint.createSubscriber()).rejects.toMatchObject({
      message: expect.stringMatching(
        /^cannot receive from https:\/\/127\.0\.0\.1:1\/events: receiving over https/,
      ),
    });
  });
});

describe("openEndpoint (no connection)", () => {
  it("chooses each transport's default mode and checks combinations before connecting", async () => {
    expect((await openEndpoint("mqtt://h/t?version=3.1.1")).mode).toBe("structured");
    expect((await openEndpoint("ws://h/p?subprotocol=cloudevents.proto")).formatName).toBe(
      "protobuf",
    );
    expect((await openEndpoint("nats://h/s")).mode).toBe("binary");
    await expect(openEndpoint("amqp://h/q?mode=batch")).rejects.toMatchObject({
      code: "NotSupported",
    });
    await expect(openEndpoint("ws://h/p?mode=binary")).rejects.toMatchObject({
      code: "NotSupported",
    });
    await expect(openEndpoint("nats://h/s?queue=q&stream=S")).rejects.toMatchObject({
      code: "NotSupported",
    });
    await expect(openEndpoint("gopher://h/x")).rejects.toThrow(/unknown scheme/);
  });
});

describe("parseEventsText", () => {
  const e = (id: string) => JSON.stringify({ specversion: "1.0", id, source: "/s", type: "t" });
  it("reads one event, a batch, and JSON lines", () => {
    expect(parseEventsText(e("1")).map((x) => x.id)).toEqual(["1"]);
    expect(parseEventsText(`[${e("1")},${e("2")}]`).map((x) => x.id)).toEqual(["1", "2"]);
    expect(parseEventsText(`${e("1")}\n\n${e("2")}\n`).map((x) => x.id)).toEqual(["1", "2"]);
  });
  it("names the line that is not an event", () => {
    expect(() => parseEventsText(`${e("1")}\n{"id":"2"}`, "in.jsonl")).toThrow(/in\.jsonl line 2/);
  });
  it("says what is wrong with a pretty-printed event, not that its first line is not JSON", () => {
    const pretty = JSON.stringify({ specversion: "1.0", id: "1", source: "/s" }, null, 2);
    expect(parseEventsText(JSON.stringify(JSON.parse(e("7")), null, 2))[0]?.id).toBe("7");
    expect(() => parseEventsText(pretty, "event.json")).toThrow(
      expect.objectContaining({
        code: "InvalidEvent",
        message: expect.stringMatching(/^event\.json: not a CloudEvent: type is required/),
      }),
    );
  });
  it("refuses an empty batch, as it refuses empty input, instead of sending nothing", () => {
    expect(() => parseEventsText(" [ ]\n", "stdin")).toThrow(
      expect.objectContaining({
        code: "MalformedInput",
        message: "stdin is an empty batch: expected CloudEvents",
      }),
    );
  });
});
