/**
 * {@linkcode ConfigReloadQueue}: one reload at a time, and SIGHUPs that arrive
 * during one folded into a single reload after it.
 *
 * @module
 */

/** Options for {@linkcode ConfigReloadQueue}. */
export interface ConfigReloadQueueOptions {
  /** Told of an error that a reload threw; the queue goes on. @default {console.error} */
  onError?: (error: unknown) => void;
}

/**
 * Runs reloads one at a time. A request while none runs starts one; requests
 * while one runs are folded into one more reload after it, which reads the
 * config as it is by then. So a burst of signals costs at most two reloads, no
 * two reloads ever overlap, and a reload that throws does not stop later ones.
 * A reload must end by itself (its reading has a deadline): the queue does not
 * cut it short, since a reload half applied by two at once would be worse.
 */
export class ConfigReloadQueue {
  #reload: () => Promise<void>;
  #onError: (error: unknown) => void;
  #running: Promise<void> | undefined;
  #again = false;

  constructor(reload: () => Promise<void>, options: ConfigReloadQueueOptions = {}) {
    this.#reload = reload;
    this.#onError = options.onError ?? ((error) => console.error(error));
  }

  /** Asks for a reload: now if none runs, else once after the running one. */
  request(): void {
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    this.#running = this.#drain();
  }

  /** Settles when no reload runs or is asked for. */
  get idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  async #drain(): Promise<void> {
    try {
      do {
        this.#again = false;
        try {
          await this.#reload();
        } catch (error) {
          this.#onError(error);
        }
      } while (this.#again);
    } finally {
      this.#running = undefined;
    }
  }
}
