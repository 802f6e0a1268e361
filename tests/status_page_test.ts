/**
 * The status page and the JSON it reads: `statusReport()` and
 * `eventsReport()` on a tunnel made of plain objects, the admin routes and
 * their headers (a strict Content-Security-Policy), the page's text (nothing
 * from another origin, no inline script, no `innerHTML`), and then the page
 * in headless Chromium (Debian's `/usr/bin/chromium`, driven by
 * puppeteer-core): on a fake tunnel, that it escapes what it shows, keeps at
 * most the journal's capacity of events and fits a phone; and on a real
 * deployment, that a forced failover shows the new master and a new event
 * without a reload.
 *
 * Where Chromium is missing (setup installs it as root with apt), the browser
 * tests are ignored, saying why. `STATUS_PAGE_SCREENSHOT=docs/status-page.png`
 * writes a screenshot of the page during the failover.
 */
import assert from "node:assert/strict";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { startAdminServer } from "../src/ops/admin_server.ts";
import type { RunningTunnel } from "../src/ops/running.ts";
import {
  describeEvent,
  EVENTS_NOTE,
  type EventsReport,
  eventsReport,
  parseAfter,
  type StatusPlane,
  type StatusPort,
  type StatusReport,
  statusReport,
  type StatusSource,
} from "../src/ops/status.ts";
import {
  STATUS_PAGE_CSP,
  STATUS_PAGE_CSS,
  STATUS_PAGE_HTML,
  STATUS_PAGE_SCRIPT,
} from "../src/ops/status_page.ts";
import { EventJournal, JOURNAL_CAPACITY, type JournalEvent } from "../src/shared/journal.ts";
import type { KnownSentinel } from "../src/control/sentinel_client.ts";
import { freePort, startDeployment } from "./_deployment.ts";
import { connectClient, startTunnel } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

