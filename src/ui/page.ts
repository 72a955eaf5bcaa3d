// The topology page: one HTML document with its CSS and script inline and
// the drawing in SVG, so it needs nothing from the network (no CDN, no
// fonts, no images). It reads /api/events (server-sent events) and redraws
// on every `state` event; a click on a host reads /api/hosts/<id>/kernel.
//
// Stable hooks for tests and scripts:
//   body[data-version]                         the state version drawn
//   body[data-live]                            connecting | live | disconnected
//   [data-host=<id>][data-lease][data-flanneld] one per host (SVG group)
//   [data-tunnel=<a>~<b>][data-state]          one per tunnel (SVG line)
//   #kernel[data-for=<id>][data-loaded]        the kernel panel (true | false | unavailable)
//   #kernel [data-table=device|neigh|fdb|routes] tr[data-row]
//
// The script builds every element with createElement/textContent: nothing
// from the store is ever parsed as HTML.

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flannel-ts topology</title>
<style>
  :root { --bg: #f7f7f5; --fg: #1d232a; --muted: #6b7380; --card: #ffffff; --line: #d8dbe0;
          --ok: #1f9d55; --fail: #d64545; --partial: #e08e0b; --unknown: #9aa3ad; --down: #c9ccd1; --accent: #2f6fdf; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
  header { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: baseline; padding: 12px 20px; border-bottom: 1px solid var(--line); background: var(--card); }
  header h1 { font-size: 17px; margin: 0; }
  #meta { color: var(--muted); }
  #live { margin-left: auto; font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #eceef1; color: var(--muted); }
  body[data-live="live"] #live { background: #e3f5ea; color: var(--ok); }
  body[data-live="disconnected"] #live { background: #fbe7e7; color: var(--fail); }
  #store-error { display: none; margin: 10px 20px 0; padding: 8px 12px; border-radius: 6px; background: #fbe7e7; color: #8a1f1f; }
  #store-error.shown { display: block; }
  main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(320px, 2fr); gap: 16px; padding: 16px 20px; }
  @media (max-width: 1000px) { main { grid-template-columns: 1fr; } }
  .panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
  #topo { width: 100%; height: auto; display: block; }
  .tunnel { stroke-width: 4; stroke-linecap: round; }
  .tunnel[data-state="ok"] { stroke: var(--ok); }
  .tunnel[data-state="fail"] { stroke: var(--fail); }
  .tunnel[data-state="partial"] { stroke: var(--partial); stroke-dasharray: 10 6; }
  .tunnel[data-state="unknown"] { stroke: var(--unknown); stroke-dasharray: 4 6; }
  .tunnel[data-state="down"] { stroke: var(--down); stroke-dasharray: 2 8; stroke-width: 3; }
  .rtt { font-size: 11px; fill: var(--muted); paint-order: stroke; stroke: var(--bg); stroke-width: 4px; }
  .host { cursor: pointer; }
  .host rect { fill: var(--card); stroke: #8c96a3; stroke-width: 1.5; }
  .host:hover rect, .host:focus rect { stroke: var(--accent); }
  .host.selected rect { stroke: var(--accent); stroke-width: 3; }
  .host[data-lease="gone"] rect, .host[data-lease="none"] rect { stroke-dasharray: 6 4; fill: #eef0f2; stroke: #b8bec6; }
  .host[data-lease="gone"] text, .host[data-lease="none"] text { fill: #a3aab3; }
  .host text { font-size: 12px; fill: var(--fg); }
  .host .name { font-size: 15px; font-weight: 600; }
  .host .dim { fill: var(--muted); }
  .host .badge-stopped, .host[data-lease] .badge-gone { fill: var(--fail); font-weight: 600; }
  #legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; color: var(--muted); margin-top: 6px; }
  #legend span::before { content: ""; display: inline-block; width: 18px; height: 4px; margin-right: 5px; vertical-align: middle; border-radius: 2px; background: currentColor; }
  #legend .ok { color: var(--ok); } #legend .fail { color: var(--fail); } #legend .partial { color: var(--partial); }
  #legend .unknown { color: var(--unknown); } #legend .down { color: var(--down); }
  #probe-note { color: var(--muted); font-size: 12px; margin: 6px 0 0; }
  table { border-collapse: collapse; width: 100%; font-size: 12px; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eceef1; vertical-align: top; }
  th { color: var(--muted); font-weight: 600; }
  td.mono, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
  tr.flannel td { font-weight: 600; }
  .st { display: inline-block; min-width: 56px; padding: 0 6px; border-radius: 8px; color: #fff; font-size: 11px; text-align: center; }
  .st-ok { background: var(--ok); } .st-fail { background: var(--fail); } .st-partial { background: var(--partial); }
  .st-unknown { background: var(--unknown); } .st-down { background: var(--down); color: var(--fg); }
  #kernel h2, #tunnels h2 { font-size: 15px; margin: 0 0 8px; }
  #kernel h3 { font-size: 13px; margin: 12px 0 4px; }
  .hint { color: var(--muted); }
  #tunnels { margin: 0 20px 20px; }
</style>
</head>
<body data-version="0" data-live="connecting">
<header>
  <h1 id="title">flannel-ts</h1>
  <span id="meta"></span>
  <span id="live">connecting…</span>
</header>
<div id="store-error" role="alert"></div>
<main>
  <section class="panel" id="graph">
    <svg id="topo" viewBox="0 0 1000 620" role="img" aria-label="hosts and the tunnels between them"></svg>
    <div id="legend">
      <span class="ok">probe answered</span><span class="partial">one way only</span><span class="fail">no answer</span>
      <span class="unknown">no probe data</span><span class="down">a host has no lease</span>
    </div>
    <p id="probe-note"></p>
  </section>
  <aside class="panel" id="kernel" data-for="" data-loaded="false">
    <h2>Kernel tables</h2>
    <p class="hint">Click a host to read its flannel device, neighbours, FDB and routes.</p>
  </aside>
</main>
<section class="panel" id="tunnels">
  <h2>Tunnels</h2>
  <table><thead><tr><th>between</th><th>state</th><th>probes</th></tr></thead><tbody id="tunnel-rows"></tbody></table>
</section>
<script>
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var state = null;
  var selected = null;
  var kernelSeq = 0;
  var kernelFor = -1;
  var lastSig = "";

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

  var CARD_W = 230, CARD_H = 112;
  function layout(n, w, h) {
    var cx = 500, cy = 310, pts = [];
    if (n === 1) return [{ x: cx, y: cy }];
    var rx = 490 - w / 2, ry = 300 - h / 2;
    for (var i = 0; i < n; i++) {
      var a = -Math.PI / 2 + (2 * Math.PI * i) / n;
      pts.push({ x: cx + rx * Math.cos(a), y: cy + ry * Math.sin(a) });
    }
    return pts;
  }

  function probeText(p) {
    return p.what + ": " + (p.ok ? (p.rttMs !== null ? p.rttMs.toFixed(2) + " ms" : "ok") : "no answer");
  }

  function drawGraph(s) {
    var svg = document.getElementById("topo");
    clear(svg);
    var pos = {};
    var scale = Math.max(0.45, Math.min(1.35, 6 / Math.max(1, s.hosts.length)));
    var w = CARD_W * scale, hgt = CARD_H * scale;
    var pts = layout(s.hosts.length, w, hgt);
    s.hosts.forEach(function (h, i) { pos[h.id] = pts[i]; });
    var lines = sv("g", { "class": "tunnels" });
    s.tunnels.forEach(function (t) {
      var a = pos[t.a], b = pos[t.b];
      var line = sv("line", { "class": "tunnel", x1: a.x, y1: a.y, x2: b.x, y2: b.y, "data-tunnel": t.id, "data-state": t.state });
      var tip = t.a + " ↔ " + t.b + ": " + t.state;
      t.probes.forEach(function (p) { tip += "\\n" + probeText(p); });
      line.appendChild(sv("title", null, tip));
      lines.appendChild(line);
      var rtts = t.probes.filter(function (p) { return p.ok && p.rttMs !== null; }).map(function (p) { return p.rttMs; });
      if (rtts.length && s.hosts.length <= 8) {
        var avg = rtts.reduce(function (x, y) { return x + y; }, 0) / rtts.length;
        lines.appendChild(sv("text", { "class": "rtt", x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 6, "text-anchor": "middle" }, avg.toFixed(2) + " ms"));
      }
    });
    svg.appendChild(lines);
    s.hosts.forEach(function (h) {
      var p = pos[h.id];
      var g = sv("g", {
        "class": "host" + (selected === h.id ? " selected" : ""),
        transform: "translate(" + (p.x - w / 2) + "," + (p.y - hgt / 2) + ") scale(" + scale + ")",
        "data-host": h.id, "data-lease": h.lease, "data-flanneld": h.flanneld ? h.flanneld.state : "unknown",
        tabindex: "0", role: "button", "aria-label": "host " + h.name
      });
      g.appendChild(sv("rect", { width: CARD_W, height: CARD_H, rx: 8 }));
      var y = 20;
      g.appendChild(sv("text", { "class": "name", x: 10, y: y }, h.name));
      var badge = h.lease === "gone" ? ["badge-gone", "lease gone"] : h.lease === "none" ? ["badge-gone", "no lease"] :
        h.flanneld && h.flanneld.state === "stopped" ? ["badge-stopped", "flanneld stopped"] :
        h.edgeNetworks && h.edgeNetworks.length ? ["badge-edge", "edge gateway"] : null;
      if (badge) g.appendChild(sv("text", { "class": badge[0], x: CARD_W - 10, y: y, "text-anchor": "end" }, badge[1]));
      y += 18;
      g.appendChild(sv("text", { "class": "mono", x: 10, y: y }, "subnet " + (h.subnet || "—")));
      y += 16;
      g.appendChild(sv("text", { "class": "mono dim", x: 10, y: y }, "public " + (h.publicIP || "—")));
      y += 16;
      var mac = h.vtepMac ? "VTEP " + h.vtepMac : h.backend ? "backend " + h.backend : "";
      g.appendChild(sv("text", { "class": "mono dim", x: 10, y: y }, mac));
      y += 16;
      var pods = h.pods.length > 2 ? h.pods.length + " pods" : h.pods.map(function (pod) { return pod.name + " " + (pod.ip || "?"); }).join(", ");
      if (pods) g.appendChild(sv("text", { "class": "mono dim", x: 10, y: y }, "pods " + pods));
      var tip = h.name + (h.flanneld ? "\\nflanneld: " + h.flanneld.state + (h.flanneld.pid ? " (pid " + h.flanneld.pid + ")" : "") + "\\nlog: " + h.flanneld.log : "");
      h.pods.forEach(function (pod) { tip += "\\npod " + pod.name + " " + (pod.ip || "?"); });
      if (h.edgeNetworks && h.edgeNetworks.length) tip += "\\nedge gateway for " + h.edgeNetworks.join(", ");
      g.appendChild(sv("title", null, tip));
      g.addEventListener("click", function () { select(h.id); });
      g.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(h.id); } });
      svg.appendChild(g);
    });
  }

  function drawTunnelTable(s) {
    var body = document.getElementById("tunnel-rows");
    clear(body);
    if (!s.tunnels.length) {
      var tr0 = el("tr"); var td0 = el("td", { colspan: "3", "class": "hint" }, "no tunnels (fewer than two hosts hold a lease)"); tr0.appendChild(td0); body.appendChild(tr0);
      return;
    }
    s.tunnels.forEach(function (t) {
      var tr = el("tr", { "data-tunnel-row": t.id });
      tr.appendChild(el("td", null, t.a + " ↔ " + t.b));
      var td = el("td"); td.appendChild(el("span", { "class": "st st-" + t.state }, t.state)); tr.appendChild(td);
      var probes = t.probes.length ? t.probes.map(probeText).join("; ") : (t.state === "down" ? "a host has no lease" : "no probe data");
      tr.appendChild(el("td", { "class": "mono" }, probes));
      body.appendChild(tr);
    });
  }

  function render(s) {
    state = s;
    document.getElementById("title").textContent = "flannel-ts · " + s.title;
    var meta = "store " + s.store + " · backend " + (s.backend || "?") + " · network " + (s.network || "?") +
      " · " + s.hosts.length + " hosts · updated " + new Date(s.updatedAt).toLocaleTimeString();
    document.getElementById("meta").textContent = meta;
    var err = document.getElementById("store-error");
    err.textContent = s.storeError ? "Store: " + s.storeError : "";
    err.className = s.storeError ? "shown" : "";
    document.getElementById("probe-note").textContent = s.probeNote;
    drawGraph(s);
    drawTunnelTable(s);
    document.body.setAttribute("data-version", String(s.version));
    // Re-read the selected host's kernel when hosts or tunnels changed state (not on every RTT change).
    var sig = JSON.stringify([s.hosts.map(function (h) { return [h.id, h.lease, h.subnet, h.vtepMac, h.flanneld ? h.flanneld.state : ""]; }),
      s.tunnels.map(function (t) { return [t.id, t.state]; })]);
    var changed = sig !== lastSig;
    lastSig = sig;
    if (selected !== null) {
      if (!s.hosts.some(function (h) { return h.id === selected; })) { selected = null; resetKernel(); }
      else if (changed) loadKernel(selected);
    }
  }

  function resetKernel() {
    var k = document.getElementById("kernel");
    clear(k);
    k.setAttribute("data-for", "");
    k.setAttribute("data-loaded", "false");
    k.appendChild(el("h2", null, "Kernel tables"));
    k.appendChild(el("p", { "class": "hint" }, "Click a host to read its flannel device, neighbours, FDB and routes."));
  }

  function select(id) {
    selected = id;
    if (state) drawGraph(state);
    var k = document.getElementById("kernel");
    if (k.getAttribute("data-for") !== id) {
      clear(k);
      k.setAttribute("data-for", id);
      k.setAttribute("data-loaded", "false");
      k.appendChild(el("h2", null, "Kernel tables of " + id));
      k.appendChild(el("p", { "class": "hint" }, "reading…"));
    }
    loadKernel(id);
  }

  function table(name, head, rows, empty) {
    var t = el("table", { "data-table": name });
    var tr = el("tr");
    head.forEach(function (h) { tr.appendChild(el("th", null, h)); });
    var th = el("thead"); th.appendChild(tr); t.appendChild(th);
    var tb = el("tbody");
    if (!rows.length) { var r0 = el("tr", { "data-empty": "" }); r0.appendChild(el("td", { colspan: String(head.length), "class": "hint" }, empty)); tb.appendChild(r0); }
    rows.forEach(function (r) {
      var row = el("tr", { "data-row": "", "class": r.cls || "" });
      r.cells.forEach(function (c) { row.appendChild(el("td", { "class": "mono" }, c)); });
      tb.appendChild(row);
    });
    t.appendChild(tb);
    return t;
  }

  function loadKernel(id) {
    var seq = ++kernelSeq;
    fetch("api/hosts/" + encodeURIComponent(id) + "/kernel", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (d) { if (seq >= kernelFor && selected === id) { kernelFor = seq; drawKernel(id, d); } })
      .catch(function (e) { if (selected === id) drawKernel(id, { available: false, reason: String(e) }); });
  }

  function drawKernel(id, d) {
    var k = document.getElementById("kernel");
    clear(k);
    k.setAttribute("data-for", id);
    k.appendChild(el("h2", null, "Kernel tables of " + id));
    if (!d.available) {
      k.setAttribute("data-loaded", "unavailable");
      k.appendChild(el("p", { "class": "hint", "data-reason": "" }, d.reason));
      return;
    }
    k.appendChild(el("p", { "class": "hint" }, "read from " + d.source + " at " + new Date(d.readAt).toLocaleTimeString()));
    k.appendChild(el("h3", null, "Device"));
    if (d.device) {
      var dv = d.device;
      var rows = [{ cells: ["name", dv.name + (dv.kind ? " (" + dv.kind + ")" : "") + (dv.up ? " up" : " DOWN")] }];
      if (dv.mac) rows.push({ cells: ["mac", dv.mac] });
      rows.push({ cells: ["address", dv.addrs.join(", ") || "(none)"] });
      rows.push({ cells: ["mtu", dv.mtu === null ? "?" : String(dv.mtu)] });
      if (dv.vxlan) rows.push({ cells: ["vxlan", "id " + dv.vxlan.vni + " dstport " + dv.vxlan.port + (dv.vxlan.local ? " local " + dv.vxlan.local : "") + (dv.vxlan.learning ? "" : " nolearning")] });
      k.appendChild(table("device", ["", ""], rows, ""));
    } else {
      k.appendChild(el("p", { "class": "hint", "data-table": "device" }, d.deviceNote));
    }
    if (d.device) {
      k.appendChild(el("h3", null, "Neighbours (ip neigh show dev " + d.device.name + ")"));
      k.appendChild(table("neigh", ["address", "lladdr", "state"], d.neigh.map(function (n) { return { cells: [n.ip, n.mac || "", n.state] }; }), "(none)"));
      if (d.device.kind === "vxlan") {
        k.appendChild(el("h3", null, "FDB (bridge fdb show dev " + d.device.name + ")"));
        k.appendChild(table("fdb", ["mac", "dst", "flags"], d.fdb.map(function (f) { return { cells: [f.mac, f.dst || "", f.flags] }; }), "(none)"));
      }
    }
    k.appendChild(el("h3", null, "Routes (main table; flannel's in bold)"));
    k.appendChild(table("routes", ["route"], d.routes.map(function (r) { return { cells: [r.text], cls: r.flannel ? "flannel" : "" }; }), "(none)"));
    k.setAttribute("data-loaded", "true");
  }

  function connect() {
    var es = new EventSource("api/events");
    es.addEventListener("state", function (ev) {
      document.body.setAttribute("data-live", "live");
      document.getElementById("live").textContent = "live";
      render(JSON.parse(ev.data));
    });
    es.onerror = function () {
      document.body.setAttribute("data-live", "disconnected");
      document.getElementById("live").textContent = "disconnected, retrying…";
    };
  }
  connect();
})();
</script>
</body>
</html>
`;
