// Appended to every TypeScript snippet in README.md, docs/ and packages/*/README.md (see
// ../docs-snippets.test.ts): the reader's own application, which the examples call but do not
// show. A snippet that declares one of these names itself keeps its own. Anything from a Posthorn
// package or a client library is imported by the snippet, never declared here.

/** An event the reader wants to send. */
declare const event: import("@posthorn/core").CloudEvent;
/** Several events to send as one batch. */
declare const events: readonly import("@posthorn/core").CloudEvent[];
/** The reader's handler for one received event (extra arguments: whatever else it wants). */
declare function handle(
  event: import("@posthorn/core").CloudEvent,
  ...rest: unknown[]
): Promise<void>;
/** Fetches a bearer token for an outgoing request. */
declare function token(): Promise<string>;

export {};
