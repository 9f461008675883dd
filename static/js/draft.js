// Drafts: a labeling form with data-draft-key keeps what the labeler typed in localStorage, so
// an accidental reload or a lost hold never loses work. A draft is written only once the
// labeler changed something, and "Draft saved" is said only when one was. A page the server
// sent back with an error (data-server-state) becomes a plain GET of the task page in the
// history, so a reload shows the draft instead of posting the old form again. Also measures
// the time spent on the task (visible time only) into the hidden field marked data-timer.
(function () {
  "use strict";
  var SUBMITTED = "prefloop:submitted";

  function fields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name && el.name !== "csrf_token" && el.type !== "submit" && el.type !== "button";
    });
  }

  function read(form) {
    var data = {};
    fields(form).forEach(function (el) {
      if (el.type === "checkbox" || el.type === "radio") {
        if (!data[el.name]) data[el.name] = [];
        if (el.checked) data[el.name].push(el.value);
      } else {
        data[el.name] = el.value;
      }
    });
    return data;
  }

  function write(form, data) {
    fields(form).forEach(function (el) {
      if (!(el.name in data)) return;
      var value = data[el.name];
      if (el.type === "checkbox" || el.type === "radio") {
        el.checked = Array.isArray(value) && value.indexOf(el.value) !== -1;
      } else if (typeof value === "string") {
        el.value = value;
      }
    });
  }

  // the draft of a submitted task is dropped once a page confirms it was saved (data-draft-done);
  // an error page in between keeps it
  var submitted = sessionStorage.getItem(SUBMITTED);
  if (submitted && document.querySelector("[data-draft-done]")) {
    localStorage.removeItem(submitted);
    sessionStorage.removeItem(SUBMITTED);
  }
  var form = document.querySelector("form[data-draft-key]");
  if (!form) return;

  var key = form.dataset.draftKey;
  var status = form.querySelector("[data-draft-status]");
  var timer = form.querySelector("[data-timer]");

  // dirty: the form holds something of the labeler's (typed here, restored, or sent back)
  var dirty = false;
  if (form.dataset.serverState) {
    dirty = true;  // the draft already holds what was sent (saved on submit)
    var page = form.getAttribute("action");
    if (window.history.replaceState && page) window.history.replaceState(null, "", page);
  } else {
    try {
      var saved = JSON.parse(localStorage.getItem(key) || "null");
      if (saved) {
        write(form, saved);
        dirty = true;
        if (status) status.textContent = "Draft restored.";
      }
    } catch (e) { /* a corrupt draft is ignored */ }
  }

  // time spent: what earlier visits recorded plus the visible time of this one
  var base = parseInt(timer && timer.value, 10) || 0;
  var visibleSince = document.visibilityState === "visible" ? Date.now() : null;
  function elapsed() {
    return base + (visibleSince ? Date.now() - visibleSince : 0);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      visibleSince = Date.now();
    } else if (visibleSince) {
      base += Date.now() - visibleSince;
      visibleSince = null;
      save();
    }
  });

  function save() {
    if (timer) timer.value = String(elapsed());
    if (!dirty) return;
    try {
      localStorage.setItem(key, JSON.stringify(read(form)));
      if (status) status.textContent = "Draft saved in this browser.";
    } catch (e) {
      if (status) status.textContent = "Could not save a draft (storage full or disabled).";
    }
  }

  var pending = null;
  function saveSoon() {
    clearTimeout(pending);
    pending = setTimeout(save, 300);
  }
  function changed() {
    dirty = true;
    saveSoon();
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  window.addEventListener("pagehide", save);
  setInterval(save, 10000);
  form.addEventListener("submit", function (event) {
    // one submission per click: a double click must not send the form twice
    if (form.dataset.submitting) {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "1";
    save();
    sessionStorage.setItem(SUBMITTED, key);
  });
  // coming back through the history cache: allow submitting again
  window.addEventListener("pageshow", function () { delete form.dataset.submitting; });

  window.prefloopDraft = { save: save, changed: changed };
})();
