// A table or text block that scrolls inside the page (wide tables on a phone, a long prompt)
// gets a tab stop, so it can be scrolled with the keyboard too (WCAG 2.1.1; axe's
// scrollable-region-focusable). Checked again when the window's size changes and after htmx
// swaps a part of the page.
(function () {
  "use strict";
  var SELECTOR = "table, pre";

  function scrolls(el) {
    return el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1;
  }

  function mark() {
    Array.prototype.forEach.call(document.querySelectorAll(SELECTOR), function (el) {
      var style = window.getComputedStyle(el);
      var scrollable = /(auto|scroll)/.test(style.overflowX + style.overflowY) && scrolls(el);
      if (scrollable && !el.hasAttribute("tabindex")) {
        el.setAttribute("tabindex", "0");
        el.dataset.scrollStop = "";
      } else if (!scrollable && el.dataset.scrollStop !== undefined) {
        el.removeAttribute("tabindex");
        delete el.dataset.scrollStop;
      }
    });
  }

  var pending = null;
  function later() {
    if (pending) window.clearTimeout(pending);
    pending = window.setTimeout(function () { pending = null; mark(); }, 100);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { mark(); });
  } else {
    mark();
  }
  window.addEventListener("resize", later);
  document.addEventListener("htmx:afterSwap", later);
  document.addEventListener("toggle", later, true);  // <details> opened: its tables show
})();
