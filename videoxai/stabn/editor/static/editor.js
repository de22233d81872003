// ST-ABN temporal-attention editor: one level (1.0 / 0.5 / 0.0) per frame, saved through the API.
"use strict";

const LEVELS = [1, 0.5, 0];
// saved: the levels as last loaded or saved, to tell unsaved changes (Save, leaving the clip)
// saving: a save or delete in flight (a second click sent the same version again: refused as someone else's save)
const state = { collection: null, key: null, clip: null, levels: [], saved: [], saving: false, tool: 1, overlay: false };
const $ = (sel) => document.querySelector(sel);

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function status(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// The JET colour map of the reference visualisation, for the attention bars.
function jet(v) {
  const c = (x) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - x))));
  return `rgb(${c(3)}, ${c(2)}, ${c(1)})`;
}

function unsaved() {
  return state.key !== null && state.levels.some((v, t) => v !== state.saved[t]);
}

function levelText(v) {
  return v === null ? "–" : v.toFixed(1);
}

function renderList() {
  const list = $("#clips");
  list.replaceChildren();
  const clips = state.collection.clips;
  for (const c of clips) {
    const li = document.createElement("li");
    li.dataset.key = c.key;
    li.textContent = `${c.id} — ${c.label_name} (predicted ${c.predicted_name})`;
    li.classList.toggle("edited", c.edited);
    li.classList.toggle("current", c.key === state.key);
    li.addEventListener("click", () => selectClip(c.key));
    list.append(li);
  }
  const done = clips.filter((c) => c.edited).length;
  $("#progress").textContent = `(${done}/${clips.length} edited)`;
}

// A save or delete changes the list's "edited" marks: a list asked for before it must not put the
// old marks back (and a clip a new collection no longer lists has no mark to set).
let changes = 0;

function markEdited(key, edited) {
  changes += 1;
  const entry = state.collection.clips.find((c) => c.key === key);
  if (entry) entry.edited = edited;
}

function renderSource() {
  const c = state.collection;
  $("#source").textContent = `model ${c.model} · ${c.data} (${c.split}) · ${c.clips.length} clips · ${c.num_frames} frames`;
  $("#preview").disabled = !c.preview;
  $("#preview").title = c.preview ? "" : "start the editor with the model to preview";
}

// `videoxai stabn collect` into the edit set while the page is open adds clips (the editor reads
// the collection again when it changes): the list is asked for again when the page comes back
// into view and every REFRESH_MS while it is in view. Only the list changes: the open clip, and
// levels not saved yet, stay as they are.
const REFRESH_MS = 10000;

async function refreshCollection() {
  const before = changes;
  let c;
  try {
    c = await api("GET", "api/collection");
  } catch (e) {
    return;  // a collection that cannot be read now: said when a clip is opened or saved
  }
  if (before !== changes) return;  // a save or delete since: its marks are newer than this answer
  state.collection = c;
  renderSource();
  renderList();
}

function frameUrl(t) {
  const overlay = state.overlay ? "spatial" : "none";
  return `api/clips/${encodeURIComponent(state.key)}/frames/${t}.png?overlay=${overlay}`;
}

function renderFrames() {
  const box = $("#frames");
  box.replaceChildren();
  state.clip.attention.forEach((a, t) => {
    const div = document.createElement("div");
    div.className = "frame";
    div.dataset.t = String(t);
    div.title = `frame ${t}: model attention ${a.toFixed(3)}; click to set the selected level`;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.background = jet(a);
    const img = document.createElement("img");
    img.src = frameUrl(t);
    img.alt = `frame ${t}`;
    img.draggable = false;
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.innerHTML = `<span>#${t} · M<sub>t</sub> ${a.toFixed(2)}</span><span class="level-text"></span>`;
    div.append(bar, img, caption);
    div.addEventListener("click", () => setLevel(t, state.tool));
    box.append(div);
  });
  renderLevels();
}

