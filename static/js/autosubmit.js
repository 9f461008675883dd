// A <select data-autosubmit> submits its form when changed (a static file: the
// Content-Security-Policy refuses inline handlers such as onchange="...").
"use strict";
document.addEventListener("change", function (event) {
  var field = event.target.closest("[data-autosubmit]");
  if (field && field.form) {
    field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
  }
});
