import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CloudEvent, type Subscriber } from "@posthorn/core";
import { brokerUrl, freePort, requireBroker } from "@posthorn/testkit";
import { createSubscriber } from "posthorn";
import { afterAll, describe, expect, it } from "vitest";
import { kafkaBrokersForFile, readyUrl, runCli, startCli, unique } from "./run-cli.js";

const amqpOk = await requireBroker("amqp");
const mqttOk = await requireBroker("mqtt");
const natsOk = await requireBroker("nats");
const amqpBase = (brokerUrl("amqp") ?? "").replace(/\/+$/, "");
const mqttBase = (brokerUrl("mqtt") ?? "").replace(/\/+$/, "");
const natsBase = (brokerUrl("nats") ?? "").replace(/\/+$/, "");

// Kafka: KAFKA_BROKERS when set, else the testkit broker in this process.
const kafkaBrokers = kafkaBrokersForFile();

const dir = mkdtempSync(join(tmpdir(), "posthorn-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Starts `receive`, waits until it is subscribed, runs `send`, and returns the received lines.
 * An http:// or ws:// URL with port 0 is sent to on the port `receive` names on its ready line.
 */
async function sendThenReceive(
  url: string,
  sendArgs: string[],
): Promise<Record<string, unknown>[]> {
  const receiver = startCli(["receive", url, "--count", "1", "--timeout", "30000"]);
  const listening = await readyUrl(receiver);
  const target = /^(http|ws):\/\/127\.0\.0\.1:0\//.test(url) ? listening : url;
  if (target !== url) expect(target).not.toContain("127.0.0.1:0/");
  const sent = await runCli(["send", target, ...sendArgs]);
  expect(sent.stderr).toContain("sent 1 event");
  expect(sent.code).toBe(0);
  const got = await receiver.done;
  expect(got.code, got.stderr).toBe(0);
  return got.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Runs `receive --count 1` on what already waits at `url` and returns the event it printed. */
async function receiveWaiting(url: string): Promise<unknown> {
  const got = await runCli(["receive", url, "--count", "1", "--timeout", "20000"]);
  expect(got.code, got.stderr).toBe(0);
  return JSON.parse(got.stdout);
}

function eventArgs(id: string): string[] {
  return ["--type", "com.example.cli", "--source", "/cli/test", "--id", id, "--data", '{"n":1}'];
}

describe("send then receive, on every scheme (spawned commands)", () => {
  // http and ws receive on port 0: the system picks the port, and receive's ready line names it.
  it("http: binary, and structured avro, and batch protobuf", async () => {
    for (const query of ["", "?mode=structured&format=avro", "?mode=batch&format=protobuf"]) {
      const url = `http://127.0.0.1:0/${unique("events")}${query}`;
      const id = unique("id");
      const [line] = await sendThenReceive(url, eventArgs(id));
      expect(line).toMatchObject({ id, type: "com.example.cli", data: { n: 1 } });
    }
  });

  it("ws: structured protobuf by subprotocol, and avro by format", async () => {
    for (const query of ["?subprotocol=cloudevents.proto", "?format=avro"]) {
      const url = `ws://127.0.0.1:0/${unique("events")}${query}`;
      const id = unique("id");
      const [line] = await sendThenReceive(url, eventArgs(id));
      expect(line).toMatchObject({ id, data: { n: 1 } });
    }
  });

  describe.skipIf(!amqpOk)("amqp (skipped: no broker outside CI)", () => {
    it("amqp: send to a queue first, then receive what waited there", async () => {
      const url = `${amqpBase}/queue/${unique("posthorn-cli")}?mode=structured&format=protobuf`;
      const id = unique("id");
      expect((await runCli(["send", url, ...eventArgs(id)])).code).toBe(0);
      expect(await receiveWaiting(url)).toMatchObject({ id, data: { n: 1 } });
    });
  });

  describe.skipIf(!mqttOk)("mqtt (skipped: no broker outside CI)", () => {
    it("mqtt 5 binary and mqtt 3.1.1 structured", async () => {
      for (const query of ["?version=5", "?version=3.1.1"]) {
        const url = `${mqttBase}/posthorn/${unique("cli")}${query}`;
        const id = unique("id");
        const [line] = await sendThenReceive(url, eventArgs(id));
        expect(line).toMatchObject({ id, data: { n: 1 } });
      }
    });
  });

  it("kafka: send, then a new group reads from the earliest offset", async () => {
    const topic = unique("posthorn-cli");
    const url = `kafka://${kafkaBrokers()}/${topic}`;
    const id = unique("id");
    expect(
      (await runCli(["send", `${url}?mode=structured&format=avro`, ...eventArgs(id)])).code,
    ).toBe(0);
    expect(await receiveWaiting(`${url}?group=${topic}&from=earliest`)).toMatchObject({
      id,
      data: { n: 1 },
    });
  });

  describe.skipIf(!natsOk)("nats (skipped: no broker outside CI)", () => {
    it("core NATS (receive first) and JetStream (send first)", async () => {
      const subject = unique("posthorn.cli").replace(/-/g, "_");
      const id = unique("id");
      const [line] = await sendThenReceive(`${natsBase}/${subject}`, eventArgs(id));
      expect(line).toMatchObject({ id });
      const stream = unique("PCLI").replace(/-/g, "_");
      const js = `${natsBase}/${subject}.js?stream=${stream}&durable=d`;
      expect((await runCli(["send", js, ...eventArgs(`${id}-js`)])).code).toBe(0);
      expect(await receiveWaiting(js)).toMatchObject({ id: `${id}-js` });
    });
  });
});

// --mode and --format rewrite the URL's query: a "#" in the path (or query) stays where it was.
// The URL was cut at the "#", so the event silently went to another queue, topic or subject.
describe("send --mode with a # in the URL (spawned commands)", () => {
  describe.skipIf(!amqpOk)("amqp (skipped: no broker outside CI)", () => {
    it("sends to the queue named with its #, not to the name before it", async () => {
      const url = `${amqpBase}/queue/${unique("posthorn-cli-hash")}#1`;
      const id = unique("id");
      const sent = await runCli(["send", url, ...eventArgs(id), "--mode", "structured"]);
      expect(sent.code, sent.stderr).toBe(0);
      expect(sent.stderr).toContain("#1?mode=structured");
      expect(await receiveWaiting(url)).toMatchObject({ id, data: { n: 1 } });
    });
  });

  describe.skipIf(!mqttOk)("mqtt (skipped: no broker outside CI)", () => {
    it("refuses a topic with the # wildcard instead of publishing to the topic before it", async () => {
      const topic = `posthorn/${unique("cli-hash")}`;
      const sent = await runCli([
        "send",
        `${mqttBase}/${topic}/#?version=5`,
        ...eventArgs(unique("id")),
        "--mode",
        "structured",
        "--timeout",
        "5000",
      ]);
      expect(sent.code).toBe(1);
      expect(sent.stderr).toContain(`got "${topic}/#": nothing was published`);
    });
  });

  describe.skipIf(!natsOk)("nats (skipped: no broker outside CI)", () => {
    it("sends to the subject with its #", async () => {
      const subject = `${unique("posthorn.cli").replace(/-/g, "_")}.#x`;
      const id = unique("id");
      const [line] = await sendThenReceive(`${natsBase}/${subject}`, [
        ...eventArgs(id),
        "--format",
        "protobuf",
        "--mode",
        "structured",
      ]);
      expect(line).toMatchObject({ id, data: { n: 1 } });
    });
  });
});

/** The bridge options of the 1,000-event runs: stop after all moved, print the JSON summary. */
const MOVE_ALL = ["--count", "1000", "--timeout", "90000", "--json"];

/** 1,000 events as JSON lines, each with its own id. */
function thousandEvents(tag: string): { file: string; ids: Set<string> } {
  const ids = new Set<string>();
  const lines: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const id = `${tag}-${i}`;
    ids.add(id);
    lines.push(
      JSON.stringify(
        new CloudEvent({
          specversion: "1.0",
          id,
          source: "/bridge",
          type: "com.example.n",
          data: { i },
        }),
      ),
    );
  }
  const file = join(dir, `${tag}.jsonl`);
  writeFileSync(file, `${lines.join("\n")}\n`);
  return { file, ids };
}

/** Reads events from a subscriber until every id was seen (duplicates allowed: at least once). */
async function collect(
  subscriber: Subscriber,
  ids: Set<string>,
  timeoutMs: number,
): Promise<Set<string>> {
  const seen = new Set<string>();
  const deadline = setTimeout(() => void subscriber.close(), timeoutMs);
  try {
    for await (const d of subscriber) {
      if (d.event) seen.add(d.event.id);
      await d.accept();
      if ([...ids].every((id) => seen.has(id))) break;
    }
  } finally {
    clearTimeout(deadline);
    await subscriber.close();
  }
  return seen;
}

describe.skipIf(!mqttOk)("bridge mqtt -> kafka (skipped: no broker outside CI)", () => {
  it("moves 1,000 events, none lost", { timeout: 120_000 }, async () => {
    const tag = unique("m2k");
    const { file, ids } = thousandEvents(tag);
    const from = `${mqttBase}/posthorn/${tag}?version=5&qos=1&clientid=${tag}`;
    const topic = `posthorn-${tag}`;
    const to = `kafka://${kafkaBrokers()}/${topic}?mode=structured`;
    const bridge = startCli(["bridge", from, to, ...MOVE_ALL]);
    await bridge.waitFor("ready:");
    const sent = await runCli([
      "send",
      `${mqttBase}/posthorn/${tag}?version=5&qos=1`,
      "--event",
      file,
    ]);
    expect(sent.code, sent.stderr).toBe(0);
    const result = await bridge.done;
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ moved: 1000, lost: 0, rejected: 0 });
    const seen = await collect(
      await createSubscriber(`kafka://${kafkaBrokers()}/${topic}?group=${topic}&from=earliest`),
      ids,
      60_000,
    );
    expect([...ids].filter((id) => !seen.has(id))).toEqual([]);
  });
});