const CHROMIUM = "/usr/bin/chromium";
/** The flags this machine's closed network needs; puppeteer adds a new empty profile itself. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const DEADLINE_MS = 30_000;

function chromiumMissing(): string | undefined {
  try {
    Deno.statSync(CHROMIUM);
    return undefined;
  } catch {
    return `${CHROMIUM} is missing: make setup installs Debian's chromium as root with apt-get`;
  }
}

const noBrowser = chromiumMissing();
if (noBrowser) console.log(`status_page_test: browser tests skipped: ${noBrowser}`);

// ---------------------------------------------------------------------------
// A tunnel of plain objects: one name on a master port and a read port.

const T0 = Date.parse("2026-01-02T03:04:05.000Z");
const at = (ms: number) => new Date(T0 + ms).toISOString();
const addr = (port: number) => ({ hostname: "127.0.0.1", port });

function sentinel(port: number, origin: "configured" | "discovered", up: boolean): KnownSentinel {
  return {
    address: addr(port),
    origin,
    lastError: up ? null : "connection refused",
    lastReplyAt: up ? T0 + 500 : undefined,
    errors: up ? 0 : 3,
    failuresInRow: up ? 0 : 3,
    subscribed: up,
  };
}

interface FakeOptions {
  name?: string;
  journal?: EventJournal;
  master?: number;
}

function fakeTunnel(options: FakeOptions = {}): StatusSource & { planes: StatusPlane[] } {
  const name = options.name ?? "cache";
  const master = options.master ?? 6379;
  const sentinels = [
    sentinel(26379, "configured", true),
    sentinel(26380, "configured", false),
    sentinel(26381, "discovered", true),
  ];
  const plane: StatusPlane = {
    name,
    settings: {
      name,
      masterConnectMs: 1000,
      masterReplyMs: 1000,
      pollIntervalMs: 1000,
      fence: { afterMs: 30_000 },
      masterAuth: { password: "hunter2-secret", passwordSource: "config" },
    },
    master: {
      address: addr(master),
      confirmation: 2,
      confirmedAt: T0,
      via: "configured Sentinels 127.0.0.1:26379 (1 of 2) at config-epoch 4",
      epoch: 4,
    },
    problem: undefined,
    failover: undefined,
    fencedSince: undefined,
    views: [
      {
        sentinel: addr(26379),
        origin: "configured",
        answer: {
          kind: "master",
          address: addr(master),
          epoch: 4,
          flags: ["master"],
          failoverTimeoutMs: 10_000,
        },
      },
      {
        sentinel: addr(26380),
        origin: "configured",
        answer: { kind: "failed", detail: "connection refused" },
      },
    ],
    replicaHealth: [
      {
        address: addr(6380),
        reason: undefined,
        lagBytes: 120,
        checkedAgainst: addr(master),
        confirmation: 2,
        checkedAt: T0 + 900,
      },
      {
        address: addr(6381),
        reason: undefined,
        lagBytes: 5_000_000,
        checkedAgainst: addr(master),
        confirmation: 2,
        checkedAt: T0 + 900,
      },
    ],
    reportedReplicas: {
      at: T0 + 800,
      replicas: [6380, 6381, 6382].map((port) => ({
        address: `127.0.0.1:${port}`,
        replica: addr(port),
        flags: port === 6382 ? ["slave", "s_down"] : ["slave"],
        masterLinkStatus: port === 6382 ? "err" : "ok",
        replicationOffset: 1000,
        reportedBy: "127.0.0.1:26379",
      })),
    },
  };
  const ports: StatusPort[] = [
    {
      settings: { name, role: "master" },
      listen: { hostname: "127.0.0.1", port: 7000 },
      route: {
        targets: { kind: "master", addresses: [addr(master)] },
        problem: undefined,
        replicas: [],
      },
      toMaster: { size: 3 },
      toReplicas: undefined,
      ready: { size: 2 },
    },
    {
      settings: { name, role: "replica" },
      listen: { hostname: "127.0.0.1", port: 7001 },
      route: {
        targets: { kind: "replica", addresses: [addr(6380)] },
        problem: undefined,
        replicas: plane.replicaHealth.map((h) =>
          h.lagBytes! > 1_000_000
            ? { ...h, usable: false, reason: "it is 5000000 bytes behind the master" }
            : { ...h, usable: true }
        ),
      },
      toMaster: { size: 0 },
      toReplicas: {
        size: 4,
        countTo: (address) => address.port === 6380 ? 4 : 0,
      },
      ready: undefined,
    },
  ];
  return {
    planes: [plane],
    ports,
    sentinels: { watching: (n) => n === name ? sentinels : [] },
    journal: options.journal ?? new EventJournal(),
    startedAt: T0 - 60_000,
  };
}

/** What `startAdminServer()` needs of a tunnel for the routes tested here. */
function asRunning(source: StatusSource & { journal: EventJournal }): RunningTunnel {
  return { ...source, config: { databases: [] } } as unknown as RunningTunnel;
}

// ---------------------------------------------------------------------------
// The JSON.

