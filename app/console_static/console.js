// Assay console: plain JS, no build step. The API key lives in sessionStorage only and travels only in the
// Authorization header; everything shown is set with textContent (never innerHTML), and the page's CSP
// forbids inline scripts. The live job list reads GET /v1/events with fetch() (EventSource cannot send
// headers), resuming with Last-Event-ID after a drop.
"use strict";

const KEY = "assay.apiKey";
const state = { key: null, analyses: [], jobs: new Map(), selected: null, lastEventId: null, stream: null };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}` };
  const init = { method, headers };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    const code = error.code || `http_${response.status}`;
    const failure = new ApiError(response.status, code, error.message || response.statusText, error.details);
    if (response.status === 401 && state.signedIn) expire(failure);
    throw failure;
  }
  return data;
}

// -- sign in -----------------------------------------------------------------------------------------------
async function signIn(key) {
  state.key = key;
  try {
    const { data } = await api("GET", "/v1/analyses");
    state.analyses = data;
  } catch (error) {
    state.key = null;
    sessionStorage.removeItem(KEY);
    throw error;
  }
  sessionStorage.setItem(KEY, key);
  state.signedIn = true;
  $("sign-in-view").hidden = true;
  $("app-view").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = `key ${key.slice(0, 12)}…`;
  fillAnalyses();
  startStream(); // lists the jobs once the stream is open: no change falls between the list and the stream
  refreshStats();
  state.statsTimer = setInterval(refreshStats, 5000);
}

// The key stopped working (revoked): back to the sign-in form, saying why, rather than an "offline" page
// retrying for ever with every action refused.
function expire(error) {
  state.signedIn = false;
  state.key = null;
  state.lastEventId = null; // the next key may be another tenant's
  sessionStorage.removeItem(KEY);
  clearInterval(state.statsTimer);
  clearTimeout(state.attemptsTimer);
  if (state.stream) state.stream.abort();
  state.jobs.clear();
  state.selected = null;
  $("jobs").tBodies[0].replaceChildren();
  $("detail").hidden = true;
  $("app-view").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  setLive(false);
  $("sign-in-view").hidden = false;
  $("sign-in-error").textContent = `signed out: ${error.message}`;
}

function signOut() {
  sessionStorage.removeItem(KEY);
  location.reload();
}

function fillAnalyses() {
  const select = $("analysis");
  select.replaceChildren(...state.analyses.map((a) => el("option", { value: a.name }, `${a.name} (${a.input})`)));
  onAnalysisChange();
}

// What a file-input analysis is called on the form, and which files the picker offers.
const FILE_INPUTS = {
  audio: { label: "Audio file", accept: "audio/*" },
  cdr: { label: "Call-record file (CSV or JSON lines, may be gzip)", accept: ".csv,.tsv,.txt,.jsonl,.json,.gz" },
};

function onAnalysisChange() {
  const chosen = state.analyses.find((a) => a.name === $("analysis").value);
  const upload = chosen && FILE_INPUTS[chosen.input];
  $("text-field").hidden = Boolean(upload);
  $("file-field").hidden = !upload;
  if (upload) {
    $("file-label").textContent = upload.label;
    $("file").accept = upload.accept;
  }
}

// -- jobs list ---------------------------------------------------------------------------------------------
async function loadJobs() {
  const { data } = await api("GET", "/v1/jobs?limit=50");
  state.jobs.clear();
  $("jobs").tBodies[0].replaceChildren();
  for (const job of data.reverse()) upsertJob(job);
}

function upsertJob(job) {
  const known = state.jobs.get(job.id) || {};
  const merged = { ...known, ...job };
  state.jobs.set(job.id, merged);
  const body = $("jobs").tBodies[0];
  let row = body.querySelector(`tr[data-id="${CSS.escape(job.id)}"]`);
  if (!row) {
    row = el("tr", { dataset: { id: job.id } });
    row.addEventListener("click", () => openJob(job.id));
    body.prepend(row);
  }
  const status = el("span", { className: `status status-${merged.status}` }, merged.status);
  row.replaceChildren(
    el("td", {}, el("code", {}, merged.id)),
    el("td", {}, merged.analysis || ""),
    el("td", { className: "job-status" }, status),
    el("td", {}, merged.created_at ? new Date(merged.created_at).toLocaleTimeString() : ""),
  );
  row.dataset.status = merged.status;
  row.classList.toggle("selected", state.selected === job.id);
}

// -- live events -------------------------------------------------------------------------------------------
function setLive(on) {
  const pill = $("live");
  pill.textContent = on ? "live" : "offline";
  pill.className = `pill ${on ? "on" : "off"}`;
}

async function startStream() {
  let delay = 1000;
  const session = (state.session = (state.session || 0) + 1); // a sign-in after a sign-out has its own loop
  while (state.key && state.session === session) {
    const controller = new AbortController();
    state.stream = controller;
    try {
      const headers = { Authorization: `Bearer ${state.key}`, Accept: "text/event-stream" };
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const response = await fetch("/v1/events", { headers, signal: controller.signal, cache: "no-store" });
      if (response.status === 401) {
        const { error = {} } = await response.json().catch(() => ({}));
        expire(new ApiError(401, error.code || "http_401", error.message || response.statusText));
        return;
      }
      if (!response.ok) throw new Error(`events: HTTP ${response.status}`);
      // Not yet resuming (no event id): the list as of now, read after the stream began, so every change
      // after the list is on the stream (a change in between was never shown). A resumed stream replays.
      if (!state.lastEventId) await loadJobs();
      setLive(true);
      delay = 1000;
      await readEvents(response.body.getReader());
    } catch (error) {
      console.warn("event stream", error);
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      handleFrame(frame);
    }
  }
}

function handleFrame(frame) {
  const fields = { event: "message", data: "" };
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const name = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (name === "data") fields.data += value;
    else fields[name] = value;
  }
  if (fields.id) state.lastEventId = fields.id;
  if (fields.event === "reset") loadJobs();
  if (fields.event !== "job" || !fields.data) return;
  const event = JSON.parse(fields.data);
  const job = { id: event.job_id, analysis: event.analysis, status: event.status };
  if (!state.jobs.has(job.id)) job.created_at = event.at;
  upsertJob(job);
  if (state.selected === job.id) openJob(job.id);
}

// -- stats -------------------------------------------------------------------------------------------------
async function refreshStats() {
  try {
    const s = await api("GET", "/v1/stats");
    $("stat-queued").textContent = s.queued;
    $("stat-running").textContent = s.running;
    $("stat-throughput").textContent = s.throughput_per_second;
    $("stat-failed").textContent = s.failed_last_minute;
    $("stat-depth").textContent = Object.values(s.queue_depth).reduce((a, b) => a + b, 0);
  } catch (error) {
    console.warn("stats", error);
  }
}

// -- submit ------------------------------------------------------------------------------------------------
async function submit(event) {
  event.preventDefault();
  $("submit-error").textContent = "";
  const analysis = state.analyses.find((a) => a.name === $("analysis").value);
  const webhookUrl = $("webhook").value.trim();
  try {
    let job;
    if (FILE_INPUTS[analysis.input]) {
      const file = $("file").files[0];
      if (!file) throw new Error(`choose a file: ${FILE_INPUTS[analysis.input].label.toLowerCase()}`);
      const form = new FormData();
      form.append("analysis", analysis.name);
      form.append("file", file);
      if (webhookUrl) form.append("webhook", JSON.stringify({ url: webhookUrl }));
      job = await api("POST", "/v1/jobs", form);
    } else {
      const body = { analysis: analysis.name, input: { text: $("text").value } };
      if (webhookUrl) body.webhook = { url: webhookUrl };
      job = await api("POST", "/v1/jobs", body);
    }
    upsertJob(job);
    $("text").value = "";
    openJob(job.id);
  } catch (error) {
    $("submit-error").textContent = error.message;
  }
}

// -- job detail --------------------------------------------------------------------------------------------
async function openJob(id) {
  state.selected = id;
  for (const row of $("jobs").tBodies[0].rows) row.classList.toggle("selected", row.dataset.id === id);
  $("detail").hidden = false;
  $("detail-error").textContent = "";
  try {
    const job = await api("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    if (state.selected !== id) return;
    upsertJob(job);
    renderJob(job);
    await refreshAttempts(id);
  } catch (error) {
    if (error.code === "job_erased" && error.details && error.details.job) {
      upsertJob(error.details.job);
      renderJob(error.details.job);
      $("attempts").tBodies[0].replaceChildren();
      $("detail-error").textContent = "erased: input, result and metadata are gone";
      $("delete").disabled = true;
    } else {
      $("detail-error").textContent = error.message;
    }
  }
}

function renderJob(job) {
  $("detail-id").textContent = job.id;
  const status = $("detail-status");
  status.textContent = job.status;
  status.className = `status status-${job.status}`;
  $("detail-analysis").textContent = job.analysis;
  $("cancel").disabled = !["queued", "running"].includes(job.status);
  $("delete").disabled = Boolean(job.erased_at);
  $("raw").textContent = JSON.stringify(job, null, 2);
  const result = job.result || {};
  const bars = [];
  const verdicts = [];
  if (result.scores) bars.push(...scoreBars(null, result));
  if (result.analyses) {
    for (const [name, step] of Object.entries(result.analyses)) {
      if (step.scores) bars.push(...scoreBars(name, step));
      if (step.verdict) verdicts.push(verdictBadge(name, step));
    }
  }
  if (result.verdict || result.risk_score !== undefined) verdicts.unshift(verdictBadge(null, result));
  if (result.flagged !== undefined && !result.verdict) {
    verdicts.push(el("div", {}, `flagged: ${result.flagged}${result.flagged_by ? ` (${result.flagged_by.join(", ")})` : ""}`));
  }
  if (job.error) verdicts.push(el("div", { className: "error" }, `${job.error.code}: ${job.error.message}`));
  $("bars").replaceChildren(...bars);
  $("verdict").replaceChildren(...verdicts);
  const transcript = result.text !== undefined ? result.text : result.transcript && result.transcript.text;
  $("transcript").hidden = transcript === undefined;
  $("transcript").textContent = transcript || "";
}

function scoreBars(prefix, result) {
  const entries = Object.entries(result.scores).sort((a, b) => b[1] - a[1]);
  return entries.map(([label, score]) => {
    const fill = el("div", { className: "fill" });
    fill.style.width = `${Math.round(score * 100)}%`;
    return el(
      "div",
      { className: `bar${label === result.label ? " top" : ""}`, dataset: { label } },
      el("span", {}, prefix ? `${prefix}: ${label}` : label),
      el("div", { className: "track" }, fill),
      el("span", {}, score.toFixed(3)),
    );
  });
}

function verdictBadge(prefix, result) {
  const text = `${prefix ? `${prefix}: ` : ""}verdict ${result.verdict || "–"}` +
    (result.risk_score !== undefined ? ` · risk ${Number(result.risk_score).toFixed(2)}` : "");
  return el("div", { className: `verdict verdict-${result.verdict || "none"}` }, text);
}

async function refreshAttempts(id) {
  const { data } = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/webhooks`);
  if (state.selected !== id) return;
  const rows = [];
  for (const event of data) {
    if (!event.attempts.length) {
      rows.push(el("tr", {}, el("td", {}, event.type), el("td", {}, "–"), el("td", {}, event.status), el("td"), el("td"), el("td")));
    }
    for (const attempt of event.attempts) {
      rows.push(
        el(
          "tr",
          { className: "attempt" },
          el("td", {}, event.type),
          el("td", {}, attempt.attempt),
          el("td", {}, attempt.status_code ?? "–"),
          el("td", {}, attempt.latency_ms !== null && attempt.latency_ms !== undefined ? `${attempt.latency_ms} ms` : "–"),
          el("td", {}, attempt.error || ""),
          el("td", {}, attempt.created_at ? new Date(attempt.created_at).toLocaleTimeString() : ""),
        ),
      );
    }
  }
  $("attempts").tBodies[0].replaceChildren(...rows);
  const unsettled = data.some((e) => e.status === "pending" || e.status === "delivering");
  const job = state.jobs.get(id);
  const awaitingFirst = job && job.status !== "queued" && job.status !== "running" && data.length === 0;
  clearTimeout(state.attemptsTimer);
  if (unsettled || awaitingFirst) state.attemptsTimer = setTimeout(() => refreshAttempts(id).catch(() => {}), 1500);
}

async function endJob(action) {
  const id = state.selected;
  $("detail-error").textContent = "";
  try {
    if (action === "cancel") await api("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`);
    else if (confirmDelete(id)) await api("DELETE", `/v1/jobs/${encodeURIComponent(id)}`);
    await openJob(id);
  } catch (error) {
    $("detail-error").textContent = error.message;
  }
}

function confirmDelete(id) {
  return window.confirm(`Erase job ${id}? Its input, result and metadata are deleted.`);
}

// -- wiring ------------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      await signIn($("api-key").value.trim());
      $("api-key").value = "";
    } catch (error) {
      $("sign-in-error").textContent = error.message;
    }
  });
  $("sign-out").addEventListener("click", signOut);
  $("analysis").addEventListener("change", onAnalysisChange);
  $("submit").addEventListener("submit", submit);
  $("cancel").addEventListener("click", () => endJob("cancel"));
  $("delete").addEventListener("click", () => endJob("delete"));
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved).catch((error) => ($("sign-in-error").textContent = error.message));
});
