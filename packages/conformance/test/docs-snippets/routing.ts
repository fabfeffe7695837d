// Context for the example in docs/routing.md (marked `<!-- snippet: context routing -->`): a
// subscriber from any binding, and the reader's business logic.

declare const subscriber: import("@posthorn/core").Subscriber;
declare function ship(orderId: number): Promise<void>;
declare function canHandle(event: import("@posthorn/core").CloudEvent): boolean;

export {};
