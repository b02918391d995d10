// The page's behaviour. A separate file (not inline) so the Content-Security-Policy can forbid
// inline scripts. Plain DOM calls, no framework: the page ships inside the service and must work offline.
"use strict";

// sessionStorage: the key lives as long as this tab, never in the URL (logs, history) or a cookie.
const KEY_STORE = "dif-api-key";
// Requests that fail as a whole: what the user can do about it, beside the API's own message.
const HINTS = {
  401: "Enter the service's API key above.",
  413: "Send fewer or smaller images at a time.",
  503: "The service is starting or shutting down: try again in a moment.",
  504: "The service is overloaded: try again with fewer images.",
};
const VERDICT_WORDS = {
  fake: "Fake",
  inconclusive: "Inconclusive",
  real: "No known generator",
};

const byId = (id) => document.getElementById(id);
const form = byId("detect-form");
const keyInput = byId("api-key");
const fileInput = byId("files");
const dropZone = byId("drop-zone");
const button = byId("detect");
const statusLine = byId("status");
const results = byId("results");
// One fetch per generator and picture for the page's lifetime; forgotten when the key changes.
let pictures = new Map();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function keyHeaders() {
  const key = keyInput.value.trim();
  return key ? { "X-API-Key": key } : {};
}

function formatP(p) {
  if (p === null || p === undefined) return "n/a";
  if (p >= 0.001) return p.toFixed(3);
  return p.toExponential(1);
}

