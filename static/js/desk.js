// The live indicator: htmx's websocket extension says when its socket opens and closes
// (and reconnects by itself, with backoff); this only shows it.
(function () {
  "use strict";

  function indicators(source) {
    var root = source && source.closest ? source.closest("[ws-connect]") : null;
    var scope = root || document;
    var found = scope.querySelectorAll(".live-indicator");
    return found.length ? found : document.querySelectorAll(".live-indicator");
  }

  function show(source, state, text) {
    indicators(source).forEach(function (el) {
      el.dataset.liveState = state;
      var label = el.querySelector(".live-text");
      if (label) label.textContent = text;
    });
  }

  document.addEventListener("htmx:wsConnecting", function (e) {
    if (e.target.dataset.wasOpen) show(e.target, "reconnecting", "reconnecting…");
  });
  document.addEventListener("htmx:wsOpen", function (e) {
    var again = Boolean(e.target.dataset.wasOpen);
    e.target.dataset.wasOpen = "1";
    show(e.target, "live", "live");
    e.target.dispatchEvent(new CustomEvent("aibo:live", { bubbles: true, detail: { reconnected: again } }));
  });
  document.addEventListener("htmx:wsClose", function (e) {
    show(e.target, "reconnecting", "reconnecting…");
  });
})();

// A button with data-opens="ID" opens that <dialog> (no inline handlers: the CSP forbids them).
document.addEventListener("click", function (e) {
  var opener = e.target.closest ? e.target.closest("[data-opens]") : null;
  var dialog = opener && document.getElementById(opener.dataset.opens);
  if (dialog && dialog.showModal) dialog.showModal();
});

// A <dialog data-show-modal> the server sends (the live start's confirmation) opens as it
// arrives; htmx runs this for the page's first content and for everything it swaps in.
document.addEventListener("htmx:load", function (e) {
  var root = e.target && e.target.querySelectorAll ? e.target : document;
  root.querySelectorAll("dialog[data-show-modal]").forEach(function (dialog) {
    if (!dialog.open && dialog.showModal) dialog.showModal();
  });
});
