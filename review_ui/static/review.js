// The review page: act on one image with keys or buttons; the next image loads without a page round trip.
"use strict";

(() => {
  const root = document.getElementById("review");
  const filter = root.dataset.filter;
  const query = filter ? `?${filter}` : "";
  let item = JSON.parse(document.getElementById("item-data").textContent);
  let busy = false;

  function setText(field, text) {
    const node = document.querySelector(`#facts [data-field="${field}"]`);
    if (node) node.textContent = text;
  }

  function render(next) {
    item = next;
    root.dataset.id = String(item.id);
    document.getElementById("item-image").src = item.image_url;
    document.getElementById("item-id").textContent = String(item.id);
    const state = document.getElementById("item-state");
    state.textContent = item.label ? `${item.status}: ${item.label}` : item.status;
    state.className = `state state-${item.status}`;
    const bars = document.getElementById("top5");
    bars.replaceChildren(...item.top5.map((entry) => {
      const row = document.createElement("li");
      const label = document.createElement("span");
      label.className = "bar-label";
      label.textContent = entry.class;
      const meter = document.createElement("meter");
      meter.min = 0;
      meter.max = 1;
      meter.value = entry.probability;
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = entry.probability.toFixed(3);
      row.append(label, meter, value);
      return row;
    }));
    const audit = item.kind === "audit";
    document.getElementById("audit-note").hidden = !audit;
    document.getElementById("audit-predicted").textContent = item.predicted_class;
    document.getElementById("audit-confidence").textContent = item.confidence.toFixed(2);
    document.getElementById("accept").firstChild.textContent = audit ? "Confirm " : "Accept prediction ";
    setText("predicted_class", item.predicted_class);
    setText("confidence", item.confidence.toFixed(4));
    setText("energy", item.energy.toFixed(4));
    setText("reason", item.reason);
    setText("thresholds", audit ? "-" : `E > ${item.thresholds.tau_energy} or p < ${item.thresholds.tau_softmax}`);
    setText("model_version", item.model_version);
    setText("camera_id", item.camera_id);
    setText("site_id", item.site_id);
    setText("captured_at", item.captured_at);
    setText("flagged_at", item.flagged_at);
    setText("sha256", item.image.sha256);
    setText("source_event_id", item.source_event_id);
    document.title = `Review image ${item.id} · WasteX Stream`;
    window.history.replaceState(null, "", `/review/${item.id}${query}`);
  }

  async function move(direction) {
    const data = await WasteX.get(`/api/ood/${item.id}/${direction}${query}`);
    if (data.item) {
      render(data.item);
      return true;
    }
    return false;
  }

  async function run(url, body, afterwards) {
    if (busy) return;
    busy = true;
    try {
      const data = await WasteX.post(url, body);
      WasteX.afterAction(data);
      let message = WasteX.describe(data);
      if (afterwards === "show-restored" && data.changed.length) {
        render(data.changed[0]);
      } else if (afterwards === "next") {
        if (data.changed.length) render(data.changed[0]);
        if (!(await move("next"))) message += " That was the last image in this queue.";
      }
      WasteX.status(message, "ok");
      if (data.new_class) addClassButton(data.label);
    } catch (error) {
      WasteX.status(error.message, "error");
    } finally {
      busy = false;
    }
  }

  function label(name, isNew) {
    return run(`/api/ood/${item.id}/label`, { label: name, new_class: Boolean(isNew) }, "next");
  }

  function addClassButton(name) {
    const bar = document.getElementById("classbar");
    const existing = [...bar.querySelectorAll(".class-btn")];
    if (existing.some((button) => button.dataset.class.toLowerCase() === name.toLowerCase())) return;
    bar.querySelector(".hint")?.remove();
    const keys = "1234567890";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "class-btn";
    button.dataset.class = name;
    if (existing.length < keys.length) {
      button.dataset.key = keys[existing.length];
      const kbd = document.createElement("kbd");
      kbd.textContent = button.dataset.key;
      button.append(kbd);
    }
    const span = document.createElement("span");
    span.className = "class-name";
    span.textContent = name;
    button.append(span);
    bar.append(button);
  }

  document.getElementById("classbar").addEventListener("click", (event) => {
    const button = event.target.closest(".class-btn");
    if (button) label(button.dataset.class, false);
  });
  document.getElementById("new-class-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("new-class-name");
    const name = input.value.trim();
    if (!name) {
      WasteX.status("Type a class name first.", "error");
      return;
    }
    input.value = "";
    input.blur();
    label(name, true);
  });
  document.getElementById("accept").addEventListener("click", () => run(`/api/ood/${item.id}/review`, {}, "next"));
  document.getElementById("discard").addEventListener("click", () => run(`/api/ood/${item.id}/discard`, {}, "next"));
  document.getElementById("undo").addEventListener("click", () => run("/api/undo", {}, "show-restored"));
  document.getElementById("prev").addEventListener("click", () => move("prev"));
  document.getElementById("next").addEventListener("click", () => move("next"));

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && event.target.id === "new-class-name") {
      event.target.blur();
      return;
    }
    if (WasteX.typing(event)) return;
    const button = document.querySelector(`#classbar .class-btn[data-key="${CSS.escape(event.key)}"]`);
    if (button) {
      label(button.dataset.class, false);
    } else if (event.key === "x") {
      run(`/api/ood/${item.id}/discard`, {}, "next");
    } else if (event.key === "r") {
      run(`/api/ood/${item.id}/review`, {}, "next");
    } else if (event.key === "u") {
      run("/api/undo", {}, "show-restored");
    } else if (event.key === "n") {
      document.getElementById("new-class-name").focus();
    } else if (event.key === "ArrowRight") {
      move("next").then((found) => found || WasteX.status("No later image in this queue.", ""));
    } else if (event.key === "ArrowLeft") {
      move("prev").then((found) => found || WasteX.status("No earlier image in this queue.", ""));
    } else {
      return;
    }
    event.preventDefault();
  });
  root.dataset.ready = "true";  // keys work from here on
})();
