// The counts page: totals and the last hour per class, refreshed every few seconds from the JSON API.
"use strict";

(() => {
  const REFRESH_MS = 5000;
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

  function chart(history) {
    const names = Object.keys(history.series);
    const minutes = history.minutes;
    const last = minutes.length - 1;
    const ticks = [0, 15, 30, 45, last].filter((i) => i <= last && (i === last || last - i >= 8));
    window.lineChart({
      chart: document.getElementById("chart"),
      legend: document.getElementById("legend"),
      series: names.map((name) => ({ name, points: history.series[name].map((v, i) => [i, v]) })),
      xRange: [0, Math.max(1, last)],
      xTicks: ticks.map((i) => [i, minutes[i].slice(11, 16)]),
      legendText: (line) => `${line.name} (${line.points.reduce((sum, [, v]) => sum + v, 0)})`,
      empty: "no images counted in the last hour",
      whole: true,
    });
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
