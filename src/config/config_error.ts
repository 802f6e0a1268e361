/**
 * {@linkcode ConfigError}: a configuration that cannot be used, one line per problem.
 *
 * @module
 */

/**
 * The most problems one error lists; the rest are counted on one more line. A config with
 * thousands of mistakes is usually one mistake repeated, and a wall of lines hides the first.
 */
export const MAX_REPORTED_PROBLEMS = 10;

/**
 * The configuration cannot be used. Each problem is one line that starts with
 * the source (`file:` or `file:line:col:`); the message joins them. At most
 * {@linkcode MAX_REPORTED_PROBLEMS} are listed, then a line counts the rest.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
  /** The lines of the message: the first problems, then how many more there are. */
  readonly problems: readonly string[];
  /** How many problems there were in all, listed or not. */
  readonly count: number;
  constructor(
    source: string,
    problems: readonly string[],
    options?: ErrorOptions,
  ) {
    const prefix = (p: string) => /^\d+:\d+: /.test(p) ? `${source}:${p}` : `${source}: ${p}`;
    const lines = problems.slice(0, MAX_REPORTED_PROBLEMS).map(prefix);
    const rest = problems.length - lines.length;
    if (rest > 0) {
      lines.push(
        `${source}: and ${rest} more problem${
          rest === 1 ? "" : "s"
        } not shown: fix the ones above, then check again with --check`,
      );
    }
    super(lines.join("\n"), options);
    this.problems = lines;
    this.count = problems.length;
  }
}
