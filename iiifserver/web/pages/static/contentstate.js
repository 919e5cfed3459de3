/* IIIF Content State API 1.0: encoding ("content-state-encoded": encodeURIComponent, then
   base64url without padding), decoding, and reading a state down to manifest, canvas and region. */
"use strict";
(function () {
  function toBase64Url(text) {
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function fromBase64Url(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    return atob(b64);
  }
  var CS = {
    encode: function (state) {
      // encodeURIComponent first: the result is ASCII, so btoa can take any Unicode label.
      return toBase64Url(encodeURIComponent(JSON.stringify(state)));
    },
    decode: function (value) {
      return JSON.parse(decodeURIComponent(fromBase64Url(value.trim())));
    },
    /* The state for a region of a canvas of a manifest. */
    regionState: function (manifestId, canvasId, region) {
      return {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        type: "Annotation",
        motivation: ["contentState"],
        target: {
          id: canvasId + "#xywh=" + [region.x, region.y, region.w, region.h].join(","),
          type: "Canvas",
          partOf: [{ id: manifestId, type: "Manifest" }]
        }
      };
    },
    /* {manifest, canvas, region} from a decoded state: an Annotation or a bare target, the
       target as "id#xywh=…", a SpecificResource with a FragmentSelector, or a Manifest. */
    read: function (state) {
      var target = state && state.type === "Annotation" ? state.target : state;
      if (Array.isArray(target)) target = target[0];
      if (!target) throw new Error("no target");
      if (typeof target === "string") target = { id: target };
      var out = { manifest: null, canvas: null, region: null };
      var id = target.id || target["@id"] || "";
      var source = target.source;
      if (target.type === "SpecificResource" && source) {
        id = (typeof source === "string" ? source : source.id) || "";
        var selector = Array.isArray(target.selector) ? target.selector[0] : target.selector;
        if (selector && selector.value) id += "#" + selector.value.replace(/^#/, "");
        if (source.partOf) target = source;
      }
      if (target.type === "Manifest") { out.manifest = id; return out; }
      var hash = id.indexOf("#");
      out.canvas = hash >= 0 ? id.slice(0, hash) : id;
      if (hash >= 0) {
        var m = /(?:^|&)xywh=(?:pixel:)?(\d+(?:\.\d+)?),(\d+(?:\.\d+)?),(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)/.exec(id.slice(hash + 1));
        if (m) out.region = { x: +m[1], y: +m[2], w: +m[3], h: +m[4] };
      }
      var partOf = target.partOf && (Array.isArray(target.partOf) ? target.partOf[0] : target.partOf);
      if (partOf) out.manifest = typeof partOf === "string" ? partOf : partOf.id;
      return out;
    },
    /* The page's ?iiif-content=…, decoded and read; null when absent. Plain http(s) URIs are
       fetched (the spec allows a state by reference). Throws on a malformed value. */
    fromLocation: function () {
      var value = new URLSearchParams(window.location.search).get("iiif-content");
      if (!value) return Promise.resolve(null);
      if (/^https?:\/\//.test(value)) {
        return fetch(value).then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
          .then(CS.read);
      }
      try { return Promise.resolve(CS.read(CS.decode(value))); } catch (e) { return Promise.reject(e); }
    },
    link: function (pageUrl, state) {
      return pageUrl + "?iiif-content=" + CS.encode(state);
    }
  };
  window.IIIFContentState = CS;
})();