function formatRate(rate) {
  return `${(rate * 100).toLocaleString("en", { maximumFractionDigits: 3 })} %`;
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

// The API's error body is {"error": {"code", "message"}}; anything else (a proxy's HTML page) gets the status alone.
function errorWords(status, body, retryAfter) {
  const error = body && body.error ? body.error : null;
  const message = error && error.message ? error.message : `the service answered HTTP ${status}`;
  let hint = HINTS[status] || "";
  if (status === 429) hint = `The service is busy: try again${retryAfter ? ` in ${retryAfter} s` : " shortly"}.`;
  const code = error && error.code ? `, ${error.code}` : "";
  return `${message} (HTTP ${status}${code}).${hint ? " " + hint : ""}`;
}

function showPicked(files) {
  const names = Array.from(files, (f) => f.name);
  byId("picked").textContent = names.length
    ? `${plural(names.length, "image")} chosen: ${names.join(", ")}`
    : "No images chosen.";
}

function requestFailed(words) {
  results.replaceChildren(el("div", { class: "request-error", role: "alert" },
    el("h2", { text: "Could not check the images" }), el("p", { text: words })));
  statusLine.textContent = "The check failed; the reason is shown below.";
}

async function detect(files) {
  if (!files.length) {
    statusLine.textContent = "Choose one or more images first.";
    fileInput.focus();
    return;
  }
  const body = new FormData();
  for (const file of files) body.append("files", file, file.name);
  button.disabled = true;
  results.setAttribute("aria-busy", "true");
  statusLine.textContent = `Checking ${plural(files.length, "image")}…`;
  let response;
  let answer = null;
  try {
    response = await fetch("detect", { method: "POST", body, headers: keyHeaders() });
    answer = await response.json().catch(() => null);
  } catch (err) {
    requestFailed(`The service could not be reached (${err.message}).`);
    return;
  } finally {
    button.disabled = false;
    results.removeAttribute("aria-busy");
  }
  if (!response.ok || !answer || !Array.isArray(answer.results)) {
    requestFailed(errorWords(response.status, answer, response.headers.get("Retry-After")));
    return;
  }
  results.replaceChildren(...answer.results.map(resultCard));
  const counts = {};
  for (const r of answer.results) counts[r.verdict || "failed"] = (counts[r.verdict || "failed"] || 0) + 1;
  const summary = ["fake", "inconclusive", "real", "failed"].filter((v) => counts[v])
    .map((v) => `${counts[v]} ${v === "failed" ? "could not be checked" : (VERDICT_WORDS[v]).toLowerCase()}`);
  statusLine.textContent = `Checked ${plural(answer.results.length, "image")}: ${summary.join(", ")}.`;
}

function resultCard(result) {
  const name = result.filename || "(unnamed image)";
  if (result.error) {
    return el("article", { class: "result failed" },
      el("h2", { text: name }),
      el("p", { class: "verdict" }, el("span", { class: "badge", text: "Not checked" })),
      el("p", { class: "error-text", text: errorWords(result.status, { error: result.error }) }));
  }
  const verdict = result.verdict;
  const card = el("article", { class: `result verdict-${verdict}` },
    el("h2", { text: name }),
    el("p", { class: "verdict" },
      el("span", { class: "badge", text: VERDICT_WORDS[verdict] || verdict }),
      ` at a false-positive rate of ${formatRate(result.false_positive_rate)}`),
    el("p", { class: "blame", text: blame(result) }),
    el("p", { class: "facts", text: `Family-wise p-value ${formatP(result.p_value)} · ${result.width} × ${result.height} px, `
      + `${plural(result.crops, "crop")} · evidence: ${result.evidence || "none"}` }),
    bars(result));
  const shown = pictured(result);
  if (shown) card.append(picturesOf(shown));
  return card;
}

function blame(result) {
  const candidates = result.candidates || [];
  if (result.top) return `Made by ${result.top}.`;
  if (candidates.length > 1) {
    return `Made by one of ${candidates.join(", ")} (strongest first): their fingerprints are too alike to tell apart here.`;
  }
  if (result.verdict === "inconclusive") return "Some generator's fingerprint is faintly present: worth a human look.";
  return "No loaded generator's fingerprint is present.";
}

// The generator whose pictures help the reader: the one blamed, else the strongest candidate.
function pictured(result) {
  if (result.verdict === "real") return null;
  if (result.top) return result.top;
  if (result.candidates && result.candidates.length) return result.candidates[0];
  const ranked = [...(result.scores || [])].sort((a, b) => a.p_value - b.p_value);
  return ranked.length ? ranked[0].generator : null;
}

// Bars show -log10(p): longer is stronger evidence that the generator made the image. The line is
// where a single generator's p-value decides "fake" (the rate split over every loaded generator).
function bars(result) {
  const scores = [...(result.scores || [])].sort((a, b) => a.p_value - b.p_value);
  const strength = (p) => -Math.log10(Math.max(p, 1e-300));
  const threshold = strength(result.false_positive_rate / Math.max(scores.length, 1));
  const scale = Math.max(threshold * 1.5, ...scores.map((s) => strength(s.p_value)));
  const list = el("ul", { class: "bars" });
  for (const s of scores) {
    const bar = el("span", { class: s.fake ? "bar pass" : "bar" });
    bar.style.width = `${(100 * strength(s.p_value)) / scale}%`;
    const line = el("span", { class: "threshold", "aria-hidden": "true" });
    line.style.left = `${(100 * threshold) / scale}%`;
    list.append(el("li", {},
      el("span", { class: "name", text: s.generator }),
      el("span", { class: "track", "aria-hidden": "true" }, bar, line),
      el("span", { class: "value", text: `p = ${formatP(s.p_value)}${s.fake ? " (matches)" : ""}` })));
  }
  return el("figure", { class: "scores" },
    el("figcaption", { text: "Per generator: bar = −log10 p (longer is stronger evidence); the line is the decision threshold." }),
    list);
}

// <img src> cannot carry the X-API-Key header: fetch the PNG with it and show it from an object URL.
function picture(name, kind) {
  const cacheKey = `${name}/${kind}`;
  if (!pictures.has(cacheKey)) {
    const loading = fetch(`generators/${encodeURIComponent(name)}/${kind}.png`, { headers: keyHeaders() })
      .then(async (response) => {
        if (!response.ok) {
          const body = await response.json().catch(() => null);
          throw new Error(errorWords(response.status, body, response.headers.get("Retry-After")));
        }
        return URL.createObjectURL(await response.blob());
      });
    loading.catch(() => pictures.delete(cacheKey));  // a failure is retried next time
    pictures.set(cacheKey, loading);
  }
  return pictures.get(cacheKey);
}

function picturesOf(name) {
  const holder = el("div", { class: "pictures" });
  for (const [kind, words] of [["fingerprint", "Fingerprint"], ["spectrum", "Spectrum"]]) {
    const img = el("img", { alt: `${words} of ${name}` });
    const caption = el("figcaption", { text: `${words} of ${name}` });
    holder.append(el("figure", { class: kind }, img, caption));
    picture(name, kind).then((url) => { img.src = url; },
      (err) => { img.remove(); caption.textContent = `${words} of ${name}: ${err.message}`; });
  }
  return holder;
}

keyInput.value = sessionStorage.getItem(KEY_STORE) || "";
keyInput.addEventListener("input", () => {
  const key = keyInput.value.trim();
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
  pictures = new Map();
});
fileInput.addEventListener("change", () => showPicked(fileInput.files));
form.addEventListener("submit", (event) => {
  event.preventDefault();
  detect(Array.from(fileInput.files));
});
// Dropped images are checked at once; the page-wide handlers stop a missed drop from replacing the page.
for (const type of ["dragover", "drop"]) document.addEventListener(type, (event) => event.preventDefault());
dropZone.addEventListener("dragover", () => dropZone.classList.add("dragging"));
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  dropZone.classList.remove("dragging");
  const files = Array.from(event.dataTransfer.files);
  fileInput.files = event.dataTransfer.files;
  showPicked(files);
  detect(files);
});
