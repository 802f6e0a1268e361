/**
 * `--check --online`: whether a config works against the deployment it names,
 * checked the way the running tunnel checks, once, with one line per problem
 * found and an exit code a script can use.
 *
 * ```ts ignore
 * const report = await checkOnline(await loadConfig("tunnel.jsonc"));
 * for (const line of report.lines) console.log(line.text);
 * Deno.exit(report.code);
 * ```
 *
 * Two things run at once, every network step under the config's own
 * deadlines, and both under one overall deadline
 * ({@linkcode onlineCheckDeadlineMs}), so that a hung Sentinel or node cannot
 * hang the check:
 *
 * - each configured Sentinel is reached (TLS and `sentinelAuth` as
 *   configured) and asked `SENTINEL MASTERS`: a Sentinel that cannot be
 *   reached, or refuses, gets a line; the names they monitor are what an
 *   unknown name's line lists;
 * - each master name gets a real {@linkcode ControlPlane} on a real
 *   {@linkcode SentinelClient}, with a route attached per entry, for one
 *   check: the Sentinels' views, the agreement, `ROLE` on the master (with
 *   `masterAuth` and TLS), and with a read port the replica stage (listed by
 *   a Sentinel, their own `ROLE` connected to the confirmed master, listed by
 *   the master's `ROLE`, within `maxLagBytes`). What the plane and its routes
 *   say after that check is what each entry's line says. The rules are the
 *   tunnel's own, not a copy that could drift from them.
 *
 * What it does not do: it opens no local port (a port in use is found at
 * start), runs no hook, and asks no Sentinel discovered through the
 * configured ones (the tunnel asks those only after its first check). It
 * prints no password: the lines are made of addresses, names and the nodes'
 * own error messages.
 *
 * @module
 */
import { type Address, formatAddress, sameAddress } from "../shared/address.ts";
import { masterSettingsOf } from "../shared/master_settings.ts";
import { describeNetworkError } from "../shared/errors.ts";
import { untilAborted } from "../shared/io.ts";
import type { Problem, Targets } from "../shared/route.ts";
import type { DatabaseConfig, TunnelConfig } from "../shared/settings.ts";
import { plural } from "../shared/wording.ts";
import { ControlPlane, type PortLink } from "../control/control_plane.ts";
import type { SentinelView } from "../control/master_agreement.ts";
import type { ConfirmedMaster } from "../control/master_watcher.ts";
import { RedisCallError, RedisConnection } from "../control/redis_connection.ts";
import type { ReplicaStatus } from "../control/replica_view.ts";
import { RespErrorReply, type RespValue } from "../control/resp.ts";
import {
  SentinelClient,
  sentinelClientOptions,
  withSentinelAuthHint,
} from "../control/sentinel_client.ts";

/**
 * The exit codes of `--check --online`, one per class of failure. When
 * several apply, the lowest wins: the most basic problem, which may cause the
 * others (no Sentinel reachable leaves no master to confirm).
 */
export const ONLINE_CHECK_EXIT = {
  /** Every Sentinel answered, every name has a confirmed master, every read port a usable replica. */
  ok: 0,
  /** A configured Sentinel cannot be reached, does not answer in time, or refuses (AUTH, ACL). */
  sentinel: 3,
  /** No Sentinel that answered monitors a configured master name. */
  unknownName: 4,
  /** No confirmed master: the Sentinels agree on none, or it is unreachable, not master, or refuses masterAuth. */
  master: 5,
  /** A read port has no usable replica. */
  replicas: 6,
} as const;

/** One of {@linkcode ONLINE_CHECK_EXIT}'s codes. */
export type OnlineCheckCode = (typeof ONLINE_CHECK_EXIT)[keyof typeof ONLINE_CHECK_EXIT];

/** One line of the report, and the class of failure it reports (0 when none). */
export interface OnlineCheckLine {
  readonly text: string;
  readonly code: OnlineCheckCode;
}

/** What {@linkcode checkOnline} found. */
export interface OnlineCheckReport {
  /** A line per configured Sentinel that failed, then a line per database entry, in config order. */
  readonly lines: readonly OnlineCheckLine[];
  /** The exit code: the lowest non-zero code of the lines, or 0. */
  readonly code: OnlineCheckCode;
  /** The overall deadline the check ran under. */
  readonly deadlineMs: number;
}

