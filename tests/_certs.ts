/**
 * Test utility: throwaway X.509 certificates for TLS tests, made with the
 * `openssl` command (OpenSSL 3.0 or later).
 *
 * ```ts
 * await using certs = await temporaryCertificates();
 * await using deployment = await startDeployment({ tls: deploymentTls(certs) });
 * const tls = { caFile: certs.caFile, ...certs.client };
 * ```
 *
 * Every certificate is X.509 v3 (Deno rejects v1) with an EC P-256 key (Redis,
 * redis-cli and Deno all accept it, and it is fast to make), valid for ten
 * years unless said otherwise. Leaf certificates carry `basicConstraints
 * CA:FALSE` and a subjectAltName; server certificates allow client
 * authentication too, because Redis nodes and Sentinels present theirs to the
 * peers they connect to. Keys are PKCS#8 PEM without a passphrase.
 *
 * The files written to `dir`:
 *
 * | file | what it is |
 * | --- | --- |
 * | `ca.crt`, `ca.key` | "Test CA": the CA the deployments and the tunnel trust |
 * | `server.crt`, `server.key` | signed by the CA; DNS:localhost, IP:127.0.0.1, DNS:redis.test |
 * | `client.crt`, `client.key` | signed by the CA; client authentication only (`tls-auth-clients`) |
 * | `other-name.crt`, `other-name.key` | signed by the CA; valid for DNS:other.test only (name mismatch) |
 * | `localhost.crt`, `localhost.key` | signed by the CA; valid for DNS:localhost only (no IP: a check of 127.0.0.1 fails) |
 * | `expired.crt`, `expired.key` | signed by the CA, same names as `server.crt`; valid 2020-01-01 to 2020-01-02 only |
 * | `other-ca.crt`, `other-ca.key` | "Other CA": signed nothing here; trusting it alone is the wrong CA |
 * | `rotation-ca.crt`, `rotation-ca.key` | "Rotation CA": the CA that certificates are rotated to |
 * | `rotation-server.crt`, `rotation-server.key` | signed by the rotation CA; same names as `server.crt` |
 * | `rotation-client.crt`, `rotation-client.key` | signed by the rotation CA; client authentication only |
 * | `both-ca.crt` | `ca.crt` then `rotation-ca.crt`: what a node trusts during a rotation |
 *
 * Plus the scratch files OpenSSL needs (`openssl-*.cnf`, `ca-db/`, `expired.csr`).
 *
 * Needs `--allow-run=openssl --allow-read --allow-write`.
 *
 * @module
 */
import type { DeploymentTls } from "./_deployment.ts";

/** A certificate and its key, as paths. */
export interface CertificatePair {
  /** PEM certificate. */
  certFile: string;
  /** PEM PKCS#8 key of `certFile`. */
  keyFile: string;
}

/** The paths {@linkcode makeCertificates} wrote. See the module doc for what each one is. */
export interface TestCertificates {
  /** The directory holding every file. */
  dir: string;
  /** "Test CA", which signed `server`, `client`, `otherName`, `localhostOnly` and `expired`. */
  caFile: string;
  /** "Other CA", which signed nothing here. */
  otherCaFile: string;
  /** "Rotation CA", which signed `rotationServer` and `rotationClient`. */
  rotationCaFile: string;
  /** `caFile` and `rotationCaFile` in one bundle. */
  bothCaFile: string;
  /** Server (and peer client) certificate for localhost, 127.0.0.1 and redis.test. */
  server: CertificatePair;
  /** Client certificate. */
  client: CertificatePair;
  /** Server certificate valid for other.test only. */
  otherName: CertificatePair;
  /** Server certificate valid for the name localhost only. */
  localhostOnly: CertificatePair;
  /** Server certificate for the same names as `server`, expired since 2020-01-02. */
  expired: CertificatePair;
  /** `server`'s names, signed by the rotation CA. */
  rotationServer: CertificatePair;
  /** Client certificate signed by the rotation CA. */
  rotationClient: CertificatePair;
}

const SERVER_NAMES = "DNS:localhost,IP:127.0.0.1,DNS:redis.test";
const DAYS = "3650";

/** What `openssl req` needs of a config file when every value is on the command line. */
const REQ_CONFIG = "[req]\ndistinguished_name = dn\n[dn]\n";

/**
 * `openssl ca` only: `openssl x509 -req` and `openssl req -x509` of OpenSSL
 * 3.0 cannot date a certificate in the past.
 */
const CA_CONFIG = `[ca]
default_ca = test
[test]
database = ca-db/index.txt
new_certs_dir = ca-db
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[expired]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = ${SERVER_NAMES}
`;

