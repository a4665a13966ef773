// baco serve's page: a chat whose replies are coloured by the model that wrote each token.
// It uses only the public HTTP API: GET /v1/models, GET /baco/routers, and
// POST /v1/chat/completions with stream=true (each delta's baco.pieces say which side wrote it).
"use strict";

const KEY_STORE = "baco-api-key";      // sessionStorage: the API key, for this tab only
const CVD_STORE = "baco-cvd-colours";  // localStorage: the colour-blind-safe choice

const $ = (id) => document.getElementById(id);
const state = {
  routers: new Map(),  // name -> {name, description, gamma}
  turns: [],           // {user, answers: [text], kept, element}
  controller: null,    // the AbortController of the reply being streamed
  keyWaiters: [],      // resolvers waiting for a key from the dialog
};

// --- the API key and requests --------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers() {
  const out = { "Content-Type": "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) out.Authorization = "Bearer " + key;
  return out;
}

// The readable line for an error answer of the server (OpenAI's {"error": {"message"}} shape).
async function errorOf(response) {
  let message = response.statusText || "error";
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) { /* not JSON: keep the status text */ }
  const what = {
    400: "The server refused the request",
    401: "The server refused the API key",
    404: "Not found",
    413: "The request is too large",
    503: "The server is busy or still loading; try again in a moment",
  }[response.status] || "The server answered with an error";
  return new ApiError(response.status, `${what} (${response.status}): ${message}`);
}

// fetch() with the key; on 401 ask for a key (once per failure) and try again.
async function api(path, options = {}) {
  for (;;) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: headers() });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "Could not reach the server: is `baco serve` still running?");
    }
    if (response.ok) return response;
    const error = await errorOf(response);
    if (response.status !== 401) throw error;
    const given = await askKey(error.message);
    if (!given) throw error;
  }
}

// Show the key dialog (with why it is shown); resolves true once a key is saved, false on cancel.
function askKey(reason) {
  $("key-error").textContent = reason || "";
  $("key-input").value = "";
  if (!$("key-dialog").open) $("key-dialog").showModal();
  $("key-input").focus();
  return new Promise((resolve) => state.keyWaiters.push(resolve));
}

function answerKey(saved) {
  const waiters = state.keyWaiters;
  state.keyWaiters = [];
  waiters.forEach((resolve) => resolve(saved));
}

function setUpKeyDialog() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    $("key-dialog").close();
    answerKey(true);
  });
  $("key-cancel").addEventListener("click", () => { $("key-dialog").close(); answerKey(false); });
  $("key-dialog").addEventListener("cancel", () => answerKey(false));
  $("key-button").addEventListener("click", () => askKey("").then((saved) => { if (saved) loadSettings(); }));
}

// --- settings: routers, γ, sampling ----------------------------------------------------------

async function loadSettings() {
  try {
    const routers = await (await api("/baco/routers")).json();
    const models = await (await api("/v1/models")).json();
    showSettings(routers, models.data[0]);
    hideError();
  } catch (error) {
    showError(error.message);
  }
}

function showSettings(body, model) {
  const select = $("router");
  select.replaceChildren();
  state.routers.clear();
  for (const router of body.routers) {
    state.routers.set(router.name, router);
    const option = document.createElement("option");
    option.value = router.name;
    option.textContent = router.name;
    select.append(option);
  }
  const defaults = body.defaults;
  select.value = defaults.router;
  showGamma(defaults.gamma);
  $("temperature").value = defaults.temperature;
  $("max-tokens").max = body.limits.max_tokens;
  $("max-tokens").value = defaults.max_tokens;
  $("samples").max = body.limits.n;
  if (model) {
    $("model").textContent = model.id;
    $("model").title = `base: ${model.baco.base}\naligned: ${model.baco.aligned}`;
  }
}

// The γ slider for the selected router: its valid range, and its default unless `value` is given.
function showGamma(value) {
  const router = state.routers.get($("router").value);
  const slider = $("gamma");
  $("router-help").textContent = router ? router.description : "";
  const range = router && router.gamma;
  slider.disabled = !range;
  if (!range) {
    $("gamma-value").textContent = "n/a";
    $("gamma-help").textContent = "This router has no γ.";
    return;
  }
  slider.min = range.min;
  slider.max = range.max;
  slider.step = range.unit === "nats" ? 0.05 : 0.01;
  slider.value = value ?? range.default;
  $("gamma-help").textContent = `${range.min} to ${range.max} ${range.unit === "nats" ? "nats (entropy)" : "(probability)"}; default ${range.default}`;
  $("gamma-value").textContent = Number(slider.value).toFixed(2);
}

