// A line chart drawn as SVG, shared by the Counts and System pages: window.lineChart(options).
"use strict";

window.lineChart = (() => {
  const COLOURS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
    "#4b5563", "#65a30d"];
  const SVG = "http://www.w3.org/2000/svg";

  // The least round step (1, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) of four that reach `peak`: the axis
  // then reads 0, 0.6, 1.2, ... rather than 0, 0.61, 1.22, ...
  function roundStep(peak) {
    const quarter = peak / 4;
    const power = 10 ** Math.floor(Math.log10(quarter));
    const multiple = [1, 2, 2.5, 3, 4, 5, 6, 8, 10].find((m) => m * power >= quarter * (1 - 1e-9));
    return multiple * power;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attributes).forEach(([key, value]) => node.setAttribute(key, String(value)));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // options: chart and legend (elements), series [{name, points: [[x, y], ...]}], xTicks [[x, label], ...],
  // xRange [min, max], formatY (number -> text), legendText (series -> text), empty (text without data), gap (a
  // larger x distance between two points breaks the line: no samples there), minPeak (the least y-axis top), whole
  // (y counts things: whole-number ticks).
  return function lineChart(options) {
    const width = options.width || 900;
    const height = options.height || 260;
    const pad = { left: 52, right: 12, top: 12, bottom: 28 };
    const series = options.series;
    const formatY = options.formatY || ((value) => String(Number(value.toPrecision(3))));
    const [xMin, xMax] = options.xRange;
    const least = roundStep(Math.max(options.minPeak || 1, ...series.flatMap((line) => line.points.map(([, y]) => y))));
    const step = options.whole ? Math.max(1, Math.ceil(least)) : least;
    const peak = 4 * step;
    const x = (v) => pad.left + ((v - xMin) * (width - pad.left - pad.right)) / Math.max(1e-9, xMax - xMin);
    const y = (v) => height - pad.bottom - (v * (height - pad.top - pad.bottom)) / peak;
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart-svg" });
    for (let tick = 0; tick <= 4; tick += 1) {
      const value = step * tick;
      root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: "grid-line" }));
      root.append(svg("text", { x: pad.left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, formatY(value)));
    }
    options.xTicks.forEach(([at, label], index) => {
      const anchor = index === 0 ? "start" : index === options.xTicks.length - 1 ? "end" : "middle";
      root.append(svg("text", { x: x(at), y: height - 8, class: "axis", "text-anchor": anchor }, label));
    });
    options.legend.replaceChildren();
    series.forEach((line, index) => {
      const colour = COLOURS[index % COLOURS.length];
      const segments = [[]];
      line.points.forEach(([px, py], i) => {
        if (i > 0 && options.gap && px - line.points[i - 1][0] > options.gap) segments.push([]);
        segments[segments.length - 1].push([x(px), y(py)]);
      });
      segments.forEach((segment) => {
        if (segment.length === 1) {  // a lone sample between gaps: a dot, or it would not show at all
          root.append(svg("circle", { cx: segment[0][0], cy: segment[0][1], r: 2, fill: colour }));
          return;
        }
        const points = segment.map(([sx, sy]) => `${sx.toFixed(1)},${sy.toFixed(1)}`).join(" ");
        root.append(svg("polyline", { points, fill: "none", stroke: colour, "stroke-width": 2 }));
      });
      const item = document.createElement("li");
      const dot = svg("svg", { width: 12, height: 12 });
      dot.append(svg("rect", { width: 12, height: 12, rx: 2, fill: colour }));
      item.append(dot, ` ${options.legendText ? options.legendText(line) : line.name}`);
      options.legend.append(item);
    });
    if (!series.length) {
      root.append(svg("text", { x: width / 2, y: height / 2, class: "axis", "text-anchor": "middle" }, options.empty));
    }
    options.chart.replaceChildren(root);
  };
})();
