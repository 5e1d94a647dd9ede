// The search and ask page: POST /search for hits, POST /ask {stream: true} for a streamed, cited answer.
"use strict";

(() => {
  const { el, marked, citedSpan, json, postEvents, keyForm, ApiError } = Pages;
  const $ = (id) => document.getElementById(id);
  let pending = null; // the action to retry once a key is given

  function setStatus(text, isError) { $("status").textContent = text; $("status").classList.toggle("error", !!isError); }

  function onError(err, retry) {
    if (err instanceof ApiError && err.status === 401) {
      pending = retry;
      setStatus(err.message, true);
      Pages.keyRefused(err, $("key-box"), () => { setStatus(""); if (pending) pending(); });
    } else {
      setStatus(err.message || String(err), true);
    }
  }

  function fmt(x) { return typeof x === "number" ? x.toFixed(4) : String(x); }

  function metaList(metadata) {
    const items = [];
    for (const [name, value] of Object.entries(metadata || {})) {
      items.push(el("span", { title: name }, `${name}: ${Array.isArray(value) ? value.join(", ") : typeof value === "object" ? JSON.stringify(value) : value}`));
    }
    return el("div", { class: "meta" }, items);
  }

  function hitCard(hit, rank, opts) {
    const parts = Object.entries(hit.scores || {}).map(([name, s]) => el("span", { class: "score", title: `${name} score` }, `${name} ${fmt(s)}`));
    return el("article", { class: "card hit", dataset: { id: hit.id }, id: opts && opts.anchor },
      el("div", { class: "hit-head" }, el("strong", {}, `#${rank}`), hit.title ? el("strong", {}, hit.title) : null,
        el("span", { class: "score", title: "score" }, fmt(hit.score)), parts, el("span", { class: "hit-id" }, hit.id)),
      metaList(hit.metadata), marked(hit.text, opts && opts.span));
  }

  async function search() {
    const query = $("query").value.trim();
    if (!query) return;
    setStatus("searching…");
    try {
      const res = await json("POST", "/search", { query, k: Number($("k").value) || 5, mode: $("mode").value });
      $("hits").replaceChildren(...res.hits.map((h, i) => hitCard(h, i + 1)));
      if (!res.hits.length) $("hits").append(el("p", { class: "muted" }, "No hits."));
      setStatus(`${res.hits.length} hits in ${res.took_ms.toFixed(1)} ms (${res.mode})`);
    } catch (err) { onError(err, search); }
  }

  function showContext(hits, answer) {
    const cited = new Set(answer ? answer.citations : []);
    $("context").replaceChildren(el("h3", {}, "Chunks given to the model"), ...hits.map((h, i) => hitCard(h, i + 1, {
      anchor: `chunk-${i + 1}`, span: answer && cited.has(h.id) ? citedSpan(h.text, answer.answer) : null,
    })));
  }

  function showSupport(support) {
    const badge = $("support");
    if (!support) { badge.classList.add("hidden"); return; }
    badge.className = `badge ${support.supported ? "ok" : "bad"}`;
    badge.textContent = support.supported ? `supported (${(support.share * 100).toFixed(0)} % of terms in the cited chunks)`
      : `not supported: ${support.unsupported_terms.join(", ") || "too few terms in the cited chunks"}`;
  }

  function showAnswer(answer) {
    const box = $("answer-box");
    box.classList.toggle("refused", answer.refused);
    $("answer-label").className = `badge ${answer.refused ? "warn" : "ok"}`;
    $("answer-label").textContent = answer.refused ? "Refused" : `Answer (${answer.mode}, ${answer.style})`;
    $("answer-text").textContent = answer.answer;
    $("answer-reason").textContent = answer.reason || "";
    $("answer-reason").classList.toggle("hidden", !answer.reason);
    showSupport(answer.support);
    showContext(answer.context || [], answer);
    const index = new Map((answer.context || []).map((h, i) => [h.id, i + 1]));
    const links = answer.citations.map((id) => {
      const n = index.get(id);
      const link = el("a", { class: "cite", href: `#chunk-${n}`, dataset: { id } }, `[${n}] ${id}`);
      link.addEventListener("click", (event) => {
        event.preventDefault();
        const target = $(`chunk-${n}`);
        document.querySelectorAll(".card.target").forEach((c) => c.classList.remove("target"));
        target.classList.add("target");
        target.scrollIntoView({ block: "center" });
        history.replaceState(null, "", `#chunk-${n}`);
      });
      return link;
    });
    $("citations").replaceChildren(...(links.length ? [el("span", { class: "muted" }, "Cited: "), ...links] : []));
  }

  async function ask() {
    const question = $("query").value.trim();
    if (!question) return;
    const box = $("answer-box");
    box.classList.remove("hidden", "refused");
    $("answer-label").className = "badge"; $("answer-label").textContent = "Answering…";
    $("answer-text").textContent = ""; $("citations").replaceChildren(); $("context").replaceChildren();
    $("answer-reason").classList.add("hidden"); showSupport(null);
    setStatus("retrieving…");
    const started = performance.now();
    try {
      await postEvents("/ask", { question, k: Math.min(Number($("k").value) || 4, 20), stream: true }, (name, data) => {
        if (name === "context") { showContext(data.hits, null); setStatus(data.hits.length ? "generating…" : "nothing relevant found"); }
        else if (name === "delta") $("answer-text").textContent += data.text;
        else if (name === "reset") $("answer-text").textContent = "";
        else if (name === "answer") { showAnswer(data); setStatus(`answered in ${((performance.now() - started) / 1000).toFixed(1)} s`); }
        else if (name === "error") { $("answer-label").textContent = "Error"; setStatus(`${data.status}: ${data.detail}`, true); }
      });
    } catch (err) { box.classList.add("hidden"); onError(err, ask); }
  }

  $("query-form").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("ask-btn").addEventListener("click", () => ask());

  fetch("/health").then((r) => r.json()).then((h) => {
    $("index-info").textContent = `${h.documents} documents · ${h.modes.join(", ")}${h.auth ? " · API key required" : ""}`;
    if (h.auth && !Pages.getKey()) keyForm($("key-box"), () => setStatus("key saved for this tab"));
  }).catch(() => {});
})();
