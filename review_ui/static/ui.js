// Shared by the queue and review pages: CSRF-protected JSON calls, action ids, banners, key handling.
"use strict";

const WasteX = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const RETRIES = 3;

  // A fresh id per operator action; a retry of the same action reuses it, so it takes effect once.
  function actionId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  async function call(method, url, body) {
    const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body);
    }
    let response;
    for (let attempt = 1; ; attempt += 1) {
      try {
        response = await fetch(url, options);
        break;
      } catch (error) {
        // No answer at all (server restarting, network blip): the same request again is safe.
        if (attempt >= RETRIES) {
          throw new Error("The review server did not answer. Your last action may not be saved: try it again (repeating it is safe).");
        }
        await new Promise((resolve) => setTimeout(resolve, 700 * attempt));
      }
    }
    if (response.status === 401) {
      window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
      throw new Error("Signed out: sign in again.");
    }
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = { error: `HTTP ${response.status}` };
    }
    if (!response.ok) {
      throw new Error(data.error || `HTTP ${response.status}`);
    }
    return data;
  }

  function alert(message) {
    const banner = document.getElementById("alert");
    banner.textContent = message || "";
    banner.hidden = !message;
  }

  function status(message, kind) {
    const line = document.getElementById("status");
    line.textContent = message || "";
    line.className = `status ${kind || ""}`;
  }

  // The outbox warning of an action (Kafka down) or nothing; never hides an unrelated error.
  function afterAction(data) {
    alert(data.warning || "");
  }

  function typing(event) {
    const target = event.target;
    return target instanceof HTMLInputElement || target instanceof HTMLSelectElement
      || target instanceof HTMLTextAreaElement || event.ctrlKey || event.metaKey || event.altKey;
  }

  function describe(data) {
    const count = data.changed.length;
    const images = count === 1 ? `image ${data.changed[0].id}` : `${count} images`;
    if (data.replayed) return `Already done (${images}).`;
    if (count === 0) return "Nothing changed: already in that state.";
    if (data.kind === "undo") return `Undone: ${images} restored.`;
    if (data.kind === "discard") return `Discarded ${images}.`;
    const created = data.new_class ? " (new class)" : "";
    return `Labelled ${images} as “${data.label}”${created}.`;
  }

  return {
    actionId,
    get: (url) => call("GET", url),
    post: (url, body) => call("POST", url, { ...body, action_id: body.action_id || actionId() }),
    alert,
    status,
    afterAction,
    typing,
    describe,
  };
})();
