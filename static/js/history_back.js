// "Go back" links (data-history-back): the previous page when there is one, else their href.
// A static file because the Content-Security-Policy refuses javascript: URLs and inline script.
"use strict";
document.addEventListener("click", function (event) {
  var link = event.target.closest("a[data-history-back]");
  if (link && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});
