/**
 * Every live tunnel of one database and the master it goes to, so that a
 * master change can cut off every client of the old master at once.
 *
 * @module
 */
import { type Address, addressKey } from "../shared/address.ts";

/** What the registry needs of a tunnel. */
export interface RegisteredTunnel {
  readonly master: Address;
  /** Closes both sides; calling it again does nothing. */
  close(): void;
}

/** The live tunnels of one database, grouped by master address. */
export class ConnectionRegistry<T extends RegisteredTunnel = RegisteredTunnel> {
  readonly #byMaster = new Map<string, Set<T>>();
  #size = 0;

  /** How many tunnels are live. */
  get size(): number {
    return this.#size;
  }

  /** How many live tunnels go to `address`. */
  countTo(address: Address): number {
    return this.#byMaster.get(keyOf(address))?.size ?? 0;
  }

  /** How many live tunnels go to each master, keyed by `host:port`. */
  countsByMaster(): Map<string, number> {
    return new Map([...this.#byMaster].map(([key, set]) => [key, set.size]));
  }

  add(tunnel: T): void {
    const key = keyOf(tunnel.master);
    let set = this.#byMaster.get(key);
    if (!set) this.#byMaster.set(key, set = new Set());
    if (!set.has(tunnel)) {
      set.add(tunnel);
      this.#size++;
    }
  }

  delete(tunnel: T): void {
    const key = keyOf(tunnel.master);
    const set = this.#byMaster.get(key);
    if (set?.delete(tunnel)) {
      this.#size--;
      if (set.size === 0) this.#byMaster.delete(key);
    }
  }

  /** Closes every tunnel to `master`. Returns how many were closed. */
  closeTo(master: Address): number {
    return this.#closeWhere((key) => key === keyOf(master));
  }

  /** Closes every tunnel that goes anywhere but `master`. Returns how many were closed. */
  closeAllExcept(master: Address): number {
    return this.#closeWhere((key) => key !== keyOf(master));
  }

  /** Closes every tunnel. Returns how many were closed. */
  closeAll(): number {
    return this.#closeWhere(() => true);
  }

  #closeWhere(matches: (key: string) => boolean): number {
    let closed = 0;
    for (const [key, set] of [...this.#byMaster]) {
      if (!matches(key)) continue;
      this.#byMaster.delete(key);
      this.#size -= set.size;
      for (const tunnel of set) {
        try {
          tunnel.close();
        } catch {
          // One tunnel that fails to close must not keep the others open.
        }
        closed++;
      }
    }
    return closed;
  }
}

/** Host names compare without case, as `sameAddress()` does. */
const keys = new WeakMap<Address, string>();

/** The registry key of a master; every tunnel of one confirmed master shares its address object. */
function keyOf(master: Address): string {
  let key = keys.get(master);
  if (key === undefined) {
    key = addressKey(master);
    keys.set(master, key);
  }
  return key;
}
