// The main menu (base.html): a <details> whose button shows below 1,100 px (phones, tablets).
// The browser opens and closes it, by mouse or keyboard, with or without this script; this
// adds what a menu is expected to do besides: Escape closes it (the focus back on its button),
// and so does a click or a focus outside it.
(function () {
  "use strict";

  var menu = document.getElementById("nav-menu");
  if (!menu) return;
  var button = menu.querySelector("summary");

  // The same width as in aibo.css, below which the menu folds behind its button.
  var narrow = window.matchMedia("(max-width: 1100px)");
  function folded() {
    return narrow.matches;
  }

  // Browsers without ::details-content cannot show a closed menu's links in a row: there the
  // menu stays open on a wide screen instead (the button is hidden, the links in the bar).
  var showsClosed = window.CSS && CSS.supports && CSS.supports("selector(::details-content)");
  if (!showsClosed) {
    var sync = function () { menu.open = !folded(); };
    sync();
    narrow.addEventListener("change", sync);
  }

  function close(focusButton) {
    if (!menu.open || !folded()) return;
    menu.open = false;
    if (focusButton) button.focus();
  }

  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && menu.open && folded()) {
      close(menu.contains(document.activeElement));
    }
  });
  document.addEventListener("click", function (e) {
    if (!menu.contains(e.target)) close(false);
  });
  document.addEventListener("focusin", function (e) {
    if (!menu.contains(e.target)) close(false);
  });
})();
