/* The deep-zoom page: OpenSeadragon on the manifest's canvases, and citing a region: drawn with
   the mouse or typed, it gives the canonical IIIF Image URL of the region, a Content State link
   that reopens this page (or Mirador, or UV) on it, and a citation text. */
"use strict";
(function () {
  var P = window.IIIFPage, CS = window.IIIFContentState, M = window.IIIFManifest, cfg = P.config;
  var S = { notice: "", manifest: null, canvases: [], index: 0, region: null, pending: null, viewer: null, marker: null };

  function $(id) { return document.getElementById(id); }
  function item() { return S.viewer && S.viewer.world.getItemAt(0); }
  function canvas() { return S.canvases[S.index]; }
  function imageSize() { var ti = item(); return ti ? ti.getContentSize() : null; }
  /* Canvas coordinates (content state) per image pixel (region URL); 1 for our manifests. */
  function scale() {
    var size = imageSize(), c = canvas();
    return size && c && c.width ? c.width / size.x : 1;
  }

  function clampRegion(r) {
    var size = imageSize();
    if (!size) return null;
    var x = Math.max(0, Math.round(r.x)), y = Math.max(0, Math.round(r.y));
    var x2 = Math.min(size.x, Math.round(r.x + r.w)), y2 = Math.min(size.y, Math.round(r.y + r.h));
    if (!(x2 - x >= 1 && y2 - y >= 1)) return null;
    return { x: x, y: y, w: x2 - x, h: y2 - y };
  }

  /* Canonical form (Image API 3.0, section 4.7): integer x,y,w,h, or "full" for the whole image;
     size "max", rotation 0, default.jpg: what the server's own Link: rel="canonical" names. */
  function regionUrl(r) {
    var size = imageSize();
    var full = r.x === 0 && r.y === 0 && r.w === size.x && r.h === size.y;
    return canvas().service + "/" + (full ? "full" : [r.x, r.y, r.w, r.h].join(",")) + "/max/0/default.jpg";
  }

  function canvasRegion(r) {
    var s = scale();
    return { x: Math.round(r.x * s), y: Math.round(r.y * s), w: Math.round(r.w * s), h: Math.round(r.h * s) };
  }

  function stateFor(r) { return CS.regionState(S.manifest.id, canvas().id, canvasRegion(r)); }

  function citation(r, link) {
    var parts = [];
    var label = P.pick(S.manifest.label, cfg.object);
    var canvasLabel = P.pick(canvas().label);
    parts.push(label + (S.canvases.length > 1 && canvasLabel ? ", " + canvasLabel : "") +
      " (" + P.t("region") + " " + [r.x, r.y, r.w, r.h].join(",") + ")");
    var provider = M.provider(S.manifest, P.pick);
    if (provider) parts.push(provider);
    var statement = M.requiredStatement(S.manifest, P.pick);
    if (statement && statement !== provider) parts.push(statement);
    if (S.manifest.rights) parts.push(P.t("rights") + ": " + S.manifest.rights);
    var today = new Date().toISOString().slice(0, 10);
    parts.push(link + " (" + P.t("accessed") + " " + today + ")");
    return parts.join(". ").replace(/\.\./g, ".");
  }

  function showRegion() {
    var r = S.region, out = $("cite-output");
    if (!r) { out.hidden = true; return; }
    ["x", "y", "w", "h"].forEach(function (k) { $("region-" + k).value = r[k]; });
    var url = regionUrl(r);
    var state = stateFor(r);
    var link = CS.link(cfg.pages.objects + cfg.objectPath, state);
    $("region-url").value = url;
    $("state-url").value = link;
    $("open-region").href = url;
    $("open-mirador").href = CS.link(cfg.pages.mirador + cfg.objectPath, state);
    $("open-uv").href = CS.link(cfg.pages.uv + cfg.objectPath, state);
    $("citation").value = citation(r, link);
    out.hidden = false;
    drawMarker();
  }

  function drawMarker() {
    var ti = item();
    if (!ti || !S.region) return;
    var rect = ti.imageToViewportRectangle(S.region.x, S.region.y, S.region.w, S.region.h);
    if (!S.marker) {
      S.marker = document.createElement("div");
      S.marker.className = "region-marker";
      S.viewer.addOverlay({ element: S.marker, location: rect });
    } else {
      S.viewer.updateOverlay(S.marker, rect);
    }
  }

  function clearRegion() {
    if (S.marker) { S.viewer.removeOverlay(S.marker); S.marker = null; }
    S.region = null;
    showRegion();
  }

  function setRegion(r, fit) {
    var clamped = r && clampRegion(r);
    if (!clamped) { P.status(P.t("invalidRegion")); return false; }
    P.status("");
    S.region = clamped;
    showRegion();
    if (fit) fitRegion(clamped, false);
    return true;
  }

  function fitRegion(r, immediately) {
    var rect = item().imageToViewportRectangle(r.x, r.y, r.w, r.h);
    S.viewer.viewport.fitBounds(rect, immediately);
  }

  function currentView() {
    var b = item().viewportToImageRectangle(S.viewer.viewport.getBounds(true));
    return { x: b.x, y: b.y, w: b.width, h: b.height };
  }

  /* Drawing: a layer over the viewer takes the pointer while the toggle is on. */
  function setDrawing(on) {
    var layer = $("select-layer"), toggle = $("select-toggle");
    layer.hidden = !on;
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    $("select-help").textContent = P.t(on ? "drawing" : "drawHelp");
  }

  function setupDrawing() {
    var layer = $("select-layer"), start = null, box = null;
    function point(e) {
      var rect = layer.getBoundingClientRect();
      return new OpenSeadragon.Point(e.clientX - rect.left, e.clientY - rect.top);
    }
    layer.addEventListener("pointerdown", function (e) {
      start = point(e);
      layer.setPointerCapture(e.pointerId);
      box = document.createElement("div");
      box.className = "draw-box";
      layer.appendChild(box);
      e.preventDefault();
    });
    layer.addEventListener("pointermove", function (e) {
      if (!start) return;
      var p = point(e);
      box.style.left = Math.min(p.x, start.x) + "px"; box.style.top = Math.min(p.y, start.y) + "px";
      box.style.width = Math.abs(p.x - start.x) + "px"; box.style.height = Math.abs(p.y - start.y) + "px";
    });
    layer.addEventListener("pointerup", function (e) {
      if (!start) return;
      var a = item().viewerElementToImageCoordinates(start), b = item().viewerElementToImageCoordinates(point(e));
      start = null;
      if (box) { box.remove(); box = null; }
      setDrawing(false);
      setRegion({ x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), w: Math.abs(b.x - a.x), h: Math.abs(b.y - a.y) }, false);
    });
    $("select-toggle").addEventListener("click", function () { setDrawing(layer.hidden); });
    document.addEventListener("keydown", function (e) { if (e.key === "Escape" && !layer.hidden) setDrawing(false); });
    $("use-view").addEventListener("click", function () { setRegion(currentView(), false); });
    $("region-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var r = {};
      ["x", "y", "w", "h"].forEach(function (k) { r[k] = Number($("region-" + k).value); });
      setRegion(r, true);
    });
    document.querySelectorAll("button.copy").forEach(function (button) {
      button.addEventListener("click", function () { copy($(button.getAttribute("data-copy"))); });
    });
  }

  function copy(field) {
    var done = function () { $("copy-status").textContent = P.t("copied"); };
    var manual = function () { field.select(); $("copy-status").textContent = P.t("copyFailed"); };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(field.value).then(done, manual);
    else manual();
  }

  function updatePages() {
    var nav = $("pages-nav");
    if (S.canvases.length < 2) { nav.hidden = true; return; }
    nav.hidden = false;
    $("page-indicator").textContent = P.t("pageOf", { n: S.index + 1, total: S.canvases.length }) +
      (P.pick(canvas().label) ? " — " + P.pick(canvas().label) : "");
    $("prev-page").disabled = S.index === 0;
    $("next-page").disabled = S.index === S.canvases.length - 1;
  }

  function showLabels() {
    var label = P.pick(S.manifest.label, cfg.object);
    $("object-title").textContent = label;
    document.title = label + " · iiifserver";
    $("object-provider").textContent = M.provider(S.manifest, P.pick);
    updatePages();
    if (S.region) showRegion();
  }

  /* IIIF Authorization Flow 2.0 client (docs/access.md): each image's info.json names its probe
     service when it is restricted. The probe (with our access token, if any) says whether the
     image can be seen; if not, its substitute (the degraded tier) is shown with a login button:
     the access service opens in a new window, then the token service in a hidden iframe
     postMessages a token to this page's origin; the probe is asked again and, now 200, the full
     image replaces the degraded one. */
  var A = { token: null, access: null, tokenService: null, logout: null, restricted: false };

  function firstOfType(list, type) {
    return (list || []).filter(function (s) { return s && (s.type === type || s["@type"] === type); })[0] || null;
  }

  function fetchJson(url, headers) {
    return fetch(url, { credentials: "same-origin", headers: headers || {} }).then(function (r) {
      return r.json().then(function (body) { return { status: r.status, body: body }; }, function () {
        return { status: r.status, body: null };
      });
    });
  }

  /* The tile source to show for one image service: itself, or its substitute while denied. */
  function sourceFor(service) {
    var infoUrl = service + "/info.json";
    return fetchJson(infoUrl).then(function (info) {
      var probe = info.body && firstOfType(info.body.service, "AuthProbeService2");
      if (!probe) return infoUrl;
      A.restricted = true;
      var access = firstOfType(probe.service, "AuthAccessService2");
      if (access) {
        A.access = access;
        A.tokenService = firstOfType(access.service, "AuthAccessTokenService2");
        A.logout = firstOfType(access.service, "AuthLogoutService2");
      }
      var headers = A.token ? { Authorization: "Bearer " + A.token } : {};
      return fetchJson(probe.id, headers).then(function (result) {
        var r = result.body || {};
        if (r.status === 200 && info.status === 200) return infoUrl;
        var substitute = (r.substitute || [])[0];
        return substitute ? (substitute.id || substitute["@id"]) + "/info.json" : infoUrl;
      });
    });
  }

  function sources() {
    return Promise.all(S.canvases.map(function (c) { return sourceFor(c.service); }));
  }

  function authBar() {
    var bar = $("auth-bar");
    if (!bar) {
      bar = document.createElement("p");
      bar.id = "auth-bar";
      bar.className = "status";
      bar.innerHTML = '<span id="auth-note"></span> <button type="button" id="auth-login"></button>' +
        ' <button type="button" id="auth-logout" hidden></button>';
      $("status").insertAdjacentElement("afterend", bar);
      $("auth-login").addEventListener("click", login);
      $("auth-logout").addEventListener("click", logout);
    }
    return bar;
  }

  function showAuth(full) {
    if (!A.restricted || !A.access) return;
    var bar = authBar();
    bar.setAttribute("data-auth", full ? "full" : "degraded");
    $("auth-note").textContent = full ? "" : P.pick(A.access.note) || P.pick(A.access.heading) || "";
    $("auth-login").textContent = P.pick(A.access.confirmLabel) || P.pick(A.access.label) || "Log in";
    $("auth-login").hidden = full;
    var out = $("auth-logout");
    out.textContent = (A.logout && P.pick(A.logout.label)) || "Log out";
    out.hidden = !full || !A.logout;
  }

  function requestToken() {
    return new Promise(function (resolve) {
      var messageId = String(Math.random()).slice(2);
      var frame = document.createElement("iframe");
      frame.hidden = true;
      var serviceOrigin = new URL(A.tokenService.id, location.href).origin;
      function onMessage(e) {
        if (e.origin !== serviceOrigin || !e.data || e.data.messageId !== messageId) return;
        window.removeEventListener("message", onMessage);
        frame.remove();
        resolve(e.data.type === "AuthAccessToken2" ? e.data.accessToken : null);
      }
      window.addEventListener("message", onMessage);
      frame.src = A.tokenService.id + "?messageId=" + encodeURIComponent(messageId) +
        "&origin=" + encodeURIComponent(location.origin);
      document.body.appendChild(frame);
    });
  }

  function reopen() {
    return sources().then(function (list) {
      S.viewer.open(list, S.index);
      return list;
    }).then(function (list) {
      var full = list.every(function (url) { return url.indexOf(";degraded/") < 0; });
      showAuth(full);
    });
  }

  function login() {
    var url = A.access.id + "?origin=" + encodeURIComponent(location.origin);
    var win = window.open(url, "iiif-auth");
    var timer = setInterval(function () {
      if (win && !win.closed) return;
      clearInterval(timer);
      requestToken().then(function (token) { A.token = token; return reopen(); });
    }, 250);
  }

  function logout() {
    var win = window.open(A.logout.id, "iiif-auth");
    var timer = setInterval(function () {
      if (win && !win.closed) return;
      clearInterval(timer);
      A.token = null;
      reopen();
    }, 250);
  }

  function start(manifest, wanted) {
    S.manifest = manifest;
    S.canvases = M.canvases(manifest);
    return sources().then(function (list) { startViewer(wanted, list); });
  }

  function startViewer(wanted, list) {
    if (wanted && wanted.canvas) {
      var found = S.canvases.findIndex(function (c) { return c.id === wanted.canvas; });
      if (found >= 0) { S.index = found; S.pending = wanted.region; }
    }
    S.viewer = OpenSeadragon({
      id: "osd",
      prefixUrl: cfg.osdImages,
      crossOriginPolicy: "Anonymous",
      tileSources: list,
      sequenceMode: S.canvases.length > 1,
      initialPage: S.index,
      showSequenceControl: false, // our own labelled buttons instead
      showNavigator: cfg.page !== "embed",
      showRotationControl: false,
      visibilityRatio: 0.5
    });
    window.iiifViewer = S.viewer;
    S.viewer.addHandler("open", function () {
      S.marker = null; // overlays are cleared on open
      if (S.pending) {
        var r = { x: S.pending.x / scale(), y: S.pending.y / scale(), w: S.pending.w / scale(), h: S.pending.h / scale() };
        S.pending = null;
        if (setRegion(r, false)) fitRegion(S.region, true);
      } else if (S.region) {
        S.region = null; showRegion();
      }
      P.status(S.notice || "");
      document.body.setAttribute("data-opened", "true");
    });
    S.viewer.addHandler("open-failed", function (e) { P.status(P.t("loadFailed") + ": " + (e.message || "")); });
    S.viewer.addHandler("page", function (e) { S.index = e.page; clearRegion(); updatePages(); });
    $("prev-page").addEventListener("click", function () { S.viewer.goToPage(S.index - 1); });
    $("next-page").addEventListener("click", function () { S.viewer.goToPage(S.index + 1); });
    setupDrawing();
    showLabels();
    showAuth(list.every(function (url) { return url.indexOf(";degraded/") < 0; }));
  }

  P.status(P.t("loading"));
  var badState = false;
  Promise.all([
    M.load(cfg.manifest),
    CS.fromLocation().catch(function () { badState = true; return null; })
  ]).then(function (r) {
    if (badState) S.notice = P.t("badContentState");
    return start(r[0], r[1]);
  }).catch(function (e) { P.status(P.t("loadFailed") + ": " + e.message); });
  P.onLanguage(function () { if (S.manifest) showLabels(); });
  window.iiifDeepZoom = { state: S, auth: A, setRegion: setRegion, regionUrl: regionUrl, currentView: currentView };
})();