Deno.test("statusReport() gives each master name its master, fence, ports, replicas and Sentinels", () => {
  const report: StatusReport = statusReport(fakeTunnel(), T0 + 1000);
  assert.equal(report.generatedAt, at(1000));
  assert.equal(report.startedAt, at(-60_000));
  assert.deepEqual(report.journal, { capacity: JOURNAL_CAPACITY, lastId: 0 });
  assert.equal(report.names.length, 1);
  const name = report.names[0]!;
  assert.equal(name.name, "cache");
  assert.equal(name.state, "ok");
  assert.deepEqual(name.master, {
    address: "127.0.0.1:6379",
    confirmedAt: at(0),
    via: "configured Sentinels 127.0.0.1:26379 (1 of 2) at config-epoch 4",
    configEpoch: 4,
  });
  assert.equal(name.failover, null);
  assert.deepEqual(name.fence, { afterMs: 30_000, closedSince: null });
  assert.deepEqual(
    name.ports.map((p) => [p.listen, p.role, p.ready, p.clients, p.readyConnections]),
    [
      ["127.0.0.1:7000", "master", true, 3, 2],
      ["127.0.0.1:7001", "replica", true, 4, null],
    ],
  );
  assert.deepEqual(name.ports[1]!.servingAddresses, ["127.0.0.1:6380"]);
  // Checked replicas first, then one only a Sentinel listed.
  assert.deepEqual(name.replicas.map((r) => [r.address, r.lagBytes, r.clients]), [
    ["127.0.0.1:6380", 120, 4],
    ["127.0.0.1:6381", 5_000_000, 0],
    ["127.0.0.1:6382", null, 0],
  ]);
  assert.deepEqual(name.replicas[0]!.readPorts, [
    { listen: "127.0.0.1:7001", usable: true, reason: null },
  ]);
  assert.deepEqual(name.replicas[1]!.readPorts, [
    { listen: "127.0.0.1:7001", usable: false, reason: "it is 5000000 bytes behind the master" },
  ]);
  assert.deepEqual(name.replicas[2]!.reported, {
    flags: ["slave", "s_down"],
    masterLinkStatus: "err",
    reportedBy: "127.0.0.1:26379",
  });
  assert.equal(name.replicas[2]!.checkedAt, null);
  // A Sentinel that still lists the master as a replica (it lags a failover) is not believed.
  const tunnel = fakeTunnel({ master: 6382 });
  const plane = tunnel.planes[0]!;
  const lagging = statusReport({ ...tunnel, planes: [{ ...plane, replicaHealth: [] }] }, T0);
  assert.deepEqual(lagging.names[0]!.replicas.map((r) => r.address), [
    "127.0.0.1:6380",
    "127.0.0.1:6381",
  ]);
  assert.deepEqual(
    name.sentinels.map((s) => [s.address, s.origin, s.reachable, s.view?.kind ?? null]),
    [
      ["127.0.0.1:26379", "configured", true, "master"],
      ["127.0.0.1:26380", "configured", false, "failed"],
      ["127.0.0.1:26381", "discovered", true, null],
    ],
  );
  assert.deepEqual(name.sentinels[0]!.view, {
    kind: "master",
    address: "127.0.0.1:6379",
    configEpoch: 4,
    flags: ["master"],
  });
  assert.ok(!JSON.stringify(report).includes("hunter2"), "a password reached the status");
});

Deno.test("statusReport() names the worst state: failover, fence closed, no master", () => {
  const tunnel = fakeTunnel();
  const plane = tunnel.planes[0]!;
  const states = [
    { ...plane, failover: { master: addr(6379), reason: "+promoted-slave", since: T0 } },
    { ...plane, fencedSince: T0 + 5 },
    {
      ...plane,
      master: undefined,
      problem: { kind: "unreachable" as const, detail: "no Sentinel answered", since: T0 },
    },
    { ...plane, problem: { kind: "busy" as const, detail: "BUSY", since: T0 } },
  ].map((p) => statusReport({ ...tunnel, planes: [p] }, T0).names[0]!);
  assert.deepEqual(states.map((s) => s.state), ["failover", "fenced", "no-master", "degraded"]);
  assert.deepEqual(states[0]!.failover, {
    master: "127.0.0.1:6379",
    reason: "+promoted-slave",
    since: at(0),
  });
  assert.equal(states[1]!.fence.closedSince, at(5));
  assert.equal(states[2]!.master, null);
  assert.deepEqual(states[2]!.problem, {
    kind: "unreachable",
    detail: "no Sentinel answered",
    since: at(0),
  });
});

const SWITCH: JournalEvent = {
  kind: "master-confirmed",
  name: "cache",
  from: "127.0.0.1:6379",
  to: "127.0.0.1:6380",
  via: "3 of 3 configured Sentinels at config-epoch 5",
  withoutMasterMs: 2300,
};

