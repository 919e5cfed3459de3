/* Page configuration, interface strings in English, French and Dutch, the language switch
   (browser language by default, the choice kept in localStorage) and the viewer links. */
"use strict";
(function () {
  var STRINGS = {
    en: {
      skip: "Skip to content", home: "Collections", language: "Language", viewers: "Viewers",
      collections: "Collections", loading: "Loading…", empty: "This collection is empty.",
      loadFailed: "Could not load", notFound: "Not found",
      notFoundText: "There is no object with this identifier:", backHome: "Back to the collections",
      deepZoom: "Deep zoom", mirador: "Mirador", uv: "Universal Viewer", subCollection: "Collection",
      imageViewer: "Image", citeHeading: "Cite a region", previousPage: "Previous page", nextPage: "Next page",
      pageOf: "Page {n} of {total}", drawRegion: "Draw a rectangle", useView: "Use the current view",
      drawHelp: "Press “Draw a rectangle”, then drag over the image; or type the region in image pixels.",
      drawing: "Drag over the image to select a region; Escape cancels.",
      regionLegend: "Region (image pixels)", width: "width", height: "height", applyRegion: "Show this region",
      regionUrl: "Image of the region (IIIF)", stateUrl: "Link to this view", copy: "Copy", copied: "Copied.",
      copyFailed: "Select the text and copy it by hand.", openRegion: "Open the region image",
      openInMirador: "Open in Mirador", openInUv: "Open in Universal Viewer", citation: "Citation",
      region: "region", rights: "Rights", accessed: "accessed", thumbnailOf: "Thumbnail: {label}",
      invalidRegion: "The region must lie inside the image and be at least one pixel.",
      badContentState: "The link's view could not be read; showing the whole object."
    },
    fr: {
      skip: "Aller au contenu", home: "Collections", language: "Langue", viewers: "Visionneuses",
      collections: "Collections", loading: "Chargement…", empty: "Cette collection est vide.",
      loadFailed: "Chargement impossible", notFound: "Introuvable",
      notFoundText: "Aucun objet ne porte cet identifiant :", backHome: "Retour aux collections",
      deepZoom: "Zoom", mirador: "Mirador", uv: "Universal Viewer", subCollection: "Collection",
      imageViewer: "Image", citeHeading: "Citer une zone", previousPage: "Page précédente", nextPage: "Page suivante",
      pageOf: "Page {n} sur {total}", drawRegion: "Tracer un rectangle", useView: "Prendre la vue actuelle",
      drawHelp: "Appuyez sur « Tracer un rectangle » puis faites glisser sur l’image, ou saisissez la zone en pixels de l’image.",
      drawing: "Faites glisser sur l’image pour choisir une zone ; Échap annule.",
      regionLegend: "Zone (pixels de l’image)", width: "largeur", height: "hauteur", applyRegion: "Afficher cette zone",
      regionUrl: "Image de la zone (IIIF)", stateUrl: "Lien vers cette vue", copy: "Copier", copied: "Copié.",
      copyFailed: "Sélectionnez le texte et copiez-le à la main.", openRegion: "Ouvrir l’image de la zone",
      openInMirador: "Ouvrir dans Mirador", openInUv: "Ouvrir dans Universal Viewer", citation: "Citation",
      region: "zone", rights: "Droits", accessed: "consulté le", thumbnailOf: "Vignette : {label}",
      invalidRegion: "La zone doit être dans l’image et mesurer au moins un pixel.",
      badContentState: "La vue du lien est illisible ; affichage de l’objet entier."
    },
    nl: {
      skip: "Naar de inhoud", home: "Collecties", language: "Taal", viewers: "Viewers",
      collections: "Collecties", loading: "Bezig met laden…", empty: "Deze collectie is leeg.",
      loadFailed: "Laden mislukt", notFound: "Niet gevonden",
      notFoundText: "Er is geen object met deze identificatie:", backHome: "Terug naar de collecties",
      deepZoom: "Inzoomen", mirador: "Mirador", uv: "Universal Viewer", subCollection: "Collectie",
      imageViewer: "Afbeelding", citeHeading: "Een gebied citeren", previousPage: "Vorige pagina", nextPage: "Volgende pagina",
      pageOf: "Pagina {n} van {total}", drawRegion: "Rechthoek tekenen", useView: "Huidige weergave gebruiken",
      drawHelp: "Kies „Rechthoek tekenen” en sleep over de afbeelding, of typ het gebied in pixels van de afbeelding.",
      drawing: "Sleep over de afbeelding om een gebied te kiezen; Escape annuleert.",
      regionLegend: "Gebied (pixels van de afbeelding)", width: "breedte", height: "hoogte", applyRegion: "Dit gebied tonen",
      regionUrl: "Afbeelding van het gebied (IIIF)", stateUrl: "Link naar deze weergave", copy: "Kopiëren", copied: "Gekopieerd.",
      copyFailed: "Selecteer de tekst en kopieer hem zelf.", openRegion: "Afbeelding van het gebied openen",
      openInMirador: "Openen in Mirador", openInUv: "Openen in Universal Viewer", citation: "Citaat",
      region: "gebied", rights: "Rechten", accessed: "geraadpleegd op", thumbnailOf: "Miniatuur: {label}",
      invalidRegion: "Het gebied moet binnen de afbeelding liggen en minstens één pixel groot zijn.",
      badContentState: "De weergave in de link is onleesbaar; het hele object wordt getoond."
    }
  };
  var KEY = "iiifserver.lang";
  var config = JSON.parse(document.getElementById("iiif-page-config").textContent);
  var listeners = [];

  function initialLanguage() {
    var stored = null;
    try { stored = window.localStorage.getItem(KEY); } catch (e) { /* storage disabled */ }
    if (stored && STRINGS[stored]) return stored;
    var wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
    for (var i = 0; i < wanted.length; i++) {
      var code = String(wanted[i]).toLowerCase().split("-")[0];
      if (STRINGS[code]) return code;
    }
    return "en";
  }

  var page = {
    config: config,
    lang: initialLanguage(),
    languages: Object.keys(STRINGS),
    t: function (key, vars) {
      var text = (STRINGS[page.lang] && STRINGS[page.lang][key]) || STRINGS.en[key] || key;
      if (vars) Object.keys(vars).forEach(function (k) { text = text.split("{" + k + "}").join(vars[k]); });
      return text;
    },
    /* A IIIF language map in the page's language, else "none", English, then any. */
    pick: function (map, fallback) {
      if (!map) return fallback || "";
      if (typeof map === "string") return map;
      var order = [page.lang, "none", "en"].concat(Object.keys(map));
      for (var i = 0; i < order.length; i++) {
        var values = map[order[i]];
        if (values && values.length) return values.join(" ");
      }
      return fallback || "";
    },
    onLanguage: function (callback) { listeners.push(callback); },
    setLanguage: function (lang) {
      if (!STRINGS[lang]) return;
      page.lang = lang;
      try { window.localStorage.setItem(KEY, lang); } catch (e) { /* storage disabled */ }
      apply();
      listeners.forEach(function (cb) { cb(lang); });
    },
    status: function (text) {
      var el = document.getElementById("status");
      if (el) { el.textContent = text; el.hidden = !text; }
    },
    viewerUrl: function (kind, objectPath, query) {
      return config.pages[kind] + objectPath + (query ? "?" + query : "");
    }
  };

  function apply() {
    document.documentElement.lang = page.lang;
    document.querySelectorAll("[data-i18n]").forEach(function (el) {
      el.textContent = page.t(el.getAttribute("data-i18n"));
    });
    document.querySelectorAll("[data-i18n-aria-label]").forEach(function (el) {
      el.setAttribute("aria-label", page.t(el.getAttribute("data-i18n-aria-label")));
    });
    var select = document.getElementById("lang-select");
    if (select) select.value = page.lang;
    buildNav();
  }

  function buildNav() {
    var nav = document.getElementById("viewer-nav");
    if (!nav || !config.objectPath) return;
    nav.textContent = "";
    var current = config.page === "embed" ? "objects" : config.page;
    [["objects", "deepZoom"], ["mirador", "mirador"], ["uv", "uv"]].forEach(function (item) {
      var a = document.createElement("a");
      a.href = page.viewerUrl(item[0], config.objectPath, window.location.search.replace(/^\?/, ""));
      a.textContent = page.t(item[1]);
      if (item[0] === current) a.setAttribute("aria-current", "page");
      nav.appendChild(a);
    });
    nav.hidden = false;
  }

  var home = document.getElementById("home-link");
  if (home) home.href = config.home;
  var select = document.getElementById("lang-select");
  if (select) select.addEventListener("change", function () { page.setLanguage(select.value); });
  apply();
  window.IIIFPage = page;
})();
