/* Reading Presentation 3.0 JSON: canvases with their image service, labels, provider, rights. */
"use strict";
(function () {
  function first(value) { return Array.isArray(value) ? value[0] : value; }
  function textOf(html) {
    // requiredStatement values may hold a little HTML: keep the text only.
    return new DOMParser().parseFromString(String(html), "text/html").body.textContent || "";
  }
  var M = {
    load: function (url) {
      return fetch(url, { headers: { Accept: "application/ld+json, application/json" } }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      });
    },
    canvases: function (manifest) {
      return (manifest.items || []).filter(function (c) { return c.type === "Canvas"; }).map(function (canvas) {
        var page = first(canvas.items) || {};
        var anno = first(page.items) || {};
        var body = first(anno.body) || {};
        if (body.type === "Choice") body = first(body.items) || {};
        // The image service: a restricted image lists its auth probe service first (docs/access.md).
        var service = (Array.isArray(body.service) ? body.service : [body.service]).filter(function (s) {
          return s && /^ImageService[0-9]$/.test(s.type || s["@type"] || "");
        })[0] || first(body.service) || {};
        var serviceId = (service.id || service["@id"] || "").replace(/\/$/, "");
        return {
          id: canvas.id, label: canvas.label, width: canvas.width, height: canvas.height,
          service: serviceId, image: body.id || ""
        };
      });
    },
    provider: function (manifest, pick) {
      var p = first(manifest.provider);
      return p ? pick(p.label) : "";
    },
    requiredStatement: function (manifest, pick) {
      var rs = manifest.requiredStatement;
      return rs ? textOf(pick(rs.value)) : "";
    },
    objectPath: function (id, base, suffix) {
      // ".../iiif/presentation/3/{object}/manifest" -> "{object}" (kept encoded as in the id)
      // An empty suffix (a collection's id) must not compare id.slice(-0), which is the whole id.
      var prefix = base + "/iiif/presentation/3/";
      if (id.indexOf(prefix) !== 0 || (suffix && id.slice(-suffix.length) !== suffix)) return null;
      return id.slice(prefix.length, id.length - suffix.length);
    },
    textOf: textOf
  };
  window.IIIFManifest = M;
})();
