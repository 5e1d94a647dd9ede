// The review page: one pair at a time; accept / reject / skip by button or key; undo; the ETL's
// verdict on a pair is shown only after the reviewer has judged it.
"use strict";

(() => {
  const { el, marked, json, ApiError } = Pages;
  const $ = (id) => document.getElementById(id);
  const NAME_STORE = "liquid.reviewer";
  const state = { reviewer: localStorage.getItem(NAME_STORE) || "", pair: null, busy: false, reasons: [] };
  // Per judgment: ms from the click or key press to the next pair on screen (read by the benchmark).
  window.__reviewTimings = [];

  function setStatus(text, isError) { $("status").textContent = text; $("status").classList.toggle("error", !!isError); }

  function onError(err, retry) {
    state.busy = false;
    setStatus(err.message || String(err), true);
    if (err instanceof ApiError && err.status === 401) Pages.keyRefused(err, $("key-box"), retry);
  }

  function showProgress(p) {
    $("progress").textContent = `you: ${p.mine} judged · pairs complete: ${p.complete}/${p.total} · ${p.judgments} judgments in all`;
  }

  function showPair(pair) {
    state.pair = pair;
    document.body.dataset.qaId = pair ? pair.qa_id : "";
    $("pair").classList.toggle("hidden", !pair);
    $("done").classList.toggle("hidden", !!pair);
    if (!pair) return;
    $("pair-source").textContent = pair.source || pair.doc_id;
    $("pair-mode").textContent = pair.qa_mode;
    $("pair-id").textContent = pair.qa_id;
    $("chunk").replaceChildren(marked(pair.chunk, pair.span));
    $("question").textContent = pair.question;
    $("answer").textContent = pair.answer;
    $("edited").value = "";
    for (const box of document.querySelectorAll("#reasons input")) box.checked = false;
  }

  function showLast(saved, etl) {
    if (!saved) { $("last").replaceChildren(); return; }
    const verdict = etl ? (etl.valid ? "kept it (valid)" : `rejected it (${etl.reasons.join("; ") || "invalid"})`) : "has no verdict on it";
    const scores = etl ? ` · grounding ${etl.grounding_score.toFixed(2)}${etl.judge_score === null ? "" : ` · judge ${etl.judge_score.toFixed(2)}`}` : "";
    const agree = etl && saved.verdict !== "skip" ? ((saved.verdict === "accept") === etl.valid ? " — you agree" : " — you disagree") : "";
    $("last").replaceChildren(el("span", { id: "last-verdict" }, `Last pair: you chose ${saved.verdict}; the ETL ${verdict}${scores}${agree}.`));
  }

  function afterPaint(started) {
    requestAnimationFrame(() => {
      window.__reviewTimings.push(performance.now() - started);
      document.body.dataset.judged = String(window.__reviewTimings.length);
    });
  }

  async function loadNext() {
    try {
      const res = await json("POST", "/api/review/next", { reviewer: state.reviewer });
      showPair(res.pair); showProgress(res.progress); setStatus("");
    } catch (err) { onError(err, loadNext); }
  }

  async function judge(verdict) {
    if (!state.pair || state.busy) return;
    state.busy = true;
    const started = performance.now();
    const reasons = [...document.querySelectorAll("#reasons input:checked")].map((b) => b.value);
    const edited = $("edited").value.trim();
    try {
      const res = await json("POST", "/api/review/judgments", {
        reviewer: state.reviewer, qa_id: state.pair.qa_id, verdict, reasons, edited_answer: edited || null,
      });
      showPair(res.next); showProgress(res.progress); showLast(res.saved, res.etl); setStatus("");
      afterPaint(started);
    } catch (err) { onError(err, () => judge(verdict)); }
    state.busy = false;
  }

  async function undo() {
    if (state.busy) return;
    state.busy = true;
    try {
      const res = await json("POST", "/api/review/undo", { reviewer: state.reviewer });
      showPair(res.pair); showProgress(res.progress); showLast(null);
      setStatus(`undone: your ${res.undone.verdict} of this pair; judge it again`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) setStatus("nothing to undo"); else onError(err, undo);
    }
    state.busy = false;
  }

  function buildReasons(reasons) {
    $("reasons").replaceChildren(...reasons.map((r, i) => el("label", {},
      el("input", { type: "checkbox", value: r, id: `reason-${i + 1}` }), ` ${r} `, el("kbd", {}, String(i + 1)))));
  }

  function start() {
    $("name-form").classList.add("hidden");
    $("who").textContent = `reviewer: ${state.reviewer}`;
    loadNext();
  }

  async function init() {
    try {
      const info = await json("GET", "/api/review/info");
      $("run-info").textContent = `run ${info.run} · ${info.pairs} pairs · ${Math.round(info.overlap * 100)} % seen by ${info.overlap_reviewers}`;
      state.reasons = info.reasons; buildReasons(info.reasons);
      if (state.reviewer) start();
      else { $("name-form").classList.remove("hidden"); $("reviewer-name").focus(); }
    } catch (err) { onError(err, init); }
  }

  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.reviewer = $("reviewer-name").value.trim();
    localStorage.setItem(NAME_STORE, state.reviewer);
    start();
  });
  $("accept-btn").addEventListener("click", () => judge("accept"));
  $("reject-btn").addEventListener("click", () => judge("reject"));
  $("skip-btn").addEventListener("click", () => judge("skip"));
  $("undo-btn").addEventListener("click", () => undo());
  $("undo-done-btn").addEventListener("click", () => undo());

  document.addEventListener("keydown", (event) => {
    const typing = event.target instanceof HTMLTextAreaElement || (event.target instanceof HTMLInputElement && event.target.type !== "checkbox");
    if (typing) { if (event.key === "Escape") event.target.blur(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey || !state.reviewer) return;
    const key = event.key.toLowerCase();
    if (key === "a") judge("accept");
    else if (key === "r") judge("reject");
    else if (key === "s") judge("skip");
    else if (key === "u") undo();
    else if (key === "e" && state.pair) { event.preventDefault(); $("edited").value = $("edited").value || state.pair.answer; $("edited").focus(); }
    else if (/^[1-9]$/.test(key)) { const box = $(`reason-${key}`); if (box) box.checked = !box.checked; }
    else return;
    event.preventDefault();
  });

  init();
})();
