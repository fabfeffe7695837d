import { connect } from "@nats-io/transport-node";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { kafkaBrokersForFile, runCli, startCli, unique } from "./run-cli.js";

const natsOk = await requireBroker("nats");
const natsBase = (brokerUrl("nats") ?? "").replace(/\/+$/, "");

describe.skipIf(!natsOk)("receive --count (skipped: no broker outside CI)", () => {
  it("counts events: a message that is not one is reported, and receive waits on for the event", {
    timeout: 60_000,
  }, async () => {
    const subject = unique("posthorn.cli").replace(/-/g, ".");
    const url = `${natsBase}/${subject}`;
    const receiver = startCli(["receive", url, "--count", "1", "--timeout", "20000"]);
    await receiver.waitFor("ready:");
    const nc = await connect({ servers: natsBase.replace(/^nats:\/\//, "") });
    try {
      nc.publish(subject, "not an event");
      await nc.flush();
    } finally {
      await nc.close();
    }
    await receiver.waitFor("not a valid CloudEvent");
    const sent = await runCli(["send", url, "--type", "t", "--source", "/s", "--id", "the-event"]);
    expect(sent.code, sent.stderr).toBe(0);
    const r = await receiver.done;
    // Before: it ended at the message that is not an event, exit 0, nothing on stdout.
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: "the-event" });
  });
});

// Kafka: KAFKA_BROKERS when set, else the testkit broker in this process.
const kafkaBrokers = kafkaBrokersForFile();

describe("receive whose reader goes away (receive | head -1)", () => {
  it("stops with one line on stderr, and the event it could not print is redelivered", {
    timeout: 60_000,
  }, async () => {
    const topic = unique("posthorn-cli-pipe");
    const url = `kafka://${kafkaBrokers()}/${topic}?group=${topic}&from=earliest`;
    const send = (id: string) =>
      runCli(["send", url.replace(/\?.*$/, ""), "--type", "t", "--source", "/s", "--id", id]);
    expect((await send("1")).code).toBe(0);
    const receiver = startCli(["receive", url, "--timeout", "30000"]);
    await new Promise<void>((resolve) => receiver.child.stdout?.once("data", () => resolve()));
    // The reader is gone: the next line cannot be written.
    receiver.child.stdout?.destroy();
    expect((await send("2")).code).toBe(0);
    const r = await receiver.done;
    // Before: an unhandled EPIPE error event, a stack trace, and event 2 accepted unprinted.
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("posthorn receive: Closed: stdout was closed (EPIPE)");
    expect(r.stderr).not.toMatch(/^\s+at /m);
    const again = await runCli(["receive", url, "--count", "1", "--timeout", "20000"]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ id: "2" });
  });
});
