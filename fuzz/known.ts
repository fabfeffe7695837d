/**
 * Findings already recorded in fuzz/findings.md, each by the id it has there. A run still shows
 * them (as KNOWN) but does not fail on them, so a new defect is not lost behind an old one;
 * `--include-known` fails on them too. Remove an entry once its package is fixed: a run that no
 * longer sees it says so.
 */
export interface KnownFinding {
  /** The id in fuzz/findings.md, e.g. `F1`. */
  readonly id: string;
  /** The targets it shows up in (most defects live in core and show up in several). */
  readonly targets: readonly string[] | "any";
  /** The finding's kind. */
  readonly kind: string;
  /** What its message matches. */
  readonly message: RegExp;
}

/**
 * Every recorded finding the harness still sees. Empty: F1 to F5 were fixed while the harness was
 * written (fuzz/findings.md says where). An entry looks like
 * `{ id: "F6", targets: ["http"], kind: "round-trip", message: /datacontenttype holds/ }`.
 */
export const KNOWN: readonly KnownFinding[] = [];

/**
 * The id of the recorded finding this one is, if any.
 *
 * @param target - the target it was found in
 * @param kind - its kind
 * @param message - its message
 */
export function knownAs(target: string, kind: string, message: string): string | undefined {
  for (const k of KNOWN) {
    if (k.kind !== kind || !k.message.test(message)) continue;
    if (k.targets === "any" || k.targets.includes(target)) return k.id;
  }
  return undefined;
}
