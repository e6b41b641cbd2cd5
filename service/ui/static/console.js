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
  // Per-file progress: each file goes up in its own request (the same route, one file), and its
  // line shows the bytes sent, then the server's outcome for it (accepted, or refused with why).
  function setupUpload() {
    var form = document.getElementById("upload-form");
    var list = document.getElementById("upload-list");
    if (!form || !list || !window.FormData || !window.XMLHttpRequest) { return; }
    form.addEventListener("submit", function (event) {
      var files = [];
      form.querySelectorAll("input[type=file]").forEach(function (input) {
        for (var i = 0; i < input.files.length; i++) { files.push(input.files[i]); }
      });
      if (!files.length) { return; }
      event.preventDefault();
      var csrf = form.querySelector("input[name=csrf_token]").value;
      var passwordInput = form.querySelector("input[name=password]");
      var password = passwordInput ? passwordInput.value : "";
      list.textContent = "";
      var lines = files.map(function (file) {
        var li = document.createElement("li");
        var name = document.createElement("strong");
        name.textContent = file.webkitRelativePath || file.name;
        var bar = document.createElement("progress");
        bar.max = 100; bar.value = 0;
        bar.setAttribute("aria-label", "upload of " + name.textContent);
        li.appendChild(name); li.appendChild(document.createTextNode(" ")); li.appendChild(bar);
        list.appendChild(li);
        return {file: file, li: li, bar: bar};
      });
      var next = 0;
      function send() {
        if (next >= lines.length) {
          form.reset();
          if (window.htmx) {
            htmx.ajax("GET", window.location.pathname, {target: "#documents", swap: "outerHTML"});
          }
          return;
        }
        var line = lines[next++];
        var body = new FormData();
        body.append("csrf_token", csrf);
        body.append("files", line.file, line.file.name);
        if (password) { body.append("password", password); }
        var xhr = new XMLHttpRequest();
        xhr.upload.addEventListener("progress", function (p) {
          if (p.lengthComputable) { line.bar.value = Math.round(100 * p.loaded / p.total); }
        });
        xhr.addEventListener("loadend", function () {
          if (xhr.status === 200) {
            line.li.outerHTML = xhr.responseText;  // the server's escaped outcome line
          } else {
            line.li.className = "refused";
            line.li.appendChild(document.createTextNode(" failed to upload (HTTP " + xhr.status + ")"));
          }
          send();
        });
        xhr.open("POST", form.action);
        xhr.setRequestHeader("X-Upload-Fragment", "1");
        xhr.setRequestHeader("X-CSRF-Token", csrf);
        xhr.send(body);
      }
      send();
    });
  }
  function setup() { setupDrop(); setupUpload(); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", setup); } else { setup(); }
})();
