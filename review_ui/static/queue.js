// The queue page: move between cards with the arrows, select, label or discard without reloading the page.
"use strict";

(() => {
  const root = document.getElementById("queue");
  const grid = document.getElementById("grid");
  const filter = new URLSearchParams(root.dataset.filter);
  const page = new URLSearchParams(window.location.search).get("page") || "1";
  const classes = JSON.parse(document.getElementById("class-data").textContent);
  let focusIndex = 0;
  let busy = false;

  const cards = () => [...grid.querySelectorAll(".card")];
  const selectedIds = () => [...grid.querySelectorAll(".select:checked")].map((box) => Number(box.value));

  function updateSelection() {
    const count = selectedIds().length;
    document.getElementById("selected-count").textContent = `${count} selected`;
    cards().forEach((card) => card.classList.toggle("selected", card.querySelector(".select").checked));
  }

  function focusCard(index) {
    const all = cards();
    if (!all.length) return;
    focusIndex = Math.max(0, Math.min(index, all.length - 1));
    all[focusIndex].focus();
  }

  function reviewUrl(id) {
    const text = filter.toString();
    return `/review/${id}${text ? `?${text}` : ""}`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function card(item, checked) {
    const li = element("li", "card");
    li.tabIndex = 0;
    li.dataset.id = String(item.id);
    li.dataset.predicted = item.predicted_class;
    const pick = element("label", "pick");
    const box = element("input", "select");
    box.type = "checkbox";
    box.value = String(item.id);
    box.checked = checked;
    box.setAttribute("aria-label", `select image ${item.id}`);
    pick.append(box);
    const link = element("a", "thumb");
    link.href = reviewUrl(item.id);
    const img = element("img");
    img.src = item.thumbnail_url;
    img.alt = `image ${item.id} from ${item.camera_id}`;
    img.width = 240;
    img.height = 180;
    link.append(img);
    const meta = element("div", "meta");
    if (item.kind === "audit") meta.append(element("div", "kind-audit", "audit"));
    const predicted = element("div", "predicted");
    predicted.append(element("span", "muted", "predicted"), " ", element("strong", "", item.predicted_class));
    const numbers = element("div", "numbers");
    numbers.append(element("span", "", `conf ${item.confidence.toFixed(2)}`), " ",
      element("span", "", `E ${item.energy.toFixed(2)}`));
    const where = element("div", "where", `${item.camera_id} · ${item.captured_at.replace("T", " ").replace("Z", " UTC")}`);
    const state = element("div", `state state-${item.status}`, item.label ? `${item.status}: ${item.label}` : item.status);
    meta.append(predicted, numbers, where, state);
    li.append(pick, link, meta);
    return li;
  }

  // Reload the page's items as JSON and redraw the grid: acted-on items leave a pending queue, later ones move up.
  async function refresh() {
    const params = new URLSearchParams(filter);
    params.set("page", page);
    const data = await WasteX.get(`/api/ood?${params}`);
    const keep = new Set(selectedIds());
    if (data.items.length) {
      grid.replaceChildren(...data.items.map((item) => card(item, keep.has(item.id))));
    } else {
      grid.replaceChildren(element("li", "empty", "Nothing left to review with these filters."));
    }
    updateSelection();
    focusCard(focusIndex);
  }

  // The selection if there is one, else the focused card.
  function targets() {
    const ids = selectedIds();
    if (ids.length) return ids;
    const current = cards()[focusIndex];
    return current ? [Number(current.dataset.id)] : [];
  }

  async function run(url, body) {
    if (busy) return;
    busy = true;
    try {
      const data = await WasteX.post(url, body);
      WasteX.afterAction(data);
      WasteX.status(WasteX.describe(data), "ok");
      grid.querySelectorAll(".select:checked").forEach((box) => { box.checked = false; });
      await refresh();
    } catch (error) {
      WasteX.status(error.message, "error");
    } finally {
      busy = false;
    }
  }

  function labelTargets(name) {
    const ids = targets();
    if (!ids.length) return;
    if (ids.length === 1) run(`/api/ood/${ids[0]}/label`, { label: name });
    else run("/api/label", { ids, label: name });
  }

  function discardTargets() {
    const ids = targets();
    if (!ids.length) return;
    if (ids.length === 1) run(`/api/ood/${ids[0]}/discard`, {});
    else run("/api/discard", { ids });
  }

  function columns() {
    const all = cards();
    if (all.length < 2) return 1;
    const top = all[0].offsetTop;
    const index = all.findIndex((node) => node.offsetTop !== top);
    return index === -1 ? all.length : index;
  }

  grid.addEventListener("change", updateSelection);
  grid.addEventListener("focusin", (event) => {
    const current = event.target.closest(".card");
    if (current) focusIndex = cards().indexOf(current);
  });
  document.getElementById("select-all").addEventListener("change", (event) => {
    grid.querySelectorAll(".select").forEach((box) => { box.checked = event.target.checked; });
    updateSelection();
  });
  document.getElementById("bulk-label").addEventListener("click", () => {
    const name = document.getElementById("bulk-class").value;
    if (name) labelTargets(name);
  });
  document.getElementById("bulk-discard").addEventListener("click", discardTargets);
  document.getElementById("undo").addEventListener("click", () => run("/api/undo", {}));

  document.addEventListener("keydown", (event) => {
    if (WasteX.typing(event)) return;
    const keyed = classes.find((entry) => entry.key === event.key);
    const current = cards()[focusIndex];
    if (keyed) {
      labelTargets(keyed.name);
    } else if (event.key === "x") {
      discardTargets();
    } else if (event.key === "r" && current) {
      run(`/api/ood/${current.dataset.id}/review`, {});
    } else if (event.key === "u") {
      run("/api/undo", {});
    } else if (event.key === "ArrowRight") {
      focusCard(focusIndex + 1);
    } else if (event.key === "ArrowLeft") {
      focusCard(focusIndex - 1);
    } else if (event.key === "ArrowDown") {
      focusCard(focusIndex + columns());
    } else if (event.key === "ArrowUp") {
      focusCard(focusIndex - columns());
    } else if (event.key === " " && current) {
      const box = current.querySelector(".select");
      box.checked = !box.checked;
      updateSelection();
    } else if (event.key === "Enter" && current && event.target === current) {
      window.location.assign(reviewUrl(current.dataset.id));
    } else {
      return;
    }
    event.preventDefault();
  });

  if (!document.activeElement || document.activeElement === document.body) focusCard(0);
})();
