import { consumeWithCheckpoints } from "./checkpointed-consumer.js";

const [url = "kafka://127.0.0.1:9092/orders", group = "examples-reporting"] = process.argv.slice(2);
const events = await consumeWithCheckpoints({ url, group, limit: 100 }, (event) => {
  console.log(`${event.id} ${event.type}`);
});
console.log(`processed ${events.length}; run again to continue after the checkpoint`);
