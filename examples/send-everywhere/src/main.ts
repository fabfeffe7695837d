import { CloudEvent } from "@posthorn/core";
import { formatResult, sendEverywhere } from "./send-everywhere.js";

const urls = process.argv.slice(2);
if (urls.length === 0) {
  console.error("usage: main.ts <endpoint-url>...");
  process.exit(2);
}
const event = CloudEvent.create({
  type: "com.example.order.created",
  source: "/examples/send-everywhere",
  datacontenttype: "application/json",
  data: { orderId: 42 },
});
const results = await sendEverywhere(event, urls);
for (const r of results) console.log(formatResult(r));
process.exitCode = results.every((r) => r.ok) ? 0 : 1;
