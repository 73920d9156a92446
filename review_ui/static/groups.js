// The Groups view: look through a group, untick the odd ones, label the rest with one bulk action.
"use strict";

(() => {
  const list = document.getElementById("group-list");
  let busy = false;

  function selected(group) {
    return [...group.querySelectorAll(".select:checked")].map((box) => Number(box.value));
  }

  function update(group) {
    const ids = selected(group);
    group.querySelector(".selected-count").textContent = `${ids.length} selected`;
    group.querySelectorAll(".card").forEach((card) => {
      card.classList.toggle("selected", card.querySelector(".select").checked);
    });
    const cards = group.querySelectorAll(".card").length;
    group.querySelector(".select-group").checked = ids.length === cards;
    group.querySelector(".group-size").textContent = `${cards} image${cards === 1 ? "" : "s"}`;
  }

  async function label(group) {
    const ids = selected(group);
    const name = group.querySelector(".group-class").value;
    if (busy || !ids.length || !name) return;
    busy = true;
    try {
      const data = await WasteX.post("/api/label", { ids, label: name });
      WasteX.afterAction(data);
      WasteX.status(WasteX.describe(data), "ok");
      const done = new Set(data.changed.map((item) => item.id));
      group.querySelectorAll(".card").forEach((card) => {
        if (done.has(Number(card.dataset.id))) card.remove();
      });
      if (!group.querySelector(".card")) group.remove();
      else update(group);
    } catch (error) {
      WasteX.status(error.message, "error");
    } finally {
      busy = false;
    }
  }

  list.addEventListener("change", (event) => {
    const group = event.target.closest(".group");
    if (!group) return;
    if (event.target.classList.contains("select-group")) {
      group.querySelectorAll(".select").forEach((box) => { box.checked = event.target.checked; });
    }
    update(group);
  });
  list.addEventListener("click", (event) => {
    if (event.target.classList.contains("label-group")) label(event.target.closest(".group"));
  });
})();
