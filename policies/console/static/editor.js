// Cordon console: the YAML editor's live validation. The page works
// without it (the server validates on submit); with it, every pause in
// typing asks the API (through the console) to validate the draft and the
// problems are shown at their lines.
(function () {
  "use strict";
  var ta = document.getElementById("yaml");
  if (!ta) { return; }
  var gutter = document.getElementById("gutter");
  var list = document.getElementById("problems");
  var status = document.getElementById("vstatus");
  var form = ta.form;
  var csrf = form ? form.querySelector("input[name=csrf]") : null;
  var url = ta.getAttribute("data-validate");
  var bad = {};
  var seq = 0;
  var timer = null;
  var inflight = null;

  function lineCount() { return ta.value.split("\n").length; }

  function drawGutter() {
    var n = lineCount();
    var frag = document.createDocumentFragment();
    for (var i = 1; i <= n; i++) {
      var s = document.createElement("span");
      s.textContent = String(i);
      if (bad[i]) { s.className = "bad"; s.title = bad[i]; }
      frag.appendChild(s);
    }
    gutter.textContent = "";
    gutter.appendChild(frag);
    gutter.scrollTop = ta.scrollTop;
  }

  function setStatus(kind, text) {
    status.className = "vstatus " + kind;
    status.textContent = text;
  }

  // goToLine selects line n in the editor and scrolls it into view.
  function goToLine(n) {
    var lines = ta.value.split("\n");
    var start = 0;
    for (var i = 0; i < n - 1 && i < lines.length; i++) { start += lines[i].length + 1; }
    var end = start + (lines[n - 1] || "").length;
    ta.focus();
    ta.setSelectionRange(start, end);
    var lh = parseFloat(getComputedStyle(ta).lineHeight) || 19;
    ta.scrollTop = Math.max(0, (n - 4) * lh);
    gutter.scrollTop = ta.scrollTop;
  }

  function showProblems(problems) {
    bad = {};
    list.textContent = "";
    problems.forEach(function (p) {
      var li = document.createElement("li");
      if (p.line) {
        bad[p.line] = p.message;
        var b = document.createElement("button");
        b.type = "button";
        b.setAttribute("data-line", String(p.line));
        var ln = document.createElement("span");
        ln.className = "ln";
        ln.textContent = "line " + p.line;
        b.appendChild(ln);
        b.appendChild(document.createTextNode((p.field && p.field !== "document" ? p.field + " — " : "") + p.message));
        b.addEventListener("click", function () { goToLine(p.line); });
        li.appendChild(b);
      } else {
        li.textContent = (p.field ? p.field + " — " : "") + p.message;
      }
      if (p.warning) { li.className = "warning"; }
      list.appendChild(li);
    });
    drawGutter();
  }

  function validate() {
    var mine = ++seq;
    if (inflight) { inflight.abort(); }
    inflight = new AbortController();
    setStatus("busy", "Checking…");
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/yaml", "X-CSRF-Token": csrf ? csrf.value : "" },
      body: ta.value,
      signal: inflight.signal
    }).then(function (r) {
      if (!r.ok) { throw new Error("the server answered " + r.status); }
      return r.json();
    }).then(function (res) {
      if (mine !== seq) { return; }
      var errs = (res.problems || []).filter(function (p) { return !p.warning; });
      showProblems(res.problems || []);
      if (res.valid) {
        setStatus("ok", res.problems && res.problems.length ? "Valid, with warnings" : "Valid");
      } else {
        setStatus("bad", errs.length === 1 ? "1 problem" : errs.length + " problems");
      }
    }).catch(function (e) {
      if (e.name === "AbortError" || mine !== seq) { return; }
      setStatus("bad", "Could not check: " + e.message);
    });
  }

  ta.addEventListener("input", function () {
    drawGutter();
    clearTimeout(timer);
    timer = setTimeout(validate, 400);
  });
  ta.addEventListener("scroll", function () { gutter.scrollTop = ta.scrollTop; });
  list.addEventListener("click", function (e) {
    var li = e.target.closest("li[data-line]");
    if (li && li.getAttribute("data-line") !== "0") { goToLine(parseInt(li.getAttribute("data-line"), 10)); }
  });
  // Problems the server found on submit are marked in the gutter too.
  Array.prototype.forEach.call(list.querySelectorAll("li[data-line]"), function (li) {
    var n = parseInt(li.getAttribute("data-line"), 10);
    if (n > 0) { bad[n] = li.textContent; }
  });
  drawGutter();
})();
