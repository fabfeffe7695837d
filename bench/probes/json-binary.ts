// The JSON format with binary data: json.encode / json.decode of one event whose data is 1 KiB,
// 64 KiB and 1 MiB of bytes, best of five rounds per size (docs/formats/json.md, "Performance").
// Bundled by bench/build.mjs like the other probes (never time it under tsx):
//
//   node bench/build.mjs
//   node bench/.build/probes/json-binary.mjs
import { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { bestMicros } from "../lib.ts";

for (const size of [1024, 65536, 1048576]) {
  const data = Uint8Array.from({ length: size }, (_, i) => (i * 31) & 0xff);
  const event = new CloudEvent({
    specversion: "1.0",
    id: "x1",
    source: "/s",
    type: "t",
    datacontenttype: "application/octet-stream",
    data,
  });
  const bytes = json.encode(event);
  const calls = size > 100_000 ? 50 : 2000;
  const encode = bestMicros(() => json.encode(event), calls);
  const decode = bestMicros(() => json.decode(bytes), calls);
  console.log(`${size} B: encode ${encode.toFixed(1)} µs, decode ${decode.toFixed(1)} µs`);
}
