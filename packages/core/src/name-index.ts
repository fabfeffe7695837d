// Past this many names, positions are kept in a map; below it a scan of the list is faster.
const SCAN_LIMIT = 16;

/**
 * Names in the order they were added, with the position of each found by a short scan while
 * there are few and through a map past 16: a header block of hundreds of thousands of names (a
 * hostile one fits in a message) is still read in linear time. For bindings whose headers may
 * repeat a name, to group the values of one name.
 */
export class NameIndex {
  /** The names, in the order they were added. */
  readonly names: string[] = [];
  #byName: Map<string, number> | undefined;

  /**
   * The position of `name` in {@link NameIndex.names}, or -1.
   *
   * @param name - the name, compared exactly
   */
  indexOf(name: string): number {
    return this.#byName === undefined ? this.names.indexOf(name) : (this.#byName.get(name) ?? -1);
  }

  /**
   * Adds a name that {@link NameIndex.indexOf} does not find.
   *
   * @param name - the name
   * @returns its position
   */
  add(name: string): number {
    const at = this.names.push(name) - 1;
    if (this.#byName !== undefined) this.#byName.set(name, at);
    else if (at >= SCAN_LIMIT) this.#byName = new Map(this.names.map((n, i) => [n, i]));
    return at;
  }
}
