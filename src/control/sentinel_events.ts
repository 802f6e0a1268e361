/**
 * Sentinel's pub/sub events, parsed strictly. A message that does not parse
 * is dropped with a reason: a peer's word moves nothing until it is checked,
 * and a malformed one is not even a trigger.
 *
 * Instance details, as Sentinel publishes them:
 * `master <name> <ip> <port>`, or
 * `<slave|sentinel> <ip:port> <ip> <port> @ <master-name> <master-ip> <master-port>`.
 *
 * @module
 */
import { type Address, isValidHost } from "../shared/address.ts";

/** Events that mean a replica is being promoted: writes to the old master may be discarded from now on. */
export const PROMOTION_EVENTS = [
  "+selected-slave",
  "+failover-state-send-slaveof-noone",
  "+failover-state-wait-promotion",
  "+promoted-slave",
  "+failover-state-reconf-slaves",
] as const;

/** Events that end a failover without a switch, or announce the end of one. */
export const FAILOVER_END_EVENTS = [
  "-failover-abort-not-elected",
  "-failover-abort-no-good-slave",
  "-failover-abort-slave-timeout",
  "+failover-end-for-timeout",
  "+failover-end",
] as const;

/** Events that say an instance went down or came back, was found, or was made a replica. */
export const INSTANCE_EVENTS = {
  "+sdown": "down",
  "-sdown": "up",
  "+slave": "added",
  "+convert-to-slave": "converted",
} as const;

/** Every channel the tunnel subscribes to on each Sentinel. */
export const SENTINEL_CHANNELS: readonly string[] = [
  "+switch-master",
  ...PROMOTION_EVENTS,
  ...FAILOVER_END_EVENTS,
  "+sentinel",
  ...Object.keys(INSTANCE_EVENTS),
];

/** A parsed event. `master` is the Sentinel master name it concerns. */
export type SentinelEvent =
  /** Sentinel switched the master of `master` from `from` to `to`. */
  | {
    readonly kind: "switch-master";
    readonly master: string;
    readonly from: Address;
    readonly to: Address;
  }
  /** A failover of the master at `masterAddress` is promoting a replica. */
  | {
    readonly kind: "promotion";
    readonly channel: string;
    readonly master: string;
    readonly masterAddress: Address;
    /** The replica being promoted, when the event names one (`+selected-slave`, `+promoted-slave`). */
    readonly replica: Address | undefined;
  }
  /** A failover of the master at `masterAddress` ended or was aborted. */
  | {
    readonly kind: "failover-end";
    readonly channel: string;
    readonly master: string;
    readonly masterAddress: Address;
  }
  /** A Sentinel added another Sentinel for `master`. */
  | { readonly kind: "sentinel-added"; readonly master: string }
  /** An instance of `master`'s deployment went down, came back, was found, or was made a replica. */
  | {
    readonly kind: "instance";
    readonly change: (typeof INSTANCE_EVENTS)[keyof typeof INSTANCE_EVENTS];
    readonly instanceType: "master" | "slave" | "sentinel";
    readonly instance: Address;
    readonly master: string;
  };

/** The outcome of {@linkcode parseSentinelEvent}. */
export type ParsedEvent =
  | { readonly ok: true; readonly event: SentinelEvent }
  | { readonly ok: false; readonly reason: string };

/** The longest payload worth parsing: real ones are under 200 bytes. */
const MAX_PAYLOAD = 1024;

/** A Sentinel master name: what Sentinel itself accepts, printable and without spaces. */
const MASTER_NAME = /^[\x21-\x7e]{1,256}$/;

/** Parses a port strictly: digits only, 1 to 65535 (so not `-1`, `3e4` or `6379x`). */
export function parseStrictPort(text: string | undefined): number | undefined {
  if (text === undefined || !/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** Parses a host and a port as a Sentinel reports them, or returns `undefined`. */
export function parseReportedAddress(
  host: string | undefined,
  port: string | undefined,
): Address | undefined {
  if (host === undefined || host.length > 255 || !isValidHost(host)) return undefined;
  const portNumber = parseStrictPort(port);
  return portNumber === undefined ? undefined : { hostname: host, port: portNumber };
}

/** Parses one message from `channel`. */
export function parseSentinelEvent(channel: string, payload: string): ParsedEvent {
  if (payload.length > MAX_PAYLOAD) {
    return { ok: false, reason: `payload of ${payload.length} bytes is too long` };
  }
  const fields = payload.split(" ");
  if (channel === "+switch-master") {
    if (fields.length !== 5) {
      return { ok: false, reason: `expected 5 fields, got ${fields.length}` };
    }
    const [master, fromHost, fromPort, toHost, toPort] = fields;
    if (!MASTER_NAME.test(master!)) return { ok: false, reason: "invalid master name" };
    const from = parseReportedAddress(fromHost, fromPort);
    const to = parseReportedAddress(toHost, toPort);
    if (!from) return { ok: false, reason: "invalid old master address" };
    if (!to) return { ok: false, reason: "invalid new master address" };
    return { ok: true, event: { kind: "switch-master", master: master!, from, to } };
  }
  const details = parseInstanceDetails(fields);
  if (typeof details === "string") return { ok: false, reason: details };
  if ((PROMOTION_EVENTS as readonly string[]).includes(channel)) {
    return {
      ok: true,
      event: {
        kind: "promotion",
        channel,
        master: details.master,
        masterAddress: details.masterAddress,
        replica: details.type === "slave" ? details.instance : undefined,
      },
    };
  }
  if ((FAILOVER_END_EVENTS as readonly string[]).includes(channel)) {
    return {
      ok: true,
      event: {
        kind: "failover-end",
        channel,
        master: details.master,
        masterAddress: details.masterAddress,
      },
    };
  }
  if (channel === "+sentinel") {
    return { ok: true, event: { kind: "sentinel-added", master: details.master } };
  }
  if (Object.hasOwn(INSTANCE_EVENTS, channel)) {
    return {
      ok: true,
      event: {
        kind: "instance",
        change: INSTANCE_EVENTS[channel as keyof typeof INSTANCE_EVENTS],
        instanceType: details.type,
        instance: details.instance,
        master: details.master,
      },
    };
  }
  return { ok: false, reason: `unexpected channel ${JSON.stringify(channel)}` };
}

interface InstanceDetails {
  readonly type: "master" | "slave" | "sentinel";
  readonly instance: Address;
  readonly master: string;
  readonly masterAddress: Address;
}

function parseInstanceDetails(fields: string[]): InstanceDetails | string {
  const [type, name, host, port] = fields;
  if (type === "master") {
    // Some events append details, such as "+failover-end-for-timeout master x ip port"; extra fields are fine.
    if (fields.length < 4) return `expected at least 4 fields, got ${fields.length}`;
    if (!MASTER_NAME.test(name!)) return "invalid master name";
    const masterAddress = parseReportedAddress(host, port);
    return masterAddress
      ? { type, instance: masterAddress, master: name!, masterAddress }
      : "invalid master address";
  }
  if (type !== "slave" && type !== "sentinel") {
    return `unknown instance type ${JSON.stringify(type?.slice(0, 20))}`;
  }
  if (fields.length < 8 || fields[4] !== "@") {
    return `expected "<type> <name> <ip> <port> @ <master> <ip> <port>"`;
  }
  const instance = parseReportedAddress(host, port);
  if (!instance) return "invalid instance address";
  const master = fields[5]!;
  if (!MASTER_NAME.test(master)) return "invalid master name";
  const masterAddress = parseReportedAddress(fields[6], fields[7]);
  return masterAddress ? { type, instance, master, masterAddress } : "invalid master address";
}