function requestBody(messages) {
  const router = state.routers.get($("router").value);
  const body = {
    messages,
    stream: true,
    n: Math.max(1, parseInt($("samples").value, 10) || 1),
    max_tokens: Math.max(1, parseInt($("max-tokens").value, 10) || 1),
    temperature: parseFloat($("temperature").value),
    seed: parseInt($("seed").value, 10),
  };
  if (router) body.router = router.name;
  if (router && router.gamma) body.gamma = parseFloat($("gamma").value);
  if (Number.isNaN(body.temperature)) delete body.temperature;
  if (Number.isNaN(body.seed)) delete body.seed;
  return body;
}

// --- the conversation ------------------------------------------------------------------------

function messages() {
  const out = [];
  for (const turn of state.turns) {
    out.push({ role: "user", content: turn.user });
    if (turn.answers.length) out.push({ role: "assistant", content: turn.answers[turn.kept] });
  }
  return out;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A turn's DOM: the user's message, then one column per answer, then the figures under them.
function turnElement(text, n) {
  const node = element("article", "turn");
  node.append(element("div", "user", text));
  const answers = element("div", "answers");
  answers.style.setProperty("--n", n);
  for (let i = 0; i < n; i++) {
    const column = element("section", "answer");
    column.setAttribute("aria-label", `answer ${i + 1}`);
    if (n > 1) column.append(element("h3", "answer-title", `answer ${i + 1}`));
    column.append(element("div", "text"));
    column.append(element("p", "share", "base share: …"));
    if (n > 1) {
      const keep = element("button", "keep small", "continue with this answer");
      keep.type = "button";
      keep.dataset.index = i;
      column.append(keep);
    }
    answers.append(column);
  }
  node.append(answers);
  node.append(element("p", "meta"));
  return node;
}

// Add a delta's pieces to an answer: the words of each piece in a span of its side's colour
// (neighbours of one side merged); a piece's leading spaces stay plain, so highlights start at words.
function appendPieces(textNode, pieces) {
  for (const piece of pieces) {
    const [, space, words] = piece.text.match(/^(\s*)([\s\S]*)$/);
    if (space) appendRun(textNode, space, null);
    if (words) appendRun(textNode, words, piece.side);
  }
}

function appendRun(textNode, text, side) {
  const last = textNode.lastChild;
  if (side === null && last && last.nodeType === Node.TEXT_NODE) {
    last.data += text;
  } else if (side === null) {
    textNode.append(text);
  } else if (last && last.nodeType === Node.ELEMENT_NODE && last.dataset.side === side) {
    last.textContent += text;
  } else {
    const span = element("span", "tok " + side, text);
    span.dataset.side = side;
    textNode.append(span);
  }
}

// The SSE events of a streamed response, as the JSON text of each `data:` field.
async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
      if (data) yield data;
    }
  }
}

async function send() {
  const text = $("message").value;
  if (!text.trim() || state.controller) return;
  hideError();
  const body = requestBody([...messages(), { role: "user", content: text }]);
  const node = turnElement(text, body.n);
  const turn = { user: text, answers: Array(body.n).fill(""), kept: 0, element: node, shares: [] };
  $("conversation").querySelector(".empty")?.remove();
  document.querySelectorAll(".turn .keep").forEach((button) => { button.disabled = true; });
  $("conversation").append(node);
  $("message").value = "";
  state.controller = new AbortController();
  streaming(true);
  let outcome = "done";
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", body: JSON.stringify(body), signal: state.controller.signal,
    });
    outcome = await readStream(response, turn);
  } catch (error) {
    if (error.name === "AbortError") {
      outcome = "stopped";
    } else {
      node.remove();  // nothing was written: the message goes back to the box, to send again
      $("message").value = text;
      state.turns.at(-1)?.element.querySelectorAll(".keep").forEach((button) => { button.disabled = false; });
      showError(error.message);
      outcome = null;
    }
  } finally {
    state.controller = null;
    streaming(false);
  }
  if (outcome === null) return;
  state.turns.push(turn);
  finishTurn(turn, outcome);
}

// Read a reply's stream into the turn; "done", or "stopped" when the stop button cut it.
async function readStream(response, turn) {
  const columns = turn.element.querySelectorAll(".answer");
  for await (const data of sseData(response)) {
    if (data === "[DONE]") break;
    const chunk = JSON.parse(data);
    if (chunk.error) { showError(`The server stopped the reply: ${chunk.error.message}`); continue; }
    if (chunk.baco && chunk.baco.router) turn.settings = chunk.baco;
    for (const choice of chunk.choices || []) {
      const column = columns[choice.index];
      if (!column) continue;
      const pieces = (choice.baco && choice.baco.pieces) || [];
      appendPieces(column.querySelector(".text"), pieces);
      turn.answers[choice.index] += (choice.delta && choice.delta.content) || "";
      if (choice.finish_reason && choice.baco) {
        turn.shares[choice.index] = choice.baco.base_share;
        column.querySelector(".share").textContent =
          `base share: ${(100 * choice.baco.base_share).toFixed(1)}% of ${choice.baco.sources.length} tokens`;
        column.dataset.finish = choice.baco.finish;
      }
    }
  }
  return "done";
}

