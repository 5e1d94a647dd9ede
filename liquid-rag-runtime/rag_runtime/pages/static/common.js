// Shared by the pages: DOM building with textContent only (never innerHTML), the API key, and
// JSON calls that send the key in the X-API-Key header.
"use strict";

const Pages = (() => {
  const KEY_STORE = "liquid.apiKey";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // Text with [start, end) wrapped in <mark>; all as text nodes, so markup in the text stays text.
  function marked(text, span) {
    const box = el("div", { class: "text" });
    if (!span || span[0] >= span[1]) { box.append(document.createTextNode(text)); return box; }
    box.append(document.createTextNode(text.slice(0, span[0])), el("mark", {}, text.slice(span[0], span[1])),
               document.createTextNode(text.slice(span[1])));
    return box;
  }

  function words(text) { return (text.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []).filter((w) => w.length > 2); }

  // The span of `chunk` an answer rests on: its exact occurrence, else the sentence sharing most words.
  function citedSpan(chunk, answer) {
    const needle = answer.trim().replace(/[.!?]+$/, "").trim();
    if (needle) {
      const at = chunk.toLowerCase().indexOf(needle.toLowerCase());
      if (at >= 0) return [at, at + needle.length];
    }
    const target = new Set(words(answer));
    let best = null, bestShared = 1;
    const re = /[^.!?\n]+[.!?]*/g;
    let m;
    while ((m = re.exec(chunk)) !== null) {
      const shared = new Set(words(m[0]).filter((w) => target.has(w))).size;
      if (shared > bestShared) {
        const lead = m[0].length - m[0].trimStart().length;
        best = [m.index + lead, m.index + m[0].length]; bestShared = shared;
      }
    }
    return best;
  }

  function getKey() { return sessionStorage.getItem(KEY_STORE) || ""; }
  function setKey(key) { if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE); }

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = getKey();
    if (key) h["X-API-Key"] = key;
    return h;
  }

  class ApiError extends Error {
    constructor(status, detail, key) { super(detail); this.status = status; this.key = key; }
  }

  async function call(method, path, body) {
    const key = getKey();
    const response = await fetch(path, { method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body) });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail), key);
    }
    return response;
  }

  async function json(method, path, body) { return (await call(method, path, body)).json(); }

  // Server-sent events of a POST (EventSource cannot POST or send headers): calls onEvent(name, data).
  async function postEvents(path, body, onEvent) {
    const response = await call("POST", path, body);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        let name = "message"; const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  // A key form in `box`: shown when the service needs a key the tab does not hold.
  function keyForm(box, onSaved) {
    box.replaceChildren();
    const input = el("input", { type: "password", id: "api-key", placeholder: "API key", autocomplete: "off" });
    const form = el("form", { class: "row", id: "key-form" }, el("span", {}, "This service needs its API key:"), input,
      el("button", { type: "submit", class: "primary" }, "Use key"));
    form.addEventListener("submit", (event) => { event.preventDefault(); setKey(input.value.trim()); box.classList.add("hidden"); onSaved(); });
    box.append(form); box.classList.remove("hidden"); input.focus();
  }

  // After a 401: forget the key that was refused (not one given since), and ask for one.
  function keyRefused(err, box, retry) {
    if (getKey() === err.key) setKey("");
    if (!getKey()) keyForm(box, retry); else retry();
  }

  return { keyRefused, el, marked, citedSpan, getKey, setKey, call, json, postEvents, keyForm, ApiError };
})();
