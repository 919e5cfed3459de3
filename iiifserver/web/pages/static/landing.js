/* The landing page: a collection's sub-collections and objects, with thumbnails and viewer links. */
"use strict";
(function () {
  var P = window.IIIFPage, M = window.IIIFManifest, cfg = P.config;
  var collection = null;

  function thumbnail(item) {
    var thumb = Array.isArray(item.thumbnail) ? item.thumbnail[0] : item.thumbnail;
    if (!thumb) return null;
    if (thumb.id) return thumb.id;
    var service = Array.isArray(thumb.service) ? thumb.service[0] : thumb.service;
    return service ? (service.id || service["@id"]) + "/full/,200/0/default.jpg" : null;
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href; a.textContent = text;
    return a;
  }

  function render() {
    if (!collection) return;
    var title = P.pick(collection.label, P.t("collections"));
    document.getElementById("collection-title").textContent = title;
    document.title = title + " · iiifserver";
    document.getElementById("collection-summary").textContent = P.pick(collection.summary);
    var list = document.getElementById("items");
    list.textContent = "";
    var items = collection.items || [];
    P.status(items.length ? "" : P.t("empty"));
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.className = "item item-" + String(item.type).toLowerCase();
      var label = P.pick(item.label, item.id);
      var src = thumbnail(item);
      var heading = document.createElement("h2");
      var objectPath = item.type === "Manifest" ? M.objectPath(item.id, cfg.base, "/manifest") : null;
      var collectionPath = item.type === "Collection" ? M.objectPath(item.id, cfg.base, "") : null;
      var main = null;
      if (objectPath) main = P.viewerUrl("objects", objectPath);
      else if (collectionPath !== null) main = cfg.home + collectionPath.replace(/^collection\/?/, "collections/");
      if (src) {
        var img = document.createElement("img");
        img.src = src; img.alt = P.t("thumbnailOf", { label: label }); img.loading = "lazy";
        img.crossOrigin = "anonymous";
        if (main) { var a = link(main, ""); a.appendChild(img); a.tabIndex = -1; a.setAttribute("aria-hidden", "true"); li.appendChild(a); }
        else li.appendChild(img);
      }
      heading.appendChild(main ? link(main, label) : document.createTextNode(label));
      li.appendChild(heading);
      if (item.type === "Collection") {
        var kind = document.createElement("p"); kind.className = "kind"; kind.textContent = P.t("subCollection");
        li.appendChild(kind);
      }
      if (objectPath) {
        var nav = document.createElement("p");
        nav.className = "item-viewers";
        [["objects", "deepZoom"], ["mirador", "mirador"], ["uv", "uv"]].forEach(function (v, i) {
          if (i) nav.appendChild(document.createTextNode(" · "));
          var a = link(P.viewerUrl(v[0], objectPath), P.t(v[1]));
          a.setAttribute("aria-label", P.t(v[1]) + ": " + label);
          nav.appendChild(a);
        });
        li.appendChild(nav);
      }
      list.appendChild(li);
    });
  }

  M.load(cfg.collectionUrl).then(function (c) { collection = c; render(); })
    .catch(function (e) { P.status(P.t("loadFailed") + ": " + e.message); });
  P.onLanguage(render);
})();
