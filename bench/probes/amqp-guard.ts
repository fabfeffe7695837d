// The AMQP frame guard's cost: FrameGuard.feed of one transfer frame carrying a typical event's
// message, a 64 KiB one and a message split over 16 frames, against rhea.message.decode of the
// same message (what rhea then does with it), best of five rounds (docs/bindings/amqp.md,
// "The frame guard"). Bundled by bench/build.mjs like the other probes:
//
//   node bench/build.mjs
//   node bench/.build/probes/amqp-guard.mjs
import { FrameGuard, toAmqpMessage } from "@posthorn/binding-amqp";
import { vector } from "@posthorn/testkit";
import rhea from "rhea";
import { bestMicros } from "../lib.ts";

/** A transfer frame on channel 0, handle 0, with `more` as given, carrying `payload`. */
function transfer(payload: Buffer, more: boolean): Buffer {
  const fields = Buffer.from([0x52, 0, 0x52, 0, 0xa0, 1, 0, 0x43, 0x42, more ? 0x41 : 0x42]);
  const performative = Buffer.concat([
    Buffer.from([0x00, 0x53, 0x14, 0xc0, fields.length + 1, 6]),
    fields,
  ]);
  const frame = Buffer.concat([Buffer.alloc(8), performative, payload]);
  frame.writeUInt32BE(frame.length, 0);
  frame[4] = 2;
  return frame;
}

const guard = new FrameGuard();
guard.feed(Buffer.from("AMQP\x00\x01\x00\x00", "latin1"));
const big = vector("typical").event.cloneWith({
  datacontenttype: "application/octet-stream",
  data: new Uint8Array(65536).fill(7),
});
for (const [name, event] of [
  ["typical event", vector("typical").event],
  ["64 KiB of data", big],
] as const) {
  const message = rhea.message.encode(toAmqpMessage(event, { codec: rhea }) as never);
  const frame = transfer(message, false);
  const calls = message.length > 10_000 ? 20_000 : 200_000;
  const fed = bestMicros(() => guard.feed(frame), calls);
  const decoded = bestMicros(() => rhea.message.decode(message), calls / 10);
  console.log(
    `${name} (${message.length} B): guard ${fed.toFixed(2)} µs, rhea.message.decode ${decoded.toFixed(2)} µs`,
  );
  const step = Math.ceil(message.length / 16);
  const frames: Buffer[] = [];
  for (let at = 0; at < message.length; at += step) {
    frames.push(transfer(message.subarray(at, at + step), at + step < message.length));
  }
  const split = bestMicros(() => {
    for (const f of frames) guard.feed(f);
  }, calls / 10);
  console.log(`  the same in ${frames.length} frames: guard ${split.toFixed(2)} µs`);
}