Deno.test("eventsReport() gives the events after an id, oldest first, at most the capacity", () => {
  const journal = new EventJournal(3);
  const empty: EventsReport = eventsReport(journal, 0, T0);
  assert.deepEqual(empty, {
    capacity: 3,
    note: EVENTS_NOTE,
    startedAt: at(0),
    lastId: 0,
    firstId: null,
    missed: false,
    events: [],
  });
  assert.match(EVENTS_NOTE, /restart/);
  for (let i = 0; i < 5; i++) journal.record({ ...SWITCH, withoutMasterMs: i });
  const all = eventsReport(journal, 0, T0);
  assert.deepEqual(all.events.map((e) => e.id), [3, 4, 5]);
  assert.equal(all.firstId, 3);
  assert.equal(all.lastId, 5);
  // Events 1 and 2 went before anyone asked for them.
  assert.equal(all.missed, true);
  const newer = eventsReport(journal, 3, T0);
  assert.deepEqual(newer.events.map((e) => e.id), [4, 5]);
  assert.equal(newer.missed, false);
  assert.deepEqual(eventsReport(journal, 5, T0).events, []);
  // A page that knew a restarted tunnel's later ids gets nothing, and sees startedAt change.
  assert.deepEqual(eventsReport(journal, 99, T0).events, []);
  const row = newer.events[1]!;
  assert.equal(row.kind, "master-confirmed");
  assert.equal(row.name, "cache");
  assert.deepEqual(row.event, { ...SWITCH, withoutMasterMs: 4 });
  assert.ok(!Number.isNaN(Date.parse(row.at)));
});

Deno.test("parseAfter() takes a whole number from 0 and refuses anything else", () => {
  assert.equal(parseAfter(null), 0);
  assert.equal(parseAfter(""), 0);
  assert.equal(parseAfter("0"), 0);
  assert.equal(parseAfter("42"), 42);
  for (const bad of ["-1", "1.5", "abc", "1e3", " 1", "9".repeat(20)]) {
    assert.throws(() => parseAfter(bad), RangeError, bad);
  }
});

Deno.test("describeEvent() says what happened: how long without a master, how many cut, where, why", () => {
  assert.equal(
    describeEvent(SWITCH),
    "Master 127.0.0.1:6380 confirmed (was 127.0.0.1:6379, 2.3 s without a master), learned from 3 of 3 configured Sentinels at config-epoch 5",
  );
  assert.equal(
    describeEvent({ ...SWITCH, from: undefined, withoutMasterMs: undefined }),
    "Master 127.0.0.1:6380 confirmed (first master), learned from 3 of 3 configured Sentinels at config-epoch 5",
  );
  assert.equal(
    describeEvent({
      kind: "cut",
      name: "cache",
      node: "127.0.0.1:6379",
      reason: "switch",
      detail: "+switch-master from 127.0.0.1:26379",
      clients: 3,
      ports: { "port 7000": 2, "port 7002": 1 },
    }),
    "Cut 3 clients of 127.0.0.1:6379 (switch): +switch-master from 127.0.0.1:26379 (2 on port 7000, 1 on port 7002)",
  );
  const texts = ([
    { kind: "failover", name: "cache", master: "127.0.0.1:6379", reason: "+promoted-slave" },
    { kind: "failover-ended", name: "cache", master: "127.0.0.1:6379", why: "-failover-abort" },
    { kind: "fence", name: "cache", state: "closed", master: "127.0.0.1:6379" },
    { kind: "fence", name: "cache", state: "open", master: undefined },
    { kind: "sentinel-distrusted", name: "cache", sentinel: "127.0.0.1:26380", why: "lied" },
    { kind: "replica", name: "cache", replica: "127.0.0.1:6381", usable: false, reason: "lag" },
    { kind: "replica", name: "cache", replica: "127.0.0.1:6381", usable: true, reason: undefined },
    { kind: "reload", outcome: "applied", detail: "1 port added" },
    { kind: "reload", outcome: "refused", detail: "port 7000 in use" },
  ] satisfies JournalEvent[]).map(describeEvent);
  assert.deepEqual(texts, [
    "Failover of 127.0.0.1:6379 started: +promoted-slave; new clients wait",
    "Failover of 127.0.0.1:6379 ended without a switch: -failover-abort",
    "Write fence closed on 127.0.0.1:6379: no majority of the configured Sentinels confirmed the master",
    "Write fence opened",
    "Sentinel 127.0.0.1:26380 distrusted: lied",
    "Replica 127.0.0.1:6381 out of use: lag",
    "Replica 127.0.0.1:6381 usable for reads",
    "Config reloaded: 1 port added",
    "Reload refused: port 7000 in use",
  ]);
});

// ---------------------------------------------------------------------------
// The page and its routes.

