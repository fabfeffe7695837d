// Context for the example in docs/tracing.md (marked `<!-- snippet: context tracing -->`): a
// connected kafkajs producer, a subscriber from another transport, and the publisher of the next
// hop, each as docs/bindings/ shows how to make.

declare const producer: import("kafkajs").Producer;
declare const subscriber: import("@posthorn/core").Subscriber;
declare const nextHop: import("@posthorn/core").Publisher;

export {};