describe.skipIf(!amqpOk || !natsOk)("bridge amqp -> nats (skipped: no broker outside CI)", () => {
  it("moves 1,000 events, none lost", { timeout: 120_000 }, async () => {
    const tag = unique("a2n");
    const { file, ids } = thousandEvents(tag);
    const queue = `${amqpBase}/queue/posthorn-${tag}`;
    // The events wait in the queue before the bridge starts.
    const sent = await runCli(["send", queue, "--event", file]);
    expect(sent.code, sent.stderr).toBe(0);
    const stream = tag.replace(/-/g, "_").toUpperCase();
    const to = `${natsBase}/${tag.replace(/-/g, "_")}?stream=${stream}&mode=structured&format=protobuf`;
    const result = await runCli(["bridge", queue, to, ...MOVE_ALL]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ moved: 1000, lost: 0 });
    const seen = await collect(await createSubscriber(`${to}&durable=check`), ids, 60_000);
    expect([...ids].filter((id) => !seen.has(id))).toEqual([]);
  });
});

describe("conformance (spawned)", () => {
  it("writes a full JSON matrix: every cell of every binding found, all green", {
    timeout: 180_000,
  }, async () => {
    const report = join(dir, "conformance.json");
    const only = [
      "http",
      "ws",
      ...(amqpOk ? ["amqp"] : []),
      ...(mqttOk ? ["mqtt"] : []),
      "kafka",
      ...(natsOk ? ["nats"] : []),
    ];
    const r = await runCli(["conformance", "--only", only.join(","), "--report", report], {
      env: { KAFKA_BROKERS: kafkaBrokers() },
    });
    const json = JSON.parse(readFileSync(report, "utf8"));
    const bindings = json.rows.map((row: { binding: string }) => row.binding);
    expect(bindings).toEqual(expect.arrayContaining(["http", "ws"]));
    expect(bindings).toContain("kafka");
    if (amqpOk) expect(bindings).toContain("amqp");
    if (mqttOk) expect(bindings).toEqual(expect.arrayContaining(["mqtt 5", "mqtt 3.1.1"]));
    if (natsOk) expect(bindings).toEqual(expect.arrayContaining(["nats", "nats jetstream"]));
    expect(json.columns).toEqual(
      expect.arrayContaining([
        "binary",
        "structured/json",
        "structured/avro",
        "structured/protobuf",
        "batch/json",
      ]),
    );
    for (const row of json.rows) {
      for (const cell of row.cells) {
        expect(cell.failed, `${row.binding} ${cell.path}`).toBe(0);
        expect(cell.passed, `${row.binding} ${cell.path}`).toBeGreaterThanOrEqual(
          json.vectors.valid - 1,
        );
      }
    }
    expect(json.summary.greenCells).toBe(json.summary.cells);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("cells green");
  });

  it("writes a self-contained HTML page", { timeout: 60_000 }, async () => {
    const report = join(dir, "conformance.html");
    const r = await runCli(["conformance", "--only", "http", "--report", report]);
    expect(r.code, r.stderr).toBe(0);
    const html = readFileSync(report, "utf8");
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain("all green");
    expect(html).not.toMatch(/<script|<link /);
  });
});