/** Writes the certificates described in the module doc into `dir`, which must exist. */
export async function makeCertificates(dir: string): Promise<TestCertificates> {
  const path = (name: string) => `${dir}/${name}`;
  const pair = (name: string): CertificatePair => ({
    certFile: path(`${name}.crt`),
    keyFile: path(`${name}.key`),
  });
  await Deno.writeTextFile(path("openssl-req.cnf"), REQ_CONFIG);
  await Deno.writeTextFile(path("openssl-ca.cnf"), CA_CONFIG);
  await Deno.mkdir(path("ca-db"), { recursive: true });
  await Deno.writeTextFile(path("ca-db/index.txt"), "");

  await Promise.all([
    makeCa(dir, "ca", "Test CA"),
    makeCa(dir, "other-ca", "Other CA"),
    makeCa(dir, "rotation-ca", "Rotation CA"),
  ]);
  await Promise.all([
    makeLeaf(dir, "server", "ca", "localhost", serverExtensions(SERVER_NAMES)),
    makeLeaf(dir, "client", "ca", "sentinel-tunnel", clientExtensions()),
    makeLeaf(dir, "other-name", "ca", "other.test", serverExtensions("DNS:other.test")),
    makeLeaf(dir, "localhost", "ca", "localhost", serverExtensions("DNS:localhost")),
    makeLeaf(dir, "rotation-server", "rotation-ca", "localhost", serverExtensions(SERVER_NAMES)),
    makeLeaf(dir, "rotation-client", "rotation-ca", "sentinel-tunnel", clientExtensions()),
    makeExpired(dir),
  ]);
  const bundle = await Promise.all(
    ["ca.crt", "rotation-ca.crt"].map((name) => Deno.readTextFile(path(name))),
  );
  await Deno.writeTextFile(path("both-ca.crt"), bundle.join(""));

  return {
    dir,
    caFile: path("ca.crt"),
    otherCaFile: path("other-ca.crt"),
    rotationCaFile: path("rotation-ca.crt"),
    bothCaFile: path("both-ca.crt"),
    server: pair("server"),
    client: pair("client"),
    otherName: pair("other-name"),
    localhostOnly: pair("localhost"),
    expired: pair("expired"),
    rotationServer: pair("rotation-server"),
    rotationClient: pair("rotation-client"),
  };
}

/**
 * {@linkcode makeCertificates} in a fresh temp directory, which disposing
 * removes.
 */
export async function temporaryCertificates(): Promise<TestCertificates & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "st-certs-" });
  const remove = async () => {
    try {
      await Deno.remove(dir, { recursive: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  };
  try {
    return { ...await makeCertificates(dir), [Symbol.asyncDispose]: remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/**
 * The files of a TLS deployment whose processes serve `server` and trust
 * `caFile` (`bothCaFile` for a rotation), and whose `redis-cli` presents `client`.
 */
export function deploymentTls(
  certs: TestCertificates,
  caFile: string = certs.caFile,
): DeploymentTls {
  return {
    caFile,
    ...certs.server,
    clientCertFile: certs.client.certFile,
    clientKeyFile: certs.client.keyFile,
  };
}

function newKey(): string[] {
  return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc"];
}

function serverExtensions(names: string): string[] {
  return [
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature",
    "extendedKeyUsage=serverAuth,clientAuth",
    `subjectAltName=${names}`,
  ];
}

function clientExtensions(): string[] {
  return [
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature",
    "extendedKeyUsage=clientAuth",
    "subjectAltName=DNS:sentinel-tunnel.test",
  ];
}

/** A self-signed CA certificate `<name>.crt` and its key. */
async function makeCa(dir: string, name: string, commonName: string): Promise<void> {
  await openssl(dir, [
    "req",
    "-config",
    "openssl-req.cnf",
    "-x509",
    "-new",
    ...newKey(),
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-subj",
    `/CN=${commonName}`,
    "-days",
    DAYS,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

/** A certificate `<name>.crt` signed by `<ca>.crt`, and its key. */
async function makeLeaf(
  dir: string,
  name: string,
  ca: string,
  commonName: string,
  extensions: readonly string[],
): Promise<void> {
  await openssl(dir, [
    "req",
    "-config",
    "openssl-req.cnf",
    "-x509",
    "-new",
    ...newKey(),
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-subj",
    `/CN=${commonName}`,
    "-days",
    DAYS,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    ...extensions.flatMap((extension) => ["-addext", extension]),
  ]);
}

/** `expired.crt`, signed by the CA with validity dates in the past, through `openssl ca`. */
async function makeExpired(dir: string): Promise<void> {
  await openssl(dir, [
    "req",
    "-config",
    "openssl-req.cnf",
    "-new",
    ...newKey(),
    "-keyout",
    "expired.key",
    "-out",
    "expired.csr",
    "-subj",
    "/CN=localhost",
  ]);
  await openssl(dir, [
    "ca",
    "-batch",
    "-notext",
    "-config",
    "openssl-ca.cnf",
    "-cert",
    "ca.crt",
    "-keyfile",
    "ca.key",
    "-in",
    "expired.csr",
    "-out",
    "expired.crt",
    "-extensions",
    "expired",
    "-startdate",
    "20200101000000Z",
    "-enddate",
    "20200102000000Z",
  ]);
}

/** Runs `openssl` in `dir`; throws with its output when it fails. */
async function openssl(dir: string, args: readonly string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", {
      args: [...args],
      cwd: dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error(
      "Cannot make test certificates: openssl is not installed (Debian/Ubuntu: apt-get install openssl)",
      { cause: error },
    );
  }
  if (output.success) return;
  const decoder = new TextDecoder();
  throw new Error(
    `Cannot run "openssl ${args.join(" ")}" in "${dir}": exit code ${output.code}\n${
      decoder.decode(output.stderr).trim()
    }${decoder.decode(output.stdout).trim()}`,
  );
}
