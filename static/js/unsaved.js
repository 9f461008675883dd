// A form marked data-unsaved-warning asks before the page is left with changes not saved
// (the browser's own "Leave site?" prompt). data-unsaved="1" marks a form the server sent back
// unsaved (after an error). Submitting the form is not leaving it.
(function () {
  "use strict";
  document.querySelectorAll("form[data-unsaved-warning]").forEach(function (form) {
    var dirty = form.dataset.unsaved === "1";
    form.addEventListener("input", function () { dirty = true; });
    form.addEventListener("submit", function () { dirty = false; });
    window.addEventListener("beforeunload", function (event) {
      if (!dirty) return;
      event.preventDefault();
      event.returnValue = "";  // older browsers need a value to show the prompt
    });
  });
})();