function renderLevels() {
  document.querySelectorAll(".frame").forEach((div) => {
    const v = state.levels[Number(div.dataset.t)];
    if (v === null) delete div.dataset.level; else div.dataset.level = String(v);
    div.querySelector(".level-text").textContent = levelText(v);
  });
  const unset = state.levels.filter((v) => v === null).length;
  // as the docs say: disabled until something changed (and every frame has a level)
  $("#save").disabled = unset > 0 || !unsaved() || state.saving;
  $("#save").title = unset ? `${unset} frame(s) still need a level` : unsaved() ? "save this edit" : "no changes to save";
  $("#delete").disabled = state.saving || !state.clip.version;  // version: a saved edit file is there
}

function renderInfo() {
  const c = state.clip;
  const info = document.createElement("p");
  info.textContent = `${c.id}: true class ${c.label_name}, predicted ${c.predicted_name}` +
    (c.levels ? " — edit saved" : c.edit_error ? " — saved edit unreadable" : " — not edited yet");
  $("#clip-info").replaceChildren(info);
}

function setLevel(t, v) {
  state.levels[t] = v;
  renderLevels();
}

function selectTool(v) {
  state.tool = v;
  document.querySelectorAll("button.level").forEach((b) => {
    const level = b.dataset.level === "" ? null : Number(b.dataset.level);
    b.setAttribute("aria-pressed", String(level === v));
  });
}

let opening = 0;  // the latest clip asked for: a slower answer for a clip clicked before it opened that one

async function selectClip(key) {
  // opening another clip dropped this one's levels without a word
  if (key !== state.key && unsaved() && !window.confirm("This clip's levels are not saved. Open the other clip and lose them?")) {
    return;
  }
  const ticket = ++opening;
  let clip;
  try {
    clip = await api("GET", `api/clips/${encodeURIComponent(key)}`);
  } catch (e) {
    if (ticket === opening) status(e.message, true);
    return;
  }
  if (ticket !== opening) return;
  state.clip = clip;
  state.key = key;
  state.levels = state.clip.levels ? [...state.clip.levels] : state.clip.attention.map(() => null);
  state.saved = [...state.levels];
  $("#empty").hidden = true;
  $("#editor").hidden = false;
  $("#preview-result").replaceChildren();
  const c = state.clip;
  renderInfo();
  // a damaged edit file: said, and saving a new edit replaces it
  status(c.edit_error ? `${c.edit_error}; saving replaces it` : "", Boolean(c.edit_error));
  renderList();
  renderFrames();
}

// An answer comes back to the clip that asked: a person may open another clip meanwhile (a
// preview on a CPU takes seconds), whose levels a late fill replaced with the first clip's and
// whose page a late save marked as saved.
async function fill() {
  const key = state.key;
  try {
    const r = await api("POST", `api/clips/${encodeURIComponent(key)}/fill`, { levels: state.levels });
    if (state.key !== key) return;
    state.levels = r.levels;
    renderLevels();
    status("filled between equal levels");
  } catch (e) {
    if (state.key === key) status(e.message, true);
  }
}

function fromAttention() {
  // nearest level to the model's own attention: a starting point to correct
  state.levels = state.clip.attention.map((a) => LEVELS.reduce((best, l) => (Math.abs(l - a) < Math.abs(best - a) ? l : best)));
  renderLevels();
  status("levels set from the model's attention (nearest level)");
}

async function save() {
  const key = state.key;
  if (state.saving) return;
  state.saving = true;
  renderLevels();
  try {
    // the version read: a save over someone else's since is refused (409), not overwriting theirs
    const clip = state.clip;
    const r = await api("PUT", `api/clips/${encodeURIComponent(key)}/edit`, { levels: state.levels, version: clip.version });
    clip.version = r.version;
    markEdited(key, true);
    if (state.key === key) {
      state.clip.levels = r.levels;
      state.clip.edit_error = null;
      state.saved = [...r.levels];
      renderLevels();
      renderInfo();
    }
    renderList();
    status(`saved edit of ${r.id}`);
  } catch (e) {
    status(state.key === key ? e.message : `not saved: ${e.message}`, true);  // said even after leaving the clip
  } finally {
    state.saving = false;
    renderLevels();
  }
}

