// CPU per request through Posthorn's HTTP receiver (createNodeHandler, onDelivery accepting at
// once), with a keep-alive node:http client sending the typical binary-mode event, 8 in flight,
// server and client in this one process: for before/after comparisons of the receive path, which
// the suites do not measure (their servers are plain node:http).
//
//   node bench/build.mjs
//   node bench/.build/probes/http-receiver.mjs [label]
//
// Prints events per second and CPU microseconds per request for five rounds of 10,000 requests.
import { Agent, createServer, request } from "node:http";
import { createNodeHandler, toHttpMessage } from "@posthorn/binding-http";
import { CloudEvent } from "@posthorn/core";

const label = process.argv[2] ?? "receiver";
const handler = createNodeHandler({ onDelivery: async () => {} });
const server = createServer((req, res) => void handler(req, res));
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const { port } = server.address() as { port: number };
const event = CloudEvent.create({
  type: "com.example.order.created",
  source: "/orders",
  datacontenttype: "application/json",
  data: { id: 1, total: 9.5, customer: "alice" },
});
const message = toHttpMessage(event, { mode: "binary" });
const body = Buffer.from(message.body as Uint8Array);
const headers = { ...message.headers, "content-length": String(body.length) };
const agent = new Agent({ keepAlive: true, maxSockets: 8 });

function send(): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method: "POST", agent, headers }, (res) => {
      res.resume();
      res.on("end", () => {
        if ((res.statusCode ?? 0) >= 300) reject(new Error(`status ${res.statusCode}`));
        else resolve();
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function round(n: number): Promise<string> {
  let sent = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (sent++ < n) await send();
    }),
  );
  const used = process.cpuUsage(cpu);
  const rate = Math.round((n / (performance.now() - started)) * 1000);
  return `${rate}/s, ${((used.user + used.system) / n).toFixed(1)} µs CPU per request`;
}

await round(2000);
for (let i = 0; i < 5; i++) console.log(`${label}: ${await round(10_000)}`);
server.close();
agent.destroy();
