import { createServer, type Server } from "node:net";
import { amqpProtocolAnswer, brokerUrl, hostPort, requireBroker } from "@posthorn/testkit";
import { afterEach, describe, expect, it } from "vitest";

// A TCP server that answers every client with fixed bytes, as a broker's first reply.
async function answering(bytes: number[]): Promise<{ server: Server; url: string }> {
  const server = createServer((socket) => {
    socket.once("data", () => socket.end(Buffer.from(bytes)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { server, url: `amqp://127.0.0.1:${port}` };
}

// Under CI=true a RabbitMQ without AMQP 1.0 fails here, before any test runs.
const rabbit = await requireBroker("amqp");
const AMQP_0_9_1 = [0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1];
const servers: Server[] = [];
const ci = process.env.CI;
afterEach(async () => {
  if (ci === undefined) delete process.env.CI;
  else process.env.CI = ci;
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe("requireBroker for AMQP", () => {
  it("reads a 0-9-1 answer as no AMQP 1.0, and says how to enable RabbitMQ's plugin", async () => {
    const { server, url } = await answering(AMQP_0_9_1);
    servers.push(server);
    const { port } = server.address() as { port: number };
    expect(await amqpProtocolAnswer("127.0.0.1", port)).toBe("AMQP 0-9-1");
    process.env.CI = "true";
    await expect(requireBroker("amqp", url)).rejects.toThrow(/rabbitmq_amqp1_0/);
    process.env.CI = "false";
    expect(await requireBroker("amqp", url)).toBe(false);
  });

  it("never shows the password of the broker address in what it says", async () => {
    const { server } = await answering(AMQP_0_9_1);
    servers.push(server);
    const { port } = server.address() as { port: number };
    process.env.CI = "true";
    const err = await requireBroker("amqp", `amqp://user:s3cret@127.0.0.1:${port}`).catch(
      (e: Error) => e,
    );
    expect(String(err)).toContain("user:***@");
    expect(String(err)).not.toContain("s3cret");
  });

  it("accepts a server that answers with the AMQP 1.0 SASL header", async () => {
    const { server, url } = await answering([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0]);
    servers.push(server);
    expect(await requireBroker("amqp", url)).toBe(true);
  });

  it.skipIf(!rabbit)(
    "finds AMQP 1.0 at AMQP_URL (RabbitMQ with its plugin; skipped: no broker outside CI)",
    async () => {
      const url = new URL(brokerUrl("amqp") as string);
      expect(await amqpProtocolAnswer(url.hostname, Number(url.port || 5672))).toBe("1.0");
    },
  );
});

describe("requireBroker and hostPort, given what they cannot use", () => {
  it("says how to read a broker address that is not one, without its password", () => {
    expect(() => hostPort("amqp://guest:secret@", 5672)).toThrow(
      /cannot read a host and port from the broker address "amqp:\/\/guest:\*\*\*@": give a URL/,
    );
    expect(() => hostPort("not a url", 1)).toThrow(TypeError);
  });

  it("names the testkit's own Kafka broker when KAFKA_BROKERS is unset", async () => {
    const given = process.env.KAFKA_BROKERS;
    delete process.env.KAFKA_BROKERS;
    try {
      await expect(requireBroker("kafka")).rejects.toThrow(
        /set KAFKA_BROKERS, or start the testkit's own broker with startKafkaBroker\(\)/,
      );
    } finally {
      if (given !== undefined) process.env.KAFKA_BROKERS = given;
    }
  });
});