Deno.test("the status page loads nothing from another origin, and has no inline script or style", () => {
  for (
    const [what, text] of [
      ["html", STATUS_PAGE_HTML],
      ["css", STATUS_PAGE_CSS],
      ["script", STATUS_PAGE_SCRIPT],
    ]
  ) {
    assert.doesNotMatch(text!, /https?:\/\//i, `${what} names another origin`);
    assert.doesNotMatch(
      text!,
      /(^|[^.\w])\/\/[a-z0-9.-]+\.[a-z]{2,}/i,
      `${what}: protocol-relative`,
    );
    assert.doesNotMatch(text!, /@import|url\(/i, `${what} fetches more`);
  }
  // The one script and stylesheet are the page's own; nothing inline.
  assert.deepEqual([...STATUS_PAGE_HTML.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]), [
    '<script src="/status.js" defer>',
  ]);
  assert.match(STATUS_PAGE_HTML, /<\/script>/);
  assert.doesNotMatch(STATUS_PAGE_HTML, /<script\b[^>]*>[^<]/);
  assert.doesNotMatch(STATUS_PAGE_HTML, /<style\b|\sstyle=|\son[a-z]+=/i);
  assert.match(STATUS_PAGE_HTML, /<link rel="stylesheet" href="\/status.css">/);
  assert.match(STATUS_PAGE_HTML, /<meta name="viewport" content="width=device-width/);
  // What the page shows from data is text: no HTML parsing of it, no eval.
  assert.doesNotMatch(
    STATUS_PAGE_SCRIPT,
    /innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*"on/,
  );
});

Deno.test(
  "admin API serves the page with a strict CSP, /api lists the endpoints, /api/events takes after",
  processes,
  async () => {
    const journal = new EventJournal(4);
    const controller = new AbortController();
    const tunnel = fakeTunnel({ journal });
    const server = startAdminServer(
      { hostname: "127.0.0.1", port: 0 },
      asRunning({ ...tunnel, journal }),
      controller.signal,
    );
    const base = `http://127.0.0.1:${server.address.port}`;
    try {
      const page = await fetch(`${base}/`);
      assert.equal(page.status, 200);
      assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
      const csp = page.headers.get("content-security-policy")!;
      assert.equal(csp, STATUS_PAGE_CSP);
      const directives = new Map(
        csp.split(";").map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k!, v.join(" ")]),
      );
      assert.deepEqual(Object.fromEntries(directives), {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "connect-src": "'self'",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
      });
      assert.doesNotMatch(csp, /unsafe|\*|http|data:/);
      assert.equal(page.headers.get("x-content-type-options"), "nosniff");
      assert.equal(await page.text(), STATUS_PAGE_HTML);

      const script = await fetch(`${base}/status.js`);
      assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
      assert.equal(await script.text(), STATUS_PAGE_SCRIPT);
      const css = await fetch(`${base}/status.css`);
      assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
      assert.equal(await css.text(), STATUS_PAGE_CSS);

      const api = await fetch(`${base}/api`);
      assert.equal(api.status, 200);
      const { endpoints } = await api.json() as { endpoints: string[] };
      for (const path of ["/", "/api/status", "/api/events", "/healthz", "/metrics"]) {
        assert.ok(endpoints.includes(path), `${path} is not listed`);
      }
      const missing = await fetch(`${base}/nope`);
      assert.equal(missing.status, 404);
      assert.deepEqual((await missing.json() as { endpoints: string[] }).endpoints, endpoints);

      const status = await (await fetch(`${base}/api/status`)).json() as StatusReport;
      assert.deepEqual(status.names.map((n) => [n.name, n.master?.address]), [
        ["cache", "127.0.0.1:6379"],
      ]);

      for (let i = 0; i < 6; i++) journal.record({ ...SWITCH, withoutMasterMs: i });
      const events = await (await fetch(`${base}/api/events`)).json() as EventsReport;
      assert.deepEqual(events.events.map((e) => e.id), [3, 4, 5, 6]);
      assert.equal(events.capacity, 4);
      const after = await (await fetch(`${base}/api/events?after=5`)).json() as EventsReport;
      assert.deepEqual(after.events.map((e) => e.id), [6]);
      const bad = await fetch(`${base}/api/events?after=soon`);
      assert.equal(bad.status, 400);
      assert.match((await bad.json() as { error: string }).error, /Invalid after "soon"/);
    } finally {
      controller.abort();
      await server.finished;
    }
  },
);

