/**
 * Host and port pairs as written in configs: `host:port`, `1.2.3.4:26379` or `[::1]:26379`.
 *
 * @module
 */

/** A TCP endpoint. IPv6 hosts are kept without brackets. */
export interface Address {
  readonly hostname: string;
  readonly port: number;
}

const HOSTNAME =
  /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** Parses a TCP port from a number or a string of digits. */
export function parsePort(value: string | number): number {
  const port = typeof value === "number" ? value : /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(
      `Invalid port ${JSON.stringify(value)}: a port is a whole number from 1 to 65535`,
    );
  }
  return port;
}

/** Checks a host name, an IPv4 address or an IPv6 address (without brackets). */
export function isValidHost(host: string): boolean {
  if (!host.includes(":")) return HOSTNAME.test(host);
  // The URL parser knows IPv6 syntax; a zone such as %eth0 is checked apart.
  const [ip, zone] = host.split("%", 2);
  if (zone !== undefined && !/^[A-Za-z0-9_.-]+$/.test(zone)) return false;
  try {
    return new URL(`http://[${ip}]/`).hostname !== "";
  } catch {
    return false;
  }
}

/**
 * Parses `host:port`, where an IPv6 host is written in brackets: `[::1]:26379`.
 *
 * @throws {TypeError} when the text is not of that form
 * @throws {RangeError} when the port is out of range
 */
export function parseAddress(text: string): Address {
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(text);
  let hostname: string;
  let port: string;
  if (bracketed) {
    hostname = bracketed[1]!;
    port = bracketed[2]!;
  } else {
    const colon = text.lastIndexOf(":");
    if (colon === -1) {
      throw new TypeError(
        `Invalid address ${
          JSON.stringify(text)
        }: expected "host:port", such as "127.0.0.1:26379" or "[::1]:26379"`,
      );
    }
    hostname = text.slice(0, colon);
    port = text.slice(colon + 1);
    if (hostname.includes(":")) {
      throw new TypeError(
        `Invalid address ${
          JSON.stringify(text)
        }: write an IPv6 address in brackets, such as "[::1]:26379"`,
      );
    }
  }
  if (!isValidHost(hostname)) {
    throw new TypeError(
      `Invalid address ${JSON.stringify(text)}: ${
        JSON.stringify(hostname)
      } is not a host name or IP address`,
    );
  }
  return { hostname, port: parsePort(port) };
}

/** Formats an address as `host:port`, with IPv6 hosts in brackets. */
export function formatAddress(address: Address): string {
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}

/** Whether two addresses name the same endpoint as written. */
export function sameAddress(a: Address, b: Address): boolean {
  return a.port === b.port &&
    a.hostname.toLowerCase() === b.hostname.toLowerCase();
}

/**
 * The one key for an address in maps and sets: `host:port` with the host in
 * lower case, so that two keys are equal exactly when {@linkcode sameAddress}
 * holds.
 */
export function addressKey(address: Address): string {
  return formatAddress(address).toLowerCase();
}

/**
 * Parses where the admin API listens: `host:port`, `[::1]:port`, `:port` or a
 * bare port. Without a host it listens on 127.0.0.1.
 *
 * @throws {TypeError | RangeError} when the text is none of those
 */
export function parseAdminAddress(value: string | number): Address {
  if (typeof value === "number" || /^\d+$/.test(value)) {
    return { hostname: "127.0.0.1", port: parsePort(value) };
  }
  if (value.startsWith(":")) return { hostname: "127.0.0.1", port: parsePort(value.slice(1)) };
  return parseAddress(value);
}
