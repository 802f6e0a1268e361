/**
 * A cap on live clients shared by every database's listener: the top-level
 * `maxClients`, which bounds the sockets (and memory) of the whole process
 * however the clients spread over databases.
 *
 * ```ts ignore
 * const slots = new ClientSlots(10_000);
 * if (!slots.tryTake()) refuse(client);
 * try { await serve(client); } finally { slots.give(); }
 * ```
 *
 * @module
 */

/** Counts live clients against a limit that a reload may change. */
export class ClientSlots {
  #limit = 0;
  #taken = 0;

  /** @throws {RangeError} when `limit` is not a whole number of at least 1 */
  constructor(limit: number) {
    this.limit = limit;
  }

  /** The most slots taken at once. Lowering it closes nobody: new clients wait for slots to free. */
  get limit(): number {
    return this.#limit;
  }

  /** @throws {RangeError} when `limit` is not a whole number of at least 1 */
  set limit(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(
        `Invalid client limit "${limit}": expected a whole number of at least 1`,
      );
    }
    this.#limit = limit;
  }

  /** How many slots are taken. */
  get taken(): number {
    return this.#taken;
  }

  /** Takes a slot; `false`, taking nothing, when `limit` are taken already. */
  tryTake(): boolean {
    if (this.#taken >= this.#limit) return false;
    this.#taken++;
    return true;
  }

  /** Gives back a slot that {@linkcode ClientSlots.tryTake} took. */
  give(): void {
    if (this.#taken > 0) this.#taken--;
  }
}
