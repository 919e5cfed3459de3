/* Mirador 4 on one object's manifest. Mirador 4 does not read IIIF Content State itself, so a
   ?iiif-content= link is translated into its window configuration: the canvas (canvasId) and an
   initial viewport (initialViewerConfig {x, y, zoom}) centred on the region and fitting it. */
"use strict";
(function () {
  var P = window.IIIFPage, CS = window.IIIFContentState, cfg = P.config;
  var MIRADOR_LANGUAGES = { en: "en", fr: "fr", nl: "nl" };

  function viewerConfig(region) {
    // Mirador's viewport units are canvas pixels; OpenSeadragon's zoom is 1 / visible width.
    var el = document.getElementById("mirador");
    var aspect = Math.max(0.2, el.clientWidth / Math.max(1, el.clientHeight - 120)); // minus window chrome
    var visibleWidth = Math.max(region.w, region.h * aspect);
    return { x: region.x + region.w / 2, y: region.y + region.h / 2, zoom: 1 / visibleWidth };
  }

  function open(wanted) {
    var win = { manifestId: cfg.manifest, thumbnailNavigationPosition: "far-bottom" };
    if (wanted && wanted.canvas) win.canvasId = wanted.canvas;
    if (wanted && wanted.region) {
      // Single-page view: in book view the canvas would sit beside its facing page and the
      // viewport's coordinates would no longer be this canvas's pixels.
      win.view = "single";
      win.initialViewerConfig = viewerConfig(wanted.region);
    }
    window.miradorInstance = Mirador.viewer({
      id: "mirador",
      language: MIRADOR_LANGUAGES[P.lang] || "en",
      windows: [win],
      window: { allowClose: false, allowMaximize: false, defaultSideBarPanel: "info", sideBarOpenByDefault: false },
      workspaceControlPanel: { enabled: false },
      // CORS-mode tiles: without it OpenSeadragon's WebGL drawer finds the canvas "tainted" and
      // falls back to the slower canvas drawer, with a console warning.
      osdConfig: { crossOriginPolicy: "Anonymous" }
    });
    document.getElementById("object-title").textContent = cfg.object;
  }

  CS.fromLocation().then(open, function () { P.status(P.t("badContentState")); open(null); });
  // Mirador has its own language setting; a switch reloads it in the new language.
  P.onLanguage(function () { window.location.reload(); });
})();