async function deleteEdit() {
  const key = state.key;
  const clip = state.clip;
  if (state.saving || !clip.version || !window.confirm(`Delete the saved edit of ${clip.id}? Its levels are cleared.`)) return;
  state.saving = true;
  renderLevels();
  try {
    // the version read, as a save sends it: a delete of an edit someone else saved since is
    // refused (409), not removing theirs
    const r = await api("DELETE", `api/clips/${encodeURIComponent(key)}/edit?version=${encodeURIComponent(clip.version)}`);
    clip.version = null;
    clip.levels = null;
    clip.edit_error = null;
    markEdited(key, false);
    if (state.key === key) {
      state.levels = clip.attention.map(() => null);
      state.saved = [...state.levels];
      renderLevels();
      renderInfo();
    }
    renderList();
    status(r.deleted ? `deleted the edit of ${clip.id}` : `the edit of ${clip.id} was deleted already`);
  } catch (e) {
    status(state.key === key ? e.message : `not deleted: ${e.message}`, true);  // said even after leaving the clip
  } finally {
    state.saving = false;
    renderLevels();
  }
}

async function preview() {
  const out = $("#preview-result");
  const key = state.key;
  try {
    const r = await api("POST", `api/clips/${encodeURIComponent(key)}/preview`, { levels: state.levels });
    if (state.key !== key) return;
    // class names are the model's (a user's labels.csv, an HF config): text, never markup
    const cell = (tag, text) => { const c = document.createElement(tag); c.textContent = text; return c; };
    const row = (name, o) => {
      const tr = document.createElement("tr");
      tr.append(cell("td", name), cell("td", o.label), cell("td", o.probability.toFixed(3)),
        cell("td", o.temporal.map((v) => v.toFixed(2)).join(" ")));
      return tr;
    };
    const table = document.createElement("table");
    table.id = "preview-table";
    const head = document.createElement("tr");
    const used = cell("th", "M");
    used.append(cell("sub", "t"), " used");
    head.append(cell("th", "temporal attention"), cell("th", "prediction"), cell("th", "probability"), used);
    table.append(head, row("the model's", r.original), row("edited", r.edited));
    out.replaceChildren(table);
    status(`true class ${state.clip.label_name}: edited attention predicts ${r.edited.label}`);
  } catch (e) {
    if (state.key !== key) return;
    out.replaceChildren();
    status(e.message, true);
  }
}

function bind() {
  document.querySelectorAll("button.level").forEach((b) =>
    b.addEventListener("click", () => selectTool(b.dataset.level === "" ? null : Number(b.dataset.level))));
  $("#fill").addEventListener("click", fill);
  $("#from-attention").addEventListener("click", fromAttention);
  $("#clear").addEventListener("click", () => { state.levels = state.levels.map(() => null); renderLevels(); });
  $("#save").addEventListener("click", save);
  $("#delete").addEventListener("click", deleteEdit);
  $("#preview").addEventListener("click", preview);
  $("#overlay").addEventListener("change", (e) => {
    state.overlay = e.target.checked;
    document.querySelectorAll(".frame img").forEach((img, t) => { img.src = frameUrl(t); });
  });
  window.addEventListener("focus", refreshCollection);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshCollection(); });
  setInterval(() => { if (!document.hidden) refreshCollection(); }, REFRESH_MS);
  window.addEventListener("beforeunload", (e) => {
    if (unsaved()) e.preventDefault();  // the browser asks before closing or reloading the page
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT") return;
    const keys = { "1": 1, "2": 0.5, "3": 0, "0": null };
    if (e.key in keys) selectTool(keys[e.key]);
  });
}

async function main() {
  bind();
  selectTool(1);
  try {
    state.collection = await api("GET", "api/collection");
  } catch (e) {
    status(e.message, true);
    return;
  }
  renderSource();
  renderList();
  document.body.dataset.ready = "true";
}

main();