describe("demo (spawned, no broker variables)", () => {
  it("finishes green on embedded defaults, well under a minute", { timeout: 90_000 }, async () => {
    const started = Date.now();
    const r = await runCli(["demo"], {
      env: {
        AMQP_URL: undefined,
        MQTT_URL: undefined,
        NATS_URL: undefined,
        KAFKA_BROKERS: undefined,
      },
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("rhea peer to peer");
    expect(r.stdout).toContain("aedes");
    expect(r.stdout).toMatch(/(\d+) of \1 paths equivalent/);
    for (const transport of ["http", "ws", "amqp", "mqtt 3.1.1", "kafka"]) {
      expect(r.stdout).toMatch(new RegExp(`^${transport}\\s+\\w+`, "m"));
    }
    expect(Date.now() - started).toBeLessThan(60_000);
  });
});

describe("demo (spawned) with a configured broker that does not answer", () => {
  it("fails, naming the transport that was asked for and left out", {
    timeout: 60_000,
  }, async () => {
    // A port nothing listens on. freePort() races: another process may take the port before the
    // demo connects; then something answers there and the assertions on "nothing answers" below
    // fail, so a taken port makes this test fail, never pass.
    const closed = await freePort();
    const r = await runCli(["demo", "--only", "http,kafka"], {
      env: { KAFKA_BROKERS: `127.0.0.1:${closed}` },
    });
    expect(r.code, r.stdout + r.stderr).toBe(1);
    // The paths that could run still ran, and were equivalent.
    expect(r.stdout).toMatch(/^http\s+binary\s+/m);
    expect(r.stdout).toMatch(/(\d+) of \1 paths equivalent in [\d.]+ s; left out: kafka/);
    expect(r.stdout).toContain(`kafka: left out: nothing answers at 127.0.0.1:${closed}`);
    expect(r.stderr).toContain("posthorn demo: kafka was asked for and left out");
  });
});
