/* featvis site: arrow keys on unit pages; sort and filter on layer pages; copy buttons. */
(function () {
  "use strict";

  document.addEventListener("keydown", function (ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.defaultPrevented) return;
    var t = ev.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    var rel = ev.key === "ArrowLeft" ? "prev" : ev.key === "ArrowRight" ? "next" : null;
    var link = rel && document.querySelector('link[rel="' + rel + '"]');
    if (link) { ev.preventDefault(); window.location.href = link.href; }
  });

  Array.prototype.forEach.call(document.querySelectorAll(".cmd"), function (box) {
    var button = box.querySelector("button.copy"), code = box.querySelector("code");
    if (!button || !code) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { button.textContent = "Copied"; };
      var select = function () {
        var range = document.createRange();
        range.selectNodeContents(code);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      };
      try {
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(code.textContent).then(done, select);
        } else { select(); }
      } catch (e) { select(); }
    });
  });

  var grid = document.getElementById("units");
  if (!grid) return;
  var items = Array.prototype.slice.call(grid.children);
  var sort = document.getElementById("sort"), filter = document.getElementById("filter");
  var shown = document.getElementById("shown");
  var chan = function (li) { return +li.getAttribute("data-c"); };
  var attr = function (li, name) { var v = li.getAttribute(name); return v === null || v === "" ? NaN : +v; };

  function ranges(text) {
    var out = [], bad = false;
    text.split(",").forEach(function (tok) {
      tok = tok.trim();
      if (!tok) return;
      var m;
      if ((m = /^(\d+)$/.exec(tok))) out.push([+m[1], +m[1]]);
      else if ((m = /^(\d+)\s*-\s*(\d+)$/.exec(tok))) out.push([+m[1], +m[2]]);
      else if ((m = /^(\d*)\s*:\s*(\d*)$/.exec(tok))) out.push([m[1] ? +m[1] : 0, m[2] ? +m[2] - 1 : Infinity]);
      else bad = true;
    });
    return { list: out, bad: bad };
  }

  // sort keys: value-*, score-* (featvis interpretability score), natural-* (natural exemplars' score)
  var field = { value: "v", score: "s", natural: "n" };
  var keys = items.map(function (li) {
    return { li: li, c: chan(li), v: attr(li, "data-v"), s: attr(li, "data-s"), n: attr(li, "data-n") };
  });
  var order = keys, sorted = "channel", shownKey = null;

  function apply(save) {  // non-matching cells are taken out of the list (cheaper than hiding 2,000)
    var key = sort.value, r = ranges(filter.value), n = 0;
    filter.setAttribute("aria-invalid", r.bad ? "true" : "false");
    if (key !== sorted) {
      var sign = /-asc$/.test(key) ? 1 : -1, f = field[key.split("-")[0]] || "v";
      order = keys.slice();
      if (key !== "channel") {
        order.sort(function (a, b) {
          var x = a[f], y = b[f];
          if (isNaN(x) !== isNaN(y)) return isNaN(x) ? 1 : -1;
          return (x === y || isNaN(x)) ? a.c - b.c : sign * (x - y);
        });
      }
      sorted = key;
    }
    var stateKey = key + "|" + JSON.stringify(r.list);
    if (stateKey !== shownKey) {
      var frag = document.createDocumentFragment();
      order.forEach(function (k) {
        if (!r.list.length || r.list.some(function (x) { return k.c >= x[0] && k.c <= x[1]; })) {
          frag.appendChild(k.li);
          n++;
        }
      });
      grid.replaceChildren(frag);
      shownKey = stateKey;
    } else {
      n = grid.children.length;
    }
    shown.textContent = n === items.length ? n + " units" : n + " of " + items.length + " units";
    if (save) {
      var state = [];
      if (key !== "channel") state.push("sort=" + key);
      if (filter.value.trim()) state.push("filter=" + encodeURIComponent(filter.value.trim()));
      try { history.replaceState(null, "", state.length ? "#" + state.join("&") : location.pathname + location.search); }
      catch (e) { /* some browsers refuse replaceState on file:// pages */ }
    }
  }

  var params = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var i = kv.indexOf("=");
    if (i > 0) params[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
  });
  if (params.sort && sort.querySelector('option[value="' + params.sort.replace(/[^a-z-]/g, "") + '"]')) sort.value = params.sort;
  if (params.filter) filter.value = params.filter;
  if (sort.value !== "channel" || filter.value) apply(false);
  sort.addEventListener("change", function () { apply(true); });
  filter.addEventListener("input", function () { apply(true); });
})();
