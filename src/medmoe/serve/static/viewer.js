// medmoe viewer: three orthogonal views of a scan, prompts by mouse, the mask as an overlay.
// Plain browser JavaScript, no build step. The server sends slices as PNG and mask changes as
// bit-packed regions; the page keeps the whole mask in memory to draw it on every view.
"use strict";

const VIEWS = ["axial", "coronal", "sagittal"];
const $ = (id) => document.getElementById(id);

const state = {
  session: null, // the server's session description
  mask: null, // Uint8Array over the scan's voxels, C order
  cursor: [0, 0, 0], // the voxel the three views pass through
  slices: {}, // view name -> HTMLImageElement of the current slice
  lastUpdate: null,
  maskVoxels: 0,
  busy: 0,
};
window.medmoeState = state; // read by the end-to-end test

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function setBusy(on, text = "") {
  state.busy += on ? 1 : -1;
  $("busy").hidden = state.busy <= 0;
  $("busy-text").textContent = text;
}

// --- authentication: the server token, given once (Jupyter-style ?token=...) ----------------
const TOKEN_KEY = "medmoe-token";

function takeUrlToken() {
  // ?token=... goes to this tab's session storage and out of the address bar and history
  const url = new URL(window.location.href);
  const t = url.searchParams.get("token");
  if (t) {
    sessionStorage.setItem(TOKEN_KEY, t);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function askToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("login").hidden = false;
  $("login-message").textContent = message;
  $("token-input").focus();
}

async function checkLogin() {
  // the page's files are public; everything else needs the token when the server asks for one
  const r = await fetch("api/info", { headers: authHeaders() });
  if (r.status === 401) {
    askToken(sessionStorage.getItem(TOKEN_KEY) ? "The token was refused." : "This server needs its token.");
    return false;
  }
  $("login").hidden = true;
  return true;
}

async function api(method, url, body, headers = {}) {
  const r = await fetch(url, { method, body, headers: { ...headers, ...authHeaders() } });
  if (r.status === 401) askToken("The token was refused or has expired.");
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  return r;
}

// --- geometry: screen pixel <-> voxel -----------------------------------------------------
function pixelToVoxel(g, x, y, index) {
  const v = [0, 0, 0];
  v[g.slice_axis] = index;
  v[g.x_axis] = g.x_flip ? g.width - 1 - x : x;
  v[g.y_axis] = g.y_flip ? g.height - 1 - y : y;
  return v;
}

function voxelToPixel(g, v) {
  const x = g.x_flip ? g.width - 1 - v[g.x_axis] : v[g.x_axis];
  const y = g.y_flip ? g.height - 1 - v[g.y_axis] : v[g.y_axis];
  return [x, y];
}

function eventPixel(canvas, g, ev) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - r.left) / r.width) * g.width);
  const y = Math.floor(((ev.clientY - r.top) / r.height) * g.height);
  return [Math.min(Math.max(x, 0), g.width - 1), Math.min(Math.max(y, 0), g.height - 1)];
}

// --- drawing ------------------------------------------------------------------------------
function sliceUrl(name, index) {
  const p = new URLSearchParams({ view: name, index, window: $("window").value, level: $("level").value });
  return `api/sessions/${state.session.id}/slice?${p}`;
}

function loadSlice(name) {
  const g = state.session.views[name];
  const index = state.cursor[g.slice_axis];
  const img = new Image();
  state.slices[name] = img;
  api("GET", sliceUrl(name, index))
    .then((r) => r.blob())
    .then((blob) => {
      if (state.slices[name] !== img) return; // a newer slice was asked for meanwhile
      const src = URL.createObjectURL(blob);
      img.onload = () => {
        URL.revokeObjectURL(src);
        if (state.slices[name] === img) draw(name);
      };
      img.src = src;
    })
    .catch(() => setStatus(`could not load the ${name} slice`, true));
  $(`slider-${name}`).value = index;
  $(`label-${name}`).textContent = `${name} ${index + 1}/${g.n_slices}`;
}