// ---------------------------------------------------------------------------
// In the browser.

/** A browser whose page fails the test on any script error, CSP report or request elsewhere. */
async function openPage(origin: string): Promise<
  { browser: Browser; page: Page; problems: string[] } & AsyncDisposable
> {
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const problems: string[] = [];
  try {
    const page = await browser.newPage();
    page.on("pageerror", (error) => problems.push(`page error: ${error}`));
    page.on("console", (message) => {
      const text = message.text();
      if (/Content.Security.Policy|Refused to/i.test(text)) problems.push(`console: ${text}`);
    });
    page.on("request", (request) => {
      const url = request.url();
      if (!url.startsWith(`${origin}/`)) problems.push(`request to another origin: ${url}`);
    });
    return {
      browser,
      page,
      problems,
      async [Symbol.asyncDispose]() {
        await browser.close();
      },
    };
  } catch (error) {
    await browser.close();
    throw error;
  }
}

/**
 * Evaluates `expression` in the page. The page's code is written as text: it runs in the browser,
 * and Deno's types know no DOM.
 */
function inPage<T>(page: Page, expression: string): Promise<T> {
  return page.evaluate(expression) as Promise<T>;
}

/** Waits until `expression` is true in the page, failing with what the page shows. */
async function waitInPage(page: Page, what: string, expression: string): Promise<void> {
  try {
    await page.waitForFunction(expression, { timeout: DEADLINE_MS, polling: 100 });
  } catch (error) {
    const text = await inPage<string>(page, "document.body.innerText").catch(() => "");
    throw new Error(`The page did not show ${what} within ${DEADLINE_MS} ms; it shows:\n${text}`, {
      cause: error,
    });
  }
}

/** The card of master name `name`, in the page. */
function card(name: string): string {
  return `[...document.querySelectorAll("article")].find((a) => a.dataset.name === ${
    JSON.stringify(name)
  })`;
}

/** The ids of the events shown, as the page orders them (newest first). */
const EVENT_IDS =
  `[...document.querySelectorAll("li[data-id]")].map((li) => Number(li.dataset.id))`;

/** The page is no wider than its viewport: nothing scrolls sideways. */
async function assertNoHorizontalScroll(page: Page, width: number): Promise<void> {
  const scrollWidth = await inPage<number>(page, "document.documentElement.scrollWidth");
  assert.ok(scrollWidth <= width, `the page is ${scrollWidth} px wide at a ${width} px viewport`);
}

Deno.test({
  name: "status page shows data as text, keeps at most the journal's capacity, and fits a phone",
  ignore: noBrowser !== undefined,
  ...processes,
  async fn() {
    const hostile = '<img src=x onerror="window.hacked=1">&amp;' + "x".repeat(80);
    const journal = new EventJournal(5);
    const tunnel = fakeTunnel({ name: hostile, journal });
    const controller = new AbortController();
    const server = startAdminServer(
      { hostname: "127.0.0.1", port: 0 },
      asRunning({ ...tunnel, journal }),
      controller.signal,
    );
    const origin = `http://127.0.0.1:${server.address.port}`;
    try {
      await using browser = await openPage(origin);
      const { page } = browser;
      await page.setViewport({ width: 375, height: 800 });
      for (let i = 0; i < 3; i++) {
        journal.record({
          kind: "sentinel-distrusted",
          name: hostile,
          sentinel: "127.0.0.1:26380",
          why: `<b>bold ${i}</b>`,
        });
      }
      await page.goto(`${origin}/`, { waitUntil: "load" });
      await waitInPage(page, "three events", `${EVENT_IDS}.length === 3`);
      const shown = await inPage<Record<string, unknown>>(
        page,
        `({
          title: document.querySelector("article h2")?.textContent,
          elements: document.querySelectorAll("main img, main b").length,
          hacked: window.hacked,
          event: document.querySelector("li[data-id] .what")?.textContent,
          master: document.querySelector(".master-address")?.textContent,
        })`,
      );
      assert.deepEqual(shown, {
        title: hostile,
        elements: 0,
        master: "127.0.0.1:6379",
        event: "distrustedSentinel 127.0.0.1:26380 distrusted: <b>bold 2</b>",
      });
      await assertNoHorizontalScroll(page, 375);

      // More events than the journal keeps: the page keeps the newest five, newest first.
      for (let i = 3; i < 12; i++) {
        journal.record({ ...SWITCH, name: hostile, withoutMasterMs: i * 100 });
      }
      await waitInPage(page, "event 12", `${EVENT_IDS}[0] === 12`);
      assert.deepEqual(await inPage(page, EVENT_IDS), [12, 11, 10, 9, 8]);
      await assertNoHorizontalScroll(page, 375);
      assert.deepEqual(browser.problems, []);
    } finally {
      controller.abort();
      await server.finished;
    }
  },
});

