// The terminus of senderOptions.target and receiverOptions.source against RabbitMQ (AMQP_URL):
// fields that would point the link elsewhere than `address`, or ask for what the subscriber's
// settlements cannot mean, are refused before anything is attached; the rest work.
import { amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { nextDelivery, refusedOption, requireBroker, shutdownEvent } from "@posthorn/testkit";
import rhea from "rhea";
import { describe, expect, it } from "vitest";
import { rabbitFixture, uniqueName } from "./helpers.js";

const ok = await requireBroker("amqp");

describe.skipIf(!ok)("AMQP link terminus options (skipped: no broker outside CI)", () => {
  const rabbit = rabbitFixture();
  const { admin } = rabbit;

  it("refuses a target or source address other than address, naming both", () => {
    const address = "/amq/queue/link-options-never-attached";
    // The option's address was replaced by `address` without a word.
    expect(() =>
      amqpPublisher(rabbit.connection, {
        address,
        senderOptions: { target: { address: "/amq/queue/elsewhere", durable: 2 } },
      }),
    ).toThrow(refusedOption("senderOptions.target.address", 'string "/amq/queue/elsewhere"'));
    expect(() =>
      amqpSubscriber(rabbit.connection, {
        address,
        receiverOptions: { source: { address: "/amq/queue/elsewhere" } },
      }),
    ).toThrow(refusedOption("receiverOptions.source.address", 'string "/amq/queue/elsewhere"'));
    // The message names the address that sets it too.
    expect(() =>
      amqpPublisher(rabbit.connection, {
        address,
        senderOptions: { target: { address: "/amq/queue/elsewhere" } },
      }),
    ).toThrow(`same as address (${JSON.stringify(address)})`);
  });

  it("refuses a dynamic terminus, which RabbitMQ 3.x answers by ending the session", () => {
    const address = "/amq/queue/link-options-never-attached";
    expect(() =>
      amqpPublisher(rabbit.connection, { address, senderOptions: { target: { dynamic: true } } }),
    ).toThrow(refusedOption("senderOptions.target.dynamic", "true"));
    expect(() =>
      amqpSubscriber(rabbit.connection, {
        address,
        receiverOptions: { source: { dynamic: true } },
      }),
    ).toThrow(refusedOption("receiverOptions.source.dynamic", "true"));
  });

  it('refuses source.distribution_mode "copy" (browsing), which RabbitMQ 3.x consumes all the same', () => {
    const address = "/amq/queue/link-options-never-attached";
    for (const mode of ["copy", "browse", 1]) {
      expect(() =>
        amqpSubscriber(rabbit.connection, {
          address,
          receiverOptions: { source: { distribution_mode: mode } },
        }),
      ).toThrow(
        refusedOption(
          "receiverOptions.source.distribution_mode",
          typeof mode === "string" ? `string "${mode}"` : String(mode),
        ),
      );
    }
  });

  it("refuses a terminus or filter that is not an object", () => {
    const address = "/amq/queue/link-options-never-attached";
    // Spread as it was, a string target became { 0: "q", 1: "u", ... }.
    expect(() =>
      amqpPublisher(rabbit.connection, { address, senderOptions: { target: "queue" } }),
    ).toThrow(refusedOption("senderOptions.target", 'string "queue"'));
    expect(() =>
      amqpSubscriber(rabbit.connection, { address, receiverOptions: { source: ["x"] } }),
    ).toThrow(refusedOption("receiverOptions.source", "an array"));
    expect(() =>
      amqpSubscriber(rabbit.connection, {
        address,
        receiverOptions: { source: { filter: "subject = 'a'" } },
      }),
    ).toThrow(refusedOption("receiverOptions.source.filter", `string "subject = 'a'"`));
  });

  it("takes the same address, move, dynamic false and a filter RabbitMQ echoes; messages flow", async () => {
    const queue = await admin.queue(uniqueName("link-options-same"));
    const address = `/amq/queue/${queue}`;
    const publisher = amqpPublisher(rabbit.connection, {
      address,
      senderOptions: { target: { address, dynamic: false } },
    });
    const subscriber = amqpSubscriber(rabbit.connection, {
      address,
      credit: 1,
      receiverOptions: {
        source: {
          address,
          dynamic: false,
          distribution_mode: "move",
          // RabbitMQ 3.10 echoes this selector in its attach (it does not apply it).
          filter: rhea.filter.selector("true"),
        },
      },
    });
    await Promise.all([publisher.ready, subscriber.ready]);
    await publisher.publish(shutdownEvent("amqp", 1));
    const iterator = subscriber[Symbol.asyncIterator]();
    const delivery = await nextDelivery(iterator, 5000);
    expect(delivery.event?.id).toBe(shutdownEvent("amqp", 1).id);
    await delivery.accept();
    await Promise.all([publisher.close(), subscriber.close()]);
    expect(await admin.count(queue)).toEqual({ messages: 0, consumers: 0 });
  });
});