function draw(name, box = null) {
  const g = state.session.views[name];
  const canvas = $(`view-${name}`);
  const ctx = canvas.getContext("2d");
  const img = state.slices[name];
  ctx.clearRect(0, 0, g.width, g.height);
  if (img && img.complete && img.naturalWidth > 0) ctx.drawImage(img, 0, 0);
  const opacity = Number($("opacity").value);
  if (state.mask && state.maskVoxels > 0 && opacity > 0) {
    const over = ctx.createImageData(g.width, g.height);
    const [, ny, nz] = state.session.shape;
    const index = state.cursor[g.slice_axis];
    let n = 0;
    for (let y = 0; y < g.height; y++) {
      for (let x = 0; x < g.width; x++) {
        const v = pixelToVoxel(g, x, y, index);
        if (state.mask[(v[0] * ny + v[1]) * nz + v[2]]) {
          const o = 4 * (y * g.width + x);
          over.data[o] = 255; over.data[o + 1] = 60; over.data[o + 2] = 40;
          over.data[o + 3] = Math.round(255 * opacity);
          n++;
        }
      }
    }
    if (n) {
      const tmp = document.createElement("canvas");
      tmp.width = g.width; tmp.height = g.height;
      tmp.getContext("2d").putImageData(over, 0, 0);
      ctx.drawImage(tmp, 0, 0);
    }
    canvas.dataset.overlayPixels = String(n);
  } else {
    canvas.dataset.overlayPixels = "0";
  }
  const [cx, cy] = voxelToPixel(g, state.cursor);
  ctx.fillStyle = "rgba(80, 220, 120, 0.9)";
  ctx.fillRect(cx, cy, 1, 1);
  if (box) {
    ctx.strokeStyle = "rgba(255, 220, 0, 0.9)";
    ctx.lineWidth = 1;
    ctx.strokeRect(box[0] + 0.5, box[1] + 0.5, box[2] - box[0], box[3] - box[1]);
  }
}

function drawAll() { VIEWS.forEach((n) => draw(n)); }
function loadAll() { VIEWS.forEach(loadSlice); }

// --- mask updates from the server ---------------------------------------------------------
function applyUpdate(u) {
  const [, ny, nz] = state.session.shape;
  const raw = atob(u.bits);
  const [l0, l1, l2] = u.lo;
  const [s0, s1, s2] = [u.hi[0] - l0, u.hi[1] - l1, u.hi[2] - l2];
  let bit = 0;
  for (let i = 0; i < s0; i++) {
    for (let j = 0; j < s1; j++) {
      let o = ((i + l0) * ny + (j + l1)) * nz + l2;
      for (let k = 0; k < s2; k++, bit++, o++) {
        state.mask[o] = (raw.charCodeAt(bit >> 3) >> (7 - (bit & 7))) & 1;
      }
    }
  }
  state.maskVoxels = u.voxels;
  state.lastUpdate = u;
  const badge = $("badge");
  if (u.expert === null) {
    badge.textContent = "—";
    badge.className = "";
  } else if (u.expert === "general") {
    badge.textContent = "general";
    badge.className = "general";
  } else {
    badge.textContent = `${u.expert} (${(100 * u.s_top).toFixed(0)}%)`;
    badge.className = "expert";
  }
  $("undo").disabled = u.step === 0;
  $("reset").disabled = u.step === 0;
  setStatus(`${u.step} step(s), ${u.voxels} mask voxels` + (u.encoded ? " (image encoded)" : ""));
  drawAll();
}

async function sendPrompt(body) {
  const first = !state.lastUpdate || state.lastUpdate.step === 0;
  setBusy(true, first ? "encoding the image…" : "updating…");
  try {
    const r = await api("POST", `api/sessions/${state.session.id}/prompts`, JSON.stringify(body),
      { "content-type": "application/json" });
    applyUpdate(await r.json());
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    setBusy(false);
  }
}

async function simple(action) {
  setBusy(true, `${action}…`);
  try {
    applyUpdate(await (await api("POST", `api/sessions/${state.session.id}/${action}`)).json());
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    setBusy(false);
  }
}

// --- mouse ----------------------------------------------------------------------------------
function boxFromDrag(name, a, b) {
  // The drag gives two axes; the third spans the larger in-plane side (in mm) around the slice.
  const g = state.session.views[name];
  const sp = state.session.spacing;
  const va = pixelToVoxel(g, a[0], a[1], state.cursor[g.slice_axis]);
  const vb = pixelToVoxel(g, b[0], b[1], state.cursor[g.slice_axis]);
  const lo = va.map((x, i) => Math.min(x, vb[i]));
  const hi = va.map((x, i) => Math.max(x, vb[i]));
  const halfMm = Math.max((hi[g.x_axis] - lo[g.x_axis]) * sp[g.x_axis],
    (hi[g.y_axis] - lo[g.y_axis]) * sp[g.y_axis]) / 2;
  const half = Math.round(halfMm / sp[g.slice_axis]);
  const n = state.session.shape[g.slice_axis];
  lo[g.slice_axis] = Math.max(0, lo[g.slice_axis] - half);
  hi[g.slice_axis] = Math.min(n - 1, hi[g.slice_axis] + half);
  return [...lo, ...hi];
}

