// The terminus of senderOptions.target and receiverOptions.source against RabbitMQ (AMQP_URL):
// fields that would point the link elsewhere than `address`, or ask for what the subscriber's
// settlements cannot mean, are refused before anything is attached; the rest work.
import { amqpPublisher, amqpSubscriber } from "@posthorn/binding-amqp";
import { nextDelivery, refusedOption, requireBroker, shutdownEvent } from "@posthorn/testkit";
import rhea from "rhea";
import { describe, expect, it } from "vitest";
import { rabbitFixture, uniqueName } from "./helpers.js";

const ok = await requireBroker("amqp");

// rhea's outcome constructors (rhea.message.released() ...), which its typings leave out.
const outcome = (
  rhea as unknown as {
    message: Record<string, (fields?: object) => { described(): unknown }>;
  }
).message as Record<
  "accepted" | "rejected" | "released" | "modified",
  (fields?: object) => { described(): unknown }
>;

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

  it("refuses a terminus durable, expiry_policy or timeout rhea would write out of type", () => {
    const address = "/amq/queue/link-options-never-attached";
    // RabbitMQ 3.10 never answered a durable of 7 (ready waited for ever); a timeout of -1 threw
    // out of rhea's socket writer and ended the connection; an expiry_policy of 5 threw a
    // TypeError out of rhea's attach.
    const cases: ReadonlyArray<readonly [string, unknown, string]> = [
      ["durable", 7, "7"],
      ["durable", true, "true"],
      ["expiry_policy", 5, "5"],
      ["expiry_policy", "forever", 'string "forever"'],
      ["timeout", -1, "-1"],
      ["timeout", 1.5, "1.5"],
    ];
    for (const [field, value, shown] of cases) {
      expect(() =>
        amqpPublisher(rabbit.connection, {
          address,
          senderOptions: { target: { [field]: value } },
        }),
      ).toThrow(refusedOption(`senderOptions.target.${field}`, shown));
      expect(() =>
        amqpSubscriber(rabbit.connection, {
          address,
          receiverOptions: { source: { [field]: value } },
        }),
      ).toThrow(refusedOption(`receiverOptions.source.${field}`, shown));
    }
  });

  it("refuses source outcomes without accepted, rejected and released (modified when release sends it)", () => {
    const address = "/amq/queue/link-options-never-attached";
    const all = ["amqp:accepted:list", "amqp:rejected:list", "amqp:released:list"];
    const refused: ReadonlyArray<readonly [unknown, string, string | undefined]> = [
      // RabbitMQ 3.10 takes reject() over a link that listed accepted only; another broker need not.
      [["amqp:accepted:list"], "an array", undefined],
      [["amqp:accepted:list", "amqp:released:list"], "an array", undefined],
      [["amqp:accepted:list", "amqp:rejected:list"], "an array", undefined],
      // RabbitMQ 3.10 ends the session for a single symbol: amqp:not-implemented.
      ["amqp:accepted:list", 'string "amqp:accepted:list"', undefined],
      [[...all, 7], "an array", undefined],
      [all, "an array", "modified"],
    ];
    for (const [outcomes, shown, releaseOutcome] of refused) {
      expect(() =>
        amqpSubscriber(rabbit.connection, {
          address,
          ...(releaseOutcome === "modified" ? { releaseOutcome: "modified" as const } : {}),
          receiverOptions: { source: { outcomes } },
        }),
      ).toThrow(refusedOption("receiverOptions.source.outcomes", shown));
    }
    expect(() =>
      amqpSubscriber(rabbit.connection, {
        address,
        receiverOptions: { source: { outcomes: ["amqp:accepted:list"] } },
      }),
    ).toThrow("missing amqp:rejected:list, amqp:released:list");
  });

  it("refuses a source default_outcome that would not give unsettled deliveries back", () => {
    const address = "/amq/queue/link-options-never-attached";
    const refused: ReadonlyArray<readonly [unknown, string]> = [
      // Deliveries a lost link left unsettled would be consumed unseen, or dead-lettered.
      [outcome.accepted().described(), 'string "amqp:accepted:list"'],
      [outcome.rejected({}).described(), 'string "amqp:rejected:list"'],
      // RabbitMQ 3.10 never answered the attach for these.
      [outcome.released(), "an object"],
      ["amqp:released:list", 'string "amqp:released:list"'],
    ];
    for (const [value, shown] of refused) {
      expect(() =>
        amqpSubscriber(rabbit.connection, {
          address,
          receiverOptions: { source: { default_outcome: value } },
        }),
      ).toThrow(refusedOption("receiverOptions.source.default_outcome", shown));
    }
    expect(() =>
      amqpSubscriber(rabbit.connection, {
        address,
        receiverOptions: { source: { default_outcome: outcome.accepted().described() } },
      }),
    ).toThrow("would consume them unseen");
  });

  it("takes terminus durability, expiry, timeout, full outcomes and a released default; every settlement works", async () => {
    const queue = await admin.queue(uniqueName("link-options-terminus"));
    const address = `/amq/queue/${queue}`;
    const publisher = amqpPublisher(rabbit.connection, {
      address,
      senderOptions: { target: { durable: 2, expiry_policy: "never", timeout: 0 } },
    });
    const subscriber = amqpSubscriber(rabbit.connection, {
      address,
      credit: 1,
      receiverOptions: {
        source: {
          durable: 1,
          expiry_policy: "link-detach",
          timeout: 30,
          outcomes: ["amqp:accepted:list", "amqp:rejected:list", "amqp:released:list"],
          default_outcome: outcome.released().described(),
        },
      },
    });
    await Promise.all([publisher.ready, subscriber.ready]);
    await publisher.publish([shutdownEvent("amqp", 1), shutdownEvent("amqp", 2)]);
    const iterator = subscriber[Symbol.asyncIterator]();
    const first = await nextDelivery(iterator, 5000);
    expect(first.event?.id).toBe(shutdownEvent("amqp", 1).id);
    await first.release();
    const again = await nextDelivery(iterator, 5000);
    expect(again.event?.id).toBe(shutdownEvent("amqp", 1).id);
    await again.accept();
    const second = await nextDelivery(iterator, 5000);
    expect(second.event?.id).toBe(shutdownEvent("amqp", 2).id);
    await second.reject("unwanted");
    await Promise.all([publisher.close(), subscriber.close()]);
    expect(await admin.count(queue)).toEqual({ messages: 0, consumers: 0 });
    // modified as the default, with modified listed for releaseOutcome "modified": made.
    const modified = amqpSubscriber(rabbit.connection, {
      address: "/amq/queue/link-options-never-attached",
      releaseOutcome: "modified",
      receiverOptions: {
        source: {
          outcomes: [
            "amqp:accepted:list",
            "amqp:rejected:list",
            "amqp:released:list",
            "amqp:modified:list",
          ],
          default_outcome: outcome.modified({ delivery_failed: true }).described(),
        },
      },
    });
    expect(modified.address).toBe("/amq/queue/link-options-never-attached");
    await modified.ready.catch(() => {});
    await modified.close();
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

  it("checks the link's own terminus (a publisher's source, a subscriber's target) as the other", async () => {
    const address = "/amq/queue/link-options-never-attached";
    // A timeout of -1 ended the connection (rhea's socket writer threw), an expiry_policy of 5
    // threw a TypeError out of attach; RabbitMQ 3.10 ended the session for an outcome it does
    // not know and for a single symbol (amqp:not-implemented, "Outcomes not supported").
    const fields: ReadonlyArray<readonly [string, unknown, string]> = [
      ["durable", 7, "7"],
      ["expiry_policy", 5, "5"],
      ["timeout", -1, "-1"],
      ["capabilities", 5, "5"],
    ];
    for (const [field, value, shown] of fields) {
      expect(() =>
        amqpPublisher(rabbit.connection, {
          address,
          senderOptions: { source: { [field]: value } },
        }),
      ).toThrow(refusedOption(`senderOptions.source.${field}`, shown));
      expect(() =>
        amqpSubscriber(rabbit.connection, {
          address,
          receiverOptions: { target: { [field]: value } },
        }),
      ).toThrow(refusedOption(`receiverOptions.target.${field}`, shown));
    }
    const all = ["amqp:accepted:list", "amqp:rejected:list", "amqp:released:list"];
    const outcomes: ReadonlyArray<readonly [unknown, string]> = [
      [[...all, "bogus"], 'string "bogus"'],
      ["amqp:accepted:list", 'string "amqp:accepted:list"'],
      // A broker keeping to these could not refuse a publish, or ask for it again.
      [["amqp:accepted:list"], "an array"],
      [["amqp:accepted:list", "amqp:rejected:list"], "an array"],
    ];
    for (const [value, shown] of outcomes) {
      expect(() =>
        amqpPublisher(rabbit.connection, {
          address,
          senderOptions: { source: { outcomes: value } },
        }),
      ).toThrow(refusedOption("senderOptions.source.outcomes", shown));
    }
    // The subscriber's source too: the session ended for "bogus" beside the three it needs.
    expect(() =>
      amqpSubscriber(rabbit.connection, {
        address,
        receiverOptions: { source: { outcomes: [...all, "bogus"] } },
      }),
    ).toThrow(refusedOption("receiverOptions.source.outcomes", 'string "bogus"'));
    expect(() =>
      amqpPublisher(rabbit.connection, { address, senderOptions: { source: 5 } }),
    ).toThrow(refusedOption("senderOptions.source", "5"));
    // Nothing was attached or written: the shared connection still carries a publish.
    const queue = await admin.queue(uniqueName("link-options-own-after"));
    const publisher = amqpPublisher(rabbit.connection, { address: `/amq/queue/${queue}` });
    await publisher.publish(shutdownEvent("amqp", 1));
    await publisher.close();
    expect((await admin.count(queue)).messages).toBe(1);
  });

  it("refuses capabilities that are not symbols, on either terminus and on the link", () => {
    const address = "/amq/queue/link-options-never-attached";
    // A number threw a TypeError out of rhea's attach; a number in an array threw out of its
    // socket writer and ended the connection.
    for (const [value, shown] of [
      [5, "5"],
      [["queue", 5], "an array"],
    ] as const) {
      expect(() =>
        amqpPublisher(rabbit.connection, {
          address,
          senderOptions: { target: { capabilities: value } },
        }),
      ).toThrow(refusedOption("senderOptions.target.capabilities", shown));
      expect(() =>
        amqpSubscriber(rabbit.connection, {
          address,
          receiverOptions: { source: { capabilities: value } },
        }),
      ).toThrow(refusedOption("receiverOptions.source.capabilities", shown));
      expect(() =>
        amqpPublisher(rabbit.connection, {
          address,
          senderOptions: { offered_capabilities: value },
        }),
      ).toThrow(refusedOption("senderOptions.offered_capabilities", shown));
      expect(() =>
        amqpSubscriber(rabbit.connection, {
          address,
          receiverOptions: { desired_capabilities: value },
        }),
      ).toThrow(refusedOption("receiverOptions.desired_capabilities", shown));
    }
  });

  it("passes the rest of both termini through; RabbitMQ takes them and every settlement works", async () => {
    const queue = await admin.queue(uniqueName("link-options-passed"));
    const address = `/amq/queue/${queue}`;
    const all = ["amqp:accepted:list", "amqp:rejected:list", "amqp:released:list"];
    const publisher = amqpPublisher(rabbit.connection, {
      address,
      senderOptions: {
        desired_capabilities: ["posthorn-test"],
        source: {
          address: "/posthorn/publisher",
          dynamic: true,
          durable: 0,
          timeout: 0,
          capabilities: "posthorn-test",
          outcomes: [...all, "amqp:modified:list"],
          default_outcome: outcome.accepted().described(),
        },
        target: { capabilities: ["queue"], dynamic_node_properties: { "lifetime-policy": "x" } },
      },
    });
    const subscriber = amqpSubscriber(rabbit.connection, {
      address,
      credit: 1,
      receiverOptions: {
        target: { address: "/posthorn/subscriber", dynamic: true, capabilities: [] },
        source: { capabilities: ["queue"], dynamic_node_properties: {}, outcomes: all },
      },
    });
    await Promise.all([publisher.ready, subscriber.ready]);
    await publisher.publish([shutdownEvent("amqp", 1), shutdownEvent("amqp", 2)]);
    const iterator = subscriber[Symbol.asyncIterator]();
    const first = await nextDelivery(iterator, 5000);
    expect(first.event?.id).toBe(shutdownEvent("amqp", 1).id);
    await first.release();
    const again = await nextDelivery(iterator, 5000);
    expect(again.event?.id).toBe(shutdownEvent("amqp", 1).id);
    await again.accept();
    const second = await nextDelivery(iterator, 5000);
    await second.reject("unwanted");
    await Promise.all([publisher.close(), subscriber.close()]);
    expect(await admin.count(queue)).toEqual({ messages: 0, consumers: 0 });
  });
});
