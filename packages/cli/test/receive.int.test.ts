import { connect } from "@nats-io/transport-node";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { runCli, startCli, unique } from "./run-cli.js";

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