function attach(name) {
  const canvas = $(`view-${name}`);
  let drag = null;
  canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
  canvas.addEventListener("mousedown", (ev) => {
    if (!state.session) return;
    ev.preventDefault();
    const g = state.session.views[name];
    const p = eventPixel(canvas, g, ev);
    if (ev.shiftKey && ev.button === 0) {
      drag = { start: p, end: p };
      return;
    }
    const v = pixelToVoxel(g, p[0], p[1], state.cursor[g.slice_axis]);
    state.cursor = v;
    loadAll();
    sendPrompt({ points: [v], labels: [ev.button === 2 ? 0 : 1] });
  });
  canvas.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    const g = state.session.views[name];
    drag.end = eventPixel(canvas, g, ev);
    const [a, b] = [drag.start, drag.end];
    draw(name, [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])]);
  });
  canvas.addEventListener("mouseup", () => {
    if (!drag) return;
    const box = boxFromDrag(name, drag.start, drag.end);
    drag = null;
    draw(name);
    sendPrompt({ box });
  });
  canvas.addEventListener("wheel", (ev) => {
    if (!state.session) return;
    ev.preventDefault();
    const g = state.session.views[name];
    const i = state.cursor[g.slice_axis] + (ev.deltaY > 0 ? 1 : -1);
    state.cursor[g.slice_axis] = Math.min(Math.max(i, 0), g.n_slices - 1);
    loadSlice(name);
  }, { passive: false });
  $(`slider-${name}`).addEventListener("input", (ev) => {
    const g = state.session.views[name];
    state.cursor[g.slice_axis] = Number(ev.target.value);
    loadSlice(name);
  });
}

// --- loading a scan ---------------------------------------------------------------------------
async function upload(file) {
  setBusy(true, "uploading…");
  try {
    const r = await api("POST", `api/sessions?filename=${encodeURIComponent(file.name)}`, file,
      { "content-type": "application/octet-stream" });
    const s = await r.json();
    state.session = s;
    state.mask = new Uint8Array(s.shape[0] * s.shape[1] * s.shape[2]);
    state.maskVoxels = 0;
    state.lastUpdate = null;
    state.cursor = s.shape.map((n) => Math.floor(n / 2));
    $("window").value = s.window.toPrecision(6);
    $("level").value = s.level.toPrecision(6);
    for (const name of VIEWS) {
      const g = s.views[name];
      const canvas = $(`view-${name}`);
      canvas.width = g.width;
      canvas.height = g.height;
      const w = g.width * g.pixel_width_mm, h = g.height * g.pixel_height_mm;
      const scale = 360 / Math.max(w, h);
      canvas.style.width = `${Math.round(w * scale)}px`;
      canvas.style.height = `${Math.round(h * scale)}px`;
      const slider = $(`slider-${name}`);
      slider.min = 0;
      slider.max = g.n_slices - 1;
    }
    $("badge").textContent = "—";
    $("badge").className = "";
    $("save").disabled = false;
    $("save-seg").hidden = !s.dicom;
    $("save-seg").disabled = !s.dicom;
    $("undo").disabled = true;
    $("reset").disabled = true;
    setStatus(`${s.name}: ${s.shape.join("×")} voxels, ${s.spacing.map((x) => x.toFixed(2)).join("×")} mm. Click on the object.`);
    loadAll();
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    setBusy(false);
  }
}

VIEWS.forEach(attach);
$("file").addEventListener("change", (ev) => ev.target.files[0] && upload(ev.target.files[0]));
$("undo").addEventListener("click", () => simple("undo"));
$("reset").addEventListener("click", () => simple("reset"));
async function save(file) {
  try {
    const r = await api("GET", `api/sessions/${state.session.id}/${file}`);
    const name = /filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = name ? name[1] : file;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    setStatus(e.message, true);
  }
}
$("save").addEventListener("click", () => save("mask.nii.gz"));
$("save-seg").addEventListener("click", () => save("mask.dcm"));
$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  $("token-input").value = "";
  if (await checkLogin()) setStatus("Logged in. Load a scan to start.");
});
takeUrlToken();
checkLogin();
$("opacity").addEventListener("input", () => state.session && drawAll());
for (const id of ["window", "level"]) {
  $(id).addEventListener("change", () => state.session && loadAll());
}
