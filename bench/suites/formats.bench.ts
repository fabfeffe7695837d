import type { EventFormat } from "@posthorn/core";
import { CloudEvent } from "@posthorn/core";
import { avro, avroCompactFormat } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { protobuf } from "@posthorn/format-protobuf";
import { vector } from "@posthorn/testkit";
import { type BenchSuite, compare, type Row } from "../lib.ts";

// The three event formats side by side on the same events, in one run: encode and decode rates,
// each against JSON measured in the same tinybench run, and the encoded size in bytes (`extra`).
const formats: readonly EventFormat[] = [avro, avroCompactFormat(), protobuf];

function binaryEvent(): CloudEvent {
  const data = new Uint8Array(1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
  return new CloudEvent({
    ...vector("typical").event.withoutData(),
    datacontenttype: "application/octet-stream",
    data,
  });
}

export const suite: BenchSuite = {
  name: "Event formats: JSON vs Avro vs Protobuf",
  async run(ctx) {
    const rows: Row[] = [];
    const cases: [string, CloudEvent][] = [
      ["typical event", vector("typical").event],
      ["1 KiB binary event", binaryEvent()],
    ];
    for (const [label, event] of cases) {
      const group = `codec: event formats (${label})`;
      const jsonBytes = json.encode(event);
      const jsonSize = { bytes: jsonBytes.length };
      for (const format of formats) {
        const bytes = format.encode(event);
        const size = { bytes: bytes.length };
        for (const op of ["encode", "decode"] as const) {
          const row = await compare({
            group,
            name: `${op} ${format.name}`,
            ours: {
              label: format.name,
              fn: op === "encode" ? () => format.encode(event) : () => format.decode(bytes),
            },
            baseline: {
              label: "json",
              fn: op === "encode" ? () => json.encode(event) : () => json.decode(jsonBytes),
            },
            ctx,
          });
          rows.push({
            ...row,
            ours: { ...row.ours, extra: size },
            ...(row.baseline ? { baseline: { ...row.baseline, extra: jsonSize } } : {}),
          });
        }
      }
    }
    return rows;
  },
};
