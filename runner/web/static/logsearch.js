// Find in a build's log: the lines that contain the text (any case) are highlighted, the count
// is shown, and Enter / the arrows (Shift+Enter: back) jump between them. Lines that arrive live
// are searched on the next change of the text. Without JavaScript the form stays hidden.
(function () {
  "use strict";
  var form = document.getElementById("find");
  var log = document.getElementById("log");
  if (!form || !log) return;
  var input = document.getElementById("find-text");
  var count = document.getElementById("find-count");
  var hits = [];
  var current = -1;
  form.hidden = false;

  function clear() {
    hits.forEach(function (line) { line.classList.remove("hit", "current"); });
    hits = [];
    current = -1;
  }
  function go(index) {
    if (!hits.length) return;
    if (current >= 0) hits[current].classList.remove("current");
    current = (index + hits.length) % hits.length;
    hits[current].classList.add("current");
    hits[current].scrollIntoView({ block: "center" });
    count.textContent = (current + 1) + " of " + hits.length;
  }
  function find() {
    clear();
    var wanted = input.value.toLowerCase();
    if (!wanted) { count.textContent = ""; return; }
    Array.prototype.forEach.call(log.children, function (line) {
      if (line.textContent.toLowerCase().indexOf(wanted) >= 0) {
        line.classList.add("hit");
        hits.push(line);
      }
    });
    if (hits.length) go(0);
    else count.textContent = "no match";
  }
  input.addEventListener("input", find);
  input.addEventListener("keydown", function (event) {
    if (event.key !== "Enter") return;
    event.preventDefault();
    go(current + (event.shiftKey ? -1 : 1));
  });
  document.getElementById("find-next").addEventListener("click", function () { go(current + 1); });
  document.getElementById("find-prev").addEventListener("click", function () { go(current - 1); });
  form.addEventListener("submit", function (event) { event.preventDefault(); });
})();
