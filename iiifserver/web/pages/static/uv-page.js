/* Universal Viewer 4 on one object's manifest; a ?iiif-content= link becomes UV's own
   canvasIndex and xywh options, so it opens on the region. */
"use strict";
(function () {
  var P = window.IIIFPage, CS = window.IIIFContentState, M = window.IIIFManifest, cfg = P.config;
  var UV_LOCALES = { en: "en-GB", fr: "fr-FR" }; // UV 4.4 ships no Dutch strings: English then

  // UV 4.4 gives its OpenSeadragon data: URIs as button images but no prefixUrl, so OpenSeadragon
  // asks for "/images/data:image/gif;…": a failed request to the host's root (outside a proxy's
  // prefix, maybe another site). Such an image gets the data: URI it was meant to have.
  var src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  if (src && src.set && src.get) {
    Object.defineProperty(HTMLImageElement.prototype, "src", {
      configurable: true,
      enumerable: src.enumerable,
      get: src.get,
      set: function (value) {
        var misplaced = /^\/images\/(data:.*)$/.exec(String(value));
        src.set.call(this, misplaced ? misplaced[1] : value);
      }
    });
  }

  function open(wanted, manifest) {
    var data = { manifest: cfg.manifest };
    var locale = UV_LOCALES[P.lang];
    if (locale) data.locales = [{ name: locale }];
    if (wanted && wanted.canvas && manifest) {
      var index = M.canvases(manifest).findIndex(function (c) { return c.id === wanted.canvas; });
      if (index >= 0) {
        data.canvasIndex = index;
        if (wanted.region) data.xywh = [wanted.region.x, wanted.region.y, wanted.region.w, wanted.region.h].join(",");
      }
    }
    document.getElementById("object-title").textContent = manifest ? P.pick(manifest.label, cfg.object) : cfg.object;
    window.uv = UV.init("uv", data);
  }

  Promise.all([CS.fromLocation(), M.load(cfg.manifest)]).then(function (r) { open(r[0], r[1]); }, function () {
    open(null, null);
  });
  P.onLanguage(function () { window.location.reload(); });
})();
