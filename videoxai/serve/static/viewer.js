// videoxai viewer: upload a video (HTTP job) or stream the camera / a file (WebSocket), and see
// where (heat overlay) and when (temporal curve) the model finds its evidence.
// Protocol: docs/protocol.md. No dependencies; works from the page the server itself serves.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // Everything the page knows, exposed for the browser test and for the console.
  const state = {
    info: null, ready: null, running: false,
    sent: 0, skipped: 0, windows: 0, dropped: 0, overlayDraws: 0,
    latencies: [], errors: [], lastWindow: null, ended: null,
    job: null,
  };
  window.videoxaiViewer = state;

  // -- HTTP helpers -------------------------------------------------------------------------------
  function apiKey() {
    const typed = $("api-key").value.trim();
    if (typed) sessionStorage.setItem("videoxai-key", typed);
    return typed || sessionStorage.getItem("videoxai-key") || "";
  }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    const key = apiKey();
    if (key) headers["X-API-Key"] = key;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        const body = await response.json();
        if (body.error) message = `${body.error.code}: ${body.error.message}`;
      } catch (_) { /* not JSON */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  function showError(message) {
    state.errors.push(message);
    const banner = $("banner");
    banner.textContent = message;
    banner.classList.remove("hidden");
  }

  function clearError() { $("banner").classList.add("hidden"); }

  async function loadInfo() {
    try {
      const info = await (await api("api/info")).json();
      state.info = info;
      const m = info.model;
      $("model-info").textContent =
        `${m.name} · ${m.family} · ${m.num_frames} frames · ${m.labels.length} classes`;
      const select = $("method");
      select.innerHTML = "";
      for (const name of info.methods) {
        const selected = name === info.default_method;
        select.add(new Option(name, name, selected, selected));
      }
      $("stride").max = m.num_frames;
      $("stride").value = Math.max(1, Math.floor(m.num_frames / 2));
      $("key-box").classList.add("hidden");
      clearError();
    } catch (e) {
      if (e.status === 401) {
        $("key-box").classList.remove("hidden");
        showError("This server needs an API key: type it above.");
      } else {
        showError(`Cannot reach the server: ${e.message}`);
      }
    }
  }

  // -- maps and colours -----------------------------------------------------------------------------
  function halfToFloat(h) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * Math.pow(2, e - 15) * (1 + f / 1024);
  }

  // A CompactArray (see protocol.md) → {shape, values: Float32Array}.
  function decodeCompact(c) {
    const bin = atob(c.data);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    let values;
    if (c.dtype === "uint8") {
      values = new Float32Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) values[i] = (bytes[i] / 255) * c.scale;
    } else {
      const halves = new Uint16Array(bytes.buffer);
      values = new Float32Array(halves.length);
      for (let i = 0; i < halves.length; i++) values[i] = halfToFloat(halves[i]) * c.scale;
    }
    return { shape: c.shape, values };
  }

  const clamp01 = (v) => Math.min(1, Math.max(0, v));
  // matplotlib's "jet", the colour map of the server's overlay videos
  function jet(v) {
    return [clamp01(1.5 - Math.abs(4 * v - 3)) * 255, clamp01(1.5 - Math.abs(4 * v - 2)) * 255,
            clamp01(1.5 - Math.abs(4 * v - 1)) * 255];
  }

  // One frame of a (T, h, w) map as a small RGBA canvas: colour by value, opacity grows with it,
  // so frames keep their look where there is no evidence (as in the server's overlays).
  const heatCanvas = document.createElement("canvas");
  function heatImage(map, t) {
    const [, h, w] = map.shape;
    heatCanvas.width = w;
    heatCanvas.height = h;
    const ctx = heatCanvas.getContext("2d");
    const image = ctx.createImageData(w, h);
    const offset = t * h * w;
    for (let i = 0; i < h * w; i++) {
      const v = clamp01(map.values[offset + i]);
      const [r, g, b] = jet(v);
      image.data.set([r, g, b, Math.round(255 * 0.6 * v)], 4 * i);
    }
    ctx.putImageData(image, 0, 0);
    return heatCanvas;
  }

  // -- curves -----------------------------------------------------------------------------------
  function drawCurve(canvas, xs, ys, { uniform = null, bars = false, highlight = -1 } = {}) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, pad = 24;
    ctx.clearRect(0, 0, W, H);
    if (!xs.length) return;
    const top = Math.max(uniform || 0, ...ys) * 1.1 || 1;
    const x0 = xs[0], x1 = xs[xs.length - 1], span = Math.max(1, x1 - x0);
    const px = (x) => pad + ((x - x0) / span) * (W - 2 * pad);
    const py = (y) => H - pad - (y / top) * (H - 2 * pad);
    ctx.strokeStyle = "#d9dde5";
    ctx.beginPath(); ctx.moveTo(pad, H - pad); ctx.lineTo(W - pad, H - pad); ctx.stroke();
    if (uniform !== null) {
      ctx.setLineDash([4, 4]); ctx.strokeStyle = "#98a2b3";
      ctx.beginPath(); ctx.moveTo(pad, py(uniform)); ctx.lineTo(W - pad, py(uniform)); ctx.stroke();
      ctx.setLineDash([]);
    }
    if (bars) {
      const bw = Math.max(1, (W - 2 * pad) / xs.length - 1);
      xs.forEach((x, i) => {
        ctx.fillStyle = i === highlight ? "#d55e00" : "#0072b2";
        ctx.fillRect(px(x) - bw / 2, py(ys[i]), bw, H - pad - py(ys[i]));
      });
    } else {
      ctx.strokeStyle = "#0072b2"; ctx.lineWidth = 2; ctx.beginPath();
      xs.forEach((x, i) => (i ? ctx.lineTo(px(x), py(ys[i])) : ctx.moveTo(px(x), py(ys[i]))));
      ctx.stroke(); ctx.lineWidth = 1;
    }
    ctx.fillStyle = "#667085"; ctx.font = "11px system-ui";
    ctx.fillText(`frame ${x0}`, pad, H - 6);
    const last = `frame ${x1}`;
    ctx.fillText(last, W - pad - ctx.measureText(last).width, H - 6);
  }

  // -- live stream --------------------------------------------------------------------------------
  const live = {
    ws: null, media: null, timer: null, encoding: false, stopping: false, map: null,
    scores: new Map(),  // frame index → [sum of window-relative scores, windows]
  };
  const CURVE_FRAMES = 240;
  const captureCanvas = document.createElement("canvas");

  function wsURL() {
    const url = new URL("api/stream", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();  // the key goes in the start message: URLs end up in logs
  }

  function packFrame(header, payload) {
    const head = new TextEncoder().encode(JSON.stringify(header));
    const message = new Uint8Array(4 + head.length + payload.length);
    new DataView(message.buffer).setUint32(0, head.length);  // big-endian
    message.set(head, 4);
    message.set(payload, 4 + head.length);
    return message.buffer;
  }

  function sendFrame() {
    const video = $("live-video"), ws = live.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || video.readyState < 2 || !video.videoWidth) return;
    // Browser-side back-pressure: never queue frames behind a slow network or server.
    if (live.encoding || ws.bufferedAmount > 256 * 1024) { state.skipped++; updateStats(); return; }
    const w = Math.min(Number($("send-width").value), video.videoWidth);
    const h = Math.max(1, Math.round((w * video.videoHeight) / video.videoWidth));
    captureCanvas.width = w;
    captureCanvas.height = h;
    captureCanvas.getContext("2d").drawImage(video, 0, 0, w, h);
    live.encoding = true;
    captureCanvas.toBlob(async (blob) => {
      live.encoding = false;
      if (!blob) return;
      const payload = new Uint8Array(await blob.arrayBuffer());
      // Checked after the await: the user may stop (live.ws = null) while the frame is encoded,
      // and a frame must never go to a socket other than the one it was captured for.
      if (live.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
      ws.send(packFrame({ format: "jpeg", width: w, height: h, ts: performance.now() }, payload));
      state.sent++;
      updateStats();
    }, "image/jpeg", 0.8);
  }

  function draw() {
    if (!state.running) return;
    const video = $("live-video"), canvas = $("live-canvas");
    if (video.readyState >= 2 && video.videoWidth) {
      if (canvas.width !== video.videoWidth) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
      }
      const ctx = canvas.getContext("2d");
      ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
      if (live.map) {
        ctx.imageSmoothingEnabled = true;  // bilinear upsampling of the small map
        ctx.drawImage(heatImage(live.map, live.map.shape[0] - 1), 0, 0, canvas.width, canvas.height);
        state.overlayDraws++;
      }
    }
    requestAnimationFrame(draw);
  }

  function onWindow(msg) {
    state.windows++;
    state.lastWindow = msg;
    state.latencies.push(performance.now() - (msg.ts || performance.now()));
    if (state.latencies.length > 200) state.latencies.shift();
    if (msg.maps && msg.maps.spatial) live.map = decodeCompact(msg.maps.spatial);
    const n = msg.temporal.length;
    msg.frame_indices.forEach((f, i) => {
      const entry = live.scores.get(f) || [0, 0];
      entry[0] += msg.temporal[i] * n;
      entry[1] += 1;
      live.scores.set(f, entry);
    });
    const frames = [...live.scores.keys()].sort((a, b) => a - b).slice(-CURVE_FRAMES);
    for (const f of live.scores.keys()) if (f < frames[0]) live.scores.delete(f);
    drawCurve($("live-curve"), frames, frames.map((f) => live.scores.get(f)[0] / live.scores.get(f)[1]),
              { uniform: 1 });
    const chip = $("live-label");
    chip.textContent = `${msg.smoothed.label} ${(100 * msg.smoothed.score).toFixed(0)}%`;
    chip.classList.remove("hidden");
    updateStats();
  }

  function onMessage(event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { showError("the server sent a message that is not JSON"); return; }
    switch (msg.type) {
      case "ready":
        state.ready = msg;
        live.timer = setInterval(sendFrame, 1000 / Number($("send-fps").value));
        break;
      case "window": onWindow(msg); break;
      case "dropped": state.dropped = msg.total; updateStats(); break;
      case "error": showError(`${msg.fatal ? "stream ended: " : ""}${msg.error.code}: ${msg.error.message}`); break;
      case "end": state.ended = msg; stopLive(); break;
    }
  }

  function updateStats() {
    const w = state.lastWindow;
    $("stat-pred").textContent = w ? `${w.prediction.label} ${(100 * w.prediction.score).toFixed(0)}%` : "–";
    $("stat-smoothed").textContent = w ? `${w.smoothed.label} ${(100 * w.smoothed.score).toFixed(0)}%` : "–";
    $("stat-sent").textContent = state.sent;
    $("stat-windows").textContent = state.windows;
    $("stat-dropped").textContent = state.dropped;
    $("stat-skipped").textContent = state.skipped;
    if (state.latencies.length) {
      const sorted = [...state.latencies].sort((a, b) => a - b);
      $("stat-latency").textContent = `${sorted[Math.floor(sorted.length / 2)].toFixed(0)} ms`;
    }
  }

  async function startLive() {
    clearError();
    Object.assign(state, { sent: 0, skipped: 0, windows: 0, dropped: 0, overlayDraws: 0, latencies: [],
                           lastWindow: null, ended: null, ready: null });
    live.scores.clear();
    live.map = null;
    const video = $("live-video");
    try {
      if ($("live-source").value === "camera") {
        if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
          throw new Error("this browser gives no camera access here (a camera needs https or localhost)");
        }
        live.media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
        video.srcObject = live.media;
        video.onended = null;
      } else {
        const file = $("live-file").files[0];
        if (!file) throw new Error("choose a video file first");
        video.srcObject = null;
        video.src = URL.createObjectURL(file);
        video.onended = endLive;
      }
      await video.play();
    } catch (e) {
      showError(`cannot start the source: ${e.message}`);
      return;
    }
    const ws = new WebSocket(wsURL());
    ws.binaryType = "arraybuffer";
    live.ws = ws;
    live.stopping = false;
    ws.onopen = () => ws.send(JSON.stringify({
      // an unset field is left out (undefined), never sent empty: "" is not a method's name
      type: "start", method: $("method").value || undefined, stride: Number($("stride").value) || null,
      smoothing: Number($("smoothing").value), live: true, maps: ["spatial"], api_key: apiKey() || null,
    }));
    ws.onmessage = onMessage;
    ws.onerror = () => showError("the stream connection failed");
    ws.onclose = (event) => {
      if (live.ws !== ws) return;  // an earlier stream's socket closing late: not this stream's end
      // the reason repeats a fatal error (client_limit, busy, idle …): the message before it may be lost
      if (!live.stopping && event.code !== 1000) {
        showError(`the stream was closed (code ${event.code}${event.reason ? `: ${event.reason}` : ""})`);
      }
      stopLive();
    };
    state.running = true;
    $("live-start").disabled = true;
    $("live-stop").disabled = false;
    requestAnimationFrame(draw);
  }

  function endLive() {
    // the file is over: let the server explain what is left; it answers "end" and closes
    clearInterval(live.timer);
    live.timer = null;
    if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ type: "end" }));
  }

  function stopLive() {
    live.stopping = true;
    clearInterval(live.timer);
    live.timer = null;
    if (live.ws && live.ws.readyState <= WebSocket.OPEN) live.ws.close(1000);
    live.ws = null;
    if (live.media) live.media.getTracks().forEach((t) => t.stop());
    live.media = null;
    $("live-video").pause();
    state.running = false;
    $("live-start").disabled = false;
    $("live-stop").disabled = true;
  }

  // -- uploads ------------------------------------------------------------------------------------
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function upload(event) {
    event.preventDefault();
    clearError();
    const file = $("upload-file").files[0];
    if (!file) return;
    const params = new URLSearchParams({ sampling: $("sampling").value, overlay: "true" });
    // no method chosen (the list did not load): leave it out for the server's default; "" is refused
    if ($("method").value) params.set("method", $("method").value);
    if ($("sampling").value === "windows") params.set("stride", $("stride").value);
    const progress = $("upload-progress"), label = $("upload-state");
    progress.classList.remove("hidden");
    progress.value = 0;
    $("upload-start").disabled = true;
    state.job = { state: "uploading" };
    try {
      label.textContent = "uploading…";
      let status = await (await api(`api/jobs?${params}`, {
        method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
      })).json();
      while (status.state === "queued" || status.state === "running") {
        state.job = { state: status.state, id: status.id };
        label.textContent = `${status.state}… ${status.windows_done}/${status.windows_total ?? "?"} windows`;
        progress.value = status.progress;
        await sleep(300);
        status = await (await api(status.links.status)).json();
      }
      state.job = { state: status.state === "done" ? "loading" : status.state, id: status.id };
      if (status.state !== "done") {
        throw new Error(status.error ? `${status.error.code}: ${status.error.message}` : `the job was ${status.state}`);
      }
      progress.value = 1;
      const result = await (await api(status.links.result)).json();
      showResult(result);
      if (result.overlay) {
        const blob = await (await api(result.overlay)).blob();
        const video = $("overlay-video");
        video.src = URL.createObjectURL(blob);
        video.classList.remove("hidden");
        await video.play().catch(() => {});
      }
      state.job = { state: "done", id: status.id, result, overlayBytes: result.overlay ? "loaded" : null };
      label.textContent = "done";
    } catch (e) {
      state.job = Object.assign(state.job || {}, { state: "failed", error: e.message });
      label.textContent = "failed";
      showError(`upload: ${e.message}`);
    } finally {
      $("upload-start").disabled = false;
    }
  }

  function showResult(result) {
    const p = result.prediction;
    $("job-pred").textContent = `${p.label} ${(100 * p.score).toFixed(0)}%`;
    $("job-frames").textContent = `${result.frame_indices.length} of ${result.video.frames}`;
    $("job-windows").textContent = result.windows.length;
    $("job-time").textContent = `${result.seconds.toFixed(2)} s`;
    const n = result.temporal.length;
    let best = 0;
    result.temporal.forEach((v, i) => { if (v > result.temporal[best]) best = i; });
    drawCurve($("job-curve"), result.frame_indices, result.temporal.map((v) => v * n),
              { uniform: 1, bars: n <= 120, highlight: best });
  }

  // -- wiring -------------------------------------------------------------------------------------
  function selectTab(name) {
    for (const t of ["live", "upload"]) {
      $(`tab-${t}`).classList.toggle("active", t === name);
      $(`tab-${t}`).setAttribute("aria-selected", String(t === name));
      $(`panel-${t}`).classList.toggle("hidden", t !== name);
    }
  }

  $("tab-live").addEventListener("click", () => selectTab("live"));
  $("tab-upload").addEventListener("click", () => selectTab("upload"));
  $("live-source").addEventListener("change", () =>
    $("live-file").classList.toggle("hidden", $("live-source").value !== "file"));
  $("live-start").addEventListener("click", startLive);
  $("live-stop").addEventListener("click", stopLive);
  $("upload-form").addEventListener("submit", upload);
  $("smoothing").addEventListener("input", () => { $("smoothing-value").textContent = $("smoothing").value; });
  $("api-key").addEventListener("change", loadInfo);
  loadInfo();
})();
