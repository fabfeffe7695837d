import {
  encodeAmqpMessage,
  type FromAmqpMessageOptions,
  readAmqpMessage,
} from "@posthorn/binding-amqp";
import { CloudEvent } from "@posthorn/core";
import rhea from "rhea";
import { describe, expect, it } from "vitest";

// maxPayloadBytes is the size limit's name in every binding; maxMessageBytes is its former name
// here.

/** A binary-mode message, as rhea decodes it off the wire, whose body is `size` bytes. */
function message(size: number) {
  const event = new CloudEvent({
    specversion: "1.0",
    id: "limit-1",
    source: "/tests",
    type: "t",
    datacontenttype: "application/octet-stream",
    data: new Uint8Array(size),
  });
  return rhea.message.decode(encodeAmqpMessage(event));
}

function tooLarge(size: number, options: FromAmqpMessageOptions): boolean {
  const { event, error } = readAmqpMessage(message(size), options);
  if (error?.code === "PayloadTooLarge") return true;
  expect(error).toBeUndefined();
  expect(event?.id).toBe("limit-1");
  return false;
}

describe("readAmqpMessage size limit", () => {
  it("maxPayloadBytes limits the body", () => {
    expect(tooLarge(101, { maxPayloadBytes: 100 })).toBe(true);
    expect(tooLarge(100, { maxPayloadBytes: 100 })).toBe(false);
  });

  it("the deprecated maxMessageBytes still limits the body", () => {
    expect(tooLarge(101, { maxMessageBytes: 100 })).toBe(true);
    expect(tooLarge(100, { maxMessageBytes: 100 })).toBe(false);
  });

  it("maxPayloadBytes wins when both are given", () => {
    expect(tooLarge(150, { maxPayloadBytes: 200, maxMessageBytes: 100 })).toBe(false);
    expect(tooLarge(150, { maxPayloadBytes: 100, maxMessageBytes: 200 })).toBe(true);
  });
});
