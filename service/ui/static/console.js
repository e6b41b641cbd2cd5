// ragkeep console: progressive enhancement only; every page works without this file.
(function () {
  "use strict";
  // Forms marked .confirm ask before they post (the server does not depend on it).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.classList && form.classList.contains("confirm") && !window.confirm(form.dataset.confirm || "Are you sure?")) {
      event.preventDefault();
    }
  });
  // htmx requests carry the session's CSRF token from the page's forms.
  document.addEventListener("htmx:configRequest", function (event) {
    var field = document.querySelector("input[name=csrf_token]");
    if (field) { event.detail.headers["X-CSRF-Token"] = field.value; }
  });
  function setupDrop() {
    var drop = document.getElementById("drop");
    var input = document.getElementById("files");
    var form = document.getElementById("upload-form");
    if (!drop || !input || !form) { return; }
    ["dragenter", "dragover"].forEach(function (name) {
      drop.addEventListener(name, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      drop.addEventListener(name, function () { drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      e.preventDefault();
      var items = e.dataTransfer.items, pending = [], transfer = new DataTransfer();
      function walk(entry) {
        if (entry.isFile) {
          pending.push(new Promise(function (done) { entry.file(function (f) { transfer.items.add(f); done(); }, done); }));
        } else if (entry.isDirectory) {
          pending.push(new Promise(function (done) {
            entry.createReader().readEntries(function (entries) { entries.forEach(walk); done(); }, done);
          }));
        }
      }
      for (var i = 0; i < items.length; i++) {
        var entry = items[i].webkitGetAsEntry && items[i].webkitGetAsEntry();
        if (entry) { walk(entry); } else if (items[i].getAsFile()) { transfer.items.add(items[i].getAsFile()); }
      }
      Promise.all(pending).then(function () { input.files = transfer.files; });
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", setupDrop); } else { setupDrop(); }
})();