/** Options for {@linkcode checkOnline}. */
export interface OnlineCheckOptions {
  /**
   * The overall deadline, in milliseconds: what is not known by then is
   * reported as not answered.
   * @default {onlineCheckDeadlineMs(config)}
   */
  deadlineMs?: number;
  /**
   * Ends the check early, as the deadline does.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * The overall deadline of {@linkcode checkOnline} for `config`: longer than
 * the longest path of one check whose peers all take as long as the config's
 * deadlines allow. A Sentinel call is a connect, an AUTH and a command, after
 * waiting its turn on the connection it shares with other calls (at most
 * twice a connect and a reply); a node's is a connect, an AUTH and ROLE. The
 * replicas' listing asks the Sentinels one after another while the master is
 * found and asked; then the replicas are asked; a second more is slack. 14.5 s
 * with the default deadlines and three Sentinels; a check that meets no hung
 * peer takes a few round trips.
 */
export function onlineCheckDeadlineMs(config: TunnelConfig): number {
  const { sentinelConnectMs: connect, sentinelReplyMs: reply } = config.timeouts;
  const sentinel = 2 * (connect + reply) + connect + 2 * reply;
  const node = Math.max(
    0,
    ...config.databases.map((d) => d.timeouts.masterConnectMs + 2 * d.timeouts.masterReplyMs),
  );
  const listing = Math.max(config.sentinels.length * sentinel, sentinel + node);
  return listing + node + 1000;
}

/**
 * Checks `config` against its deployment; see the module doc. Never rejects
 * for what the network does: every failure is a line.
 */
export async function checkOnline(
  config: TunnelConfig,
  options: OnlineCheckOptions = {},
): Promise<OnlineCheckReport> {
  const deadlineMs = options.deadlineMs ?? onlineCheckDeadlineMs(config);
  const deadline = options.signal
    ? AbortSignal.any([AbortSignal.timeout(deadlineMs), options.signal])
    : AbortSignal.timeout(deadlineMs);
  const late = `no answer within the check's deadline of ${deadlineMs} ms`;
  const clientOptions = sentinelClientOptions(config);
  const client = new SentinelClient(config.sentinels, clientOptions);
  const names = new Map<string, DatabaseConfig[]>();
  for (const database of config.databases) {
    names.set(database.name, [...(names.get(database.name) ?? []), database]);
  }
  let probes: SentinelProbe[];
  let checked: NameCheck[];
  try {
    [probes, checked] = await Promise.all([
      Promise.all(
        config.sentinels.map((address) => probeSentinel(address, config, deadline, late)),
      ),
      Promise.all(
        [...names.values()].map((entries) => checkName(entries, client, deadline, deadlineMs)),
      ),
    ]);
  } finally {
    // Closes every Sentinel connection, calls still under way included.
    client.update([], clientOptions);
  }

  const lines: OnlineCheckLine[] = [];
  for (const probe of probes) {
    if (!probe.ok) lines.push({ text: probe.detail, code: ONLINE_CHECK_EXIT.sentinel });
  }
  const known = knownNames(probes);
  const byEntry = new Map<DatabaseConfig, EntryCheck>();
  for (const name of checked) for (const entry of name.entries) byEntry.set(entry.entry, entry);
  for (const database of config.databases) {
    const entry = byEntry.get(database)!;
    lines.push(describeEntry(entry, labelOf(database, config.databases), known, late));
  }
  const failures = lines.map((line) => line.code).filter((code) => code !== 0);
  const code = failures.length === 0
    ? ONLINE_CHECK_EXIT.ok
    : (Math.min(...failures) as OnlineCheckCode);
  return { lines, code, deadlineMs };
}

/** What one configured Sentinel said to `SENTINEL MASTERS`. */
type SentinelProbe =
  | { readonly ok: true; readonly names: readonly string[] }
  | { readonly ok: false; readonly detail: string };

/** Reaches one Sentinel as the tunnel does (TLS, AUTH, its deadlines) and asks what it monitors. */
async function probeSentinel(
  address: Address,
  config: TunnelConfig,
  deadline: AbortSignal,
  late: string,
): Promise<SentinelProbe> {
  const where = formatAddress(address);
  const hasAuth = config.sentinelAuth !== undefined;
  const attempt = (async (): Promise<SentinelProbe> => {
    using connection = await RedisConnection.open(address, {
      connectTimeoutMs: config.timeouts.sentinelConnectMs,
      replyTimeoutMs: config.timeouts.sentinelReplyMs,
      auth: config.sentinelAuth,
      tls: config.sentinelTls,
      signal: deadline,
    });
    const reply = await connection.call(["SENTINEL", "MASTERS"], deadline);
    if (reply instanceof RespErrorReply) {
      const message = withSentinelAuthHint(reply.message.slice(0, 200), reply.code, hasAuth);
      return { ok: false, detail: `${where}: ${message}` };
    }
    const names = masterNames(reply);
    if (names === undefined) {
      return {
        ok: false,
        detail: `${where}: SENTINEL MASTERS answered ${
          JSON.stringify(reply).slice(0, 200)
        }: is it a Sentinel?`,
      };
    }
    return { ok: true, names };
  })().catch((error): SentinelProbe => {
    if (deadline.aborted) return { ok: false, detail: `${where}: ${late}` };
    if (!(error instanceof RedisCallError)) {
      return { ok: false, detail: `${where}: ${describeNetworkError(error)}` };
    }
    const code = error.kind === "error-reply" ? error.code : undefined;
    return { ok: false, detail: withSentinelAuthHint(error.message, code, hasAuth) };
  });
  // AUTH waits out its own reply deadline whatever the signal: the overall deadline does not.
  const expired = untilAborted(deadline).then((): SentinelProbe => ({
    ok: false,
    detail: `${where}: ${late}`,
  }));
  return await Promise.race([attempt, expired]);
}

/** The `name` of every master in a `SENTINEL MASTERS` reply, or `undefined` when it is not one. */
function masterNames(reply: RespValue): string[] | undefined {
  if (!Array.isArray(reply)) return undefined;
  const names: string[] = [];
  for (const entry of reply) {
    if (!Array.isArray(entry)) return undefined;
    for (let i = 0; i + 1 < entry.length; i += 2) {
      const value = entry[i + 1];
      if (entry[i] === "name" && typeof value === "string") names.push(value);
    }
  }
  return names;
}

/** The names the Sentinels that answered monitor, and how many answered. */
interface KnownNames {
  readonly answered: number;
  readonly names: ReadonlySet<string>;
}

function knownNames(probes: readonly SentinelProbe[]): KnownNames {
  const names = new Set<string>();
  let answered = 0;
  for (const probe of probes) {
    if (!probe.ok) continue;
    answered++;
    for (const name of probe.names) names.add(name);
  }
  return { answered, names };
}

/** What one entry's route said after the check. */
interface EntryCheck {
  readonly entry: DatabaseConfig;
  /** Whether the check (and its replica stage) ended before the deadline. */
  readonly resolved: boolean;
  readonly master: ConfirmedMaster | undefined;
  readonly masterProblem: Problem | undefined;
  readonly views: readonly SentinelView[];
  readonly targets: Targets | undefined;
  readonly problem: Problem | undefined;
  readonly replicas: readonly ReplicaStatus[];
  /** The plane's run failed unexpectedly: a bug, reported as such. */
  readonly failure: string | undefined;
}

/** One master name's check. */
interface NameCheck {
  readonly entries: readonly EntryCheck[];
}

/** Cuts nothing: the check tunnels no client. */
const NO_CLIENTS = { closeTo: () => 0, closeAllExcept: () => 0 };

/**
 * Runs one check of a real control plane for the name of `entries`, with a
 * route per entry, and reads what the plane and the routes say after it.
 */
async function checkName(
  entries: readonly DatabaseConfig[],
  client: SentinelClient,
  deadline: AbortSignal,
  deadlineMs: number,
): Promise<NameCheck> {
  const plane = new ControlPlane(masterSettingsOf(entries[0]!), { sentinels: client });
  const routes = entries.map((entry) => {
    const link: PortLink = {
      label: `port ${entry.port}`,
      settings: () => entry,
      toMaster: NO_CLIENTS,
      ...(entry.role === "replica" ? { toReplicas: NO_CLIENTS } : {}),
    };
    return { entry, route: plane.attach(link) };
  });
  const stop = new AbortController();
  const signal = AbortSignal.any([deadline, stop.signal]);
  let failure: string | undefined;
  // The first check starts at once: the resolution waited for is that check, and its replica stage.
  const resolution = plane.nextResolution(deadlineMs, deadline).then(() => true);
  const running = plane.run(signal).then(
    () => false,
    (error) => {
      failure = error instanceof Error ? error.message : String(error);
      return false;
    },
  );
  const resolved = await Promise.race([resolution, running]) && !deadline.aborted;
  const checked = routes.map(({ entry, route }): EntryCheck => ({
    entry,
    resolved,
    master: plane.master,
    masterProblem: plane.problem,
    views: plane.views,
    targets: route.targets,
    problem: route.problem,
    replicas: route.replicas,
    failure,
  }));
  for (const { route } of routes) route[Symbol.dispose]();
  stop.abort();
  // Its calls end with the signal; one still in AUTH ends by its own deadline, not waited for here.
  await Promise.race([running, untilAborted(deadline)]);
  return { entries: checked };
}

/** How a line names an entry: `mymaster (port 6380)`, with the address when two entries share a port. */
function labelOf(database: DatabaseConfig, all: readonly DatabaseConfig[]): string {
  const shared = all.filter((d) => d.port === database.port).length > 1;
  const where = shared
    ? formatAddress({ hostname: database.bind, port: database.port })
    : `port ${database.port}`;
  return `${database.name} (${where}${database.role === "replica" ? ", replicas" : ""})`;
}

/** One entry's line. */
function describeEntry(
  check: EntryCheck,
  label: string,
  known: KnownNames,
  late: string,
): OnlineCheckLine {
  const { entry, master } = check;
  if (check.failure !== undefined) {
    return {
      text: `${label}: the check failed unexpectedly: ${check.failure}`,
      code: ONLINE_CHECK_EXIT.master,
    };
  }
  if (!master) {
    const unknown = check.masterProblem?.kind === "unknown" ||
      (known.answered > 0 && !known.names.has(entry.name));
    if (unknown) {
      const names = [...known.names];
      return {
        text: `${label}: no Sentinel knows master ${JSON.stringify(entry.name)}; ${
          names.length === 0
            ? "the Sentinels know no master"
            : `the Sentinels know: ${names.join(", ")}`
        }`,
        code: ONLINE_CHECK_EXIT.unknownName,
      };
    }
    const why = check.masterProblem?.detail ?? (check.resolved ? "still resolving" : late);
    return {
      text: `${label}: no confirmed master${
        entry.role === "replica" ? " to check the replicas against" : ""
      }: ${why}`,
      code: ONLINE_CHECK_EXIT.master,
    };
  }
  const where = formatAddress(master.address);
  const how = `confirmed by ROLE, ${namedBy(master, check.views)}`;
  if (entry.role === "master") {
    return { text: `${label}: master ${where}, ${how}`, code: ONLINE_CHECK_EXIT.ok };
  }
  return describeReadPort(check, label, master, how, late);
}

/** A read port's line, its master confirmed. */
function describeReadPort(
  check: EntryCheck,
  label: string,
  master: ConfirmedMaster,
  how: string,
  late: string,
): OnlineCheckLine {
  const { entry } = check;
  const where = formatAddress(master.address);
  // The route's targets are the port's usable replicas, or the master by whenNoReplica.
  const usable = check.targets?.kind === "replica" ? check.targets.addresses : [];
  const statusOf = (address: Address) =>
    check.replicas.find((status) => sameAddress(status.address, address));
  const others = check.replicas.filter((status) =>
    !usable.some((address) => sameAddress(address, status.address))
  ).map((status) => `${formatAddress(status.address)}: ${status.reason ?? "not checked yet"}`);
  if (usable.length > 0) {
    const listed = usable.map((address) => {
      const lag = statusOf(address)?.lagBytes;
      return `${formatAddress(address)}${
        lag === undefined ? "" : ` (${plural(lag, "byte")} behind)`
      }`;
    });
    return {
      text:
        `${label}: ${usable.length} of ${check.replicas.length} replicas usable (maxLagBytes ${entry.maxLagBytes}): ${
          listed.join(", ")
        }${others.length > 0 ? `; not ${others.join("; not ")}` : ""}; master ${where}, ${how}`,
      code: ONLINE_CHECK_EXIT.ok,
    };
  }
  const why = check.problem?.detail ??
    (others.length > 0 ? others.map((o) => `replica ${o}`).join("; ") : "no replica checked");
  const fallback = entry.whenNoReplica === "master"
    ? `; its clients go to the master (whenNoReplica "master")`
    : `; its clients are refused (whenNoReplica "reject")`;
  return {
    text: `${label}: no usable replica of master ${where}: ${why}${
      check.resolved ? "" : ` (${late})`
    }${fallback}`,
    code: ONLINE_CHECK_EXIT.replicas,
  };
}

/** `named by 3 of 3 Sentinels at config-epoch 4`, and what those that did not name it said. */
function namedBy(master: ConfirmedMaster, views: readonly SentinelView[]): string {
  const naming = (view: SentinelView) =>
    view.answer.kind === "master" && sameAddress(view.answer.address, master.address) &&
    (master.epoch === undefined || view.answer.epoch === master.epoch);
  const count = views.filter(naming).length;
  const epoch = master.epoch === undefined ? "" : ` at config-epoch ${master.epoch}`;
  const dissent = views.filter((view) => !naming(view)).map((view) => {
    const { answer } = view;
    const said = answer.kind === "master"
      ? `names ${formatAddress(answer.address)} at config-epoch ${answer.epoch}`
      : answer.detail;
    return `${formatAddress(view.sentinel)}: ${said}`;
  });
  return `named by ${count} of ${views.length} Sentinels${epoch}${
    dissent.length > 0 ? ` (not by ${dissent.join("; ")})` : ""
  }`;
}
