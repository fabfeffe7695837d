import { CloudEvent } from "@posthorn/core";
import { brokerUrl, requireBroker } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { runCli, startCli } from "./run-cli.js";

// Brokers are checked here only for the help and error cases that name one; every case spawns
// the command the way a user would.
const rabbit = await requireBroker("amqp");

/** `posthorn send <url> --type t --source /s [...extra]`: one event built from options. */
function sendOne(url: string, ...extra: string[]) {
  return runCli(["send", url, "--type", "t", "--source", "/s", ...extra]);
}

describe("posthorn (spawned)", () => {
  it.each(["send", "receive", "bridge", "conformance", "demo"])(
    "%s --help prints its usage and exits 0",
    async (command) => {
      const r = await runCli([command, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: posthorn ${command}`);
    },
  );

  it("without a command prints the overview and exits 2; an unknown one exits 2", async () => {
    const none = await runCli([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toContain("Commands:");
    const unknown = await runCli(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  it("a wrong option is a usage error (exit 2) that points to --help", async () => {
    const r = await runCli(["send", "http://127.0.0.1:1/x", "--nope"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--help");
  });

  it("refuses a mode the binding cannot carry, saying why (exit 1)", async () => {
    const r = await sendOne("mqtt://127.0.0.1:1883/t?version=3.1.1&mode=binary");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("NotSupported");
    expect(r.stderr).toContain("MQTT 3.1.1 has no user properties");
    const batch = await sendOne("kafka://127.0.0.1:9092/t?mode=batch");
    expect(batch.code).toBe(1);
    expect(batch.stderr).toContain("no batch mode");
    const avroBatch = await sendOne("http://127.0.0.1:1/x?mode=batch&format=avro");
    expect(avroBatch.code).toBe(1);
    expect(avroBatch.stderr).toContain("format=avro is not possible in batch mode");
  });

  it("rejects an unknown query parameter instead of ignoring it", async () => {
    const r = await sendOne("kafka://127.0.0.1:9092/t?gruop=g");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown query parameter "gruop"');
  });

  it("names the unreachable URL and the cause, and never prints the password", async () => {
    const r = await sendOne("amqp://alice:s3cr3t-pw@127.0.0.1:1/orders", "--timeout", "3000");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("amqp://alice:***@127.0.0.1:1/orders");
    expect(r.stderr).toMatch(/ECONNREFUSED|refused/);
    expect(r.stdout + r.stderr).not.toContain("s3cr3t-pw");
  });

  it("reads JSON lines from stdin, and a bad line is an error naming the line", async () => {
    const good = new CloudEvent({ specversion: "1.0", id: "1", source: "/s", type: "t" });
    const r = await runCli(["send", "http://127.0.0.1:1/x", "--timeout", "1000"], {
      stdin: `${JSON.stringify(good)}\n{"id":"2","source":"/s"}\n`,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("stdin line 2");
  });

  describe.skipIf(!rabbit)("with RabbitMQ (skipped: no broker outside CI)", () => {
    it("a wrong password says authentication failed, without the password", async () => {
      const host = (brokerUrl("amqp") as string).replace(/^amqp:\/\/[^@]*@/, "");
      const r = await sendOne(`amqp://guest:n0t-the-pw@${host}/x`);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("authenticate");
      // Not only rhea's "Failed to authenticate: 1": what failed, and what to check.
      expect(r.stderr).toContain(
        "authentication failed: the broker refused the user name or password; check user:password@ in the URL",
      );
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).not.toContain("n0t-the-pw");
    });

    it("a wrong password and a timeout shorter than RabbitMQ's wait says authentication may be why", async () => {
      // RabbitMQ waits (about 4 s here) before refusing the credentials; a 2 s timeout was a
      // bare "AMQP connection: no answer within 2000 ms", which reads as a broker that is down.
      const host = (brokerUrl("amqp") as string).replace(/^amqp:\/\/[^@]*@/, "");
      const r = await sendOne(`amqp://guest:n0t-the-pw@${host}/x`, "--timeout", "2000");
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("Timeout: ");
      expect(r.stderr).toContain(
        'the broker had not yet answered the authentication of user "guest"; a wrong user name or password may be the cause',
      );
      expect(r.stderr).not.toContain("n0t-the-pw");
      // The right credentials connect within the same timeout.
      const ok = await sendOne(
        `${brokerUrl("amqp")}/queue/${`posthorn-cli-auth-${Date.now()}`}`,
        "--timeout",
        "2000",
      );
      expect(ok.code, ok.stderr).toBe(0);
    });

    it("receive --json prints one object per delivery, with the event and its delivery count", async () => {
      const base = brokerUrl("amqp") as string;
      const queue = `${base.replace(/\/+$/, "")}/queue/posthorn-cli-bad-${Date.now()}`;
      const receiver = startCli(["receive", queue, "--count", "2", "--json", "--timeout", "20000"]);
      await receiver.waitFor("ready:");
      const sent = await runCli(["send", queue, "--type", "ok", "--source", "/s"]);
      expect(sent.code).toBe(0);
      // The library under the command: the same URL, from code.
      const { createPublisher } = await import("posthorn");
      const publisher = await createPublisher(`${queue}?mode=structured`);
      await publisher.publish({ specversion: "1.0", id: "2", source: "/s", type: "ok2" });
      await publisher.close();
      const r = await receiver.done;
      expect(r.code).toBe(0);
      const lines = r.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(lines.map((l) => l.event?.type)).toEqual(["ok", "ok2"]);
      expect(lines[0].deliveryCount).toBe(1);
    });
  });
});
