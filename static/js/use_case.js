// The use-case select on the task pages: htmx drops 4xx answers by default; show the server's
// message (unknown use case, hold expired, not your task) in the status line instead. With
// JavaScript the select saves on change, so its Save button (for no-JS browsers) is hidden.
(function () {
  "use strict";
  var form = document.querySelector("form[data-use-case-form]");
  if (!form) return;
  var button = form.querySelector(".use-case-save");
  if (button && window.htmx) button.hidden = true;
  form.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  form.addEventListener("htmx:sendError", function () {
    var target = document.getElementById("use-case-status");
    if (target) target.textContent = "Not saved: the server could not be reached.";
  });
})();
