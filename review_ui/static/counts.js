// The counts page: totals and the last hour per class, refreshed every few seconds from the JSON API.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const COLOURS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
    "#4b5563", "#65a30d"];
  const SVG = "http://www.w3.org/2000/svg";
  const initial = JSON.parse(document.getElementById("counts-data").textContent);

  function rows(body, counts) {
    const entries = Object.entries(counts);
    document.getElementById(body).replaceChildren(...entries.map(([name, count]) => {
      const row = document.createElement("tr");
      const label = document.createElement("td");
      label.textContent = name;
      const value = document.createElement("td");
      value.className = "num";
      value.textContent = String(count);
      row.append(label, value);
      return row;
    }));
    return entries.reduce((sum, [, count]) => sum + count, 0);
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attributes).forEach(([key, value]) => node.setAttribute(key, String(value)));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function chart(history) {
    const width = 900;
    const height = 260;
    const pad = { left: 44, right: 12, top: 12, bottom: 28 };
    const names = Object.keys(history.series);
    const minutes = history.minutes;
    const peak = Math.max(1, ...names.flatMap((name) => history.series[name]));
    const x = (i) => pad.left + (i * (width - pad.left - pad.right)) / Math.max(1, minutes.length - 1);
    const y = (v) => height - pad.bottom - (v * (height - pad.top - pad.bottom)) / peak;
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart-svg" });
    for (let step = 0; step <= 4; step += 1) {
      const value = Math.round((peak * step) / 4);
      root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: "grid-line" }));
      root.append(svg("text", { x: pad.left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, String(value)));
    }
    const last = minutes.length - 1;
    [0, 15, 30, 45, last].forEach((i) => {
      if (i > last || (i !== last && last - i < 8)) return;
      const anchor = i === 0 ? "start" : i === last ? "end" : "middle";
      root.append(svg("text", { x: x(i), y: height - 8, class: "axis", "text-anchor": anchor }, minutes[i].slice(11, 16)));
    });
    const legend = document.getElementById("legend");
    legend.replaceChildren();
    names.forEach((name, index) => {
      const colour = COLOURS[index % COLOURS.length];
      const points = history.series[name].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      root.append(svg("polyline", { points, fill: "none", stroke: colour, "stroke-width": 2 }));
      const item = document.createElement("li");
      const dot = svg("svg", { width: 12, height: 12 });
      dot.append(svg("rect", { width: 12, height: 12, rx: 2, fill: colour }));
      item.append(dot, ` ${name} (${history.series[name].reduce((a, b) => a + b, 0)})`);
      legend.append(item);
    });
    if (!names.length) {
      root.append(svg("text", { x: width / 2, y: height / 2, class: "axis", "text-anchor": "middle" },
        "no images counted in the last hour"));
    }
    document.getElementById("chart").replaceChildren(root);
  }

  function show(totals, history) {
    document.getElementById("class-total").textContent = String(rows("class-counts", totals.class));
    document.getElementById("camera-total").textContent = String(rows("camera-counts", totals.camera));
    document.getElementById("counts-updated").textContent = totals.as_of ? `as of ${totals.as_of}` : "no counts yet";
    const error = document.getElementById("counts-error");
    error.textContent = totals.error || "";
    error.hidden = !totals.error;
    chart(history);
  }

  async function refresh() {
    try {
      const [totals, history] = await Promise.all(["/api/counts", "/api/counts/history"].map(async (url) => {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.status === 401) window.location.assign("/login?next=/counts");
        if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
        return response.json();
      }));
      show(totals, history);
    } catch (error) {
      const banner = document.getElementById("counts-error");
      banner.textContent = `Counts could not be refreshed: ${error.message}`;
      banner.hidden = false;
    }
  }

  show(initial.totals, initial.history);
  setInterval(refresh, REFRESH_MS);
})();
