/**
 * The status page of the admin port: one self-contained page (HTML at `/`,
 * its stylesheet at `/status.css` and its script at `/status.js`, all from
 * the same origin; no external script, font or image, so that it works on a
 * host with no internet) that polls `/api/status` and `/api/events` every
 * second and shows, per master name, the master, the failover and the
 * fence, the ports, the replicas, the Sentinels and a timeline of recent
 * events.
 *
 * The script builds every node with `textContent`, never `innerHTML`: names
 * and reasons come from the config and the Sentinels. It keeps at most the
 * journal's capacity of events in the page. The Content-Security-Policy
 * ({@linkcode STATUS_PAGE_CSP}) allows nothing else: no inline script or
 * style, no other origin, no frames, no forms.
 *
 * @module
 */

/** The policy the page is served with: only its own script and stylesheet, and the API. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** `/`. */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>sentinel-tunnel status</title>
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head>
<body>
<header>
<h1>sentinel-tunnel</h1>
<p id="connection" class="connection pending">connecting…</p>
<p class="meta"><span id="uptime"></span> <span id="updated"></span></p>
</header>
<noscript><p class="notice">This page needs JavaScript. The same facts are at <a href="/api/status">/api/status</a> and <a href="/api/events">/api/events</a>.</p></noscript>
<main>
<div id="names" class="names"></div>
<section id="tunnel-events" class="card" hidden>
<h2>Tunnel</h2>
<ol class="timeline" id="other-events"></ol>
</section>
</main>
<footer>
<p id="journal-note" class="meta"></p>
<p class="meta">JSON: <a href="/api/status">/api/status</a> · <a href="/api/events">/api/events</a> · <a href="/api">/api</a> (every endpoint) · <a href="/metrics">/metrics</a></p>
</footer>
</body>
</html>
`;

/** `/status.css`. */
export const STATUS_PAGE_CSS = `:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --card: #ffffff; --fg: #1f2328; --muted: #59636e; --line: #d8dee4;
  --ok: #1a7f37; --ok-bg: #dafbe1; --warn: #7d4e00; --warn-bg: #fff1c5;
  --bad: #b3261e; --bad-bg: #ffe1de; --info: #0550ae; --info-bg: #ddf4ff;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --card: #161b22; --fg: #e6edf3; --muted: #9198a1; --line: #30363d;
    --ok: #3fb950; --ok-bg: #12261e; --warn: #d29922; --warn-bg: #2b2111;
    --bad: #f85149; --bad-bg: #301515; --info: #58a6ff; --info-bg: #121d2f;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  overflow-wrap: anywhere;
}
header, main, footer { max-width: 80rem; margin: 0 auto; }
header {
  display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.25rem 1rem;
  padding: 0.75rem 1rem 0.5rem;
}
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1.15rem; margin: 0; }
h3 {
  font-size: 0.8rem; margin: 0.9rem 0 0.2rem; color: var(--muted);
  text-transform: uppercase; letter-spacing: 0.04em;
}
p { margin: 0; }
a { color: var(--info); }
main, .names { display: grid; gap: 1rem; }
main { padding: 0 0.75rem; }
footer { padding: 1rem; }
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 0.75rem 1rem 1rem; min-width: 0;
}
.card-head { display: flex; flex-wrap: wrap; align-items: center; gap: 0.25rem 0.75rem; }
.meta { color: var(--muted); font-size: 0.85rem; }
.mono, .addr { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
.master-line { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.25rem 0.75rem; margin-top: 0.5rem; }
.master-address { font-size: 1.35rem; font-weight: 600; }
.badge {
  display: inline-block; border-radius: 999px; padding: 0 0.55rem; font-size: 0.78rem;
  font-weight: 600; line-height: 1.5rem; white-space: nowrap;
}
.ok { color: var(--ok); background: var(--ok-bg); }
.warn { color: var(--warn); background: var(--warn-bg); }
.bad { color: var(--bad); background: var(--bad-bg); }
.info { color: var(--info); background: var(--info-bg); }
.plain { color: var(--muted); background: transparent; border: 1px solid var(--line); }
.notice { margin: 0.5rem 0 0; padding: 0.4rem 0.6rem; border-radius: 6px; }
.columns { display: grid; gap: 0 1.5rem; }
@media (min-width: 56rem) { .columns { grid-template-columns: 1fr 1fr; } }
.rows { list-style: none; margin: 0; padding: 0; }
.rows > li { padding: 0.35rem 0; border-top: 1px solid var(--line); }
.rows > li:first-child { border-top: 0; }
.line { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.1rem 0.6rem; }
.detail { color: var(--muted); font-size: 0.88rem; }
.timeline {
  list-style: none; margin: 0; padding: 0; max-height: 26rem; overflow-y: auto;
  font-size: 0.9rem;
}
.timeline > li {
  display: grid; grid-template-columns: auto 1fr; gap: 0 0.6rem; padding: 0.3rem 0;
  border-top: 1px solid var(--line);
}
.timeline > li:first-child { border-top: 0; }
.timeline time { color: var(--muted); font-variant-numeric: tabular-nums; white-space: nowrap; }
.timeline .what { min-width: 0; }
.timeline .badge { margin-right: 0.4rem; }
@media (max-width: 30rem) {
  .timeline > li { grid-template-columns: 1fr; }
}
.empty { color: var(--muted); font-style: italic; }
.connection.live { color: var(--ok); }
.connection.down { color: var(--bad); font-weight: 600; }
.connection.pending { color: var(--muted); }
`;

/** `/status.js`: plain ES2020, no dependencies. */
export const STATUS_PAGE_SCRIPT = `"use strict";
(function () {
  var POLL_MS = 1000;
  var REQUEST_MS = 5000;
  var STATE_BADGE = {
    ok: ["ok", "ok"],
    degraded: ["degraded", "warn"],
    "no-master": ["no master", "bad"],
    failover: ["failover", "warn"],
    fenced: ["fenced", "bad"]
  };
  var KIND_BADGE = {
    "master-confirmed": ["master", "ok"],
    failover: ["failover", "warn"],
    "failover-ended": ["failover ended", "info"],
    cut: ["cut", "bad"],
    fence: ["fence", "bad"],
    "sentinel-distrusted": ["distrusted", "warn"],
    replica: ["replica", "info"],
    reload: ["reload", "info"]
  };

  var names = document.getElementById("names");
  var otherSection = document.getElementById("tunnel-events");
  var otherList = document.getElementById("other-events");
  var connection = document.getElementById("connection");
  var uptime = document.getElementById("uptime");
  var updated = document.getElementById("updated");
  var journalNote = document.getElementById("journal-note");

  /** One card per master name. */
  var cards = new Map();
  /** The events shown, oldest first: never more than the journal keeps. */
  var shown = [];
  var startedAt = null;
  var after = 0;
  var capacity = 1000;
  var serverOffsetMs = 0;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return parent;
  }

  function badge(text, tone) {
    return el("span", "badge " + tone, text);
  }

  function duration(ms) {
    if (ms < 0) ms = 0;
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    var s = Math.round(ms / 1000);
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function clock(iso) {
    var date = new Date(iso);
    var today = new Date().toDateString() === date.toDateString();
    var time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return today ? time : date.toLocaleDateString() + " " + time;
  }

  /** How long ago, by the tunnel's clock. */
  function ago(iso) {
    return duration(Date.now() + serverOffsetMs - Date.parse(iso)) + " ago";
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function section(title, body) {
    var wrapper = el("section");
    add(wrapper, el("h3", null, title), body);
    return wrapper;
  }

  function rows(items, empty) {
    var list = el("ul", "rows");
    if (items.length === 0) add(list, add(el("li"), el("span", "empty", empty)));
    items.forEach(function (item) { add(list, item); });
    return list;
  }

  function line() {
    var div = el("div", "line");
    add.apply(null, [div].concat(Array.prototype.slice.call(arguments)));
    return div;
  }

  function masterBlock(status) {
    var block = el("div");
    if (status.master) {
      var m = status.master;
      add(block, line(
        el("span", "master-address addr", m.address),
        el("span", "meta", "confirmed " + clock(m.confirmedAt) + " (" + ago(m.confirmedAt) + ")")
      ));
      block.firstChild.classList.add("master-line");
      // The epoch it was learned at is in "via"; a later, higher one is news.
      var epoch = m.configEpoch === null || m.via.indexOf("config-epoch " + m.configEpoch) !== -1
        ? "" : " · now at config-epoch " + m.configEpoch;
      add(block, el("p", "detail", "learned from " + m.via + epoch + " · confirmed by ROLE"));
    } else {
      var none = line(el("span", "master-address", "no confirmed master"));
      none.classList.add("master-line");
      add(block, none);
    }
    if (status.problem) {
      add(block, el("p", "notice " + (status.master ? "warn" : "bad"),
        status.problem.detail + " (since " + clock(status.problem.since) + ")"));
    }
    return block;
  }

  function guardBlock(status) {
    var f = status.failover;
    var failover = f
      ? line(badge("failover", "warn"),
        el("span", null, "holding new clients since " + clock(f.since) + " (" + ago(f.since) + "): " +
          f.reason + "; old master " + f.master))
      : line(badge("no failover", "plain"));
    var fence = status.fence;
    var fenceLine = fence.afterMs === null
      ? line(badge("no write fence", "plain"))
      : fence.closedSince
      ? line(badge("fence closed", "bad"),
        el("span", null, "since " + clock(fence.closedSince) + " (" + ago(fence.closedSince) +
          "): clients cut, new ones refused"))
      : line(badge("fence open", "ok"),
        el("span", "detail", "closes after " + duration(fence.afterMs) +
          " without a majority of the configured Sentinels"));
    var wrapper = el("div", "rows");
    add(wrapper, failover, fenceLine);
    return section("Failover and fence", wrapper);
  }

  function portRows(ports) {
    return rows(ports.map(function (p) {
      var item = el("li");
      add(item, line(
        el("span", "addr", p.listen),
        badge(p.role === "replica" ? "read port" : "master port", "plain"),
        p.ready ? badge("ready", "ok") : badge("not ready", "bad"),
        el("span", null, plural(p.clients, "client")),
        p.readyConnections === null ? null : el("span", null, plural(p.readyConnections, "ready connection"))
      ));
      if (p.ready) {
        add(item, el("p", "detail", "new clients go to the " + p.serving +
          (p.servingAddresses.length ? " " + p.servingAddresses.join(", ") : "")));
      } else if (p.reason) {
        add(item, el("p", "detail", p.reason));
      }
      return item;
    }), "no port");
  }

  function replicaRows(replicas) {
    return rows(replicas.map(function (r) {
      var item = el("li");
      var usable = r.readPorts.some(function (p) { return p.usable; });
      var look = r.checkedAt === null
        ? badge("not checked", "plain")
        : r.reason !== null
        ? badge("out", "bad")
        : r.readPorts.length === 0
        ? badge("healthy", "ok")
        : usable
        ? badge("in use", "ok")
        : badge("not usable", "warn");
      add(item, line(
        el("span", "addr", r.address),
        look,
        r.lagBytes === null ? null : el("span", null, "lag " + bytes(r.lagBytes)),
        r.readPorts.length ? el("span", null, plural(r.clients, "read client")) : null
      ));
      if (r.reason) add(item, el("p", "detail", r.reason));
      r.readPorts.forEach(function (p) {
        add(item, el("p", "detail", (p.usable ? "usable on " : "not usable on ") + p.listen +
          (p.usable || !p.reason || p.reason === r.reason ? "" : ": " + p.reason)));
      });
      if (r.reported) {
        add(item, el("p", "detail", "Sentinel " + r.reported.reportedBy + ": " +
          (r.reported.flags.join(",") || "no flags") +
          (r.reported.masterLinkStatus ? ", link " + r.reported.masterLinkStatus : "")));
      }
      return item;
    }), "no replica known");
  }

  function sentinelRows(sentinels) {
    return rows(sentinels.map(function (s) {
      var item = el("li");
      var up = s.reachable === true && !(s.view && s.view.kind === "failed");
      add(item, line(
        el("span", "addr", s.address),
        badge(s.origin, "plain"),
        s.reachable === null && !s.view ? badge("not asked yet", "plain") : up ? badge("up", "ok") : badge("down", "bad"),
        s.subscribed ? null : el("span", "meta", "not subscribed")
      ));
      var v = s.view;
      var says = !v
        ? "no view yet"
        : v.kind === "master"
        ? "names " + v.address + " at config-epoch " + v.configEpoch +
          (v.flags.length ? " (" + v.flags.join(",") + ")" : "")
        : v.kind === "unknown"
        ? "does not know the name: " + v.detail
        : "no answer: " + v.detail;
      add(item, el("p", "detail", says));
      if (s.lastError && (!v || v.kind !== "failed")) add(item, el("p", "detail", "last error: " + s.lastError));
      return item;
    }), "no Sentinel");
  }

  function card(name) {
    var existing = cards.get(name);
    if (existing) return existing;
    var article = el("article", "card");
    article.dataset.name = name;
    var head = el("div", "card-head");
    var title = el("h2", "addr", name);
    var state = el("span");
    add(head, title, state);
    var body = el("div");
    var timeline = el("ol", "timeline");
    add(article, head, body, section("Recent events", timeline));
    var entry = { article: article, state: state, body: body, timeline: timeline };
    cards.set(name, entry);
    names.appendChild(article);
    return entry;
  }

  function renderStatus(status) {
    serverOffsetMs = Date.parse(status.generatedAt) - Date.now();
    capacity = status.journal.capacity;
    uptime.textContent = "up " + duration(Date.parse(status.generatedAt) - Date.parse(status.startedAt)) + ";";
    updated.textContent = "updated " + clock(status.generatedAt);
    var seen = new Set();
    status.names.forEach(function (s) {
      seen.add(s.name);
      var c = card(s.name);
      var look = STATE_BADGE[s.state] || [s.state, "plain"];
      var state = badge(look[0], look[1]);
      c.state.replaceWith(state);
      c.state = state;
      c.article.dataset.state = s.state;
      var columns = el("div", "columns");
      add(columns,
        add(el("div"), section("Ports", portRows(s.ports)), guardBlock(s)),
        add(el("div"), section("Replicas", replicaRows(s.replicas)), section("Sentinels", sentinelRows(s.sentinels)))
      );
      c.body.replaceChildren(masterBlock(s), columns);
    });
    cards.forEach(function (c, name) {
      if (seen.has(name)) return;
      c.article.remove();
      cards.delete(name);
    });
    if (status.names.length === 0 && !names.firstChild) {
      add(names, el("p", "empty", "no database configured"));
    }
  }

  function eventItem(e) {
    var item = el("li");
    item.dataset.id = String(e.id);
    item.dataset.kind = e.kind;
    var time = el("time", null, clock(e.at));
    time.dateTime = e.at;
    var look = KIND_BADGE[e.kind] || [e.kind, "plain"];
    var tone = e.kind === "fence" && e.event.state === "open" ? "ok"
      : e.kind === "replica" && e.event.usable ? "ok"
      : look[1];
    var what = el("div", "what");
    add(what, badge(look[0], tone), e.text);
    add(item, time, what);
    return item;
  }

  function addEvents(report) {
    capacity = report.capacity;
    journalNote.textContent = "Events: the newest " + report.capacity + " at most. " + report.note + ".";
    report.events.forEach(function (e) {
      if (e.id <= after) return;
      after = e.id;
      var c = e.name === null ? null : cards.get(e.name);
      var list = c ? c.timeline : otherList;
      if (!c) otherSection.hidden = false;
      var item = eventItem(e);
      list.insertBefore(item, list.firstChild);
      shown.push(item);
    });
    while (shown.length > capacity) shown.shift().remove();
    cards.forEach(function (c) {
      var empty = c.timeline.querySelector(".empty");
      if (c.timeline.children.length === 0) {
        add(c.timeline, add(el("li"), el("span", "empty", "nothing yet since the tunnel started")));
      } else if (empty && c.timeline.children.length > 1) {
        empty.parentNode.remove();
      }
    });
    if (report.missed && after > 0 && shown.length > 0) {
      journalNote.textContent += " Older events were dropped before this page read them.";
    }
  }

  function reset(newStartedAt) {
    startedAt = newStartedAt;
    after = 0;
    shown.forEach(function (item) { item.remove(); });
    shown = [];
    cards.forEach(function (c) { c.timeline.replaceChildren(); });
    otherList.replaceChildren();
    otherSection.hidden = true;
  }

  async function getJson(path) {
    var response = await fetch(path, { cache: "no-store", signal: AbortSignal.timeout(REQUEST_MS) });
    if (!response.ok) throw new Error(path + " answered HTTP " + response.status);
    return response.json();
  }

  function setConnection(ok, detail) {
    connection.className = "connection " + (ok ? "live" : "down");
    connection.textContent = ok ? "live" : "cannot reach the tunnel (" + detail + "); retrying";
  }

  async function tick() {
    try {
      var status = await getJson("/api/status");
      // A restarted tunnel numbers its events from 1 again.
      if (status.startedAt !== startedAt) reset(status.startedAt);
      renderStatus(status);
      var events = await getJson("/api/events?after=" + after);
      if (events.startedAt === startedAt) addEvents(events);
      setConnection(true);
    } catch (error) {
      setConnection(false, error && error.message ? error.message : String(error));
    } finally {
      setTimeout(tick, POLL_MS);
    }
  }

  tick();
})();
`;
