// dq review: keyboard decisions on the example card, stored at once through the JSON API.
// No framework, no build step. The per-start token comes from the page's <meta name="dq-token">.
(function () {
  "use strict";
  const token = (document.querySelector('meta[name="dq-token"]') || {}).content || "";

  function flash(text) {
    const el = document.getElementById("flash");
    if (!el || !text) return;
    el.textContent = text;
    el.hidden = false;
    setTimeout(function () { el.hidden = true; }, 2500);
  }
  const pending = sessionStorage.getItem("dq-flash");
  if (pending) { sessionStorage.removeItem("dq-flash"); document.addEventListener("DOMContentLoaded", function () { flash(pending); }); }

  function typing(ev) {
    const t = ev.target;
    return t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA" || t.isContentEditable);
  }

  async function postJSON(url, body) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-DQ-Token": token},
      body: JSON.stringify(body),
    });
    const data = await r.json().catch(function () { return {}; });
    if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
    return data;
  }

  function exampleUrl(dataset, id, filters, pos) {
    const q = new URLSearchParams(filters);
    q.set("pos", String(pos));
    return "/datasets/" + encodeURIComponent(dataset) + "/examples/" + encodeURIComponent(id) + "?" + q.toString();
  }

  function initCard(card) {
    const dataset = card.dataset.dataset, id = card.dataset.exampleId;
    const pos = parseInt(card.dataset.pos, 10);
    const filters = card.dataset.filters;
    let busy = false;

    async function goNextOpen() {
      // The queue after this decision: with state=open the decided example has left it, so the next
      // open one now sits at this position; otherwise skip the current one.
      const start = Math.max(pos, 0);
      const q = new URLSearchParams(filters);
      q.set("limit", "3"); q.set("offset", String(start));
      const r = await fetch("/api/datasets/" + encodeURIComponent(dataset) + "/queue?" + q.toString());
      const data = await r.json();
      const items = (data.items || []);
      for (let i = 0; i < items.length; i++) {
        if (String(items[i].example_id) !== id) {
          location.assign(exampleUrl(dataset, items[i].example_id, filters, start + i));
          return;
        }
      }
      sessionStorage.setItem("dq-flash", "Queue done: no further example in this filter.");
      location.assign(card.dataset.queueUrl);
    }

    async function decide(action, labels) {
      if (busy) return;
      busy = true;
      const err = document.getElementById("error");
      err.hidden = true;
      try {
        const body = {example_id: id, action: action};
        if (labels) body.labels = labels;
        await postJSON("/api/datasets/" + encodeURIComponent(dataset) + "/reviews", body);
        sessionStorage.setItem("dq-flash", "Saved: " + action + " for " + id);
        await goNextOpen();
      } catch (e) {
        err.textContent = "Not saved: " + e.message;
        err.hidden = false;
        busy = false;
      }
    }

    const edit = document.getElementById("edit");
    function openEdit() { edit.hidden = false; const first = edit.querySelector("input"); if (first) first.focus(); }
    function closeEdit() {
      // give the keys back: focus left on a hidden checkbox would swallow them (it counts as typing)
      if (edit.contains(document.activeElement)) document.activeElement.blur();
      edit.hidden = true;
    }
    edit.addEventListener("submit", function (ev) {
      ev.preventDefault();
      const tags = Array.from(edit.querySelectorAll('input[name="tag"]:checked')).map(function (c) { return c.value; });
      decide("set", tags);
    });
    document.getElementById("edit-cancel").addEventListener("click", closeEdit);

    function go(url) { if (url) location.assign(url); }
    const keys = {
      a: function () { decide("accept"); },
      k: function () { decide("keep"); },
      x: function () { decide("exclude"); },
      e: openEdit,
      j: function () { go(card.dataset.nextUrl); },
      n: function () { go(card.dataset.nextUrl); },
      p: function () { go(card.dataset.prevUrl); },
    };
    document.querySelectorAll("[data-key]").forEach(function (b) {
      b.addEventListener("click", function () { const f = keys[b.dataset.key]; if (f) f(); });
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && !edit.hidden) { closeEdit(); return; }
      if (ev.key === "Enter" && !edit.hidden && edit.contains(ev.target)) { ev.preventDefault(); edit.requestSubmit(); return; }
      if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev)) return;
      const f = keys[ev.key.toLowerCase()];
      if (f) { ev.preventDefault(); f(); }
    });
  }

  function initQueue() {
    document.querySelectorAll("tr.row[data-href]").forEach(function (tr) {
      tr.addEventListener("click", function (ev) { if (!ev.target.closest("a")) location.assign(tr.dataset.href); });
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter" || typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const first = document.querySelector("tr.row[data-href]");
      if (first) { ev.preventDefault(); location.assign(first.dataset.href); }
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (ev) { if (!window.confirm(f.dataset.confirm)) ev.preventDefault(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const card = document.getElementById("card");
    if (card) initCard(card); else initQueue();
    document.body.dataset.ready = "1";  // keys are bound (the browser tests wait for this)
  });
})();
