/**
 * A master whose every connect times out: a silent link, not a dead process
 * (which refuses). Its tunnels would hang until TCP gives up (about 15
 * minutes of retransmissions for one with a command in flight, which
 * keepalive does not probe), so once it has stayed silent for
 * {@linkcode silentCutMs} they are cut. This keeps the time; the master
 * watcher cuts.
 *
 * @module
 */
import { type Address, sameAddress } from "../shared/address.ts";
import type { RoleCheck } from "./role_probe.ts";

/** How long a master stays silent before its tunnels are cut: three polls, and at least 3 s. */
export function silentCutMs(pollIntervalMs: number): number {
  return Math.max(3 * pollIntervalMs, 3000);
}

/** The silence of the last node asked as master; see the module doc. */
export class MasterSilence {
  #silence: { address: Address; since: number; cut: boolean } | undefined;

  /**
   * The node that went silent and whose tunnels are not cut yet: it is asked
   * again while nothing names a master, to cut, never to confirm.
   */
  get uncut(): Address | undefined {
    const silence = this.#silence;
    return silence && !silence.cut ? silence.address : undefined;
  }

  /**
   * A ROLE check of `address` ended with `role`. Returns how long it has been
   * silent (ms) when its tunnels are to be cut now: once per silence.
   */
  observe(address: Address, role: RoleCheck, pollIntervalMs: number): number | undefined {
    if (!(role.kind === "unreachable" && role.silent)) {
      this.#silence = undefined;
      return undefined;
    }
    const now = performance.now();
    const silence = this.#silence;
    if (!silence || !sameAddress(silence.address, address)) {
      this.#silence = { address, since: now, cut: false };
      return undefined;
    }
    if (silence.cut || now - silence.since < silentCutMs(pollIntervalMs)) return undefined;
    silence.cut = true;
    return now - silence.since;
  }
}