Deno.test({
  name:
    "status page shows a failover as it happens: the new master and its event, without a reload",
  ignore: noBrowser !== undefined,
  ...processes,
  async fn() {
    await using deployment = await startDeployment({ masterName: "status-page" });
    await deployment.waitReady();
    const name = deployment.masterName;
    const port = freePort();
    const readPort = freePort();
    const adminPort = freePort();
    await using _tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      admin: `127.0.0.1:${adminPort}`,
      timeouts: { clientWaitMs: 3000, pollIntervalMs: 500 },
      databases: [{ name, port, preconnect: 2 }, { name, port: readPort, role: "replica" }],
    }, { ports: [port, readPort, adminPort] });
    // Clients on both ports, for the page to count (and, on the master port, to cut).
    using clients = new DisposableStack();
    for (const [at, count] of [[port, 3], [readPort, 2]] as const) {
      for (let i = 0; i < count; i++) {
        const client = clients.use(await connectClient(at));
        assert.equal(await client.call(["PING"]), "PONG");
      }
    }
    const origin = `http://127.0.0.1:${adminPort}`;
    const first = deployment.nodes[0]!.address;
    const masterShown = (address: string) =>
      `${card(name)}?.querySelector(".master-address")?.textContent === ${JSON.stringify(address)}`;

    await using browser = await openPage(origin);
    const { page } = browser;
    await page.setViewport({ width: 375, height: 900 });
    await page.goto(`${origin}/`, { waitUntil: "load" });
    await waitInPage(page, `master ${first}`, masterShown(first));
    await waitInPage(page, "live", `document.querySelector("#connection").textContent === "live"`);
    for (const [at, count] of [[port, 3], [readPort, 2]] as const) {
      await waitInPage(
        page,
        `${count} clients on port ${at}`,
        `[...(${card(name)}?.querySelectorAll("li") ?? [])].some((li) =>
          li.querySelector(".addr")?.textContent === "127.0.0.1:${at}" &&
          li.textContent.includes("${count} clients"))`,
      );
    }
    await assertNoHorizontalScroll(page, 375);
    // Marks this document: a reload would lose the mark.
    await inPage(page, "window.loadedOnce = true");
    const lastId = Math.max(0, ...await inPage<number[]>(page, EVENT_IDS));

    await page.setViewport({ width: 1100, height: 800 });
    await using watch = await deployment.watchSwitch();
    await deployment.forceFailover();
    const { address: second } = await watch.next;
    assert.notEqual(second, first);

    await waitInPage(page, `master ${second}`, masterShown(second));
    // A new event that says so, in the name's timeline.
    await waitInPage(
      page,
      `an event confirming ${second}`,
      `[...(${card(name)}?.querySelectorAll("li[data-id]") ?? [])].some((li) =>
        Number(li.dataset.id) > ${lastId} && li.dataset.kind === "master-confirmed" &&
        li.textContent.includes(${JSON.stringify(second)}))`,
    );
    const screenshot = Deno.env.get("STATUS_PAGE_SCREENSHOT");
    if (screenshot) {
      // Mid-failover: the new master confirmed, the old one not yet a replica of it.
      await Deno.writeFile(screenshot, await page.screenshot({ fullPage: true }));
      console.log(`status_page_test: wrote ${screenshot}`);
    }
    assert.equal(await inPage(page, "window.loadedOnce"), true, "the page was reloaded");
    assert.deepEqual(browser.problems, []);
  },
});