// A stopped answer has no final chunk (whose sources count tokens): its base share by characters so far.
function partialShare(column) {
  let base = 0, written = 0;
  column.querySelectorAll(".text .tok").forEach((span) => {
    written += span.textContent.length;
    if (span.dataset.side === "base") base += span.textContent.length;
  });
  if (!written) return "base share: n/a (stopped before any text)";
  return `base share: ${(100 * base / written).toFixed(1)}% of the text so far, by characters (stopped)`;
}

function finishTurn(turn, outcome) {
  const node = turn.element;
  node.querySelectorAll(".answer").forEach((column, i) => {
    if (turn.shares[i] === undefined) column.querySelector(".share").textContent = partialShare(column);
  });
  const parts = [];
  if (turn.settings) {
    const s = turn.settings;
    parts.push(`router ${s.router}` + (s.gamma === null || s.gamma === undefined ? "" : `, γ ${s.gamma}`),
      `temperature ${s.sampling.temperature}`, `seed ${s.seed}`);
  }
  if (outcome === "stopped") parts.push("stopped");
  if (turn.answers.length > 1) {
    const value = distinct2(turn.answers);
    const figure = element("p", "diversity");
    figure.append(element("strong", "", `diversity across the ${turn.answers.length} answers: distinct-2 = ` +
      (Number.isNaN(value) ? "n/a" : value.toFixed(3))));
    figure.append(" (unique word bigrams ÷ all word bigrams, pooled over the answers; as baco eval's distinct-2)");
    figure.dataset.value = Number.isNaN(value) ? "" : value.toFixed(6);
    node.querySelector(".meta").before(figure);
    node.querySelectorAll(".keep").forEach((button) => {
      button.disabled = false;
      button.addEventListener("click", () => keep(turn, Number(button.dataset.index)));
    });
    keep(turn, 0);
  }
  node.querySelector(".meta").textContent = parts.join(" · ");
  node.dataset.outcome = outcome;
  $("status").textContent = outcome === "stopped" ? "stopped" : "done";
}

// With N > 1, the answer the conversation goes on from (the last turn's only).
function keep(turn, index) {
  if (turn !== state.turns[state.turns.length - 1]) return;
  turn.kept = index;
  turn.element.querySelectorAll(".answer").forEach((column, i) => column.classList.toggle("kept", i === index));
}

function stop() {
  if (state.controller) state.controller.abort();  // the server cancels the sequences on disconnect
}

function reset() {
  stop();
  state.turns = [];
  $("conversation").replaceChildren(element("p", "empty", "New conversation. Write a message below."));
  $("status").textContent = "";
  hideError();
  $("message").focus();
}

function streaming(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
  $("status").textContent = on ? "writing…" : "";
  document.body.classList.toggle("busy", on);
}

// --- the diversity figure --------------------------------------------------------------------

// Words as baco's lexical metrics cut them: lowercased runs of letters/digits/underscore (joined by
// apostrophes), or single characters that are neither word characters nor spaces.
const TOKEN = /[\p{L}\p{N}_]+(?:['’][\p{L}\p{N}_]+)*|[^\p{L}\p{N}_\s]/gu;

// Distinct-2: unique word bigrams / all word bigrams, pooled over the answers (NaN: none).
function distinct2(texts) {
  const seen = new Set();
  let total = 0;
  for (const text of texts) {
    const words = text.toLowerCase().match(TOKEN) || [];
    for (let i = 0; i + 1 < words.length; i++) {
      seen.add(words[i] + "\u0000" + words[i + 1]);
      total += 1;
    }
  }
  return total ? seen.size / total : NaN;
}

// --- errors, colours, keys -------------------------------------------------------------------

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setUpColours() {
  const box = $("cvd");
  box.checked = localStorage.getItem(CVD_STORE) === "1";
  document.body.classList.toggle("cvd", box.checked);
  box.addEventListener("change", () => {
    document.body.classList.toggle("cvd", box.checked);
    localStorage.setItem(CVD_STORE, box.checked ? "1" : "0");
  });
}

function setUp() {
  setUpColours();
  setUpKeyDialog();
  $("router").addEventListener("change", () => showGamma());
  $("gamma").addEventListener("input", () => { $("gamma-value").textContent = Number($("gamma").value).toFixed(2); });
  $("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  $("stop").addEventListener("click", stop);
  $("reset").addEventListener("click", reset);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && state.controller) stop(); });
  loadSettings();
  $("message").focus();
}

setUp();
