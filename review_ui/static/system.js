// The System page: workers' health and figures, and the last hour's charts, refreshed from /api/system.
"use strict";

(() => {
  const REFRESH_MS = 15000;
  const CHARTS = [...document.querySelectorAll("[data-chart]")].map((panel) => panel.dataset);
  const initial = JSON.parse(document.getElementById("system-data").textContent);

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (className) td.className = className;
    return td;
  }

  function number(value, digits) {
    return value === null || value === undefined ? null : Number(value).toFixed(digits);
  }

  function health(worker) {
    const waiting = (worker.health.waiting || []).map((item) => `${item.for}: ${item.reason}`).join("; ");
    return waiting ? `${worker.status} (${waiting})` : worker.status || worker.health.error;
  }

  function rows(body, entries, columns) {
    document.getElementById(body).replaceChildren(...entries.map((entry) => {
      const row = document.createElement("tr");
      row.dataset.instance = entry.instance;
      row.append(...columns(entry));
      return row;
    }));
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toTimeString().slice(0, 5);
  }

  function formatter(unit) {
    // The axis ticks are round steps (line_chart.js): three significant digits show them exactly.
    if (unit.startsWith("share")) return (value) => `${Number((value * 100).toPrecision(3))}%`;
    return (value) => String(Number(value.toPrecision(3)));
  }

  function chart(panel, series, start, end, step) {
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((share) => start + share * (end - start));
    window.lineChart({
      chart: document.getElementById(`${panel.chart}-chart`),
      legend: document.getElementById(`${panel.chart}-legend`),
      series,
      xRange: [start, end],
      xTicks: ticks.map((at) => [at, clock(at)]),
      formatY: formatter(panel.unit),
      minPeak: Number(panel.floor),
      gap: 2 * step,
      width: 600,
      height: 240,
      empty: "no data in the last hour",
    });
  }

  function show(report) {
    document.getElementById("system-updated").textContent = `as of ${clock(report.as_of)}`;
    const error = document.getElementById("prometheus-error");
    error.textContent = report.prometheus.error || "";
    error.hidden = !report.prometheus.error;
    rows("worker-rows", report.workers, (worker) => [
      cell(worker.instance), cell(worker.unit), cell(health(worker), `status-${worker.status}`),
      cell(worker.model_version), cell(worker.runtime),
      cell(number(worker.images_per_s, 1), "num"), cell(number(worker.lag, 0), "num")]);
    rows("process-rows", report.processes, (process) => [
      cell(process.instance), cell(process.unit), cell(process.address), cell(process.scraped)]);
    const byKey = Object.fromEntries(report.charts.map((found) => [found.key, found.series]));
    CHARTS.forEach((panel) => chart(panel, byKey[panel.chart] || [], report.as_of - report.window_s, report.as_of,
      report.step_s));
  }

  async function refresh() {
    try {
      const response = await fetch("/api/system", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) window.location.assign("/login?next=/system");
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      show(await response.json());
    } catch (problem) {
      const banner = document.getElementById("prometheus-error");
      banner.textContent = `The System page could not be refreshed: ${problem.message}`;
      banner.hidden = false;
    }
  }

  show(initial);
  setInterval(refresh, REFRESH_MS);
})();
