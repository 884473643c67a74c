// cuas-node live view: plan view, track table, health. Read-only; written for this project (no
// third-party code). Data: GET /api/scene once, then Server-Sent Events from /api/events carrying
// the node's own MQTT documents (docs/mqtt.md): info, tracks, health, alert, alerts.
"use strict";

(function () {
  const CLASS_COLORS = {
    multirotor: "#ff3b3b", fixed_wing: "#ff9f1a", bird: "#35c9ff", aircraft: "#b58cff", unknown: "#ffe14d",
  };
  const ZONE_COLORS = { warning: "#f2b33d", critical: "#ff5252" };
  const TRAIL_S = 20; // seconds of trail per track
  const VECTOR_S = 5; // the velocity vector shows where the track will be in this many seconds
  const R_EARTH = 6378137.0;

  const state = {
    scene: null, info: null, tracks: null, health: null, alerts: new Map(),
    trails: new Map(), selected: null, sort: { key: "range", desc: false }, linkUp: false,
    view: { scale: 1, centreE: 0, centreN: 0, fitted: false },
  };
  const $ = (id) => document.getElementById(id);
  const canvas = $("plan");
  const ctx = canvas.getContext("2d");

  // -- geometry -------------------------------------------------------------------------------

  function origin() {
    const o = state.info && (state.info.enu_origin || state.info.position);
    return o ? { lat: o.lat, lon: o.lon } : null;
  }
  // A point [lat, lon] in metres east/north of the ENU origin (local tangent plane; centimetres
  // off within a few kilometres, which is what a mast's plan view spans).
  function toEnu(lat, lon) {
    const o = origin();
    if (!o) return null;
    const rad = Math.PI / 180;
    return [(lon - o.lon) * rad * R_EARTH * Math.cos(o.lat * rad), (lat - o.lat) * rad * R_EARTH];
  }
  function toLatLon(e, n) {
    const o = origin();
    const rad = Math.PI / 180;
    return [o.lat + n / R_EARTH / rad, o.lon + e / (R_EARTH * Math.cos(o.lat * rad)) / rad];
  }
  function size() {
    return { w: canvas.clientWidth, h: canvas.clientHeight };
  }
  function toScreen(e, n) {
    const { w, h } = size();
    const v = state.view;
    return [w / 2 + (e - v.centreE) * v.scale, h / 2 - (n - v.centreN) * v.scale];
  }
  function fromScreen(x, y) {
    const { w, h } = size();
    const v = state.view;
    return [v.centreE + (x - w / 2) / v.scale, v.centreN - (y - h / 2) / v.scale];
  }
  function bearingDeg(e, n) {
    return ((Math.atan2(e, n) * 180) / Math.PI + 360) % 360;
  }
  function nodeEnu() {
    const p = state.info && state.info.position;
    return (p && toEnu(p.lat, p.lon)) || [0, 0];
  }
  function maxRange() {
    let r = 0;
    for (const s of (state.scene && state.scene.sensors) || []) {
      if (s.coverage.type === "sector") r = Math.max(r, s.coverage.max_range_m);
    }
    return r || 200;
  }
  function fit() {
    const { w, h } = size();
    if (!w || !h) return;
    const [e, n] = nodeEnu();
    state.view.scale = Math.min(w, h) / 2 / (maxRange() * 1.12);
    state.view.centreE = e;
    state.view.centreN = n;
    state.view.fitted = true;
  }
  function niceStep(metres) {
    const p = Math.pow(10, Math.floor(Math.log10(metres)));
    for (const m of [1, 2, 5, 10]) if (m * p >= metres) return m * p;
    return 10 * p;
  }

  // -- drawing --------------------------------------------------------------------------------

  const tiles = new Map();
  function tileImage(url) {
    let img = tiles.get(url);
    if (!img) {
      if (tiles.size > 300) tiles.clear();
      img = new Image();
      img.onload = () => requestDraw();
      img.onerror = () => { img.failed = true; };
      img.src = url;
      tiles.set(url, img);
    }
    return img.complete && !img.failed && img.naturalWidth ? img : null;
  }
  function drawTiles(w, h) {
    const template = state.scene && state.scene.tiles;
    const o = origin();
    if (!template || !o) return false;
    const rad = Math.PI / 180;
    const z = Math.max(0, Math.min(19, Math.round(Math.log2((156543.034 * Math.cos(o.lat * rad)) * state.view.scale))));
    const n2 = Math.pow(2, z);
    const tx = (lon) => ((lon + 180) / 360) * n2;
    const ty = (lat) => ((1 - Math.log(Math.tan(lat * rad) + 1 / Math.cos(lat * rad)) / Math.PI) / 2) * n2;
    const lon2 = (x) => (x / n2) * 360 - 180;
    const lat2 = (y) => Math.atan(Math.sinh(Math.PI * (1 - (2 * y) / n2))) / rad;
    const [nwE, nwN] = fromScreen(0, 0);
    const [seE, seN] = fromScreen(w, h);
    const [latN, lonW] = toLatLon(nwE, nwN);
    const [latS, lonE] = toLatLon(seE, seN);
    const x0 = Math.floor(tx(lonW)), x1 = Math.floor(tx(lonE)), y0 = Math.floor(ty(latN)), y1 = Math.floor(ty(latS));
    if ((x1 - x0 + 1) * (y1 - y0 + 1) > 150) return false;
    for (let x = x0; x <= x1; x++) {
      for (let y = y0; y <= y1; y++) {
        if (y < 0 || y >= n2) continue;
        const url = template.replace("{z}", z).replace("{x}", ((x % n2) + n2) % n2).replace("{y}", y);
        const img = tileImage(url);
        if (!img) continue;
        const [e0, nn0] = toEnu(lat2(y), lon2(x));
        const [e1, nn1] = toEnu(lat2(y + 1), lon2(x + 1));
        const [sx0, sy0] = toScreen(e0, nn0);
        const [sx1, sy1] = toScreen(e1, nn1);
        ctx.drawImage(img, sx0, sy0, sx1 - sx0 + 0.5, sy1 - sy0 + 0.5);
      }
    }
    return true;
  }
  function drawGrid(w, h, step) {
    ctx.strokeStyle = "#1c252f";
    ctx.lineWidth = 1;
    const [e0, n0] = fromScreen(0, h);
    const [e1, n1] = fromScreen(w, 0);
    ctx.beginPath();
    for (let e = Math.ceil(e0 / step) * step; e <= e1; e += step) {
      const [x] = toScreen(e, 0);
      ctx.moveTo(x, 0); ctx.lineTo(x, h);
    }
    for (let n = Math.ceil(n0 / step) * step; n <= n1; n += step) {
      const [, y] = toScreen(0, n);
      ctx.moveTo(0, y); ctx.lineTo(w, y);
    }
    ctx.stroke();
  }
  function drawRings(step) {
    const [ne, nn] = nodeEnu();
    const [cx, cy] = toScreen(ne, nn);
    ctx.strokeStyle = "#3a4a5c";
    ctx.fillStyle = "#7d8ea0";
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    const limit = maxRange() * 2;
    for (let r = step; r <= limit; r += step) {
      ctx.beginPath();
      ctx.arc(cx, cy, r * state.view.scale, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.fillText(`${r} m`, cx + 3, cy - r * state.view.scale - 3);
    }
  }
  function wedge(cx, cy, radius, fromDeg, toDeg, inner) {
    // compass bearings, clockwise from north -> canvas angles (clockwise from +x)
    const a0 = ((fromDeg - 90) * Math.PI) / 180;
    const a1 = ((toDeg - 90) * Math.PI) / 180;
    ctx.beginPath();
    ctx.arc(cx, cy, radius, a0, a1);
    if (inner > 0) ctx.arc(cx, cy, inner, a1, a0, true);
    else ctx.lineTo(cx, cy);
    ctx.closePath();
  }
  function drawCoverage() {
    const [ne, nn] = nodeEnu();
    const s = state.view.scale;
    for (const sensor of (state.scene && state.scene.sensors) || []) {
      if (!sensor.enabled) continue;
      const c = sensor.coverage;
      const [cx, cy] = toScreen(ne + sensor.offset_m[0], nn + sensor.offset_m[1]);
      if (c.type === "sector") {
        wedge(cx, cy, c.max_range_m * s, c.boresight_deg - c.half_width_deg, c.boresight_deg + c.half_width_deg, c.min_range_m * s);
        ctx.fillStyle = "rgba(62, 207, 110, 0.08)";
        ctx.strokeStyle = "rgba(62, 207, 110, 0.55)";
        ctx.lineWidth = 1;
        ctx.fill();
        ctx.stroke();
      } else if (c.type === "beams") {
        for (const b of c.beams) {
          if (b.beamwidth_deg === null) continue;
          wedge(cx, cy, maxRange() * 0.6 * s, b.boresight_deg - b.beamwidth_deg / 2, b.boresight_deg + b.beamwidth_deg / 2, 0);
          ctx.strokeStyle = "rgba(181, 140, 255, 0.45)";
          ctx.setLineDash([4, 4]);
          ctx.stroke();
          ctx.setLineDash([]);
        }
      } else if (c.type === "array") {
        const a = ((c.heading_deg - 90) * Math.PI) / 180;
        ctx.strokeStyle = "rgba(53, 201, 255, 0.7)";
        ctx.beginPath();
        ctx.arc(cx, cy, 14, 0, 2 * Math.PI);
        ctx.moveTo(cx, cy);
        ctx.lineTo(cx + 14 * Math.cos(a), cy + 14 * Math.sin(a));
        ctx.stroke();
      } else if (c.type === "omni") {
        ctx.strokeStyle = "rgba(255, 225, 77, 0.5)";
        ctx.beginPath();
        ctx.arc(cx, cy, 20, 0, 2 * Math.PI);
        ctx.stroke();
      }
    }
  }
  function activeZones() {
    const z = new Set();
    for (const a of state.alerts.values()) z.add(a.zone.id);
    return z;
  }
  function drawZones() {
    const alerting = activeZones();
    for (const zone of (state.scene && state.scene.zones) || []) {
      const pts = zone.polygon.map(([lat, lon]) => toEnu(lat, lon));
      if (pts.some((p) => p === null)) return;
      ctx.beginPath();
      pts.forEach(([e, n], i) => {
        const [x, y] = toScreen(e, n);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.closePath();
      const colour = ZONE_COLORS[zone.level] || ZONE_COLORS.warning;
      ctx.globalAlpha = alerting.has(zone.id) ? 0.3 : 0.1;
      ctx.fillStyle = colour;
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.strokeStyle = colour;
      ctx.lineWidth = alerting.has(zone.id) ? 2 : 1;
      ctx.stroke();
      const [x, y] = toScreen(pts[0][0], pts[0][1]);
      ctx.fillStyle = colour;
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(zone.id, x + 3, y - 3);
    }
  }
  function drawNode() {
    const [x, y] = toScreen(...nodeEnu());
    ctx.fillStyle = "#ffffff";
    ctx.beginPath();
    ctx.moveTo(x, y - 7); ctx.lineTo(x + 6, y + 5); ctx.lineTo(x - 6, y + 5);
    ctx.closePath();
    ctx.fill();
  }
  function drawNorth(w) {
    ctx.fillStyle = "#dfe6ee";
    ctx.font = "bold 13px system-ui, sans-serif";
    ctx.fillText("N", w - 66, 22);
    ctx.beginPath();
    ctx.moveTo(w - 62, 26); ctx.lineTo(w - 66, 38); ctx.lineTo(w - 58, 38);
    ctx.closePath();
    ctx.fill();
  }
  function alertTracks() {
    const ids = new Set();
    for (const a of state.alerts.values()) if (a.track) ids.add(a.track.id);
    return ids;
  }
  function drawTracks(w, h) {
    const tracks = (state.tracks && state.tracks.tracks) || [];
    const alerting = alertTracks();
    const [ne, nn] = nodeEnu();
    const s = state.view.scale;
    // bearing-only tracks first: rays from the node, under the located tracks
    for (const t of tracks) {
      if (!t.bearing_only || t.status === "deleted") continue;
      const colour = CLASS_COLORS[t.class.label] || CLASS_COLORS.unknown;
      const b = (bearingDeg(t.enu_m[0] - ne, t.enu_m[1] - nn) * Math.PI) / 180;
      const len = Math.hypot(w, h) / s;
      const [x0, y0] = toScreen(ne, nn);
      const [x1, y1] = toScreen(ne + len * Math.sin(b), nn + len * Math.cos(b));
      ctx.strokeStyle = colour;
      ctx.lineWidth = t.id === state.selected ? 3 : 1.5;
      ctx.setLineDash([8, 5]);
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
      ctx.setLineDash([]);
      const [lx, ly] = toScreen(ne + maxRange() * 0.9 * Math.sin(b), nn + maxRange() * 0.9 * Math.cos(b));
      ctx.fillStyle = colour;
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(shortId(t.id), lx + 4, ly);
    }
    // located tracks: trails, velocity vectors and operator links first
    const located = tracks.filter((t) => !t.bearing_only && t.status !== "deleted");
    for (const t of located) {
      const colour = CLASS_COLORS[t.class.label] || CLASS_COLORS.unknown;
      const trail = state.trails.get(t.id) || [];
      if (trail.length > 1) {
        ctx.strokeStyle = colour;
        ctx.globalAlpha = 0.5;
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        trail.forEach(([, e, n], i) => {
          const [x, y] = toScreen(e, n);
          if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        });
        ctx.stroke();
        ctx.globalAlpha = 1;
      }
      const [x, y] = toScreen(t.enu_m[0], t.enu_m[1]);
      const [vx, vy] = toScreen(t.enu_m[0] + t.vel_enu_mps[0] * VECTOR_S, t.enu_m[1] + t.vel_enu_mps[1] * VECTOR_S);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(vx, vy); ctx.stroke();
      const rid = t.remote_id;
      if (rid && rid.operator_lat !== undefined && rid.operator_lon !== undefined) {
        const op = toEnu(rid.operator_lat, rid.operator_lon);
        if (op) {
          const [ox, oy] = toScreen(op[0], op[1]);
          ctx.strokeStyle = "#ffffff";
          ctx.lineWidth = 1;
          ctx.setLineDash([2, 4]);
          ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(ox, oy); ctx.stroke();
          ctx.setLineDash([]);
          ctx.fillStyle = "#ffffff";
          ctx.fillRect(ox - 4, oy - 4, 8, 8);
          ctx.font = "11px system-ui, sans-serif";
          ctx.fillText("operator", ox + 6, oy + 4);
        }
      }
    }
    // then the symbols over every line, then the labels over everything
    for (const t of located) {
      const colour = CLASS_COLORS[t.class.label] || CLASS_COLORS.unknown;
      const [x, y] = toScreen(t.enu_m[0], t.enu_m[1]);
      if (alerting.has(t.id)) {
        ctx.strokeStyle = "#ff5252";
        ctx.lineWidth = 3;
        ctx.beginPath(); ctx.arc(x, y, 13, 0, 2 * Math.PI); ctx.stroke();
      }
      if (t.id === state.selected) {
        ctx.strokeStyle = "#ffffff";
        ctx.lineWidth = 2;
        ctx.beginPath(); ctx.arc(x, y, 10, 0, 2 * Math.PI); ctx.stroke();
      }
      const radius = t.status === "tentative" ? 4 : 6;
      ctx.beginPath();
      ctx.arc(x, y, radius, 0, 2 * Math.PI);
      if (t.status === "coasting") {
        ctx.fillStyle = "#10151b";
        ctx.fill();
        ctx.strokeStyle = colour;
        ctx.lineWidth = 2;
        ctx.stroke();
      } else {
        ctx.fillStyle = colour;
        ctx.fill();
      }
    }
    ctx.fillStyle = "#dfe6ee";
    ctx.font = "11px system-ui, sans-serif";
    for (const t of located) {
      const [x, y] = toScreen(t.enu_m[0], t.enu_m[1]);
      ctx.fillText(shortId(t.id) + (t.remote_id ? " " + t.remote_id.uas_id : ""), x + 9, y - 8);
    }
  }
  let drawPending = false;
  function requestDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; draw(); });
  }
  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const { w, h } = size();
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    if (!state.view.fitted) fit();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#10151b";
    ctx.fillRect(0, 0, w, h);
    const step = niceStep(80 / state.view.scale);
    if (!drawTiles(w, h)) drawGrid(w, h, step);
    drawRings(niceStep(maxRange() / 4));
    drawCoverage();
    drawZones();
    drawNode();
    drawTracks(w, h);
    drawNorth(w);
    state.drawn = { tracks: state.tracks, view: { ...state.view }, width: w, height: h, dpr };
  }

  // -- zoom and pan ---------------------------------------------------------------------------

  function zoom(factor, x, y) {
    const { w, h } = size();
    const [e, n] = fromScreen(x === undefined ? w / 2 : x, y === undefined ? h / 2 : y);
    state.view.scale = Math.max(0.005, Math.min(50, state.view.scale * factor));
    const [e2, n2] = fromScreen(x === undefined ? w / 2 : x, y === undefined ? h / 2 : y);
    state.view.centreE += e - e2;
    state.view.centreN += n - n2;
    requestDraw();
  }
  const pointers = new Map();
  let pinch = 0;
  let moved = false;
  canvas.addEventListener("pointerdown", (ev) => {
    pointers.set(ev.pointerId, [ev.offsetX, ev.offsetY]);
    canvas.setPointerCapture(ev.pointerId);
    moved = false;
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      pinch = Math.hypot(a[0] - b[0], a[1] - b[1]);
    }
  });
  canvas.addEventListener("pointermove", (ev) => {
    const last = pointers.get(ev.pointerId);
    if (!last) return;
    const now = [ev.offsetX, ev.offsetY];
    pointers.set(ev.pointerId, now);
    if (pointers.size === 1) {
      const dx = now[0] - last[0], dy = now[1] - last[1];
      if (Math.abs(dx) + Math.abs(dy) > 0) moved = true;
      state.view.centreE -= dx / state.view.scale;
      state.view.centreN += dy / state.view.scale;
      requestDraw();
    } else if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const d = Math.hypot(a[0] - b[0], a[1] - b[1]);
      if (pinch > 0) zoom(d / pinch, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2);
      pinch = d;
      moved = true;
    }
  });
  const release = (ev) => {
    if (pointers.size === 1 && !moved) pick(ev.offsetX, ev.offsetY);
    pointers.delete(ev.pointerId);
    pinch = 0;
  };
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", (ev) => { pointers.delete(ev.pointerId); pinch = 0; });
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    zoom(ev.deltaY < 0 ? 1.2 : 1 / 1.2, ev.offsetX, ev.offsetY);
  }, { passive: false });
  $("zoom-in").addEventListener("click", () => zoom(1.5));
  $("zoom-out").addEventListener("click", () => zoom(1 / 1.5));
  $("recentre").addEventListener("click", () => { fit(); requestDraw(); });
  window.addEventListener("resize", requestDraw);

  function pick(x, y) {
    let best = null, bestD = 16;
    for (const t of (state.tracks && state.tracks.tracks) || []) {
      if (t.bearing_only || t.status === "deleted") continue;
      const [tx, ty] = toScreen(t.enu_m[0], t.enu_m[1]);
      const d = Math.hypot(tx - x, ty - y);
      if (d < bestD) { best = t.id; bestD = d; }
    }
    if (best) select(best);
  }

  // -- table and details ----------------------------------------------------------------------

  function shortId(id) {
    return "#" + id.split(".").pop();
  }
  function fmt(v, digits) {
    return v === undefined || v === null ? "" : Number(v).toFixed(digits);
  }
  function rowData(t) {
    const [ne, nn] = nodeEnu();
    const de = t.enu_m[0] - ne, dn = t.enu_m[1] - nn;
    return {
      id: Number(t.id.split(".").pop()),
      class: t.class.label,
      range: Math.hypot(de, dn),
      bearing: bearingDeg(de, dn),
      alt: t.alt_m,
      speed: Math.hypot(t.vel_enu_mps[0], t.vel_enu_mps[1], t.vel_enu_mps[2]),
      sensors: t.sensors.join(" "),
      rid: t.remote_id ? t.remote_id.uas_id : "",
    };
  }
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  const tableRows = new Map();
  function renderTable() {
    const tbody = document.querySelector("#tracks tbody");
    const tracks = ((state.tracks && state.tracks.tracks) || []).filter((t) => t.status !== "deleted");
    const rows = tracks.map((t) => [t, rowData(t)]);
    const { key, desc } = state.sort;
    rows.sort((a, b) => {
      const x = a[1][key], y = b[1][key];
      const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
      return desc ? -c : c;
    });
    const alerting = alertTracks();
    // Rows are kept and updated in place (a row rebuilt under a finger 5 times a second would
    // swallow the tap); they are only moved into the sorted order.
    const keep = new Set();
    for (const [t, r] of rows) {
      let tr = tableRows.get(t.id);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.id = t.id;
        for (let i = 0; i < 8; i++) cell(tr, "");
        const dot = document.createElement("span");
        dot.className = "dot";
        tr.children[1].append(dot, document.createTextNode(""));
        tr.addEventListener("click", () => select(t.id));
        tableRows.set(t.id, tr);
      }
      keep.add(t.id);
      tr.dataset.status = t.status;
      tr.classList.toggle("selected", t.id === state.selected);
      tr.classList.toggle("alerting", alerting.has(t.id));
      const texts = [
        shortId(t.id) + (t.status === "confirmed" ? "" : " (" + t.status + ")"),
        `${t.class.label} ${Math.round(t.class.confidence * 100)}%`,
        t.bearing_only ? "?" : fmt(r.range, 0),
        fmt(r.bearing, 0),
        t.bearing_only ? "?" : fmt(r.alt, 0),
        t.bearing_only ? "" : fmt(r.speed, 1),
        r.sensors,
        r.rid,
      ];
      texts.forEach((text, i) => {
        const td = tr.children[i];
        const node = i === 1 ? td.lastChild : td;
        if (node.textContent !== text) node.textContent = text;
      });
      tr.children[1].firstChild.style.background = CLASS_COLORS[t.class.label] || CLASS_COLORS.unknown;
      tbody.appendChild(tr);
    }
    for (const [id, tr] of tableRows) {
      if (!keep.has(id)) { tr.remove(); tableRows.delete(id); }
    }
    $("no-tracks").hidden = rows.length > 0;
    document.querySelectorAll("#tracks th").forEach((th) => {
      th.classList.toggle("sorted", th.dataset.key === key);
      th.classList.toggle("desc", th.dataset.key === key && desc);
    });
  }
  document.querySelectorAll("#tracks th").forEach((th) => {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      state.sort = { key, desc: state.sort.key === key ? !state.sort.desc : false };
      renderTable();
    });
  });
  function select(id) {
    state.selected = state.selected === id ? null : id;
    renderTable();
    renderDetails();
    requestDraw();
  }
  function renderDetails() {
    const panel = $("details-panel");
    const t = ((state.tracks && state.tracks.tracks) || []).find((x) => x.id === state.selected);
    panel.hidden = !t;
    if (!t) return;
    $("details-id").textContent = t.id;
    const r = rowData(t);
    const sig = t.pos_cov_enu_m2;
    const items = [
      ["status", t.status + (t.bearing_only ? " (bearing only)" : "")],
      ["class", `${t.class.label} ${Math.round(t.class.confidence * 100)}%`],
      ["probabilities", Object.entries(t.class.probabilities || {}).map(([k, p]) => `${k} ${Math.round(p * 100)}%`).join(", ")],
      ["evidence", (t.class.evidence || []).join(", ") || "none"],
      ["position", `${fmt(t.lat, 6)}, ${fmt(t.lon, 6)}`],
      ["altitude", `${fmt(t.alt_m, 1)} m (${fmt(t.enu_m[2], 1)} m above origin)`],
      ["range, bearing", `${fmt(r.range, 0)} m, ${fmt(r.bearing, 1)}°`],
      ["velocity", `${fmt(r.speed, 1)} m/s to ${fmt(bearingDeg(t.vel_enu_mps[0], t.vel_enu_mps[1]), 0)}°, climb ${fmt(t.vel_enu_mps[2], 1)} m/s`],
      ["σ east/north/up", sig.map((row, i) => fmt(Math.sqrt(Math.max(0, row[i])), 1)).join(" / ") + " m"],
      ["sensors", t.sensors.join(", ")],
    ];
    const rid = t.remote_id;
    if (rid) {
      items.push(["Remote ID", `${rid.uas_id} (${rid.consistency})`]);
      for (const k of ["ua_type", "operator_id", "serial_number", "registration_id", "carrier", "rssi_dbm", "offset_m", "in_coverage"]) {
        if (rid[k] !== undefined) items.push([k.replace(/_/g, " "), String(rid[k])]);
      }
      if (rid.operator_lat !== undefined) items.push(["operator at", `${fmt(rid.operator_lat, 6)}, ${fmt(rid.operator_lon, 6)}`]);
    }
    for (const a of state.alerts.values()) {
      if (a.track && a.track.id === t.id) items.push(["alert", `${a.zone.level} in ${a.zone.id} since ${new Date(a.since * 1000).toLocaleTimeString()}`]);
    }
    const dl = $("details");
    dl.replaceChildren();
    for (const [k, v] of items) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dl.append(dt, dd);
    }
  }

  // -- health and alerts ----------------------------------------------------------------------

  function span(parent, text, cls) {
    const s = document.createElement("span");
    s.textContent = text;
    if (cls) s.className = cls;
    parent.appendChild(s);
    return s;
  }
  function renderHealth() {
    const h = state.health;
    if (!h) return;
    const summary = $("health-summary");
    summary.replaceChildren();
    span(summary, `broker ${h.broker}`, h.broker === "connected" ? "state-ok" : "state-down");
    span(summary, `uptime ${fmt(h.uptime_s / 60, 0)} min`);
    if (h.fusion) span(summary, `fusion ${h.fusion.confirmed} confirmed, ${h.fusion.tentative} tentative, ${fmt(h.fusion.cycle_ms, 1)} ms/cycle`);
    if (h.errors) span(summary, `internal errors ${h.errors.internal}`, h.errors.internal ? "state-down" : "");
    const tbody = document.querySelector("#sensors tbody");
    tbody.replaceChildren();
    for (const s of h.sensors || []) {
      const tr = document.createElement("tr");
      tr.dataset.sensor = s.id;
      cell(tr, s.id);
      cell(tr, s.kind);
      cell(tr, s.state, "state-" + s.state);
      cell(tr, fmt(s.rate_hz, 1));
      cell(tr, s.age_s === undefined || s.age_s === null ? "never" : fmt(s.age_s, 1));
      cell(tr, s.detail || "");
      tbody.appendChild(tr);
    }
    const blocks = $("health-blocks");
    blocks.replaceChildren();
    if (h.mqtt) span(blocks, `MQTT published ${h.mqtt.published}, dropped ${h.mqtt.dropped}, reconnects ${h.mqtt.reconnects}`);
    if (h.spool) span(blocks, `spool pending ${h.spool.pending}`);
    if (h.web) span(blocks, `web ${h.web.state}: ${h.web.clients} viewer(s), ${h.web.slow_dropped} slow dropped`);
    for (const o of h.outputs || []) {
      const ok = o.state === "connected" ? "state-ok" : "state-degraded";
      const error = o.state !== "connected" && o.last_error ? ` (${o.last_error})` : "";
      span(blocks, `${o.kind} ${o.name} → ${o.target}: ${o.state}${error}, sent ${o.sent}, dropped ${o.dropped}`, ok);
    }
    const sys = h.system || {};
    if (sys.load) span(blocks, `load ${sys.load.map((x) => fmt(x, 2)).join(" ")} (${sys.cpus} CPUs)`);
    if (sys.cpu_temp_c !== undefined) span(blocks, `CPU ${fmt(sys.cpu_temp_c, 0)} °C`, sys.cpu_temp_c > 75 ? "state-degraded" : "");
    if (sys.throttled && sys.throttled.now && sys.throttled.now.length) span(blocks, `throttled: ${sys.throttled.now.join(", ")}`, "state-down");
    if (sys.clock) span(blocks, `clock ${sys.clock.synced ? "synced" : "NOT synced"}${sys.clock.source ? " (" + sys.clock.source + ")" : ""}`, sys.clock.synced ? "state-ok" : "state-degraded");
    if (h.gps) span(blocks, `GPS ${h.gps.fix ? "fix" : "no fix"}${h.gps.satellites !== undefined ? ", " + h.gps.satellites + " sats" : ""}`, h.gps.fix ? "state-ok" : "state-degraded");
    if (h.gpio) span(blocks, `alert output ${h.gpio.alert ? "on" : "off"}, tamper ${h.gpio.tamper || "-"}`);
  }
  function renderAlerts() {
    const box = $("alerts");
    box.replaceChildren();
    for (const a of state.alerts.values()) {
      const label = a.track ? `${shortId(a.track.id)} ${a.track.class.label}` : "track gone";
      span(box, `${a.zone.level.toUpperCase()} ${a.zone.id}: ${label}${a.ack ? " (acknowledged by " + a.ack.by + ")" : ""}`, "alert " + a.zone.level);
    }
    box.hidden = state.alerts.size === 0;
  }

  // -- data -----------------------------------------------------------------------------------

  function onTracks(msg) {
    state.tracks = msg;
    const now = msg.t;
    const live = new Set();
    for (const t of msg.tracks) {
      if (t.status === "deleted" || t.bearing_only) continue;
      live.add(t.id);
      const trail = state.trails.get(t.id) || [];
      trail.push([t.t, t.enu_m[0], t.enu_m[1]]);
      while (trail.length && trail[0][0] < now - TRAIL_S) trail.shift();
      state.trails.set(t.id, trail);
    }
    for (const id of state.trails.keys()) if (!live.has(id)) state.trails.delete(id);
    const shown = msg.tracks.filter((t) => t.status !== "deleted");
    $("confirmed-count").textContent = String(msg.tracks.filter((t) => t.status === "confirmed").length);
    $("track-count").textContent = String(shown.length);
    $("tracks-seq").textContent = String(msg.seq);
    $("clock").textContent = new Date(msg.t * 1000).toLocaleTimeString();
    renderTable();
    renderDetails();
    requestDraw();
  }
  function onAlert(a) {
    if (a.state === "cleared") state.alerts.delete(a.alert_id);
    else state.alerts.set(a.alert_id, a);
    renderAlerts();
    renderTable();
    requestDraw();
  }
  function setLink(up, text) {
    state.linkUp = up;
    const el = $("link");
    el.textContent = text;
    el.className = "badge " + (up ? "ok" : "bad");
  }
  function connect() {
    const source = new EventSource("api/events");
    source.addEventListener("open", () => setLink(true, "live"));
    source.addEventListener("error", () => {
      setLink(false, "reconnecting");
      // The browser retries by itself after a dropped stream, but not after an HTTP error (503:
      // too many pages open; a restarting node): then try again in a while.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
    });
    source.addEventListener("info", (ev) => {
      state.info = JSON.parse(ev.data);
      $("node-id").textContent = state.info.node_id;
      if (!state.scene) loadScene();
      if (!state.linkUp) setLink(true, "live");
      state.view.fitted = false;
      requestDraw();
    });
    source.addEventListener("scene", (ev) => { state.scene = JSON.parse(ev.data); requestDraw(); });
    source.addEventListener("tracks", (ev) => onTracks(JSON.parse(ev.data)));
    source.addEventListener("health", (ev) => { state.health = JSON.parse(ev.data); renderHealth(); });
    source.addEventListener("alert", (ev) => onAlert(JSON.parse(ev.data)));
    source.addEventListener("alerts", (ev) => {
      state.alerts.clear();
      for (const a of JSON.parse(ev.data).alerts) state.alerts.set(a.alert_id, a);
      renderAlerts();
      requestDraw();
    });
  }
  function legend() {
    const el = $("legend");
    for (const [label, colour] of Object.entries(CLASS_COLORS)) {
      const s = document.createElement("span");
      const i = document.createElement("i");
      i.style.background = colour;
      s.append(i, label.replace("_", " "));
      el.appendChild(s);
    }
  }

  // For tests and curious technicians: the state and the mapping, read-only by convention.
  window.cuasView = { state, toScreen, classColors: CLASS_COLORS };

  function loadScene() {
    return fetch("api/scene")
      .then((r) => (r.ok ? r.json() : null))
      .then((scene) => { state.scene = scene; requestDraw(); })
      .catch(() => {});
  }

  legend();
  loadScene().finally(connect);
})();
